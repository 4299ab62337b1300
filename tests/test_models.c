/*
 * test_models.c — every loader and the forward pass against transformers, on
 * the tiny random models scripts/make_golden.py writes into
 * tests/golden/models/: llama (GQA, untied), llama_tied, llama3_rope,
 * mistral (sliding window 8, prompts of 20), qwen2 (q/k/v biases), gemma2
 * (soft-caps, head_dim != C/H, alternating window, four norms), llama_bf16,
 * llama_sharded, and llama.gguf / llama_f16.gguf (llama.cpp's permuted q/k).
 *
 * For each model and prompt: (a) the whole prompt in one call equals the
 * golden logits at every position, (b) one token at a time through the KV
 * cache gives the same, (d) the prompt split in two calls (pos offset) too;
 * and (c) 8 greedy tokens from the first prompt equal transformers' ids.
 * Tolerance: max|diff| <= 1e-4 * max(1, max|golden logit|) (the goldens are
 * stored to 6 significant digits).
 *
 * Not here: the real SmolLM2 model (test_smollm2.c), stories260K
 * (test_llama2c.c), bad files (test_cli.sh fixtures).
 * Covers nn/load_hf.c (config.json, safetensors sets), nn/load_gguf.c,
 * nn/model.c and nn/forward.c.
 */
#include "check.h"
#include "nn/model.h"

#include <cJSON.h>

#define GOLDEN_DIR "tests/golden/models"
#define MAX_CTX 64

/* ids(n) from a JSON array of integers; returns n, or -1 if malformed. */
static int json_ids(const cJSON *a, int32_t *ids, int cap) {
    int n = cJSON_GetArraySize(a);
    if (!cJSON_IsArray(a) || n > cap) return -1;
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsNumber(e)) return -1;
        ids[i] = e->valueint;
    }
    return n;
}

/* want(n, V) from the golden's rows for one prompt; false if malformed. */
static bool json_logits(const cJSON *rows, int n, int V, float *want) {
    if (cJSON_GetArraySize(rows) != n) return false;
    for (int i = 0; i < n; i++) {
        const cJSON *row = cJSON_GetArrayItem(rows, i);
        if (cJSON_GetArraySize(row) != V) return false;
        int v = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, row) want[(size_t)i * V + v++] = (float)e->valuedouble;
    }
    return true;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* One model: `path` is what mq_model_load gets, `golden` its golden.json. */
static void test_model(const char *name, const char *path, const char *golden) {
    mq_model *m = NULL;
    mq_status st = mq_model_load(path, NULL, &m);
    CHECK(st == MQ_OK, "%s: load %s: %s", name, path, mq_last_error());
    if (st) return;
    cJSON *g = check_read_json(golden);
    CHECK(g != NULL, "%s: %s unreadable or not JSON", name, golden);
    if (!g) {
        mq_model_free(m);
        return;
    }
    const int V = m->cfg.vocab_size;
    const cJSON *prompts = cJSON_GetObjectItem(g, "prompts"), *logits = cJSON_GetObjectItem(g, "logits");
    int np = cJSON_GetArraySize(prompts);
    CHECK(np > 0 && cJSON_GetArraySize(logits) == np, "%s: golden has %d prompts", name, np);
    mq_state *s = mq_state_new(m, MAX_CTX, 16); /* max_batch 16 < 20: long prompts go in pieces */
    float *want = malloc(sizeof(float) * MAX_CTX * V), *got = malloc(sizeof(float) * MAX_CTX * V);
    int32_t ids[MAX_CTX];
    char what[160];
    for (int p = 0; p < np; p++) {
        int n = json_ids(cJSON_GetArrayItem(prompts, p), ids, MAX_CTX);
        bool ok = n > 0 && json_logits(cJSON_GetArrayItem(logits, p), n, V, want);
        CHECK(ok, "%s: golden prompt %d malformed", name, p);
        if (!ok) continue;
        double scale = 1.0;
        for (size_t i = 0; i < (size_t)n * V; i++)
            if (fabs(want[i]) > scale) scale = fabs(want[i]);
        double atol = 1e-4 * scale;
        /* (a) the whole prompt in one call */
        memset(got, 0, sizeof(float) * (size_t)n * V);
        st = mq_forward(m, s, ids, n, 0, got, true);
        CHECK(st == MQ_OK, "%s: forward: %s", name, mq_last_error());
        snprintf(what, sizeof what, "%s prompt %d (%d tokens, one call)", name, p, n);
        CHECK_CLOSE(what, got, want, (size_t)n * V, atol, 0.0);
        /* (b) one token at a time through the KV cache */
        memset(got, 0, sizeof(float) * (size_t)n * V);
        for (int i = 0; i < n; i++) mq_forward(m, s, &ids[i], 1, i, got + (size_t)i * V, false);
        snprintf(what, sizeof what, "%s prompt %d (%d tokens, one at a time)", name, p, n);
        CHECK_CLOSE(what, got, want, (size_t)n * V, atol, 0.0);
        /* (d) split in two calls: positions 0..k-1, then k..n-1 */
        if (n > 1) {
            int k = n / 2 + 1;
            memset(got, 0, sizeof(float) * (size_t)n * V);
            mq_forward(m, s, ids, k, 0, got, true);
            mq_forward(m, s, ids + k, n - k, k, got + (size_t)k * V, true);
            snprintf(what, sizeof what, "%s prompt %d (%d + %d tokens)", name, p, k, n - k);
            CHECK_CLOSE(what, got, want, (size_t)n * V, atol, 0.0);
            /* the last-token-only output is the last row */
            mq_forward(m, s, ids, n, 0, got, false);
            snprintf(what, sizeof what, "%s prompt %d (last logits only)", name, p);
            CHECK_CLOSE(what, got, want + (size_t)(n - 1) * V, (size_t)V, atol, 0.0);
        }
    }
    /* (c) greedy continuation of the first prompt */
    int32_t expect[32];
    int ng = json_ids(cJSON_GetObjectItem(g, "greedy"), expect, 32);
    int n = json_ids(cJSON_GetArrayItem(prompts, 0), ids, MAX_CTX);
    CHECK(ng > 0 && n > 0 && n + ng <= MAX_CTX, "%s: golden greedy ids missing", name);
    if (ng > 0 && n > 0 && n + ng <= MAX_CTX) {
        int32_t out[32];
        st = mq_forward(m, s, ids, n, 0, got, false);
        for (int i = 0; i < ng && st == MQ_OK; i++) {
            out[i] = argmax(got, V);
            st = mq_forward(m, s, &out[i], 1, n + i, got, false);
        }
        CHECK(st == MQ_OK, "%s: greedy forward: %s", name, mq_last_error());
        int first_bad = -1;
        for (int i = 0; i < ng && first_bad < 0; i++)
            if (out[i] != expect[i]) first_bad = i;
        CHECK(first_bad < 0, "%s: greedy token %d is %d, transformers gives %d", name, first_bad,
              first_bad < 0 ? 0 : out[first_bad], first_bad < 0 ? 0 : expect[first_bad]);
    }
    free(want);
    free(got);
    mq_state_free(s);
    cJSON_Delete(g);
    mq_model_free(m);
}

/* Configuration details the goldens depend on, read as the loader should. */
static void test_configs(void) {
    struct { const char *dir; mq_arch arch; bool tied, bias; int window, head_dim; } want[] = {
        {"llama", MQ_ARCH_LLAMA, false, false, 0, 16},
        {"llama_tied", MQ_ARCH_LLAMA, true, false, 0, 16},
        {"mistral", MQ_ARCH_MISTRAL, false, false, 8, 16},
        {"qwen2", MQ_ARCH_QWEN2, true, true, 0, 16},
        {"gemma2", MQ_ARCH_GEMMA2, true, false, 8, 24},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        mq_model *m = NULL;
        const char *path = check_path(GOLDEN_DIR, want[i].dir);
        if (mq_model_load(path, NULL, &m)) continue; /* reported by test_model */
        const mq_config *c = &m->cfg;
        CHECK(c->arch == want[i].arch && c->tied_embeddings == want[i].tied &&
              c->qkv_bias == want[i].bias && c->sliding_window == want[i].window &&
              c->head_dim == want[i].head_dim && c->n_heads == 4 && c->n_kv_heads == 2,
              "%s: arch %s tied %d bias %d window %d head_dim %d heads %d/%d", want[i].dir,
              mq_arch_name(c->arch), c->tied_embeddings, c->qkv_bias, c->sliding_window,
              c->head_dim, c->n_heads, c->n_kv_heads);
        if (want[i].arch == MQ_ARCH_GEMMA2)
            CHECK(c->attn_softcap == 2.0f && c->final_softcap == 4.0f && c->sliding_even_only &&
                  fabsf(c->query_scale - 1.0f / sqrtf(32.0f)) < 1e-7f,
                  "gemma2: softcaps %g/%g, query_scale %g", c->attn_softcap, c->final_softcap,
                  c->query_scale);
        mq_model_free(m);
    }
}

int main(void) {
    static const char *dirs[] = {"llama", "llama_tied", "llama3_rope", "mistral", "qwen2",
                                 "gemma2", "llama_bf16", "llama_sharded"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char path[512], golden[512];
        snprintf(path, sizeof path, "%s/%s", GOLDEN_DIR, dirs[i]);
        snprintf(golden, sizeof golden, "%s/%s/golden.json", GOLDEN_DIR, dirs[i]);
        test_model(dirs[i], path, golden);
    }
    static const char *ggufs[] = {"llama.gguf", "llama_f16.gguf"};
    for (size_t i = 0; i < sizeof ggufs / sizeof ggufs[0]; i++) {
        char path[512], golden[512];
        snprintf(path, sizeof path, "%s/%s", GOLDEN_DIR, ggufs[i]);
        snprintf(golden, sizeof golden, "%s/%s.json", GOLDEN_DIR, ggufs[i]);
        test_model(ggufs[i], path, golden);
    }
    test_configs();
    return check_done("test_models");
}

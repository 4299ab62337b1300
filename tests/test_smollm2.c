/*
 * test_smollm2.c — the real SmolLM2-135M-Instruct Q4_1 GGUF through
 * matquant's GGUF reader, Q4_1 dequantizer and forward pass, against
 * tests/golden/smollm2.json (transformers loading the same file, fp32; see
 * scripts/golden_smollm2.py).
 *
 * For each of the three prompts: the prompt in one call, then 32 greedy
 * tokens one at a time through the KV cache. Checks: the greedy ids are
 * identical; at every position (prompt and generated) the logits of the
 * golden's top-20 ids are within 1e-3 of the stored values (absolute; the
 * goldens are rounded to 1e-4); for the first prompt, the full logit vector
 * at its last position too.
 *
 * The model (98 MB) is not in the repository: it is looked for in $MQ_CACHE,
 * else ~/.cache/matquant (scripts/get-models.sh puts it there); without it
 * the test SKIPs.
 */
#include "check.h"
#include "nn/model.h"

#include <cJSON.h>

#define GGUF_NAME "SmolLM2-135M-Instruct.Q4_1.gguf"
#define GOLDEN "tests/golden/smollm2.json"
#define ATOL 1e-3

static int json_ints(const cJSON *a, int32_t *out, int cap) {
    int n = cJSON_GetArraySize(a);
    if (!cJSON_IsArray(a) || n > cap) return -1;
    for (int i = 0; i < n; i++) out[i] = cJSON_GetArrayItem(a, i)->valueint;
    return n;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Compare row `logits` (V) with the golden top-k at position `pos`. */
static void check_topk(const char *what, const float *logits, const cJSON *ids, const cJSON *vals,
                       int pos) {
    const cJSON *ri = cJSON_GetArrayItem(ids, pos), *rv = cJSON_GetArrayItem(vals, pos);
    int k = cJSON_GetArraySize(ri);
    if (k <= 0 || k > 64 || cJSON_GetArraySize(rv) != k) {
        CHECK(0, "%s: golden top-k row %d malformed", what, pos);
        return;
    }
    float got[64], want[64];
    for (int i = 0; i < k; i++) {
        got[i] = logits[cJSON_GetArrayItem(ri, i)->valueint];
        want[i] = (float)cJSON_GetArrayItem(rv, i)->valuedouble;
    }
    char w[200];
    snprintf(w, sizeof w, "%s, position %d, top-%d logits", what, pos, k);
    CHECK_CLOSE(w, got, want, (size_t)k, ATOL, 0.0);
}

static void test_case(const mq_model *m, mq_state *s, const cJSON *c, int idx) {
    const int V = m->cfg.vocab_size;
    int32_t ids[128], expect[64];
    int n = json_ints(cJSON_GetObjectItem(c, "ids"), ids, 64);
    int ng = json_ints(cJSON_GetObjectItem(c, "greedy"), expect, 64);
    const cJSON *tk_ids = cJSON_GetObjectItem(c, "topk_ids"), *tk_vals = cJSON_GetObjectItem(c, "topk_logits");
    const cJSON *prompt = cJSON_GetObjectItem(c, "prompt");
    char what[160];
    snprintf(what, sizeof what, "smollm2 prompt %d (%s)", idx,
             cJSON_IsString(prompt) ? prompt->valuestring : "?");
    bool ok = n > 0 && ng > 0 && cJSON_GetArraySize(tk_ids) == n + ng;
    CHECK(ok, "%s: golden case malformed", what);
    if (!ok) return;
    float *logits = malloc(sizeof(float) * (size_t)n * V);
    mq_status st = mq_forward(m, s, ids, n, 0, logits, true);
    CHECK(st == MQ_OK, "%s: forward: %s", what, mq_last_error());
    if (st) {
        free(logits);
        return;
    }
    for (int p = 0; p < n; p++) check_topk(what, logits + (size_t)p * V, tk_ids, tk_vals, p);
    const cJSON *full = cJSON_GetObjectItem(c, "last_prompt_logits");
    if (full) {
        float *want = malloc(sizeof(float) * V);
        CHECK(cJSON_GetArraySize(full) == V, "%s: last_prompt_logits has %d values", what,
              cJSON_GetArraySize(full));
        if (cJSON_GetArraySize(full) == V) {
            int v = 0;
            const cJSON *e;
            cJSON_ArrayForEach(e, full) want[v++] = (float)e->valuedouble;
            char w[200];
            snprintf(w, sizeof w, "%s, all logits at the last prompt position", what);
            CHECK_CLOSE(w, logits + (size_t)(n - 1) * V, want, (size_t)V, ATOL, 0.0);
        }
        free(want);
    }
    /* greedy through the KV cache; the golden's logits at each generated position */
    float *row = malloc(sizeof(float) * V);
    memcpy(row, logits + (size_t)(n - 1) * V, sizeof(float) * V);
    int first_bad = -1;
    int32_t got_id = 0;
    for (int i = 0; i < ng && st == MQ_OK; i++) {
        got_id = argmax(row, V);
        if (got_id != expect[i] && first_bad < 0) first_bad = i;
        /* keep following the golden's ids so later positions stay comparable */
        ids[n + i] = expect[i];
        st = mq_forward(m, s, &ids[n + i], 1, n + i, row, false);
        if (st == MQ_OK) check_topk(what, row, tk_ids, tk_vals, n + i);
    }
    CHECK(st == MQ_OK, "%s: greedy forward: %s", what, mq_last_error());
    CHECK(first_bad < 0, "%s: greedy token %d differs from transformers (%d)", what, first_bad,
          first_bad < 0 ? 0 : expect[first_bad]);
    free(row);
    free(logits);
}

int main(void) {
    const char *cache = getenv("MQ_CACHE");
    char dir[900], path[1024];
    if (cache) snprintf(dir, sizeof dir, "%s", cache);
    else snprintf(dir, sizeof dir, "%s/.cache/matquant", getenv("HOME") ? getenv("HOME") : ".");
    snprintf(path, sizeof path, "%s/%s", dir, GGUF_NAME);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        SKIP("%s not found (scripts/get-models.sh fetches it; $MQ_CACHE sets the directory)", path);
        return check_done("test_smollm2");
    }
    cJSON *g = check_read_json(GOLDEN);
    CHECK(g != NULL, "%s unreadable or not JSON", GOLDEN);
    mq_model *m = NULL;
    mq_status st = mq_model_load(path, NULL, &m);
    CHECK(st == MQ_OK, "load %s: %s", path, mq_last_error());
    if (g && st == MQ_OK) {
        CHECK(m->cfg.vocab_size == 49152 && m->cfg.n_layers == 30 && m->cfg.dim == 576 &&
              m->cfg.tied_embeddings, "config: vocab %d layers %d dim %d tied %d",
              m->cfg.vocab_size, m->cfg.n_layers, m->cfg.dim, m->cfg.tied_embeddings);
        mq_state *s = mq_state_new(m, 128, 64);
        const cJSON *cases = cJSON_GetObjectItem(g, "cases");
        CHECK(cJSON_GetArraySize(cases) == 3, "golden has %d cases", cJSON_GetArraySize(cases));
        for (int i = 0; i < cJSON_GetArraySize(cases); i++) test_case(m, s, cJSON_GetArrayItem(cases, i), i);
        mq_state_free(s);
    }
    mq_model_free(m);
    cJSON_Delete(g);
    return check_done("test_smollm2");
}

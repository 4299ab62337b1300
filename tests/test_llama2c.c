/*
 * test_llama2c.c — the llama2.c loader and the forward pass on the real
 * stories260K model against ../shared/data/stories260K/golden.json (logits of
 * an independent PyTorch implementation) and the greedy ids documented in
 * ../shared/data/SOURCES.md; plus bad llama2.c files.
 */
#include "check.h"
#include "nn/model.h"

#include <cJSON.h>

static void test_golden_logits(const char *data) {
    mq_model *m = NULL;
    const char *path = check_path(data, "stories260K/stories260K.bin");
    mq_status st = mq_model_load(path, NULL, &m);
    CHECK(st == MQ_OK, "load %s: %s", path, mq_last_error());
    if (st) return;
    CHECK(m->cfg.dim == 64 && m->cfg.n_layers == 5 && m->cfg.n_kv_heads == 4 && m->cfg.vocab_size == 512,
          "config dim=%d layers=%d kv=%d vocab=%d", m->cfg.dim, m->cfg.n_layers, m->cfg.n_kv_heads,
          m->cfg.vocab_size);
    CHECK(mq_model_n_params(m) == 260032, "params %lld", (long long)mq_model_n_params(m));
    cJSON *g = check_read_json(check_path(data, "stories260K/golden.json"));
    CHECK(g != NULL, "golden.json unreadable");
    if (!g) { mq_model_free(m); return; }
    cJSON *toks = cJSON_GetObjectItem(g, "tokens"), *lg = cJSON_GetObjectItem(g, "logits");
    int n = cJSON_GetArraySize(toks), V = m->cfg.vocab_size;
    int32_t ids[64];
    float *want = malloc(sizeof(float) * n * V), *got = malloc(sizeof(float) * n * V);
    for (int i = 0; i < n; i++) {
        ids[i] = cJSON_GetArrayItem(toks, i)->valueint;
        cJSON *row = cJSON_GetArrayItem(lg, i);
        for (int v = 0; v < V; v++) want[i * V + v] = (float)cJSON_GetArrayItem(row, v)->valuedouble;
    }
    /* the whole sequence at once */
    mq_state *s = mq_state_new(m, 512, 64);
    CHECK(mq_forward(m, s, ids, n, 0, got, true) == MQ_OK, "%s", mq_last_error());
    CHECK_CLOSE("stories260K logits (batch)", got, want, (size_t)n * V, 2e-4, 1e-5);
    /* one token at a time through the KV cache */
    for (int i = 0; i < n; i++) mq_forward(m, s, &ids[i], 1, i, got + (size_t)i * V, false);
    CHECK_CLOSE("stories260K logits (incremental)", got, want, (size_t)n * V, 2e-4, 1e-5);
    /* greedy from BOS: the ids documented in SOURCES.md */
    const int expect[12] = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421};
    int32_t tok = 1;
    int ok = 1;
    for (int i = 0; i < 12; i++) {
        mq_forward(m, s, &tok, 1, i, got, false);
        int best = 0;
        for (int v = 1; v < V; v++)
            if (got[v] > got[best]) best = v;
        if (best != expect[i]) ok = 0;
        tok = best;
    }
    CHECK(ok, "greedy ids from BOS differ from SOURCES.md");
    /* errors: position past the context, id outside the vocabulary */
    int32_t bad = 512;
    CHECK(mq_forward(m, s, &bad, 1, 0, got, false) == MQ_ERR_ARG, "bad token id accepted");
    CHECK(mq_forward(m, s, &tok, 1, 512, got, false) == MQ_ERR_ARG, "position past ctx accepted");
    mq_state_free(s);
    free(want);
    free(got);
    cJSON_Delete(g);
    mq_model_free(m);
}

/* a header claiming sizes the file does not have */
static void test_bad_files(void) {
    char path[] = "/tmp/mq_test_llama2c_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    int32_t h[7] = {64, 172, 5, 8, 4, 512, 512};
    CHECK(write(fd, h, sizeof h) == sizeof h, "write");
    float zeros[100] = {0};
    CHECK(write(fd, zeros, sizeof zeros) == sizeof zeros, "write");
    close(fd);
    mq_model *m = NULL;
    mq_status st = mq_model_load(path, NULL, &m);
    CHECK(st == MQ_ERR_FORMAT && m == NULL, "truncated llama2.c file: status %d", st);
    CHECK(strstr(mq_last_error(), "should be") != NULL, "message: %s", mq_last_error());
    /* absurd header */
    int32_t h2[7] = {-3, 0, 0, 0, 0, 0, 0};
    FILE *f = fopen(path, "wb");
    fwrite(h2, sizeof h2, 1, f);
    fclose(f);
    st = mq_model_load(path, NULL, &m);
    CHECK(st == MQ_ERR_FORMAT && strstr(mq_last_error(), "not a llama2.c checkpoint"),
          "absurd header: %d %s", st, mq_last_error());
    /* too short */
    f = fopen(path, "wb");
    fwrite("hi", 2, 1, f);
    fclose(f);
    st = mq_model_load(path, NULL, &m);
    CHECK(st == MQ_ERR_FORMAT && strstr(mq_last_error(), "too short"), "short: %s", mq_last_error());
    unlink(path);
    st = mq_model_load("/nonexistent/model.bin", NULL, &m);
    CHECK(st == MQ_ERR_IO && strstr(mq_last_error(), "/nonexistent/model.bin"), "missing: %s",
          mq_last_error());
}

int main(void) {
    const char *data = check_shared_data();
    if (data) test_golden_logits(data);
    test_bad_files();
    return check_done("test_llama2c");
}

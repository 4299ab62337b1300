/*
 * test_api.c — the public API (include/matquant.h) used the way a client
 * program would, with no other project header: load the real stories260K
 * model, tokenize, generate greedily through the KV cache, measure
 * perplexity, quantize with minmax, write a checkpoint, load it at bit plans
 * and switch plans in place. Covers: include/matquant.h, nn/, text/, eval/ppl,
 * train/quantize, io/checkpoint, quant/qmodel and quant/plan end to end.
 */
#include "matquant.h"

#include "check.h"

#include <stdlib.h>

static double ppl_of(const mq_model *m, const int32_t *ids, size_t n) {
    mq_ppl_result r;
    mq_status st = mq_perplexity(m, NULL, ids, n, 128, 4, mq_tokenizer_bos(m->tok), NULL, NULL, &r);
    CHECK(st == MQ_OK, "perplexity: %s", mq_last_error());
    return st ? NAN : r.ppl;
}

int main(void) {
    const char *data = check_shared_data();
    if (!data) return check_done("test_api");
    mq_load_opts lo = {.tokenizer_path = check_path(data, "stories260K/tok512.bin")};
    const char *model = check_path(data, "stories260K/stories260K.bin");
    mq_model *m = NULL;
    mq_status st = mq_model_load(model, &lo, &m);
    CHECK(st == MQ_OK && m && m->tok, "load %s: %s", model, mq_last_error());
    if (st) return check_done("test_api");

    /* greedy from BOS through the cache: the story of SOURCES.md */
    mq_state *s = mq_state_new(m, 256, 16);
    float *logits = malloc(sizeof(float) * (size_t)m->cfg.vocab_size);
    int32_t gen[13] = {mq_tokenizer_bos(m->tok)};
    for (int i = 0; i < 12; i++) {
        CHECK(mq_forward(m, s, &gen[i], 1, i, logits, false) == MQ_OK, "forward: %s", mq_last_error());
        int best = 0;
        for (int v = 1; v < m->cfg.vocab_size; v++)
            if (logits[v] > logits[best]) best = v;
        gen[i + 1] = best;
    }
    char *text = mq_tokenizer_decode(m->tok, gen + 1, 12);
    CHECK(text && !strncmp(text, "Once upon a time, there was a little girl", 41), "greedy text '%s'", text);
    /* encode(decode(ids)) round trip */
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(mq_tokenizer_encode(m->tok, text, strlen(text), false, &ids, &n) == MQ_OK && n == 12 &&
              !memcmp(ids, gen + 1, 12 * sizeof *ids),
          "re-encoding '%s' gave %zu ids", text, n);
    free(ids);
    free(text);

    /* perplexity on TinyStories text */
    char *story;
    size_t len;
    const char *txt = check_path(data, "tinystories/tinystories_validation_head.txt");
    CHECK(mq_read_file(txt, &story, &len) == MQ_OK, "%s", mq_last_error());
    if (len > 20000) len = 20000;
    CHECK(mq_tokenizer_encode(m->tok, story, len, false, &ids, &n) == MQ_OK && n >= 512, "%zu tokens", n);
    free(story);
    double p_fp = ppl_of(m, ids, n);
    CHECK(p_fp > 1.5 && p_fp < 10, "fp32 ppl %.3f (stories260K on TinyStories is ~4)", p_fp);

    /* quantize (minmax, FFN) into a checkpoint, reload at plans */
    mq_quant_opts qo = {.method = "minmax", .n_train = 1, .train_bits = {8}, .lambda = {1}, .scope = "ffn"};
    mq_qlinear *ql = NULL;
    int nq = 0;
    st = mq_quantize(m, &qo, &ql, &nq);
    CHECK(st == MQ_OK && nq == 3 * m->cfg.n_layers, "quantize: %d linears, %s", nq, mq_last_error());
    char dir[] = "/tmp/mq_test_api_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char out[64];
    snprintf(out, sizeof out, "%s/ckpt", dir);
    mq_qmeta meta = {.format_version = 1, .parent_bits = 8, .scope = "ffn", .method = "minmax", .grid_bits = 8,
                     .n_train = 1, .train_bits = {8}, .lambda = {1}};
    st = mq_checkpoint_write(out, m, ql, nq, &meta);
    CHECK(st == MQ_OK, "checkpoint write: %s", mq_last_error());
    mq_qlinears_free(ql, nq);
    mq_state_free(s);
    mq_model_free(m);

    mq_model *q = NULL;
    mq_load_opts qlo = {.bits = "8"};
    st = mq_model_load(out, &qlo, &q);
    CHECK(st == MQ_OK && q && q->quant, "load checkpoint %s: %s", out, mq_last_error());
    if (!st) {
        double p8 = ppl_of(q, ids, n);
        mq_plan plan;
        CHECK(mq_plan_parse("2", q->cfg.n_layers, &plan) == MQ_OK, "%s", mq_last_error());
        CHECK(mq_model_apply_plan(q, &plan) == MQ_OK, "%s", mq_last_error());
        mq_plan_free(&plan);
        double p2 = ppl_of(q, ids, n);
        CHECK(mq_plan_parse("0-1:8,2-4:4", q->cfg.n_layers, &plan) == MQ_OK, "%s", mq_last_error());
        CHECK(mq_model_apply_plan(q, &plan) == MQ_OK, "%s", mq_last_error());
        double eff, sto;
        mq_model_plan_bits(q, &plan, &eff, &sto);
        CHECK(eff > 4 && eff < 8 && eff == sto, "mixed plan: effective %.3f, storage %.3f bits", eff, sto);
        mq_plan_free(&plan);
        double pm = ppl_of(q, ids, n);
        printf("stories260K ppl (4 chunks of 128): fp32 %.4f, int8 %.4f, mixed 8/4 %.4f, int2 %.4f\n", p_fp, p8,
               pm, p2);
        CHECK(fabs(p8 - p_fp) < 0.02 * p_fp, "int8 ppl %.4f vs fp32 %.4f", p8, p_fp);
        CHECK(pm >= p8 * 0.98 && p2 > 2 * p8, "ppl should grow as bits shrink: 8 %.3f, mixed %.3f, 2 %.3f", p8, pm,
              p2);
        /* an impossible plan is an error, the model stays at its plan */
        CHECK(mq_plan_parse("0-9:4", q->cfg.n_layers, &plan) != MQ_OK && strstr(mq_last_error(), "layer"),
              "plan past the last layer accepted: %s", mq_last_error());
    }
    mq_model_free(q);
    free(ids);
    free(logits);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    return check_done("test_api");
}

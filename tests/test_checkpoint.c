/*
 * test_checkpoint.c — matquant checkpoints: quantize a golden tiny model,
 * write, read back bit-exactly, reload as a model at several plans (weights
 * equal the spec's dequantization), write again from the reloaded model and
 * get the same codes; corrupt checkpoints give errors naming the problem;
 * quantize's scope/group handling.
 * Covers io/checkpoint.c, quant/qmodel.c, train/quantize.c (minmax), and
 * nn/config_json.c (config.json written, then read back by nn/load_hf.c).
 */
#include "check.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "quant/qmodel.h"
#include "quant/ref.h"
#include "train/quantize.h"

#include <sys/stat.h>

static const char *SRC = "tests/golden/models/qwen2";

static int same_qlinears(const mq_qlinear *a, int na, const mq_qlinear *b, int nb) {
    if (na != nb) return 0;
    for (int i = 0; i < na; i++) {
        const mq_qlinear *x = &a[i], *y = NULL;
        for (int j = 0; j < nb; j++)
            if (b[j].layer == x->layer && b[j].kind == x->kind) y = &b[j];
        if (!y || x->rows != y->rows || x->cols != y->cols || x->group != y->group) return 0;
        size_t ng = (size_t)x->rows * (x->cols / x->group);
        if (memcmp(x->q, y->q, (size_t)x->rows * x->cols) || memcmp(x->scale, y->scale, ng * sizeof(float)) ||
            memcmp(x->zero, y->zero, ng))
            return 0;
    }
    return 1;
}

static void rm_rf(const char *d) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    CHECK(system(cmd) == 0, "rm");
}

static void test_round_trip(const char *scope, int group) {
    char out[256], out2[300];
    snprintf(out, sizeof out, "/tmp/mq_test_ckpt_%s_%d_%d", scope, group, (int)getpid());
    snprintf(out2, sizeof out2, "%s_again", out);
    mq_model *m = NULL;
    if (mq_model_load(SRC, NULL, &m)) {
        CHECK(0, "load %s: %s", SRC, mq_last_error());
        return;
    }
    mq_quant_opts o = {.method = "minmax", .n_train = 3, .train_bits = {8, 4, 2}, .lambda = {1, 1, 1},
                       .scope = scope, .group = group};
    mq_qlinear *q = NULL;
    int n = 0;
    CHECK(mq_quantize(m, &o, &q, &n) == MQ_OK, "quantize: %s", mq_last_error());
    int want = m->cfg.n_layers * (strcmp(scope, "all") ? 3 : 7);
    CHECK(n == want, "%s: %d linears quantized, want %d", scope, n, want);
    mq_qmeta meta = {.format_version = 1, .parent_bits = 8, .group_size = group, .n_train = 3,
                     .train_bits = {8, 4, 2}, .lambda = {1, 1, 1}};
    snprintf(meta.scope, sizeof meta.scope, "%s", scope);
    snprintf(meta.method, sizeof meta.method, "minmax");
    snprintf(meta.source, sizeof meta.source, "%s", SRC);
    CHECK(mq_checkpoint_write(out, m, q, n, &meta) == MQ_OK, "write: %s", mq_last_error());
    mq_qlinear *r = NULL;
    int nr = 0;
    mq_qmeta rm;
    CHECK(mq_checkpoint_read(out, &r, &nr, &rm) == MQ_OK, "read: %s", mq_last_error());
    CHECK(same_qlinears(q, n, r, nr), "codes/scales/zeros differ after the round trip");
    CHECK(rm.group_size == group && !strcmp(rm.scope, scope) && rm.n_train == 3 && rm.train_bits[2] == 2 &&
          !strcmp(rm.method, "minmax"), "metadata round trip");
    /* reload as a model at several plans: every quantized weight equals the spec */
    const char *plans[] = {"8", "4", "2x", "0:2,1:8"};
    for (int pi = 0; pi < 4; pi++) {
        mq_load_opts lo = {.bits = plans[pi]};
        mq_model *c = NULL;
        if (mq_model_load(out, &lo, &c)) {
            CHECK(0, "load checkpoint at %s: %s", plans[pi], mq_last_error());
            continue;
        }
        const mq_plan *p = &c->quant->plan;
        int bad = 0;
        for (int i = 0; i < nr; i++) {
            int rows, cols;
            const float *w = mq_linear_weight(c, r[i].layer, r[i].kind, &rows, &cols);
            float *want_w = malloc(sizeof(float) * rows * cols);
            mq_ref_dequant(r[i].q, r[i].scale, r[i].zero, rows, cols, r[i].group, p->bits[r[i].layer],
                           p->extra[r[i].layer], want_w);
            bad += memcmp(w, want_w, sizeof(float) * rows * cols) != 0;
            free(want_w);
        }
        CHECK(bad == 0, "plan %s: %d linears differ from the spec's dequantization", plans[pi], bad);
        /* unquantized tensors are the source's */
        CHECK(!memcmp(c->tok_emb, m->tok_emb, sizeof(float) * m->cfg.vocab_size * m->cfg.dim) &&
              !memcmp(c->layers[0].bq, m->layers[0].bq, sizeof(float) * m->cfg.n_heads * m->cfg.head_dim),
              "unquantized tensors changed");
        if (pi == 0) {
            /* writing the reloaded model again gives the same file contents */
            CHECK(mq_checkpoint_write(out2, c, r, nr, &meta) == MQ_OK, "rewrite: %s", mq_last_error());
            char a[400], b[400];
            snprintf(a, sizeof a, "%s/model.safetensors", out);
            snprintf(b, sizeof b, "%s/model.safetensors", out2);
            char *da, *db;
            size_t la, lb;
            CHECK(mq_read_file(a, &da, &la) == MQ_OK && mq_read_file(b, &db, &lb) == MQ_OK, "read files");
            CHECK(la == lb && !memcmp(da, db, la), "rewritten checkpoint differs (%zu vs %zu bytes)", la, lb);
            free(da);
            free(db);
        }
        mq_model_free(c);
    }
    /* replacing an existing checkpoint works; a non-checkpoint directory is refused */
    CHECK(mq_checkpoint_write(out, m, q, n, &meta) == MQ_OK, "overwrite a checkpoint: %s", mq_last_error());
    CHECK(mq_checkpoint_write(SRC, m, q, n, &meta) == MQ_ERR_IO && strstr(mq_last_error(), "not a matquant checkpoint"),
          "refuses to replace a non-checkpoint directory: %s", mq_last_error());
    mq_qlinears_free(q, n);
    mq_qlinears_free(r, nr);
    mq_model_free(m);
    rm_rf(out);
    rm_rf(out2);
}

/* corrupt a copy of a checkpoint's safetensors by rewriting it */
static void test_corrupt(void) {
    char out[256];
    snprintf(out, sizeof out, "/tmp/mq_test_ckpt_bad_%d", (int)getpid());
    mq_model *m = NULL;
    if (mq_model_load(SRC, NULL, &m)) return;
    mq_quant_opts o = {.method = "minmax", .n_train = 1, .train_bits = {4}, .lambda = {1}, .scope = "ffn"};
    mq_qlinear *q = NULL;
    int n = 0;
    mq_quantize(m, &o, &q, &n);
    mq_qmeta meta = {.format_version = 1, .parent_bits = 8, .n_train = 1, .train_bits = {4}, .lambda = {1}};
    snprintf(meta.scope, sizeof meta.scope, "ffn");
    snprintf(meta.method, sizeof meta.method, "minmax");
    struct { const char *what, *expect; } cases[] = {
        {"version", "format_version"}, {"nan", "must be finite"}, {"lambdas", "malformed"}, {"group", "groups of"},
    };
    for (int c = 0; c < 4; c++) {
        mq_qmeta mm = meta;
        float saved = q[0].scale[0];
        if (c == 0) mm.format_version = 2;
        if (c == 1) q[0].scale[0] = NAN;
        if (c == 2) mm.n_train = 0;
        if (c == 3) mm.group_size = 32;
        rm_rf(out);
        CHECK(mq_checkpoint_write(out, m, q, n, &mm) == MQ_OK, "write: %s", mq_last_error());
        mq_model *bad = NULL;
        mq_status st = mq_model_load(out, NULL, &bad);
        CHECK(st != MQ_OK && strstr(mq_last_error(), cases[c].expect) && strstr(mq_last_error(), out),
              "corrupt checkpoint (%s): status %d, message '%s'", cases[c].what, st, mq_last_error());
        mq_model_free(bad);
        q[0].scale[0] = saved;
    }
    /* impossible plans */
    rm_rf(out);
    CHECK(mq_checkpoint_write(out, m, q, n, &meta) == MQ_OK, "write: %s", mq_last_error());
    mq_load_opts lo = {.bits = "0-9:2"};
    mq_model *bad = NULL;
    CHECK(mq_model_load(out, &lo, &bad) == MQ_ERR_ARG && strstr(mq_last_error(), "layer 9"),
          "plan beyond the layers: %s", mq_last_error());
    lo.bits = "3";
    CHECK(mq_model_load(out, &lo, &bad) == MQ_OK, "plan 3: %s", mq_last_error());
    mq_model_free(bad);
    /* --bits on a model that is not a checkpoint */
    CHECK(mq_model_load(SRC, &lo, &bad) == MQ_ERR_ARG && strstr(mq_last_error(), "quantize this model first"),
          "--bits on a plain model: %s", mq_last_error());
    mq_qlinears_free(q, n);
    mq_model_free(m);
    rm_rf(out);
}

int main(void) {
    struct stat st;
    if (stat(SRC, &st) != 0) {
        SKIP("%s missing (run from the repo root)", SRC);
        return check_done("test_checkpoint");
    }
    test_round_trip("ffn", 0);
    test_round_trip("all", 32);
    test_corrupt();
    return check_done("test_checkpoint");
}

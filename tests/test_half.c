/*
 * test_half.c — 16-bit (F16/BF16) serving: quant/half.c kernels against the
 * scalar reference (every bit pattern widened; GEMV and the strip GEMM on
 * odd sizes and ragged tails, B = 1 and B > 1, exact on exactly
 * representable sums, within tolerance of a double reference otherwise),
 * checkpoints keeping the source dtype of unquantized tensors (F16, BF16,
 * F32 sources; a changed tensor falls back to F32), served models (tiny F16
 * HF models, tied and untied, and the F16 GGUF golden) giving the float
 * path's logits within 1e-5 relative, their resident weight bytes (2 per
 * 16-bit weight, no fp32 copy of packed linears), plan switching, head:8
 * from the 16-bit table.
 * Covers quant/half.c, the serve path of nn/model.c, nn/forward.c and
 * quant/qmodel.c, and the dtype rule of io/checkpoint.c.
 */
#include "check.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "quant/half.h"
#include "quant/kern.h"
#include "quant/qmodel.h"
#include "train/quantize.h"

#include <omp.h>

static uint64_t rng = 0x243F6A8885A308D3ULL;
static uint32_t next_u32(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float uniform(void) { return (float)(next_u32() & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f; }

static const mq_half_ops *variants[3];
static int n_variants;

/* ============================================================ kernels */

/* Every 16-bit pattern widens to the same fp32 bits in every variant, except
 * that a NaN need only stay a NaN (F16C quiets signalling NaNs; a loaded
 * weight is never NaN anyway). */
static bool same_widen(const float *ref, const float *got) {
    for (int i = 0; i < 65536; i++)
        if (isnan(ref[i]) ? !isnan(got[i]) : memcmp(&ref[i], &got[i], sizeof(float)) != 0) {
            fprintf(stderr, "pattern 0x%04x: got %a, want %a\n", i, got[i], ref[i]);
            return false;
        }
    return true;
}

static void test_widen_all_patterns(void) {
    uint16_t *bits = malloc(65536 * sizeof *bits);
    for (int i = 0; i < 65536; i++) bits[i] = (uint16_t)i;
    float *ref = malloc(65536 * sizeof(float)), *got = malloc(65536 * sizeof(float));
    mq_dtype dts[2] = {MQ_DTYPE_F16, MQ_DTYPE_BF16};
    for (int d = 0; d < 2; d++) {
        mq_half h;
        mq_half_from_bits(bits, 1, 65536, dts[d], &h);
        for (int i = 0; i < 65536; i++) ref[i] = d == 0 ? mq_f16_to_f32((uint16_t)i) : mq_bf16_to_f32((uint16_t)i);
        for (int v = 0; v < n_variants; v++) {
            variants[v]->widen(&h, 0, 1, got);
            CHECK(same_widen(ref, got), "%s widen of every %s pattern", variants[v]->name,
                  mq_dtype_name(dts[d]));
        }
        mq_half_row(&h, 0, got);
        CHECK(same_widen(ref, got), "mq_half_row of every %s pattern", mq_dtype_name(dts[d]));
        mq_half_free(&h);
    }
    free(bits); free(ref); free(got);
}

/* y (B, rows) in double from the widened weights. */
static void ref_matmul(const mq_half *h, const float *x, int B, double *y) {
    float *row = malloc((size_t)h->cols * sizeof(float));
    for (int o = 0; o < h->rows; o++) {
        mq_half_scalar_ops.widen(h, o, o + 1, row);
        for (int b = 0; b < B; b++) {
            double s = 0;
            for (int j = 0; j < h->cols; j++) s += (double)row[j] * x[(size_t)b * h->cols + j];
            y[(size_t)b * h->rows + o] = s;
        }
    }
    free(row);
}

/* One shape: every variant's GEMV and threaded product against the scalar
 * reference; exact: weights k/8 and activations small integers, so every
 * partial sum is exact in fp32 and all results must agree bit for bit. */
static void check_shape(mq_dtype dt, int rows, int cols, int B, bool exact) {
    size_t n = (size_t)rows * cols;
    float *w = malloc(n * sizeof(float)), *x = malloc((size_t)B * cols * sizeof(float));
    for (size_t i = 0; i < n; i++) w[i] = exact ? (float)((int)(next_u32() % 17) - 8) / 8.0f : uniform();
    for (size_t i = 0; i < (size_t)B * cols; i++) x[i] = exact ? (float)((int)(next_u32() % 9) - 4) : uniform();
    mq_half h;
    char what[64];
    snprintf(what, sizeof what, "%s %dx%d", mq_dtype_name(dt), rows, cols);
    CHECK(mq_half_from_f32(w, rows, cols, dt, what, &h) == MQ_OK, "%s", mq_last_error());
    double *yd = malloc((size_t)B * rows * sizeof(double));
    ref_matmul(&h, x, B, yd);
    float *yref = malloc((size_t)B * rows * sizeof(float)), *y = malloc((size_t)B * rows * sizeof(float));
    float *want = malloc((size_t)B * rows * sizeof(float));
    for (size_t i = 0; i < (size_t)B * rows; i++) want[i] = (float)yd[i];
    for (int b = 0; b < B; b++) mq_half_scalar_ops.gemv(&h, 0, rows, x + (size_t)b * cols, yref + (size_t)b * rows);
    double atol = exact ? 0 : 1e-5 * sqrt((double)cols);
    CHECK_CLOSE(what, yref, want, (size_t)B * rows, atol, exact ? 0 : 1e-5);
    mq_half_scratch sc;
    mq_half_scratch_init(&sc, omp_get_max_threads(), cols);
    for (int v = 0; v < n_variants; v++) {
        const mq_half_ops *op = variants[v];
        char lab[128];
        /* the GEMV on a ragged slice of rows, then the whole product */
        int o0 = rows > 3 ? 1 : 0, o1 = rows > 3 ? rows - 2 : rows;
        memset(y, 0, (size_t)rows * sizeof(float));
        op->gemv(&h, o0, o1, x, y);
        snprintf(lab, sizeof lab, "%s gemv rows %d..%d of %s", op->name, o0, o1, what);
        if (exact) CHECK(!memcmp(y + o0, yref + o0, (size_t)(o1 - o0) * sizeof(float)), "%s", lab);
        else CHECK_CLOSE(lab, y + o0, want + o0, (size_t)(o1 - o0), atol, 1e-5);
        mq_half_matmul(&h, x, B, y, &sc, op);
        snprintf(lab, sizeof lab, "%s matmul B=%d of %s", op->name, B, what);
        if (exact) CHECK(!memcmp(y, yref, (size_t)B * rows * sizeof(float)), "%s", lab);
        else CHECK_CLOSE(lab, y, want, (size_t)B * rows, atol, 1e-5);
    }
    mq_half_scratch_free(&sc);
    mq_half_free(&h);
    free(w); free(x); free(yd); free(yref); free(y); free(want);
}

static void test_kernels(void) {
    const int shapes[][2] = {{1, 1}, {3, 7}, {17, 33}, {16, 64}, {64, 100}, {70, 257}, {130, 1000}, {96, 1031}};
    const int Bs[] = {1, 2, 5, 17};
    mq_dtype dts[2] = {MQ_DTYPE_F16, MQ_DTYPE_BF16};
    for (int d = 0; d < 2; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (size_t b = 0; b < sizeof Bs / sizeof Bs[0]; b++)
                for (int e = 0; e < 2; e++) check_shape(dts[d], shapes[s][0], shapes[s][1], Bs[b], e == 0);
}

static void test_convert_errors(void) {
    float w[4] = {1, 2, 70000.0f, 3};
    mq_half h;
    CHECK(mq_half_from_f32(w, 2, 2, MQ_DTYPE_F16, "big.weight", &h) == MQ_ERR_NUMERIC &&
          strstr(mq_last_error(), "big.weight") && strstr(mq_last_error(), "element 2") && !h.data,
          "F16 overflow named: %s", mq_last_error());
    CHECK(mq_half_from_f32(w, 2, 2, MQ_DTYPE_BF16, "big.weight", &h) == MQ_OK && h.data, "BF16 holds 70000");
    mq_half_free(&h);
    CHECK(mq_half_from_f32(w, 2, 2, MQ_DTYPE_F32, "w", &h) == MQ_ERR_ARG, "F32 is not a 16-bit dtype");
}

/* ============================================================= models */

static void rm_rf(const char *d) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    CHECK(system(cmd) == 0, "rm");
}

/* An HF directory `dst` with the config of `src` and every tensor of its
 * model.safetensors rounded to dt; element 5 of tensor `poison` (if not
 * NULL) set to +Inf. */
static bool make_16bit_copy(const char *src, const char *dst, mq_dtype dt, const char *poison) {
    char a[400], b[400], cmd[900];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp '%s/config.json' '%s/'", dst, dst, src, dst);
    if (system(cmd) != 0) return false;
    snprintf(a, sizeof a, "%s/model.safetensors", src);
    snprintf(b, sizeof b, "%s/model.safetensors", dst);
    mq_st_file *f = NULL;
    if (mq_st_open(a, &f)) return false;
    int n = mq_st_count(f);
    mq_tensor *t = calloc((size_t)n, sizeof *t);
    uint16_t **bufs = calloc((size_t)n, sizeof *bufs);
    for (int i = 0; i < n; i++) {
        const mq_tensor *s = mq_st_at(f, i);
        size_t k = (size_t)mq_tensor_numel(s);
        float *tmp = malloc(k * sizeof(float));
        mq_convert_to_f32(s->data, s->dtype, k, tmp);
        bufs[i] = malloc(k * sizeof(uint16_t));
        for (size_t j = 0; j < k; j++) bufs[i][j] = dt == MQ_DTYPE_F16 ? mq_f32_to_f16(tmp[j]) : mq_f32_to_bf16(tmp[j]);
        free(tmp);
        if (poison && !strcmp(s->name, poison)) bufs[i][5] = dt == MQ_DTYPE_F16 ? 0x7C00 : 0x7F80;
        t[i] = *s;
        t[i].dtype = dt;
        t[i].data = bufs[i];
        t[i].nbytes = k * sizeof(uint16_t);
    }
    mq_kv kv[] = {{"format", "pt"}};
    bool ok = mq_st_write(b, t, n, kv, 1) == MQ_OK;
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(t);
    mq_st_close(f);
    return ok;
}

/* Quantize src (minmax, R = {8, 4, 2}, scope) into out. */
static bool quantize_to(const char *src, const char *out, const char *scope) {
    mq_model *m = NULL;
    if (mq_model_load(src, NULL, &m)) {
        CHECK(0, "load %s: %s", src, mq_last_error());
        return false;
    }
    mq_quant_opts o = {.method = "minmax", .n_train = 3, .train_bits = {8, 4, 2}, .lambda = {1, 1, 1},
                       .scope = scope};
    mq_qlinear *q = NULL;
    int n = 0;
    mq_status st = mq_quantize(m, &o, &q, &n);
    mq_qmeta meta = {.format_version = 1, .parent_bits = 8, .n_train = 3, .train_bits = {8, 4, 2},
                     .lambda = {1, 1, 1}};
    snprintf(meta.scope, sizeof meta.scope, "%s", scope);
    snprintf(meta.method, sizeof meta.method, "minmax");
    snprintf(meta.source, sizeof meta.source, "%s", src);
    if (st == MQ_OK) st = mq_checkpoint_write(out, m, q, n, &meta);
    CHECK(st == MQ_OK, "quantize/write %s: %s", out, mq_last_error());
    mq_qlinears_free(q, n);
    mq_model_free(m);
    return st == MQ_OK;
}

/* The dtype of tensor `name` in dir/model.safetensors, -1 if absent. */
static int file_dtype(const char *dir, const char *name) {
    char p[400];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    mq_st_file *f = NULL;
    if (mq_st_open(p, &f)) return -1;
    const mq_tensor *t = mq_st_find(f, name);
    int d = t ? (int)t->dtype : -1;
    mq_st_close(f);
    return d;
}

static void test_checkpoint_dtypes(const char *tmp) {
    char f16[300], ck[300];
    snprintf(f16, sizeof f16, "%s/llama_f16", tmp);
    snprintf(ck, sizeof ck, "%s/ck", tmp);
    struct { const char *src; mq_dtype want; } cases[] = {
        {f16, MQ_DTYPE_F16}, {"tests/golden/models/llama_bf16", MQ_DTYPE_BF16},
        {"tests/golden/models/llama", MQ_DTYPE_F32}, {"tests/golden/models/llama_f16.gguf", MQ_DTYPE_F16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!quantize_to(cases[i].src, ck, "ffn")) continue;
        int e = file_dtype(ck, "model.embed_tokens.weight"), h = file_dtype(ck, "lm_head.weight");
        int q = file_dtype(ck, "model.layers.1.self_attn.q_proj.weight");
        int nrm = file_dtype(ck, "model.layers.0.input_layernorm.weight");
        int qw = file_dtype(ck, "model.layers.0.mlp.up_proj.qweight"), sc = file_dtype(ck, "model.layers.0.mlp.up_proj.scale");
        /* GGUF norms are F32 in the file: they stay F32 */
        int want_norm = strstr(cases[i].src, ".gguf") ? MQ_DTYPE_F32 : (int)cases[i].want;
        CHECK(e == (int)cases[i].want && h == (int)cases[i].want && q == (int)cases[i].want && nrm == want_norm &&
              qw == MQ_DTYPE_U8 && sc == MQ_DTYPE_F32,
              "%s: embed %d head %d q_proj %d norm %d qweight %d scale %d, want %d", cases[i].src, e, h, q, nrm, qw,
              sc, (int)cases[i].want);
        rm_rf(ck);
    }
    /* a 16-bit tensor changed since loading (not representable) is written F32 */
    mq_model *m = NULL;
    if (mq_model_load(f16, NULL, &m) == MQ_OK) {
        m->layers[0].attn_norm[0] += 1e-4f;
        mq_qmeta meta = {.format_version = 1, .parent_bits = 8, .n_train = 1, .train_bits = {8}, .lambda = {1}};
        snprintf(meta.scope, sizeof meta.scope, "ffn");
        snprintf(meta.method, sizeof meta.method, "minmax");
        CHECK(mq_checkpoint_write(ck, m, NULL, 0, &meta) == MQ_OK, "%s", mq_last_error());
        CHECK(file_dtype(ck, "model.layers.0.input_layernorm.weight") == MQ_DTYPE_F32 &&
              file_dtype(ck, "model.layers.1.input_layernorm.weight") == MQ_DTYPE_F16,
              "changed norm F32, unchanged one F16");
        rm_rf(ck);
        mq_model_free(m);
    }
}

/* max |a - b| <= tol * max |b| */
static bool rel_close(const char *what, const float *a, const float *b, size_t n, double tol) {
    double mb = 0, md = 0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) { md = d; worst = i; }
    }
    bool ok = md <= tol * mb;
    CHECK(ok, "%s: |diff| %.3g at %zu (%.7g vs %.7g) > %.0e * max %.3g", what, md, worst, a[worst], b[worst], tol, mb);
    return ok;
}

/* logits (n, V) of a fixed token sequence: one batch, then 3 decode steps */
static float *run_logits(const mq_model *m, int n) {
    int V = m->cfg.vocab_size;
    int32_t ids[32];
    for (int i = 0; i < n + 3; i++) ids[i] = (int32_t)((i * 37 + 11) % V);
    float *lg = malloc((size_t)(n + 3) * V * sizeof(float));
    mq_state *s = mq_state_new(m, 64, n);
    CHECK(mq_forward(m, s, ids, n, 0, lg, true) == MQ_OK, "%s", mq_last_error());
    for (int i = 0; i < 3; i++)
        CHECK(mq_forward(m, s, &ids[n + i], 1, n + i, lg + (size_t)(n + i) * V, false) == MQ_OK, "%s", mq_last_error());
    mq_state_free(s);
    return lg;
}

static mq_model *load(const char *path, const char *bits, bool serve) {
    mq_load_opts o = {.bits = bits, .serve = serve};
    mq_model *m = NULL;
    if (mq_model_load(path, &o, &m)) {
        CHECK(0, "load %s (bits %s, serve %d): %s", path, bits ? bits : "-", serve, mq_last_error());
        return NULL;
    }
    return m;
}

/* A served model against the same file loaded for the float path. */
static void compare_served(const char *path, const char *bits, const char *what) {
    mq_model *a = load(path, bits, true), *b = load(path, bits, false);
    if (a && b) {
        CHECK(a->n_half > 0 && b->n_half == 0, "%s: %d 16-bit matrices served, %d in the float load", what, a->n_half,
              b->n_half);
        if (!bits) { /* whole 16-bit sources: no fp32 copy of a big matrix, not even while loading */
            const mq_config *c = &a->cfg;
            size_t big = (size_t)c->dim * (size_t)c->hidden_dim;
            CHECK(a->f32_peak < big, "%s: the served load held %zu fp32 values at its peak (a %zu-value matrix "
                  "would be a widened copy)", what, a->f32_peak, big);
        }
        float *la = run_logits(a, 9), *lb = run_logits(b, 9);
        rel_close(what, la, lb, (size_t)12 * a->cfg.vocab_size, 1e-5);
        free(la);
        free(lb);
    }
    mq_model_free(a);
    mq_model_free(b);
}

static void test_served(const char *tmp) {
    char f16[300], tied[300], ck[300], ckt[300];
    snprintf(f16, sizeof f16, "%s/llama_f16", tmp);
    snprintf(tied, sizeof tied, "%s/tied_f16", tmp);
    snprintf(ck, sizeof ck, "%s/ck_f16", tmp);
    snprintf(ckt, sizeof ckt, "%s/ck_tied", tmp);
    if (mq_kern_float_forced()) {
        /* MQ_KERNELS=float: serving changes nothing, every tensor stays fp32 */
        mq_model *m = load(f16, NULL, true);
        CHECK(m && m->n_half == 0 && m->tok_emb && m->layers[0].wq, "MQ_KERNELS=float serves fp32");
        mq_model_free(m);
        SKIP("MQ_KERNELS=float: the 16-bit serving checks do not apply");
        return;
    }
    CHECK(make_16bit_copy("tests/golden/models/llama_tied", tied, MQ_DTYPE_F16, NULL), "tied F16 copy");
    /* whole models: every linear, the head and the table 16-bit */
    compare_served(f16, NULL, "F16 llama (untied)");
    compare_served(tied, NULL, "F16 llama (tied)");
    compare_served("tests/golden/models/llama_bf16", NULL, "BF16 llama");
    compare_served("tests/golden/models/llama_f16.gguf", NULL, "F16 GGUF llama");
    /* checkpoints at width 5 (no packed layout: the quantized linears are fp32 on both sides) */
    if (quantize_to(f16, ck, "ffn")) compare_served(ck, "5", "F16 checkpoint, scope ffn, width 5");
    if (quantize_to(tied, ckt, "ffn")) compare_served(ckt, "5", "tied F16 checkpoint, width 5");

    /* layout and resident bytes of a served checkpoint at int4 */
    mq_model *m = load(ck, "4", true);
    if (m) {
        const mq_config *c = &m->cfg;
        int64_t C = c->dim, V = c->vocab_size, L = c->n_layers, F = c->hidden_dim;
        int64_t QD = (int64_t)c->n_heads * c->head_dim, KD = (int64_t)c->n_kv_heads * c->head_dim;
        int64_t attn = QD * C + 2 * KD * C + C * QD, ffn = 3 * F * C;
        bool layout = m->tok_emb == NULL && m->lm_head == NULL && m->tok_half && m->head_half &&
                      m->tok_half != m->head_half;
        for (int l = 0; l < L; l++)
            for (int k = 0; k < 7; k++) {
                float **slot = mq_layer_weight_slot(&m->layers[l], k);
                layout = layout && *slot == NULL && (k < 4 ? m->layers[l].half[k] && !m->layers[l].packed[k]
                                                           : m->layers[l].packed[k] && !m->layers[l].half[k]);
            }
        CHECK(layout, "served int4: no fp32 weight pointer, attention 16-bit, FFN packed");
        mq_weight_bytes wb;
        mq_model_weight_bytes(m, &wb);
        size_t want_half = (size_t)(2 * (2 * V * C + L * attn));
        size_t want_f32 = (size_t)(4 * (C * (2 * L + 1) + c->head_dim / 2)); /* norms, RoPE frequencies */
        CHECK(wb.half == want_half && wb.f32 == want_f32 && wb.packed > 0 && wb.codes >= (size_t)(L * ffn),
              "resident: 16-bit %zu (want %zu = 2 bytes per unquantized weight), fp32 %zu (want %zu)", wb.half,
              want_half, wb.f32, want_f32);
        float *l4 = run_logits(m, 9);
        /* width 5 needs fp32 FFN weights again; back at 4 they are freed and the logits repeat */
        mq_plan p;
        CHECK(mq_plan_parse("5", (int)L, &p) == MQ_OK && mq_model_apply_plan(m, &p) == MQ_OK, "%s", mq_last_error());
        mq_plan_free(&p);
        mq_model_weight_bytes(m, &wb);
        CHECK(wb.f32 == want_f32 + (size_t)(4 * L * ffn) && m->layers[0].w_up && !m->layers[0].packed[5],
              "plan 5: fp32 FFN weights back (%zu bytes fp32)", wb.f32);
        CHECK(mq_plan_parse("4", (int)L, &p) == MQ_OK && mq_model_apply_plan(m, &p) == MQ_OK, "%s", mq_last_error());
        mq_plan_free(&p);
        mq_model_weight_bytes(m, &wb);
        float *l4b = run_logits(m, 9);
        CHECK(wb.f32 == want_f32 && !m->layers[0].w_up && !memcmp(l4, l4b, (size_t)12 * V * sizeof(float)),
              "back at plan 4: fp32 freed, same logits");
        free(l4);
        free(l4b);
        mq_model_free(m);
    }
    /* head:8 of a tied served model is packed from the 16-bit table: the
     * same int8 head as from the fp32 table */
    mq_model *a = load(ckt, "4,head:8", true), *b = load(ckt, "4,head:8", false);
    if (a && b) {
        const mq_packed *pa = a->head_packed, *pb = b->head_packed;
        CHECK(a->tok_half && a->head_half == a->tok_half && !a->tok_emb && pa && pb &&
              pa->rows == pb->rows && !memcmp(pa->data, pb->data, (size_t)pa->rows * pa->row_bytes) &&
              !memcmp(pa->scale, pb->scale, (size_t)pa->rows * pa->ngroups * sizeof(float)),
              "tied head:8 from the 16-bit table equals the one from fp32");
        float *la = run_logits(a, 5);
        bool fin = true;
        for (size_t i = 0; i < (size_t)8 * a->cfg.vocab_size; i++) fin = fin && isfinite(la[i]);
        CHECK(fin, "served tied head:8 logits finite");
        free(la);
    }
    mq_model_free(a);
    mq_model_free(b);
    /* an F32 source is never served 16-bit */
    mq_model *f = load("tests/golden/models/llama", NULL, true);
    if (f) CHECK(f->n_half == 0 && f->tok_emb && f->layers[0].wq, "F32 model stays fp32 when served");
    mq_model_free(f);
    /* a tied F32 model with biases: served (buffers made by the loader) gives the same logits bit for bit */
    mq_model *qa = load("tests/golden/models/qwen2", NULL, true), *qb = load("tests/golden/models/qwen2", NULL, false);
    if (qa && qb) {
        float *la = run_logits(qa, 7), *lb = run_logits(qb, 7);
        CHECK(qa->n_half == 0 && qa->lm_head == qa->tok_emb && qa->tok_emb &&
                  !memcmp(la, lb, (size_t)10 * qa->cfg.vocab_size * sizeof(float)),
              "served F32 qwen2 (tied) equals the float load");
        free(la);
        free(lb);
    }
    mq_model_free(qa);
    mq_model_free(qb);
    /* an Inf in a 16-bit matrix is rejected naming it, served or not */
    char inf[300];
    snprintf(inf, sizeof inf, "%s/inf_bf16", tmp);
    CHECK(make_16bit_copy("tests/golden/models/llama", inf, MQ_DTYPE_BF16, "model.layers.1.self_attn.o_proj.weight"),
          "poisoned copy");
    for (int sv = 0; sv < 2; sv++) {
        mq_load_opts o = {.serve = sv};
        mq_model *x = NULL;
        CHECK(mq_model_load(inf, &o, &x) == MQ_ERR_NUMERIC && !x &&
                  strstr(mq_last_error(), "model.layers.1.self_attn.o_proj.weight") &&
                  strstr(mq_last_error(), "element 5"),
              "serve %d: Inf named: %s", sv, mq_last_error());
    }
    rm_rf(inf);
    rm_rf(ck);
    rm_rf(ckt);
    rm_rf(tied);
}

int main(void) {
    const char *names[3] = {"scalar", "avx2", "avx512"};
    for (int i = 0; i < 3; i++) {
        const mq_half_ops *o = mq_half_find(names[i]);
        if (o) variants[n_variants++] = o;
        else SKIP("this CPU does not run the %s 16-bit kernels", names[i]);
    }
    test_widen_all_patterns();
    test_kernels();
    test_convert_errors();
    char tmp[128];
    snprintf(tmp, sizeof tmp, "/tmp/mq_test_half_%d", (int)getpid());
    char f16[300];
    snprintf(f16, sizeof f16, "%s/llama_f16", tmp);
    CHECK(make_16bit_copy("tests/golden/models/llama", f16, MQ_DTYPE_F16, NULL), "F16 copy of the llama golden");
    test_checkpoint_dtypes(tmp);
    test_served(tmp);
    rm_rf(tmp);
    return check_done("test_half");
}

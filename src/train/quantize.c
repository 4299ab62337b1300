/*
 * quantize.c — minmax and MatGPTQ quantization of a model (see quantize.h).
 * The quantization grid and the multi-width code choice are the spec's
 * (quant/ref.h); this file only decides which weights see which data.
 */
#include "train/quantize.h"

#include "quant/ref.h"
#include "train/calib.h"
#include "train/gptq.h"
#include "train/omniquant.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ---------------------------------------------------------- one linear */

typedef struct {
    mq_qlinear *q;        /* where codes/scale/zero go */
    const mq_quant_opts *o;
    float *table;         /* (rows, n_train, 256) dequantized values of the current group */
} lin_ctx;

int mq_quant_grid_bits(const mq_quant_opts *o) {
    return o->n_train == 1 && !o->parent_grid ? o->train_bits[0] : 8;
}

/* GPTQ callback: grid of the group starting at `col`, from the current W. */
static void on_group(void *user, int col, const float *w, int rows, int group, size_t ld) {
    lin_ctx *x = user;
    int ng = x->q->cols / x->q->group, g = col / x->q->group;
    for (int r = 0; r < rows; r++) {
        float alpha;
        uint8_t z;
        mq_ref_grid_bits(w + (size_t)r * ld, group, NULL, NULL, mq_quant_grid_bits(x->o), &alpha, &z);
        x->q->scale[(size_t)r * ng + g] = alpha;
        x->q->zero[(size_t)r * ng + g] = z;
        mq_ref_code_table(alpha, z, x->o->train_bits, x->o->n_train, x->table + (size_t)r * x->o->n_train * 256);
    }
}

/* GPTQ callback: codes of column col; residual = mean over R of w - w_r. */
static void on_column(void *user, int col, const float *w, size_t ld, int rows, float *resid) {
    lin_ctx *x = user;
    const mq_quant_opts *o = x->o;
    int ng = x->q->cols / x->q->group, g = col / x->q->group;
    (void)ng;
    (void)g;
    /* serial: a column is ~1 MFLOP, less than a parallel region's barrier costs on a busy machine */
    for (int r = 0; r < rows; r++) {
        float v = w[(size_t)r * ld];
        const float *tab = x->table + (size_t)r * o->n_train * 256;
        uint8_t code = mq_ref_best_code_table(v, tab, o->lambda, o->n_train);
        x->q->q[(size_t)r * x->q->cols + col] = code;
        float e = 0;
        for (int k = 0; k < o->n_train; k++) e += v - tab[k * 256 + code];
        resid[r] = e / (float)o->n_train;
    }
}

static void alloc_qlinear(mq_qlinear *q, int layer, mq_lin_kind kind, int rows, int cols, int group) {
    *q = (mq_qlinear){.layer = layer, .kind = kind, .rows = rows, .cols = cols,
                      .group = group > 0 ? group : cols};
    int ng = cols / q->group;
    q->q = mq_malloc((size_t)rows * cols);
    q->scale = mq_malloc((size_t)rows * ng * sizeof(float));
    q->zero = mq_malloc((size_t)rows * ng);
}

static int widest(const mq_quant_opts *o) {
    int b = 0;
    for (int i = 0; i < o->n_train; i++) b = o->train_bits[i] > b ? o->train_bits[i] : b;
    return b;
}

/* Replace the fp32 weight by the codes' dequantization at width `bits`. */
static void write_back(float *w, const mq_qlinear *q, int bits) {
    mq_ref_dequant(q->q, q->scale, q->zero, q->rows, q->cols, q->group, bits, false, w);
}

/* MinMax: round to nearest on the parent grid (the naive "slice an int8
 * model" baseline: R only decides the width fed back into the model). */
static void quantize_rtn(float *w, mq_qlinear *q, int gb) {
    int ng = q->cols / q->group;
    for (int r = 0; r < q->rows; r++)
        for (int g = 0; g < ng; g++) {
            const float *wg = w + (size_t)r * q->cols + (size_t)g * q->group;
            float alpha;
            uint8_t z;
            mq_ref_grid_bits(wg, q->group, NULL, NULL, gb, &alpha, &z);
            q->scale[(size_t)r * ng + g] = alpha;
            q->zero[(size_t)r * ng + g] = z;
            uint8_t *qc = q->q + (size_t)r * q->cols + (size_t)g * q->group;
            for (int j = 0; j < q->group; j++) qc[j] = mq_ref_code_bits(wg[j], alpha, z, gb);
        }
}

/* ------------------------------------------------------ GPTQ over blocks */

typedef struct {
    mq_hessian h[4]; /* per tap point; h[i].h == NULL when not collected */
} taps;

static void tap_cb(void *user, int layer, mq_tap_point at, const float *x, int B, int dim) {
    (void)layer;
    (void)dim;
    taps *t = user;
    if (t->h[at].h) mq_hessian_add(&t->h[at], x, B);
}

static mq_tap_point tap_of(mq_lin_kind k) {
    switch (k) {
    case MQ_LIN_Q: case MQ_LIN_K: case MQ_LIN_V: return MQ_TAP_ATTN_IN;
    case MQ_LIN_O: return MQ_TAP_ATTN_OUT;
    case MQ_LIN_GATE: case MQ_LIN_UP: return MQ_TAP_FFN_IN;
    default: return MQ_TAP_FFN_MID;
    }
}

static void run_block(const mq_model *m, mq_state *s, int l, float *X, float *tmp, const mq_calib *cal,
                      bool update) {
    size_t C = (size_t)m->cfg.dim, T = (size_t)cal->len;
    for (int i = 0; i < cal->n; i++) {
        float *x = update ? X + (size_t)i * T * C : tmp;
        if (!update) memcpy(tmp, X + (size_t)i * T * C, T * C * sizeof(float));
        mq_forward_block(m, s, l, x, cal->len, 0);
    }
}

static mq_status gptq_linear(mq_model *m, int l, mq_lin_kind k, const mq_hessian *H,
                             const mq_quant_opts *o, mq_qlinear *q) {
    int rows, cols;
    float *w = mq_linear_weight(m, l, k, &rows, &cols);
    alloc_qlinear(q, l, k, rows, cols, o->group);
    float *work = mq_malloc((size_t)rows * cols * sizeof(float));
    memcpy(work, w, (size_t)rows * cols * sizeof(float));
    lin_ctx x = {.q = q, .o = o, .table = mq_malloc((size_t)rows * o->n_train * 256 * sizeof(float))};
    mq_gptq_opts go = {.group = q->group, .block = o->block > 0 ? o->block : 128,
                       .damp = o->damp > 0 ? o->damp : 0.01f, .on_group = on_group,
                       .on_column = on_column, .user = &x};
    mq_status st = mq_gptq_run(work, rows, cols, H, &go);
    free(work);
    free(x.table);
    if (st) {
        char nm[96];
        mq_linear_name(l, k, nm, sizeof nm);
        mq_error_prefix("%s", nm);
        return st;
    }
    write_back(w, q, widest(o));
    return MQ_OK;
}

static void say(const mq_quant_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const mq_quant_opts *o, const char *fmt, ...) {
    if (!o->progress) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    o->progress(o->user, line);
}

mq_status mq_quantize(mq_model *m, const mq_quant_opts *o, mq_qlinear **out, int *nout) {
    *out = NULL;
    *nout = 0;
    const mq_config *c = &m->cfg;
    bool gptq = !strcmp(o->method, "gptq"), omni = !strcmp(o->method, "omniquant");
    if (!gptq && !omni && strcmp(o->method, "minmax"))
        return mq_fail(MQ_ERR_ARG, "quantize: unknown method \"%s\" (minmax, gptq, omniquant)", o->method);
    if (o->n_train < 1 || o->n_train > 8) return mq_fail(MQ_ERR_ARG, "quantize: 1 to 8 trained widths");
    for (int i = 0; i < o->n_train; i++)
        if (o->train_bits[i] < 1 || o->train_bits[i] > 8 || !(o->lambda[i] >= 0))
            return mq_fail(MQ_ERR_ARG, "quantize: trained width %d / lambda %g out of range",
                           o->train_bits[i], o->lambda[i]);
    int n_lin = 0;
    for (int k = 0; k < MQ_LIN_COUNT; k++) n_lin += mq_scope_has(o->scope, (mq_lin_kind)k);
    n_lin *= c->n_layers;
    /* every linear must split into whole groups */
    for (int l = 0; l < c->n_layers && o->group > 0; l++)
        for (int k = 0; k < MQ_LIN_COUNT; k++) {
            int rows, cols;
            mq_linear_weight(m, l, (mq_lin_kind)k, &rows, &cols);
            if (mq_scope_has(o->scope, (mq_lin_kind)k) && cols % o->group) {
                char nm[96];
                mq_linear_name(l, (mq_lin_kind)k, nm, sizeof nm);
                return mq_fail(MQ_ERR_ARG, "quantize: %s has %d input columns, not a multiple of "
                               "--group-size %d", nm, cols, o->group);
            }
        }
    if (omni) return mq_omniquant(m, o, out, nout);
    mq_qlinear *q = mq_calloc((size_t)n_lin, sizeof *q);
    int n = 0;
    mq_status st = MQ_OK;
    if (!gptq) {
        for (int l = 0; l < c->n_layers; l++) {
            for (int k = 0; k < MQ_LIN_COUNT; k++) {
                if (!mq_scope_has(o->scope, (mq_lin_kind)k)) continue;
                int rows, cols;
                float *w = mq_linear_weight(m, l, (mq_lin_kind)k, &rows, &cols);
                alloc_qlinear(&q[n], l, (mq_lin_kind)k, rows, cols, o->group);
                quantize_rtn(w, &q[n], mq_quant_grid_bits(o));
                write_back(w, &q[n], widest(o));
                n++;
            }
            say(o, "block %d/%d quantized", l + 1, c->n_layers);
        }
        *out = q;
        *nout = n;
        return MQ_OK;
    }
    /* ---- gptq */
    if (!m->tok) {
        free(q);
        return mq_fail(MQ_ERR_ARG, "quantize: gptq needs a tokenizer for the calibration text");
    }
    mq_calib cal;
    int32_t bos = mq_tokenizer_add_bos(m->tok) ? c->bos_id : -1;
    st = mq_calib_load(o->calib_path, m->tok, o->calib_samples, o->calib_len, o->seed, bos, &cal);
    if (st) {
        free(q);
        return st;
    }
    size_t C = (size_t)c->dim, T = (size_t)cal.len;
    float *X = mq_malloc((size_t)cal.n * T * C * sizeof(float));
    float *tmp = mq_malloc(T * C * sizeof(float));
    for (int i = 0; i < cal.n; i++) mq_embed(m, cal.tokens + (size_t)i * T, cal.len, X + (size_t)i * T * C);
    mq_state *s = mq_state_new(m, cal.len, cal.len);
    int dims[4] = {c->dim, c->n_heads * c->head_dim, c->dim, c->hidden_dim};
    double t0 = mq_now_ms();
    for (int l = 0; l < c->n_layers && st == MQ_OK; l++) {
        /* pass 1: Hessians of everything but down_proj, on the fp block */
        taps t;
        memset(&t, 0, sizeof t);
        for (int k = 0; k < MQ_LIN_COUNT; k++) {
            mq_tap_point p = tap_of((mq_lin_kind)k);
            if (mq_scope_has(o->scope, (mq_lin_kind)k) && k != MQ_LIN_DOWN && !t.h[p].h)
                mq_hessian_init(&t.h[p], dims[p]);
        }
        mq_state_set_tap(s, tap_cb, &t);
        run_block(m, s, l, X, tmp, &cal, false);
        for (int k = 0; k < MQ_LIN_DOWN && st == MQ_OK; k++) {
            if (!mq_scope_has(o->scope, (mq_lin_kind)k)) continue;
            st = gptq_linear(m, l, (mq_lin_kind)k, &t.h[tap_of((mq_lin_kind)k)], o, &q[n++]);
        }
        for (int p = 0; p < 4; p++)
            if (t.h[p].h) mq_hessian_free(&t.h[p]);
        /* pass 2: down_proj sees the quantized gate/up */
        if (st == MQ_OK && mq_scope_has(o->scope, MQ_LIN_DOWN)) {
            mq_hessian_init(&t.h[MQ_TAP_FFN_MID], c->hidden_dim);
            run_block(m, s, l, X, tmp, &cal, false);
            st = gptq_linear(m, l, MQ_LIN_DOWN, &t.h[MQ_TAP_FFN_MID], o, &q[n++]);
            mq_hessian_free(&t.h[MQ_TAP_FFN_MID]);
        }
        mq_state_set_tap(s, NULL, NULL);
        /* pass 3: the quantized block's outputs feed the next block */
        if (st == MQ_OK) run_block(m, s, l, X, tmp, &cal, true);
        double el = (mq_now_ms() - t0) / 1e3;
        say(o, "block %d/%d quantized (gptq, %d x %d calibration tokens), %.1fs elapsed, ~%.0fs left",
            l + 1, c->n_layers, cal.n, cal.len, el, el / (l + 1) * (c->n_layers - l - 1));
    }
    mq_state_free(s);
    free(X);
    free(tmp);
    mq_calib_free(&cal);
    if (st) {
        mq_qlinears_free(q, n);
        return st;
    }
    *out = q;
    *nout = n;
    return MQ_OK;
}

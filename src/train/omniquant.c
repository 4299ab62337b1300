/*
 * omniquant.c — MatQuant on OmniQuant, block by block (see omniquant.h for
 * the method, the data flow and the resume contract).
 *
 * One block's step on one sequence x (T, C), for every width r to run
 * (R, plus the co-distillation widths; widest first so that the high slice's
 * output exists when the low slice needs it):
 *   fake-quantize the block's weights at r -> block forward (ops.h, caches
 *   kept) -> dout = lambda_r dMSE(out, target) [+ w_cd dMSE(out, out_hi)]
 *   -> block backward down to the weights -> fakequant_bwd into du, dl.
 * With FFN scope the attention sub-block has no parameters: its output h is
 * computed once per sequence, and the backward stops at the FFN's norm
 * (further only with LET, for the norm weight).
 *
 * Memory: every buffer of a block trainer is allocated in
 * mq_omni_block_new (activations for T tokens, one fake-quantized copy and
 * one gradient per quantized weight); the step loop allocates nothing.
 *
 * Not here: the ops and their derivations (ops.c, docs/derivations/), the
 * quantization contract (quant/ref.c, used to fold).
 * References: OmniQuant (Shao et al., ICLR 2024) §3.2-3.3 and its code's
 * defaults (AdamW, wd 0, batch 1, LET init act_max^0.5 / w_max^0.5);
 * MatQuant (Nair et al., 2025) §3-4.
 */
#include "train/omniquant.h"

#include "core/threads.h"
#include "quant/ref.h"
#include "train/calib.h"
#include "train/ops.h"
#include "train/optim.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void mq_omni_defaults(mq_omni_opts *oo) {
    *oo = (mq_omni_opts){.epochs = 20, .lr_lwc = 1e-2f, .lr_let = 5e-3f, .cd_weight = 1.0f};
}

/* ================================================================ trainer */

typedef struct {
    mq_lin_kind kind;
    mq_fq_shape s;   /* rows, cols, group, grid bits; .bits set per width */
    int ng;          /* groups per row */
    const float *w;  /* (rows, cols) the model's weight, unchanged during training */
    float *wl;       /* (rows, cols) W * s_let (column scale), or NULL without LET */
    float *wq;       /* (rows, cols) fake-quantized at the current width */
    float *dwq;      /* (rows, cols) gradient w.r.t. wq */
    float *dwl;      /* (rows, cols) gradient w.r.t. wl (LET only) */
    size_t pu, pl;   /* offsets of u and l (rows, ng) in the parameters */
    int let;         /* -1, or 0 (s_attn) / 1 (s_ffn): the LET scale of its input columns */
} olin;

#define MAX_W 10

struct mq_omni_block {
    const mq_model *m;
    int layer, T, C, F, QD, KD, H, KV, D;
    bool attn_q;     /* attention linears quantized (scope all) */
    bool let;
    int grid_bits, widest;
    mq_attn_cfg acfg;
    olin lin[MQ_LIN_COUNT];
    int nlin;
    int of_kind[MQ_LIN_COUNT]; /* index in lin or -1 */
    /* parameters */
    size_t np, n_lwc, s_off[2]; /* s_off: offset of s_attn / s_ffn or SIZE_MAX */
    float *p, *g;
    mq_adamw opt;
    float lr_lwc, lr_let;
    /* widths run per step */
    int nw, wbits[MAX_W], wr[MAX_W]; /* wr: index in R or -1 */
    float wlam[MAX_W];
    bool wcd_lo[MAX_W], wcd_hi[MAX_W];
    float cd_weight;
    /* effective norm weights (C): g / s */
    float *g1, *g2, *dg1, *dg2;
    /* activations */
    float *xn1, *rstd1, *q, *k, *v, *qr, *kr, *att, *ao, *o1, *o1n, *rstd1p, *h;
    float *xn2, *rstd2, *gt, *up, *a, *y, *y2, *rstd2p, *out, *out_hi;
    /* gradients of activations */
    float *dout, *dy, *da, *dgt, *dup, *dxn2, *dh, *do1, *dao, *dqr, *dkr, *dv, *dq, *dk, *dxn1, *scratch;
    double mm_flops, mm_ms;
};

static float *fbuf(size_t n) { return mq_aligned_alloc((n ? n : 1) * sizeof(float)); }

int mq_omni_block_nlin(const mq_omni_block *b) { return b->nlin; }
float *mq_omni_block_params(mq_omni_block *b, size_t *n) { *n = b->np; return b->p; }
const float *mq_omni_block_grads(const mq_omni_block *b) { return b->g; }
void mq_omni_block_matmul_stats(const mq_omni_block *b, double *flops, double *ms) {
    *flops = b->mm_flops;
    *ms = b->mm_ms;
}

mq_omni_block *mq_omni_block_new(const mq_model *m, int layer, const mq_quant_opts *o, int T) {
    const mq_config *c = &m->cfg;
    const mq_omni_opts *oo = o->omni;
    mq_omni_block *b = mq_calloc(1, sizeof *b);
    b->m = m;
    b->layer = layer;
    b->T = T;
    b->C = c->dim;
    b->F = c->hidden_dim;
    b->H = c->n_heads;
    b->KV = c->n_kv_heads;
    b->D = c->head_dim;
    b->QD = b->H * b->D;
    b->KD = b->KV * b->D;
    b->attn_q = mq_scope_has(o->scope, MQ_LIN_Q);
    b->let = oo && oo->let;
    b->grid_bits = mq_quant_grid_bits(o);
    b->lr_lwc = oo ? oo->lr_lwc : 1e-2f;
    b->lr_let = oo ? oo->lr_let : 5e-3f;
    b->cd_weight = oo ? oo->cd_weight : 1.0f;
    bool win = c->sliding_window > 0 && (!c->sliding_even_only || layer % 2 == 0);
    b->acfg = (mq_attn_cfg){b->H, b->KV, b->D, c->query_scale, c->attn_softcap, win ? c->sliding_window : 0};
    /* linears and parameters */
    size_t np = 0;
    for (int k = 0; k < MQ_LIN_COUNT; k++) {
        b->of_kind[k] = -1;
        if (!mq_scope_has(o->scope, (mq_lin_kind)k)) continue;
        olin *L = &b->lin[b->nlin];
        int rows, cols;
        L->kind = (mq_lin_kind)k;
        L->w = mq_linear_weight(m, layer, L->kind, &rows, &cols);
        int G = o->group > 0 ? o->group : cols;
        L->s = (mq_fq_shape){rows, cols, G, b->grid_bits, b->grid_bits};
        L->ng = cols / G;
        L->pu = np;
        L->pl = np + (size_t)rows * L->ng;
        np += 2 * (size_t)rows * L->ng;
        L->let = -1;
        if (b->let && (k == MQ_LIN_Q || k == MQ_LIN_K || k == MQ_LIN_V)) L->let = 0;
        if (b->let && (k == MQ_LIN_GATE || k == MQ_LIN_UP)) L->let = 1;
        size_t n = (size_t)rows * cols;
        L->wq = fbuf(n);
        L->dwq = fbuf(n);
        if (L->let >= 0) {
            L->wl = fbuf(n);
            L->dwl = fbuf(n);
        }
        b->of_kind[k] = b->nlin++;
    }
    b->n_lwc = np;
    b->s_off[0] = b->s_off[1] = SIZE_MAX;
    if (b->let && b->attn_q) {
        b->s_off[0] = np;
        np += (size_t)b->C;
    }
    if (b->let) {
        b->s_off[1] = np;
        np += (size_t)b->C;
    }
    b->np = np;
    b->p = fbuf(np);
    b->g = fbuf(np);
    for (size_t i = 0; i < b->n_lwc; i++) b->p[i] = MQ_LWC_INIT;
    for (size_t i = b->n_lwc; i < np; i++) b->p[i] = 1.0f;
    mq_adamw_init(&b->opt, np);
    /* widths: R plus the co-distillation pair, widest first */
    int ws[MAX_W], nws = 0;
    for (int i = 0; i < o->n_train; i++) ws[nws++] = o->train_bits[i];
    int cd_hi = oo ? oo->cd_hi : 0, cd_lo = oo ? oo->cd_lo : 0;
    if (cd_hi > 0) {
        ws[nws++] = cd_hi;
        ws[nws++] = cd_lo;
    }
    for (int i = 0; i < nws; i++) {
        bool seen = false;
        for (int j = 0; j < b->nw; j++) seen |= b->wbits[j] == ws[i];
        if (seen) continue;
        int j = b->nw++;
        while (j > 0 && b->wbits[j - 1] < ws[i]) { /* insertion, descending */
            b->wbits[j] = b->wbits[j - 1];
            j--;
        }
        b->wbits[j] = ws[i];
    }
    for (int j = 0; j < b->nw; j++) {
        b->wr[j] = -1;
        b->wlam[j] = 0;
        for (int i = 0; i < o->n_train; i++)
            if (o->train_bits[i] == b->wbits[j]) {
                b->wr[j] = i;
                b->wlam[j] = o->lambda[i];
            }
        b->wcd_hi[j] = cd_hi > 0 && b->wbits[j] == cd_hi;
        b->wcd_lo[j] = cd_hi > 0 && b->wbits[j] == cd_lo;
    }
    b->widest = 0;
    for (int i = 0; i < o->n_train; i++) b->widest = o->train_bits[i] > b->widest ? o->train_bits[i] : b->widest;
    /* activations */
    size_t TC = (size_t)T * b->C, TF = (size_t)T * b->F, TQ = (size_t)T * b->QD, TK = (size_t)T * b->KD;
    b->g1 = fbuf(b->C); b->g2 = fbuf(b->C); b->dg1 = fbuf(b->C); b->dg2 = fbuf(b->C);
    b->xn1 = fbuf(TC); b->rstd1 = fbuf(T); b->q = fbuf(TQ); b->k = fbuf(TK); b->v = fbuf(TK);
    b->qr = fbuf(TQ); b->kr = fbuf(TK); b->att = fbuf((size_t)b->H * T * T); b->ao = fbuf(TQ);
    b->o1 = fbuf(TC); b->o1n = fbuf(TC); b->rstd1p = fbuf(T); b->h = fbuf(TC);
    b->xn2 = fbuf(TC); b->rstd2 = fbuf(T); b->gt = fbuf(TF); b->up = fbuf(TF); b->a = fbuf(TF);
    b->y = fbuf(TC); b->y2 = fbuf(TC); b->rstd2p = fbuf(T); b->out = fbuf(TC); b->out_hi = fbuf(TC);
    b->dout = fbuf(TC); b->dy = fbuf(TC); b->da = fbuf(TF); b->dgt = fbuf(TF); b->dup = fbuf(TF);
    b->dxn2 = fbuf(TC); b->dh = fbuf(TC); b->do1 = fbuf(TC); b->dao = fbuf(TQ); b->dqr = fbuf(TQ);
    b->dkr = fbuf(TK); b->dv = fbuf(TK); b->dq = fbuf(TQ); b->dk = fbuf(TK); b->dxn1 = fbuf(TC);
    b->scratch = b->attn_q ? fbuf(attention_bwd_scratch(T)) : NULL;
    return b;
}

void mq_omni_block_free(mq_omni_block *b) {
    if (!b) return;
    for (int i = 0; i < b->nlin; i++) {
        free(b->lin[i].wq); free(b->lin[i].dwq); free(b->lin[i].wl); free(b->lin[i].dwl);
    }
    float *bufs[] = {b->p, b->g, b->g1, b->g2, b->dg1, b->dg2, b->xn1, b->rstd1, b->q, b->k, b->v, b->qr,
                     b->kr, b->att, b->ao, b->o1, b->o1n, b->rstd1p, b->h, b->xn2, b->rstd2, b->gt, b->up,
                     b->a, b->y, b->y2, b->rstd2p, b->out, b->out_hi, b->dout, b->dy, b->da, b->dgt, b->dup,
                     b->dxn2, b->dh, b->do1, b->dao, b->dqr, b->dkr, b->dv, b->dq, b->dk, b->dxn1, b->scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    mq_adamw_free(&b->opt);
    free(b);
}

/* ------------------------------------------------------------- pieces */

static void mm_fwd(mq_omni_block *b, float *out, const float *inp, const float *w, const float *bias, int K, int O) {
    double t0 = mq_now_ms();
    matmul_fwd(out, inp, w, bias, b->T, K, O);
    b->mm_ms += mq_now_ms() - t0;
    b->mm_flops += 2.0 * b->T * K * O;
}

static void mm_bwd(mq_omni_block *b, float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                   int K, int O) {
    if (!dinp && !dw) return;
    double t0 = mq_now_ms();
    matmul_bwd(dinp, dw, NULL, dout, inp, w, b->T, K, O);
    b->mm_ms += mq_now_ms() - t0;
    b->mm_flops += 2.0 * b->T * K * O * ((dinp != NULL) + (dw != NULL));
}

static void zero(float *x, size_t n) { memset(x, 0, n * sizeof(float)); }

/* The weight the forward multiplies by for kind k: fake-quantized, or fp
 * when not quantized (or when fp is asked for). */
static const float *weff(const mq_omni_block *b, mq_lin_kind k, bool fp) {
    int i = b->of_kind[k];
    if (i >= 0 && !fp) return b->lin[i].wq;
    if (i >= 0 && b->lin[i].wl) return b->lin[i].wl; /* fp with LET scaling: the same product */
    int rows, cols;
    return mq_linear_weight(b->m, b->layer, k, &rows, &cols);
}

/* g1, g2 = norm weights (1 + w for gemma2) / s; wl = W * s by column. */
static void apply_let(mq_omni_block *b) {
    const mq_config *c = &b->m->cfg;
    const mq_layer *L = &b->m->layers[b->layer];
    const float *nw[2] = {L->attn_norm, L->ffn_norm};
    float *ge[2] = {b->g1, b->g2};
    for (int t = 0; t < 2; t++) {
        const float *s = b->s_off[t] != SIZE_MAX ? b->p + b->s_off[t] : NULL;
        for (int i = 0; i < b->C; i++) {
            float g = c->norm_plus_one ? 1.0f + nw[t][i] : nw[t][i];
            ge[t][i] = s ? g / s[i] : g;
        }
    }
    for (int i = 0; i < b->nlin; i++) {
        olin *l = &b->lin[i];
        if (l->let < 0) continue;
        const float *s = b->p + b->s_off[l->let];
        for (int r = 0; r < l->s.rows; r++)
            for (int j = 0; j < l->s.cols; j++)
                l->wl[(size_t)r * l->s.cols + j] = l->w[(size_t)r * l->s.cols + j] * s[j];
    }
}

/* Attention sub-block: h = x + post(o(attention(rope(q, k), v))). */
static void attn_fwd(mq_omni_block *b, const float *x, bool fp) {
    const mq_config *c = &b->m->cfg;
    const mq_layer *L = &b->m->layers[b->layer];
    int T = b->T, C = b->C;
    rmsnorm_fwd(b->xn1, b->rstd1, x, b->g1, T, C, c->norm_eps, false);
    mm_fwd(b, b->q, b->xn1, weff(b, MQ_LIN_Q, fp), L->bq, C, b->QD);
    mm_fwd(b, b->k, b->xn1, weff(b, MQ_LIN_K, fp), L->bk, C, b->KD);
    mm_fwd(b, b->v, b->xn1, weff(b, MQ_LIN_V, fp), L->bv, C, b->KD);
    rope_fwd(b->qr, b->q, b->m->inv_freq, 1, T, b->H, b->D);
    rope_fwd(b->kr, b->k, b->m->inv_freq, 1, T, b->KV, b->D);
    attention_fwd(b->ao, b->att, b->qr, b->kr, b->v, 1, T, &b->acfg);
    mm_fwd(b, b->o1, b->ao, weff(b, MQ_LIN_O, fp), NULL, b->QD, C);
    const float *o = b->o1;
    if (L->post_attn_norm) {
        rmsnorm_fwd(b->o1n, b->rstd1p, b->o1, L->post_attn_norm, T, C, c->norm_eps, c->norm_plus_one);
        o = b->o1n;
    }
    for (size_t i = 0; i < (size_t)T * C; i++) b->h[i] = x[i] + o[i];
}

/* FFN sub-block on b->h: out = h + post(down(act(gate) * up)). */
static void ffn_fwd(mq_omni_block *b, bool fp) {
    const mq_config *c = &b->m->cfg;
    const mq_layer *L = &b->m->layers[b->layer];
    int T = b->T, C = b->C, F = b->F;
    rmsnorm_fwd(b->xn2, b->rstd2, b->h, b->g2, T, C, c->norm_eps, false);
    mm_fwd(b, b->gt, b->xn2, weff(b, MQ_LIN_GATE, fp), NULL, C, F);
    mm_fwd(b, b->up, b->xn2, weff(b, MQ_LIN_UP, fp), NULL, C, F);
    if (c->act == MQ_ACT_SILU) swiglu_fwd(b->a, b->gt, b->up, (size_t)T * F);
    else geglu_fwd(b->a, b->gt, b->up, (size_t)T * F);
    mm_fwd(b, b->y, b->a, weff(b, MQ_LIN_DOWN, fp), NULL, F, C);
    const float *y = b->y;
    if (L->post_ffn_norm) {
        rmsnorm_fwd(b->y2, b->rstd2p, b->y, L->post_ffn_norm, T, C, c->norm_eps, c->norm_plus_one);
        y = b->y2;
    }
    for (size_t i = 0; i < (size_t)T * C; i++) b->out[i] = b->h[i] + y[i];
}

static float *dwq_of(mq_omni_block *b, mq_lin_kind k) {
    int i = b->of_kind[k];
    return i >= 0 ? b->lin[i].dwq : NULL;
}

/* Backward of the block from b->dout down to the quantized weights' dwq
 * (and dg1/dg2 with LET). */
static void block_bwd(mq_omni_block *b, const float *x) {
    const mq_config *c = &b->m->cfg;
    const mq_layer *L = &b->m->layers[b->layer];
    int T = b->T, C = b->C, F = b->F;
    size_t TC = (size_t)T * C;
    const float *dy = b->dout;
    if (L->post_ffn_norm) {
        zero(b->dy, TC);
        rmsnorm_bwd(b->dy, NULL, b->dout, b->y, L->post_ffn_norm, b->rstd2p, T, C, c->norm_plus_one);
        dy = b->dy;
    }
    zero(b->da, (size_t)T * F);
    mm_bwd(b, b->da, dwq_of(b, MQ_LIN_DOWN), dy, b->a, weff(b, MQ_LIN_DOWN, false), F, C);
    zero(b->dgt, (size_t)T * F);
    zero(b->dup, (size_t)T * F);
    if (c->act == MQ_ACT_SILU) swiglu_bwd(b->dgt, b->dup, b->da, b->gt, b->up, (size_t)T * F);
    else geglu_bwd(b->dgt, b->dup, b->da, b->gt, b->up, (size_t)T * F);
    bool need = b->let || b->attn_q;
    if (need) zero(b->dxn2, TC);
    mm_bwd(b, need ? b->dxn2 : NULL, dwq_of(b, MQ_LIN_GATE), b->dgt, b->xn2, weff(b, MQ_LIN_GATE, false), C, F);
    mm_bwd(b, need ? b->dxn2 : NULL, dwq_of(b, MQ_LIN_UP), b->dup, b->xn2, weff(b, MQ_LIN_UP, false), C, F);
    if (!need) return;
    if (b->attn_q) memcpy(b->dh, b->dout, TC * sizeof(float));
    rmsnorm_bwd(b->attn_q ? b->dh : NULL, b->let ? b->dg2 : NULL, b->dxn2, b->h, b->g2, b->rstd2, T, C, false);
    if (!b->attn_q) return;
    const float *do1 = b->dh;
    if (L->post_attn_norm) {
        zero(b->do1, TC);
        rmsnorm_bwd(b->do1, NULL, b->dh, b->o1, L->post_attn_norm, b->rstd1p, T, C, c->norm_plus_one);
        do1 = b->do1;
    }
    zero(b->dao, (size_t)T * b->QD);
    mm_bwd(b, b->dao, dwq_of(b, MQ_LIN_O), do1, b->ao, weff(b, MQ_LIN_O, false), b->QD, C);
    zero(b->dqr, (size_t)T * b->QD);
    zero(b->dkr, (size_t)T * b->KD);
    zero(b->dv, (size_t)T * b->KD);
    attention_bwd(b->dqr, b->dkr, b->dv, b->scratch, b->dao, b->qr, b->kr, b->v, b->att, 1, T, &b->acfg);
    zero(b->dq, (size_t)T * b->QD);
    zero(b->dk, (size_t)T * b->KD);
    rope_bwd(b->dq, b->dqr, b->m->inv_freq, 1, T, b->H, b->D);
    rope_bwd(b->dk, b->dkr, b->m->inv_freq, 1, T, b->KV, b->D);
    if (b->let) zero(b->dxn1, TC);
    float *dx1 = b->let ? b->dxn1 : NULL;
    mm_bwd(b, dx1, dwq_of(b, MQ_LIN_Q), b->dq, b->xn1, weff(b, MQ_LIN_Q, false), C, b->QD);
    mm_bwd(b, dx1, dwq_of(b, MQ_LIN_K), b->dk, b->xn1, weff(b, MQ_LIN_K, false), C, b->KD);
    mm_bwd(b, dx1, dwq_of(b, MQ_LIN_V), b->dv, b->xn1, weff(b, MQ_LIN_V, false), C, b->KD);
    if (b->let) rmsnorm_bwd(NULL, b->dg1, b->dxn1, x, b->g1, b->rstd1, T, C, false);
}

double mq_omni_block_loss_grad(mq_omni_block *b, const float *x, const float *target, double *per_width) {
    size_t TC = (size_t)b->T * b->C;
    b->mm_flops = b->mm_ms = 0;
    zero(b->g, b->np);
    zero(b->dg1, (size_t)b->C);
    zero(b->dg2, (size_t)b->C);
    apply_let(b);
    for (int i = 0; i < b->nlin; i++)
        if (b->lin[i].dwl) zero(b->lin[i].dwl, (size_t)b->lin[i].s.rows * b->lin[i].s.cols);
    if (!b->attn_q) attn_fwd(b, x, true); /* no parameters in the attention: h once */
    double total = 0;
    for (int w = 0; w < b->nw; w++) {
        for (int i = 0; i < b->nlin; i++) {
            olin *l = &b->lin[i];
            l->s.bits = b->wbits[w];
            fakequant_fwd(l->wq, l->wl ? l->wl : l->w, b->p + l->pu, b->p + l->pl, &l->s);
            zero(l->dwq, (size_t)l->s.rows * l->s.cols);
        }
        if (b->attn_q) attn_fwd(b, x, false);
        ffn_fwd(b, false);
        zero(b->dout, TC);
        if (b->wr[w] >= 0) {
            double e = mse_fwd_bwd(b->dout, b->out, target, TC, b->wlam[w]);
            total += b->wlam[w] * e;
            if (per_width) per_width[b->wr[w]] = e;
        }
        if (b->wcd_lo[w]) total += b->cd_weight * mse_fwd_bwd(b->dout, b->out, b->out_hi, TC, b->cd_weight);
        if (b->wcd_hi[w]) memcpy(b->out_hi, b->out, TC * sizeof(float)); /* stop-gradient target */
        block_bwd(b, x);
        for (int i = 0; i < b->nlin; i++) {
            olin *l = &b->lin[i];
            fakequant_bwd(l->dwl, b->g + l->pu, b->g + l->pl, l->dwq, l->wl ? l->wl : l->w, b->p + l->pu,
                          b->p + l->pl, &l->s);
        }
    }
    /* LET: wl = W * s by column, g' = g / s */
    if (b->let) {
        const mq_config *c = &b->m->cfg;
        const mq_layer *L = &b->m->layers[b->layer];
        for (int i = 0; i < b->nlin; i++) {
            olin *l = &b->lin[i];
            if (l->let < 0) continue;
            float *ds = b->g + b->s_off[l->let];
            for (int r = 0; r < l->s.rows; r++)
                for (int j = 0; j < l->s.cols; j++)
                    ds[j] += l->dwl[(size_t)r * l->s.cols + j] * l->w[(size_t)r * l->s.cols + j];
        }
        const float *nw[2] = {L->attn_norm, L->ffn_norm};
        const float *dge[2] = {b->dg1, b->dg2};
        for (int t = 0; t < 2; t++) {
            if (b->s_off[t] == SIZE_MAX) continue;
            const float *s = b->p + b->s_off[t];
            float *ds = b->g + b->s_off[t];
            for (int i = 0; i < b->C; i++) {
                float g = c->norm_plus_one ? 1.0f + nw[t][i] : nw[t][i];
                ds[i] -= dge[t][i] * g / (s[i] * s[i]);
            }
        }
    }
    return total;
}

void mq_omni_block_step(mq_omni_block *b) {
    b->opt.t++;
    mq_adamw_cfg lw = mq_adamw_default(b->lr_lwc, 0.0f), ls = mq_adamw_default(b->lr_let, 0.0f);
    mq_adamw_update(&b->opt, 0, b->n_lwc, b->p, b->g, &lw);
    if (b->np > b->n_lwc)
        mq_adamw_update(&b->opt, b->n_lwc, b->np - b->n_lwc, b->p + b->n_lwc, b->g + b->n_lwc, &ls);
}

void mq_omni_block_let_init(mq_omni_block *b, const float *xs, int n) {
    if (!b->let) return;
    size_t TC = (size_t)b->T * b->C;
    for (size_t i = b->n_lwc; i < b->np; i++) b->p[i] = 1.0f;
    apply_let(b);
    float *amax[2] = {b->dg1, b->dg2}; /* scratch: per-channel max |x| of the normed inputs */
    zero(b->dg1, (size_t)b->C);
    zero(b->dg2, (size_t)b->C);
    const mq_config *c = &b->m->cfg;
    for (int s = 0; s < n; s++) {
        attn_fwd(b, xs + (size_t)s * TC, true);
        rmsnorm_fwd(b->xn2, b->rstd2, b->h, b->g2, b->T, b->C, c->norm_eps, false);
        for (size_t i = 0; i < TC; i++) {
            int ch = (int)(i % (size_t)b->C);
            float a1 = fabsf(b->xn1[i]), a2 = fabsf(b->xn2[i]);
            if (a1 > amax[0][ch]) amax[0][ch] = a1;
            if (a2 > amax[1][ch]) amax[1][ch] = a2;
        }
    }
    for (int t = 0; t < 2; t++) {
        if (b->s_off[t] == SIZE_MAX) continue;
        float *s = b->p + b->s_off[t];
        for (int j = 0; j < b->C; j++) {
            float wmax = 0;
            for (int i = 0; i < b->nlin; i++) {
                const olin *l = &b->lin[i];
                if (l->let != t) continue;
                for (int r = 0; r < l->s.rows; r++) {
                    float a = fabsf(l->w[(size_t)r * l->s.cols + j]);
                    wmax = a > wmax ? a : wmax;
                }
            }
            float v = sqrtf(fmaxf(amax[t][j], 1e-5f)) / sqrtf(fmaxf(wmax, 1e-5f));
            s[j] = fmaxf(v, 1e-5f);
        }
    }
    zero(b->dg1, (size_t)b->C);
    zero(b->dg2, (size_t)b->C);
}

/* Codes of one linear from its learned ranges (the spec's quantizer). */
static mq_status fold_linear(const mq_omni_block *b, const olin *l, mq_qlinear *q) {
    int rows = l->s.rows, cols = l->s.cols, G = l->s.group, ng = l->ng;
    *q = (mq_qlinear){.layer = b->layer, .kind = l->kind, .rows = rows, .cols = cols, .group = G};
    q->q = mq_malloc((size_t)rows * cols);
    q->scale = mq_malloc((size_t)rows * ng * sizeof(float));
    q->zero = mq_malloc((size_t)rows * ng);
    float *lo = fbuf((size_t)rows * ng), *hi = fbuf((size_t)rows * ng);
    const float *w = l->wl ? l->wl : l->w;
    fakequant_ranges(lo, hi, w, b->p + l->pu, b->p + l->pl, &l->s);
    mq_status st = MQ_OK;
    if (b->grid_bits == 8) {
        st = mq_ref_quantize_clip(w, rows, cols, G, lo, hi, q->q, q->scale, q->zero);
    } else {
        for (int r = 0; r < rows; r++)
            for (int g = 0; g < ng; g++) {
                size_t k = (size_t)r * ng + g;
                mq_ref_grid_bits(NULL, 0, lo + k, hi + k, b->grid_bits, q->scale + k, q->zero + k);
                for (int j = 0; j < G; j++) {
                    size_t e = (size_t)r * cols + (size_t)g * G + j;
                    q->q[e] = mq_ref_code_bits(w[e], q->scale[k], q->zero[k], b->grid_bits);
                }
            }
    }
    free(lo);
    free(hi);
    return st;
}

mq_status mq_omni_block_fold(mq_omni_block *b, mq_model *m, mq_qlinear *q) {
    mq_status st = MQ_OK;
    for (int i = 0; i < b->nlin && st == MQ_OK; i++) st = fold_linear(b, &b->lin[i], &q[i]);
    if (st) {
        mq_error_prefix("omniquant: block %d", b->layer);
        for (int i = 0; i < b->nlin; i++) {
            free(q[i].q); free(q[i].scale); free(q[i].zero);
            memset(&q[i], 0, sizeof q[i]);
        }
        return st;
    }
    apply_let(b);
    const mq_config *c = &m->cfg;
    mq_layer *L = &m->layers[b->layer];
    float *nw[2] = {L->attn_norm, L->ffn_norm};
    const float *ge[2] = {b->g1, b->g2};
    for (int t = 0; t < 2; t++)
        if (b->s_off[t] != SIZE_MAX)
            for (int j = 0; j < b->C; j++) nw[t][j] = c->norm_plus_one ? ge[t][j] - 1.0f : ge[t][j];
    for (int i = 0; i < b->nlin; i++) {
        int rows, cols;
        float *w = mq_linear_weight(m, b->layer, q[i].kind, &rows, &cols);
        mq_ref_dequant(q[i].q, q[i].scale, q[i].zero, rows, cols, q[i].group, b->widest, false, w);
    }
    return MQ_OK;
}

/* ================================================================ state */

#define STATE_MAGIC "matquant omniquant state v1\n"

static char *block_path(const char *dir, int l) {
    char nm[32];
    snprintf(nm, sizeof nm, "block_%03d.bin", l);
    return mq_path_join(dir, nm);
}

void mq_omni_state_remove(const char *dir) {
    if (!dir || !mq_is_dir(dir)) return;
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strncmp(e->d_name, "block_", 6)) continue;
            char *p = mq_path_join(dir, e->d_name);
            unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

typedef struct {
    uint8_t *buf;
    size_t len, cap;
} wbuf;

static void put(wbuf *w, const void *p, size_t n) {
    if (w->len + n > w->cap) {
        w->cap = (w->len + n) * 2;
        w->buf = mq_realloc(w->buf, w->cap);
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static mq_status state_write(const char *dir, int layer, const char *fp, const mq_model *m, const mq_qlinear *q,
                             int nq) {
    if (mkdir(dir, 0755) && errno != EEXIST) return mq_fail(MQ_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    wbuf w = {0};
    put(&w, STATE_MAGIC, strlen(STATE_MAGIC));
    uint32_t fl = (uint32_t)strlen(fp);
    put(&w, &fl, 4);
    put(&w, fp, fl);
    int32_t hdr[2] = {layer, nq};
    put(&w, hdr, sizeof hdr);
    for (int i = 0; i < nq; i++) {
        int32_t h[4] = {(int32_t)q[i].kind, q[i].rows, q[i].cols, q[i].group};
        size_t ng = (size_t)q[i].rows * (q[i].cols / q[i].group);
        put(&w, h, sizeof h);
        put(&w, q[i].q, (size_t)q[i].rows * q[i].cols);
        put(&w, q[i].scale, ng * sizeof(float));
        put(&w, q[i].zero, ng);
    }
    const mq_layer *L = &m->layers[layer];
    put(&w, L->attn_norm, (size_t)m->cfg.dim * sizeof(float));
    put(&w, L->ffn_norm, (size_t)m->cfg.dim * sizeof(float));
    char *path = block_path(dir, layer);
    mq_status st = mq_write_file_atomic(path, w.buf, w.len);
    free(path);
    free(w.buf);
    return st;
}

/* Read block `layer`'s state: MQ_OK with *found, or an error naming the
 * file when it exists but does not match. */
static mq_status state_read(const char *dir, int layer, const char *fp, mq_model *m, mq_qlinear *q, int nq,
                            bool *found) {
    *found = false;
    char *path = block_path(dir, layer);
    if (!mq_file_exists(path)) {
        free(path);
        return MQ_OK;
    }
    char *data;
    size_t len;
    mq_status st = mq_read_file(path, &data, &len);
    if (st) {
        free(path);
        return st;
    }
    size_t off = 0;
#define NEED(n)                                                                            \
    do {                                                                                   \
        if (len - off < (size_t)(n)) {                                                     \
            st = mq_fail(MQ_ERR_FORMAT, "%s: truncated omniquant state", path);            \
            goto done;                                                                     \
        }                                                                                  \
    } while (0)
    size_t ml = strlen(STATE_MAGIC);
    NEED(ml + 4);
    if (memcmp(data, STATE_MAGIC, ml)) {
        st = mq_fail(MQ_ERR_FORMAT, "%s: not an omniquant state file", path);
        goto done;
    }
    off = ml;
    uint32_t fl;
    memcpy(&fl, data + off, 4);
    off += 4;
    NEED(fl);
    if (fl != strlen(fp) || memcmp(data + off, fp, fl)) {
        st = mq_fail(MQ_ERR_FORMAT, "%s: written with other options (%.*s); now %s — remove it or rerun "
                     "without --resume", path, (int)fl, data + off, fp);
        goto done;
    }
    off += fl;
    int32_t hdr[2];
    NEED(sizeof hdr);
    memcpy(hdr, data + off, sizeof hdr);
    off += sizeof hdr;
    if (hdr[0] != layer || hdr[1] != nq) {
        st = mq_fail(MQ_ERR_FORMAT, "%s: block %d with %d linears, expected block %d with %d", path, hdr[0],
                     hdr[1], layer, nq);
        goto done;
    }
    for (int i = 0; i < nq; i++) {
        int32_t h[4];
        NEED(sizeof h);
        memcpy(h, data + off, sizeof h);
        off += sizeof h;
        if (h[0] != (int32_t)q[i].kind || h[1] != q[i].rows || h[2] != q[i].cols || h[3] != q[i].group) {
            st = mq_fail(MQ_ERR_FORMAT, "%s: linear %d has shape [%d, %d] group %d, expected [%d, %d] group %d",
                         path, i, h[1], h[2], h[3], q[i].rows, q[i].cols, q[i].group);
            goto done;
        }
        size_t n = (size_t)q[i].rows * q[i].cols, ng = (size_t)q[i].rows * (q[i].cols / q[i].group);
        NEED(n + ng * 5);
        memcpy(q[i].q, data + off, n);
        off += n;
        memcpy(q[i].scale, data + off, ng * sizeof(float));
        off += ng * sizeof(float);
        memcpy(q[i].zero, data + off, ng);
        off += ng;
        for (size_t k = 0; k < ng; k++)
            if (!(q[i].scale[k] >= 0) || !isfinite(q[i].scale[k])) {
                st = mq_fail(MQ_ERR_FORMAT, "%s: linear %d has a bad scale %g", path, i, q[i].scale[k]);
                goto done;
            }
    }
    size_t C = (size_t)m->cfg.dim;
    NEED(2 * C * sizeof(float));
    memcpy(m->layers[layer].attn_norm, data + off, C * sizeof(float));
    memcpy(m->layers[layer].ffn_norm, data + off + C * sizeof(float), C * sizeof(float));
    *found = true;
done:
#undef NEED
    free(data);
    free(path);
    return st;
}

/* ============================================================ the method */

static void say(const mq_quant_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const mq_quant_opts *o, const char *fmt, ...) {
    if (!o->progress) return;
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    o->progress(o->user, line);
}

static mq_status check_opts(const mq_quant_opts *o) {
    const mq_omni_opts *oo = o->omni;
    if (!oo) return mq_fail(MQ_ERR_ARG, "omniquant: no options");
    if (oo->epochs < 0) return mq_fail(MQ_ERR_ARG, "omniquant: --epochs must be >= 0, got %d", oo->epochs);
    if (!(oo->lr_lwc >= 0) || !(oo->lr_let >= 0))
        return mq_fail(MQ_ERR_ARG, "omniquant: learning rates must be >= 0");
    if (oo->cd_hi || oo->cd_lo) {
        if (oo->cd_hi < 1 || oo->cd_hi > 8 || oo->cd_lo < 1 || oo->cd_lo >= oo->cd_hi)
            return mq_fail(MQ_ERR_ARG, "omniquant: --co-distill HI:LO needs 8 >= HI > LO >= 1, got %d:%d",
                           oo->cd_hi, oo->cd_lo);
        if (mq_quant_grid_bits(o) < oo->cd_hi)
            return mq_fail(MQ_ERR_ARG, "omniquant: --co-distill %d:%d on a native %d-bit grid (use --parent-grid)",
                           oo->cd_hi, oo->cd_lo, mq_quant_grid_bits(o));
    }
    if (!(oo->cd_weight >= 0)) return mq_fail(MQ_ERR_ARG, "omniquant: co-distillation weight must be >= 0");
    return MQ_OK;
}

/* Everything that changes the result, for the state files. */
static void fingerprint(const mq_quant_opts *o, const mq_model *m, char *buf, size_t cap) {
    const mq_omni_opts *oo = o->omni;
    size_t n = (size_t)snprintf(buf, cap, "R=");
    for (int i = 0; i < o->n_train && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%d:%g", i ? "," : "", o->train_bits[i], o->lambda[i]);
    if (n < cap)
        snprintf(buf + n, cap - n,
                 " grid=%d scope=%s group=%d epochs=%d lr=%g/%g let=%d cd=%d:%d:%g calib=%s n=%d len=%d seed=%llu "
                 "layers=%d dim=%d",
                 mq_quant_grid_bits(o), o->scope, o->group, oo->epochs, oo->lr_lwc, oo->lr_let, oo->let, oo->cd_hi,
                 oo->cd_lo, oo->cd_weight, o->calib_path ? o->calib_path : "-", o->calib_samples, o->calib_len,
                 (unsigned long long)o->seed, m->cfg.n_layers, m->cfg.dim);
}

/* Train block l on (X, Y): X the quantized-path inputs, Y the fp targets,
 * (n, T, C) each. */
static mq_status train_block(mq_omni_block *b, const mq_quant_opts *o, int l, const float *X, const float *Y, int n,
                             int T) {
    const mq_omni_opts *oo = o->omni;
    const mq_config *c = &b->m->cfg;
    size_t TC = (size_t)T * c->dim;
    mq_omni_block_let_init(b, X, n);
    double t0 = mq_now_ms(), mmf = 0, mmt = 0;
    for (int e = 0; e < oo->epochs; e++) {
        double sum = 0, pw[8] = {0}, te = mq_now_ms();
        for (int i = 0; i < n; i++) {
            double w[8] = {0};
            double L = mq_omni_block_loss_grad(b, X + (size_t)i * TC, Y + (size_t)i * TC, w);
            if (!isfinite(L))
                return mq_fail(MQ_ERR_NUMERIC, "omniquant: block %d, epoch %d, sequence %d: loss is %g", l, e + 1,
                               i, L);
            double f, ms;
            mq_omni_block_matmul_stats(b, &f, &ms);
            mmf += f;
            mmt += ms;
            mq_omni_block_step(b);
            sum += L;
            for (int k = 0; k < o->n_train; k++) pw[k] += w[k];
        }
        char per[256];
        size_t k0 = 0;
        per[0] = 0;
        for (int k = 0; k < o->n_train && k0 < sizeof per; k++)
            k0 += (size_t)snprintf(per + k0, sizeof per - k0, "%s%d: %.3e", k ? ", " : "", o->train_bits[k],
                                   pw[k] / n);
        double dt = (mq_now_ms() - te) / 1e3;
        say(o, "block %d/%d epoch %d/%d: loss %.4e (mse %s), %.0f tokens/s", l + 1, c->n_layers, e + 1, oo->epochs,
            sum / n, per, (double)n * T / (dt > 0 ? dt : 1e-9));
    }
    double el = (mq_now_ms() - t0) / 1e3;
    if (oo->epochs > 0)
        say(o, "block %d/%d trained: %d x %d tokens x %d epochs in %.1fs = %.0f tokens/s; linear matmuls %.2f GFLOP/s "
            "(%.0f%% of the block's time)",
            l + 1, c->n_layers, n, T, oo->epochs, el, (double)n * T * oo->epochs / (el > 0 ? el : 1e-9),
            mmt > 0 ? mmf / mmt / 1e6 : 0.0, el > 0 ? 100.0 * mmt / 1e3 / el : 0.0);
    return MQ_OK;
}

mq_status mq_omniquant(mq_model *m, const mq_quant_opts *o, mq_qlinear **out, int *nout) {
    *out = NULL;
    *nout = 0;
    const mq_config *c = &m->cfg;
    const mq_omni_opts *oo = o->omni;
    mq_status st = check_opts(o);
    if (st) return st;
    if (!m->tok) return mq_fail(MQ_ERR_ARG, "quantize: omniquant needs a tokenizer for the calibration text");
    int per_block = 0;
    for (int k = 0; k < MQ_LIN_COUNT; k++) per_block += mq_scope_has(o->scope, (mq_lin_kind)k);
    mq_calib cal;
    int32_t bos = mq_tokenizer_add_bos(m->tok) ? c->bos_id : -1;
    st = mq_calib_load(o->calib_path, m->tok, o->calib_samples, o->calib_len, o->seed, bos, &cal);
    if (st) return st;
    char fp[1024];
    fingerprint(o, m, fp, sizeof fp);
    if (oo->state_dir && !oo->resume) mq_omni_state_remove(oo->state_dir);
    int n = cal.n, T = cal.len;
    size_t C = (size_t)c->dim, TC = (size_t)T * C;
    float *Xq = mq_malloc((size_t)n * TC * sizeof(float)); /* inputs along the quantized path */
    float *Xf = mq_malloc((size_t)n * TC * sizeof(float)); /* the unquantized trajectory */
    for (int i = 0; i < n; i++) mq_embed(m, cal.tokens + (size_t)i * T, T, Xq + (size_t)i * TC);
    memcpy(Xf, Xq, (size_t)n * TC * sizeof(float));
    mq_state *s = mq_state_new(m, T, T);
    mq_qlinear *q = mq_calloc((size_t)per_block * c->n_layers, sizeof *q);
    int nq = 0;
    bool resuming = oo->resume && oo->state_dir;
    double t0 = mq_now_ms();
    for (int l = 0; l < c->n_layers && st == MQ_OK; l++) {
        /* fp targets: block l's unquantized output on its unquantized input */
        for (int i = 0; i < n; i++) mq_forward_block(m, s, l, Xf + (size_t)i * TC, T, 0);
        mq_omni_block *b = mq_omni_block_new(m, l, o, T);
        bool found = false;
        if (resuming) {
            /* shapes for the reader */
            for (int i = 0; i < b->nlin; i++) {
                const olin *L = &b->lin[i];
                mq_qlinear *qq = &q[nq + i];
                *qq = (mq_qlinear){.layer = l, .kind = L->kind, .rows = L->s.rows, .cols = L->s.cols,
                                   .group = L->s.group};
                qq->q = mq_malloc((size_t)L->s.rows * L->s.cols);
                qq->scale = mq_malloc((size_t)L->s.rows * L->ng * sizeof(float));
                qq->zero = mq_malloc((size_t)L->s.rows * L->ng);
            }
            st = state_read(oo->state_dir, l, fp, m, q + nq, b->nlin, &found);
            if (st == MQ_OK && found) {
                for (int i = 0; i < b->nlin; i++) {
                    int rows, cols;
                    float *w = mq_linear_weight(m, l, q[nq + i].kind, &rows, &cols);
                    mq_ref_dequant(q[nq + i].q, q[nq + i].scale, q[nq + i].zero, rows, cols, q[nq + i].group,
                                   b->widest, false, w);
                }
                say(o, "block %d/%d restored from %s", l + 1, c->n_layers, oo->state_dir);
            } else {
                for (int i = 0; i < b->nlin; i++) {
                    free(q[nq + i].q); free(q[nq + i].scale); free(q[nq + i].zero);
                    memset(&q[nq + i], 0, sizeof q[nq + i]);
                }
                if (st == MQ_OK) say(o, "resuming at block %d/%d", l + 1, c->n_layers);
                resuming = false;
            }
        }
        if (st == MQ_OK && !found) {
            st = train_block(b, o, l, Xq, Xf, n, T);
            if (st == MQ_OK) st = mq_omni_block_fold(b, m, q + nq);
            if (st == MQ_OK && oo->state_dir) st = state_write(oo->state_dir, l, fp, m, q + nq, b->nlin);
        }
        if (st == MQ_OK) nq += b->nlin;
        mq_omni_block_free(b);
        if (st) break;
        /* the quantized block (widest width) feeds the next */
        for (int i = 0; i < n; i++) mq_forward_block(m, s, l, Xq + (size_t)i * TC, T, 0);
        double el = (mq_now_ms() - t0) / 1e3;
        say(o, "block %d/%d quantized (omniquant, %d x %d calibration tokens), %.1fs elapsed, ~%.0fs left", l + 1,
            c->n_layers, n, T, el, el / (l + 1) * (c->n_layers - l - 1));
    }
    mq_state_free(s);
    free(Xq);
    free(Xf);
    mq_calib_free(&cal);
    if (st) {
        mq_qlinears_free(q, nq);
        return st;
    }
    *out = q;
    *nout = nq;
    return MQ_OK;
}

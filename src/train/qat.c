/*
 * qat.c — MatQuant on QAT: the whole-model forward and hand-written backward
 * of a llama-family decoder with fake-quantized linears, the distillation
 * loss over the trained slices with co-distillation, the optimizer step, the
 * training loop with atomic training-state checkpoints and bit-exact resume,
 * and the fold of the learned weights and ranges into parent codes
 * (see qat.h for the loss and what is trained).
 *
 * Memory (planned in mq_qat_new, nothing allocated by a step):
 *   params  [ W_latent | lwc_upper | lwc_lower ] per scoped linear, in layer order
 *   grads, AdamW moments m, v (train/optim.h): the same layout
 *   wq      the scoped weights fake-quantized at the current slice
 *   codes, groups  their N-bit codes and grids, computed once per loss
 *           (fakequant_codes) and sliced for each width (fakequant_slice_*)
 *   arena   per layer: x, xn1, rstd1, q, k, v, att, ao, xm, xn2, rstd2, gate, up, h;
 *           then xf, xnf, rstdf, logits, logp; backward scratch; teacher and
 *           co-distillation source log-probabilities.
 * A slice r is processed as: fake-quantize every scoped weight at r, forward
 * (activations kept), loss terms into dlogits, backward (STE through the
 * fake quantizer into W and the LWC logits). Slices run widest first, so a
 * co-distillation source (8) has its log-probabilities stored before its
 * target (2) needs them.
 *
 * Not here: the ops (ops.c, ops_lm.c), the code/slice spec (quant/ref.c).
 * References: MatQuant (Nair et al., 2025) §3 and §4.2 (QAT, co-distillation);
 * llm.c's train_gpt2.c for the forward/backward layout; AdamW (Loshchilov &
 * Hutter, 2019) through train/optim.h (torch.optim.AdamW's update).
 */
#include "train/qat.h"

#include "quant/ref.h"
#include "train/calib.h"
#include "train/ops.h"
#include "train/ops_lm.h"
#include "train/optim.h"

#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#define ADAM_B1 0.9f
#define ADAM_B2 0.95f
#define ADAM_EPS 1e-8f
#define STATE_MAGIC "MQQATST1"

typedef struct {
    int layer;
    mq_lin_kind kind;
    int rows, cols, G;      /* G groups per row */
    const float *src;       /* (rows, cols) teacher weight (the model's) */
    size_t w_off, u_off, l_off; /* params slab offsets: W (rows*cols), u, l (rows*G) */
    size_t wq_off;          /* offset in t->wq and t->codes */
    size_t g_off;           /* offset in t->groups (rows*G) */
} qlin;

typedef struct {
    const char *name_;      /* points into names */
    size_t off, size;
    bool clip;              /* an LWC logit tensor (own LR, no decay) */
    int layer;
} tdesc;

typedef struct {
    float *x;       /* (N, C) block input (residual) */
    float *xn1;     /* (N, C) attention norm output */
    float *rstd1;   /* (N) */
    float *q;       /* (N, H*D) after RoPE */
    float *k, *v;   /* (N, KV*D), k after RoPE */
    float *att;     /* (B, H, T, T) probabilities */
    float *ao;      /* (N, H*D) attention output */
    float *xm;      /* (N, C) residual after attention */
    float *xn2;     /* (N, C) ffn norm output */
    float *rstd2;   /* (N) */
    float *gate, *up, *h; /* (N, F) */
} acts;

struct mq_qat {
    const mq_model *m;
    mq_qat_opts o;
    int B, T, N, C, F, QD, KD, V, L;
    int grid;               /* grid bits of the fake quantizer */
    int n_lin;
    qlin *lin;
    int *lin_of;            /* (L, MQ_LIN_COUNT) index into lin or -1 */
    int n_t;
    tdesc *td;
    char *names;
    size_t n_params, n_wq, max_w, n_groups;
    float *params, *grads, *wq, *dwq;
    uint8_t *codes;         /* (n_wq) N-bit codes of the latent weights at this step (fakequant_codes) */
    mq_fq_group *groups;    /* (n_groups) their grids */
    mq_adamw adam;          /* the moments slab (train/optim.h), same layout as params */
    float *arena;
    acts *a;                /* (L) */
    float *xf, *xnf, *rstdf, *logits, *logp; /* final residual (N,C), normed (N,C), (N), (N,V), (N,V) */
    float *dx, *dxn, *dq, *dk, *dv, *dqp, *dkp, *dao, *dgate, *dup, *dh, *dlogits, *tmp, *att_scratch;
    float *logp_t;          /* (N, V) teacher */
    float *logp_src[8];     /* (N, V) stored slices that are co-distillation sources, else NULL */
    int order[8];           /* slice processing order (indices into train_bits), widest first */
    mq_calib data;
    int64_t step, total;
    double last_loss, last_slice[8];
    char fingerprint[1024];
};

/* ------------------------------------------------------------- options */

void mq_qat_defaults(mq_qat_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_train = 3;
    o->train_bits[0] = 8, o->train_bits[1] = 4, o->train_bits[2] = 2;
    o->lambda[0] = o->lambda[1] = o->lambda[2] = 1.0f;
    o->scope = "ffn";
    o->tokens = (int64_t)1 << 20;
    o->seq_len = 256;
    o->batch = 8;
    o->accum = 1;
    o->lr = 1e-4f;
    o->lr_clip = 1e-2f;
    o->min_lr_frac = 0.1f;
    o->weight_decay = 0.0f;
    o->clip_norm = 1.0f;
    o->warmup = 20;
    o->save_every = 100;
}

static int width_index(const mq_qat_opts *o, int bits) {
    for (int i = 0; i < o->n_train; i++)
        if (o->train_bits[i] == bits) return i;
    return -1;
}

mq_status mq_qat_check_opts(const mq_qat_opts *o) {
    if (o->n_train < 1 || o->n_train > 8) return mq_fail(MQ_ERR_ARG, "qat: --train-bits needs 1 to 8 widths");
    for (int i = 0; i < o->n_train; i++) {
        if (o->train_bits[i] < 1 || o->train_bits[i] > 8 || !(o->lambda[i] >= 0) || !isfinite(o->lambda[i]))
            return mq_fail(MQ_ERR_ARG, "qat: width %d / lambda %g out of range (1..8, >= 0)", o->train_bits[i],
                           o->lambda[i]);
        if (width_index(o, o->train_bits[i]) != i)
            return mq_fail(MQ_ERR_ARG, "qat: --train-bits lists width %d twice", o->train_bits[i]);
    }
    if (o->n_co < 0 || o->n_co > MQ_QAT_MAX_CO) return mq_fail(MQ_ERR_ARG, "qat: at most %d --co-distill terms", MQ_QAT_MAX_CO);
    for (int i = 0; i < o->n_co; i++) {
        if (width_index(o, o->co_from[i]) < 0 || width_index(o, o->co_to[i]) < 0)
            return mq_fail(MQ_ERR_ARG, "qat: --co-distill %d:%d: both widths must be in --train-bits",
                           o->co_from[i], o->co_to[i]);
        if (o->co_from[i] <= o->co_to[i])
            return mq_fail(MQ_ERR_ARG, "qat: --co-distill %d:%d: the source must be wider than the target",
                           o->co_from[i], o->co_to[i]);
        if (!(o->co_weight[i] >= 0) || !isfinite(o->co_weight[i]))
            return mq_fail(MQ_ERR_ARG, "qat: --co-distill weight must be >= 0");
    }
    if (strcmp(o->scope, "ffn") && strcmp(o->scope, "all"))
        return mq_fail(MQ_ERR_ARG, "qat: --scope must be ffn or all, got '%s'", o->scope);
    if (o->group != 0 && o->group != 32 && o->group != 64 && o->group != 128 && o->group != 256)
        return mq_fail(MQ_ERR_ARG, "qat: --group-size must be 0, 32, 64, 128 or 256");
    if (o->seq_len < 2 || o->batch < 1 || o->accum < 1 || o->tokens < 1)
        return mq_fail(MQ_ERR_ARG, "qat: --seq-len >= 2, --batch >= 1, --accum >= 1 and --tokens >= 1 needed");
    if (!(o->lr >= 0) || !(o->lr_clip >= 0) || !(o->weight_decay >= 0) || !(o->clip_norm >= 0) || o->warmup < 0 ||
        !(o->min_lr_frac >= 0 && o->min_lr_frac <= 1) || o->save_every < 0)
        return mq_fail(MQ_ERR_ARG, "qat: --lr, --lr-clip, --weight-decay, --clip, --warmup and --save-every must "
                       "be >= 0 (min-lr fraction in 0..1)");
    if (o->resume && !o->state_path) return mq_fail(MQ_ERR_ARG, "qat: --resume needs a training-state path");
    return MQ_OK;
}

mq_status mq_qat_parse_co(const char *s, mq_qat_opts *o) {
    o->n_co = 0;
    while (s && *s) {
        char *end;
        long from = strtol(s, &end, 10), to;
        float w = 1.0f;
        if (end == s || *end != ':') goto bad;
        s = end + 1;
        to = strtol(s, &end, 10);
        if (end == s) goto bad;
        s = end;
        if (*s == ':') {
            w = strtof(s + 1, &end);
            if (end == s + 1) goto bad;
            s = end;
        }
        if (*s == ',') s++;
        else if (*s) goto bad;
        if (o->n_co == MQ_QAT_MAX_CO) return mq_fail(MQ_ERR_ARG, "--co-distill: at most %d terms", MQ_QAT_MAX_CO);
        o->co_from[o->n_co] = (int)from, o->co_to[o->n_co] = (int)to, o->co_weight[o->n_co] = w;
        o->n_co++;
    }
    return MQ_OK;
bad:
    return mq_fail(MQ_ERR_ARG, "--co-distill: expected FROM:TO[:WEIGHT][,...] such as 8:2, at '%s'", s);
}

/* --------------------------------------------------------------- plan */

static float *bump(float **p, size_t n) {
    float *r = *p;
    *p += (n + 15) & ~(size_t)15;
    return r;
}

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Elements per work item of the whole-buffer passes below. */
#define PASS_CHUNK ((size_t)1 << 16)

/* x[0..n) = 0 over the OpenMP threads (also the first touch of a fresh
 * buffer, so no step pays its page faults). */
static void zero_par(float *x, size_t n) {
    size_t nc = (n + PASS_CHUNK - 1) / PASS_CHUNK;
#pragma omp parallel for if (nc > 1)
    for (size_t c = 0; c < nc; c++) {
        size_t i0 = c * PASS_CHUNK, m = n - i0 < PASS_CHUNK ? n - i0 : PASS_CHUNK;
        memset(x + i0, 0, m * sizeof(float));
    }
}

/* mq_find_nonfinite over the OpenMP threads: the first non-finite index or -1. */
static int64_t find_nonfinite_par(const float *x, size_t n) {
    size_t nc = (n + PASS_CHUNK - 1) / PASS_CHUNK;
    int64_t first = INT64_MAX;
#pragma omp parallel for reduction(min : first) if (nc > 1)
    for (size_t c = 0; c < nc; c++) {
        size_t i0 = c * PASS_CHUNK, m = n - i0 < PASS_CHUNK ? n - i0 : PASS_CHUNK;
        int64_t i = mq_find_nonfinite(x + i0, m);
        if (i >= 0 && (int64_t)i0 + i < first) first = (int64_t)i0 + i;
    }
    return first == INT64_MAX ? -1 : first;
}

/* x[0..n) *= k over the OpenMP threads (element-wise: thread-count independent). */
static void scale_par(float *x, size_t n, float k) {
#pragma omp parallel for if (n > PASS_CHUNK)
    for (size_t i = 0; i < n; i++) x[i] *= k;
}

/* Arena floats for the layout carved in carve(); measured with a NULL base. */
static size_t carve(mq_qat *t, float *base) {
    float *p = base;
    size_t N = (size_t)t->N, C = (size_t)t->C, F = (size_t)t->F, QD = (size_t)t->QD, KD = (size_t)t->KD,
           V = (size_t)t->V;
    size_t AT = (size_t)t->B * t->m->cfg.n_heads * (size_t)t->T * t->T;
    for (int l = 0; l < t->L; l++) {
        acts *a = &t->a[l];
        a->x = bump(&p, N * C);
        a->xn1 = bump(&p, N * C);
        a->rstd1 = bump(&p, N);
        a->q = bump(&p, N * QD);
        a->k = bump(&p, N * KD);
        a->v = bump(&p, N * KD);
        a->att = bump(&p, AT);
        a->ao = bump(&p, N * QD);
        a->xm = bump(&p, N * C);
        a->xn2 = bump(&p, N * C);
        a->rstd2 = bump(&p, N);
        a->gate = bump(&p, N * F);
        a->up = bump(&p, N * F);
        a->h = bump(&p, N * F);
    }
    t->xf = bump(&p, N * C);
    t->xnf = bump(&p, N * C);
    t->rstdf = bump(&p, N);
    t->logits = bump(&p, N * V);
    t->logp = bump(&p, N * V);
    t->dx = bump(&p, N * C);
    t->dxn = bump(&p, N * C);
    t->tmp = bump(&p, N * C);
    t->dq = bump(&p, N * QD);
    t->dqp = bump(&p, N * QD);
    t->dao = bump(&p, N * QD);
    t->dk = bump(&p, N * KD);
    t->dv = bump(&p, N * KD);
    t->dkp = bump(&p, N * KD);
    t->dgate = bump(&p, N * F);
    t->dup = bump(&p, N * F);
    t->dh = bump(&p, N * F);
    t->dlogits = bump(&p, N * V);
    t->att_scratch = bump(&p, attention_bwd_scratch(t->T));
    t->logp_t = bump(&p, N * V);
    for (int i = 0; i < 8; i++) t->logp_src[i] = NULL;
    for (int c = 0; c < t->o.n_co; c++) {
        int k = width_index(&t->o, t->o.co_from[c]);
        if (!t->logp_src[k]) t->logp_src[k] = bump(&p, N * V);
    }
    return (size_t)(p - base);
}

static void add_tensor(mq_qat *t, size_t *namepos, const char *name, size_t off, size_t size, bool clip, int layer) {
    size_t len = strlen(name) + 1;
    memcpy(t->names + *namepos, name, len);
    t->td[t->n_t++] = (tdesc){.name_ = t->names + *namepos, .off = off, .size = size, .clip = clip, .layer = layer};
    *namepos += len;
}

static void fingerprint(mq_qat *t) {
    const mq_qat_opts *o = &t->o;
    char *f = t->fingerprint;
    size_t cap = sizeof t->fingerprint, n = 0;
#define FP(...) n += (size_t)snprintf(f + n, n < cap ? cap - n : 0, __VA_ARGS__)
    FP("model=%dx%dx%dx%dx%d", t->L, t->C, t->F, t->QD, t->V);
    FP(" train-bits=");
    for (int i = 0; i < o->n_train; i++) FP("%s%d", i ? "," : "", o->train_bits[i]);
    FP(" lambda=");
    for (int i = 0; i < o->n_train; i++) FP("%s%.9g", i ? "," : "", o->lambda[i]);
    FP(" co-distill=");
    for (int i = 0; i < o->n_co; i++) FP("%s%d:%d:%.9g", i ? "," : "", o->co_from[i], o->co_to[i], o->co_weight[i]);
    FP(" grid=%d scope=%s group=%d data=%s tokens=%lld seq-len=%d batch=%d accum=%d lr=%.9g lr-clip=%.9g "
       "min-lr=%.9g wd=%.9g clip=%.9g warmup=%d seed=%llu no-quant=%d",
       t->grid, o->scope, o->group, o->data_path, (long long)o->tokens, o->seq_len, o->batch, o->accum, o->lr,
       o->lr_clip, o->min_lr_frac, o->weight_decay, o->clip_norm, o->warmup, (unsigned long long)o->seed,
       o->no_quant);
#undef FP
}

mq_status mq_qat_new(const mq_model *m, const mq_qat_opts *opts, mq_qat **out) {
    *out = NULL;
    mq_status st = mq_qat_check_opts(opts);
    if (st) return st;
    const mq_config *c = &m->cfg;
    if (c->arch == MQ_ARCH_GEMMA2 || c->post_norms || c->embed_scale || c->final_softcap > 0)
        return mq_fail(MQ_ERR_UNSUPPORTED, "qat: the %s family is not supported yet (llama, mistral, qwen2)",
                       mq_arch_name(c->arch));
    if (opts->data_path && !m->tok) return mq_fail(MQ_ERR_ARG, "qat: the model has no tokenizer (give --tokenizer)");
    if (opts->seq_len > c->max_seq)
        return mq_fail(MQ_ERR_ARG, "qat: --seq-len %d exceeds the model's context of %d", opts->seq_len, c->max_seq);
    mq_qat *t = mq_calloc(1, sizeof *t);
    t->m = m;
    t->o = *opts;
    t->B = opts->batch, t->T = opts->seq_len;
    size_t Nz;
    if (!mq_mul_ok((size_t)t->B, (size_t)t->T, &Nz) || Nz > (1u << 24)) {
        free(t);
        return mq_fail(MQ_ERR_ARG, "qat: --batch x --seq-len too large");
    }
    t->N = (int)Nz;
    t->C = c->dim, t->F = c->hidden_dim, t->QD = c->n_heads * c->head_dim, t->KD = c->n_kv_heads * c->head_dim;
    t->V = c->vocab_size, t->L = c->n_layers;
    t->grid = opts->n_train == 1 && !opts->parent_grid ? opts->train_bits[0] : 8;
    /* processing order: widest first */
    for (int i = 0; i < opts->n_train; i++) t->order[i] = i;
    for (int i = 1; i < opts->n_train; i++)
        for (int j = i; j > 0 && opts->train_bits[t->order[j]] > opts->train_bits[t->order[j - 1]]; j--) {
            int s = t->order[j];
            t->order[j] = t->order[j - 1];
            t->order[j - 1] = s;
        }
    /* linears in scope and the parameter layout */
    t->lin = mq_calloc((size_t)t->L * MQ_LIN_COUNT, sizeof *t->lin);
    t->lin_of = mq_malloc((size_t)t->L * MQ_LIN_COUNT * sizeof(int));
    t->td = mq_calloc((size_t)t->L * MQ_LIN_COUNT * 3, sizeof *t->td);
    t->names = mq_malloc((size_t)t->L * MQ_LIN_COUNT * 3 * 112);
    size_t off = 0, namepos = 0;
    for (int l = 0; l < t->L; l++)
        for (int k = 0; k < MQ_LIN_COUNT; k++) {
            t->lin_of[l * MQ_LIN_COUNT + k] = -1;
            if (!mq_scope_has(opts->scope, (mq_lin_kind)k)) continue;
            qlin *q = &t->lin[t->n_lin];
            q->layer = l, q->kind = (mq_lin_kind)k;
            q->src = mq_linear_weight(m, l, (mq_lin_kind)k, &q->rows, &q->cols);
            if (opts->group > 0 && q->cols % opts->group) {
                char nm[96];
                mq_linear_name(l, (mq_lin_kind)k, nm, sizeof nm);
                mq_qat_free(t);
                return mq_fail(MQ_ERR_ARG, "qat: %s has %d input columns, not a multiple of --group-size %d", nm,
                               q->cols, opts->group);
            }
            q->G = opts->group > 0 ? q->cols / opts->group : 1;
            size_t nw = (size_t)q->rows * q->cols, ng = (size_t)q->rows * q->G;
            char base[96], nm[128];
            mq_linear_name(l, (mq_lin_kind)k, base, sizeof base);
            q->w_off = off;
            snprintf(nm, sizeof nm, "%s.weight", base);
            add_tensor(t, &namepos, nm, off, nw, false, l);
            off += round16(nw);
            q->u_off = off;
            snprintf(nm, sizeof nm, "%s.lwc_upper", base);
            add_tensor(t, &namepos, nm, off, ng, true, l);
            off += round16(ng);
            q->l_off = off;
            snprintf(nm, sizeof nm, "%s.lwc_lower", base);
            add_tensor(t, &namepos, nm, off, ng, true, l);
            off += round16(ng);
            q->wq_off = t->n_wq;
            t->n_wq += round16(nw);
            q->g_off = t->n_groups;
            t->n_groups += ng;
            if (nw > t->max_w) t->max_w = nw;
            t->lin_of[l * MQ_LIN_COUNT + k] = t->n_lin++;
        }
    t->n_params = off;
    t->params = mq_aligned_alloc(off * sizeof(float));
    t->grads = mq_aligned_alloc(off * sizeof(float));
    mq_adamw_init(&t->adam, off);
    /* touch every page now (calloc'd moments would fault on their first write, in step 1) */
    zero_par(t->params, off);
    zero_par(t->grads, off);
    zero_par(t->adam.m, off);
    zero_par(t->adam.v, off);
    for (int i = 0; i < t->n_lin; i++) {
        qlin *q = &t->lin[i];
        size_t ng = (size_t)q->rows * q->G;
        memcpy(t->params + q->w_off, q->src, (size_t)q->rows * q->cols * sizeof(float));
        for (size_t j = 0; j < ng; j++) t->params[q->u_off + j] = t->params[q->l_off + j] = MQ_LWC_INIT;
    }
    t->wq = mq_aligned_alloc((t->n_wq + 16) * sizeof(float));
    t->dwq = mq_aligned_alloc((t->max_w + 16) * sizeof(float));
    zero_par(t->wq, t->n_wq + 16);
    t->codes = mq_aligned_alloc(t->n_wq + 64);
    memset(t->codes, 0, t->n_wq + 64);
    t->groups = mq_calloc(t->n_groups ? t->n_groups : 1, sizeof *t->groups);
    zero_par(t->dwq, t->max_w + 16);
    t->a = mq_calloc((size_t)t->L, sizeof *t->a);
    size_t na = carve(t, NULL);
    t->arena = mq_aligned_alloc(na * sizeof(float));
    zero_par(t->arena, na);
    carve(t, t->arena);
    /* data: every micro-batch of every step, drawn once (a pure function of the seed) */
    int64_t per = (int64_t)t->N * opts->accum;
    t->total = opts->tokens / per > 0 ? opts->tokens / per : 1;
    int64_t nseq = t->total * opts->accum * opts->batch;
    if (nseq > (1 << 26)) {
        mq_qat_free(t);
        return mq_fail(MQ_ERR_ARG, "qat: --tokens %lld is too many sequences to plan", (long long)opts->tokens);
    }
    int32_t bos = opts->data_path && mq_tokenizer_add_bos(m->tok) ? c->bos_id : -1;
    if (opts->data_path) st = mq_calib_load(opts->data_path, m->tok, (int)nseq, t->T, opts->seed, bos, &t->data);
    if (st) {
        mq_error_prefix("qat: --data");
        mq_qat_free(t);
        return st;
    }
    fingerprint(t);
    *out = t;
    return MQ_OK;
}

void mq_qat_free(mq_qat *t) {
    if (!t) return;
    free(t->lin); free(t->lin_of); free(t->td); free(t->names);
    free(t->params); free(t->grads); free(t->wq); free(t->dwq); free(t->codes); free(t->groups);
    mq_adamw_free(&t->adam);
    free(t->arena); free(t->a);
    mq_calib_free(&t->data);
    free(t);
}

/* ----------------------------------------------------------- accessors */

size_t mq_qat_n_params(const mq_qat *t) { return t->n_params; }
float *mq_qat_params(mq_qat *t) { return t->params; }
float *mq_qat_grads(mq_qat *t) { return t->grads; }
int mq_qat_n_tensors(const mq_qat *t) { return t->n_t; }
const char *mq_qat_tensor(const mq_qat *t, int i, size_t *off, size_t *size) {
    MQ_ASSERT(i >= 0 && i < t->n_t);
    if (off) *off = t->td[i].off;
    if (size) *size = t->td[i].size;
    return t->td[i].name_;
}
void mq_qat_zero_grads(mq_qat *t) { zero_par(t->grads, t->n_params); }
int64_t mq_qat_step(const mq_qat *t) { return t->step; }
int64_t mq_qat_total_steps(const mq_qat *t) { return t->total; }
double mq_qat_last_loss(const mq_qat *t) { return t->last_loss; }
const float *mq_qat_teacher_logp(const mq_qat *t) { return t->logp_t; }
const int32_t *mq_qat_batch(const mq_qat *t, int64_t step, int micro) {
    MQ_ASSERT(t->data.tokens && step >= 0 && step < t->total && micro >= 0 && micro < t->o.accum);
    return t->data.tokens + ((size_t)step * t->o.accum + (size_t)micro) * (size_t)t->N;
}

/* ---------------------------------------------------------- the model */

/* The weight the forward pass uses for (l, k): the fake-quantized slice
 * (student, scoped), the latent weight (student, no_quant), or the model's. */
static const float *weight(const mq_qat *t, int l, mq_lin_kind k, bool student) {
    int i = t->lin_of[l * MQ_LIN_COUNT + k];
    if (student && i >= 0) return t->o.no_quant ? t->params + t->lin[i].w_off : t->wq + t->lin[i].wq_off;
    int r, c;
    return mq_linear_weight(t->m, l, k, &r, &c);
}

static mq_attn_cfg attn_cfg(const mq_qat *t, int l) {
    const mq_config *c = &t->m->cfg;
    bool windowed = c->sliding_window > 0 && (!c->sliding_even_only || l % 2 == 0);
    return (mq_attn_cfg){.n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads, .head_dim = c->head_dim,
                         .scale = c->query_scale, .softcap = c->attn_softcap,
                         .window = windowed ? c->sliding_window : 0};
}

static mq_status nonfinite(const float *x, size_t n, const char *what, int layer, int bits) {
    int64_t i = find_nonfinite_par(x, n);
    if (i < 0) return MQ_OK;
    if (layer >= 0)
        return mq_fail(MQ_ERR_NUMERIC, "qat: non-finite value %g in %s of layer %d (slice %d, element %lld)",
                       x[i], what, layer, bits, (long long)i);
    return mq_fail(MQ_ERR_NUMERIC, "qat: non-finite value %g in %s (slice %d, element %lld)", x[i], what, bits,
                   (long long)i);
}

/* Forward of tokens (B, T); logp (N, V) receives the log-probabilities.
 * student: scoped weights from wq (already fake-quantized) or latent. */
static mq_status forward(mq_qat *t, const int32_t *tokens, bool student, float *logp, int bits) {
    const mq_model *m = t->m;
    const mq_config *c = &m->cfg;
    int N = t->N, C = t->C, F = t->F, QD = t->QD, KD = t->KD;
    size_t NC = (size_t)N * C;
    mq_embed_fwd(t->a[0].x, tokens, m->tok_emb, N, C, t->V, 1.0f);
    for (int l = 0; l < t->L; l++) {
        const mq_layer *Lw = &m->layers[l];
        acts *a = &t->a[l];
        mq_attn_cfg ac = attn_cfg(t, l);
        float *next = l + 1 < t->L ? t->a[l + 1].x : t->xf;
        rmsnorm_fwd(a->xn1, a->rstd1, a->x, Lw->attn_norm, N, C, c->norm_eps, c->norm_plus_one);
        matmul_fwd(a->q, a->xn1, weight(t, l, MQ_LIN_Q, student), Lw->bq, N, C, QD);
        matmul_fwd(a->k, a->xn1, weight(t, l, MQ_LIN_K, student), Lw->bk, N, C, KD);
        matmul_fwd(a->v, a->xn1, weight(t, l, MQ_LIN_V, student), Lw->bv, N, C, KD);
        rope_fwd(a->q, a->q, m->inv_freq, t->B, t->T, c->n_heads, c->head_dim);
        rope_fwd(a->k, a->k, m->inv_freq, t->B, t->T, c->n_kv_heads, c->head_dim);
        attention_fwd(a->ao, a->att, a->q, a->k, a->v, t->B, t->T, &ac);
        matmul_fwd(t->tmp, a->ao, weight(t, l, MQ_LIN_O, student), NULL, N, QD, C);
        memcpy(a->xm, a->x, NC * sizeof(float));
        add_inplace(a->xm, t->tmp, NC);
        rmsnorm_fwd(a->xn2, a->rstd2, a->xm, Lw->ffn_norm, N, C, c->norm_eps, c->norm_plus_one);
        matmul_fwd(a->gate, a->xn2, weight(t, l, MQ_LIN_GATE, student), NULL, N, C, F);
        matmul_fwd(a->up, a->xn2, weight(t, l, MQ_LIN_UP, student), NULL, N, C, F);
        if (c->act == MQ_ACT_SILU) swiglu_fwd(a->h, a->gate, a->up, (size_t)N * F);
        else geglu_fwd(a->h, a->gate, a->up, (size_t)N * F);
        matmul_fwd(t->tmp, a->h, weight(t, l, MQ_LIN_DOWN, student), NULL, N, F, C);
        memcpy(next, a->xm, NC * sizeof(float));
        add_inplace(next, t->tmp, NC);
        mq_status st = nonfinite(next, NC, student ? "the block output" : "the teacher's block output", l, bits);
        if (st) return st;
    }
    rmsnorm_fwd(t->xnf, t->rstdf, t->xf, m->final_norm, N, C, c->norm_eps, c->norm_plus_one);
    mq_head_fwd(t->logits, t->xnf, m->lm_head, N, C, t->V);
    mq_status st = nonfinite(t->logits, (size_t)N * t->V, student ? "the logits" : "the teacher's logits", -1, bits);
    if (st) return st;
    mq_log_softmax_fwd(logp, t->logits, N, t->V);
    return MQ_OK;
}

/* dinp += d/dinp of a linear (l, k) (unless dinp is NULL: not needed) and
 * its parameter gradients: through the fake quantizer at `shape` into W, u,
 * l (STE), or straight into W (no_quant), or none (frozen). */
static void linear_bwd(mq_qat *t, float *dinp, const float *dout, const float *inp, int l, mq_lin_kind k,
                       const mq_fq_shape *shape) {
    int i = t->lin_of[l * MQ_LIN_COUNT + k];
    int O, K;
    const float *w = weight(t, l, k, true);
    mq_linear_weight(t->m, l, k, &O, &K);
    if (i < 0) {
        matmul_bwd(dinp, NULL, NULL, dout, inp, w, t->N, K, O);
        return;
    }
    const qlin *q = &t->lin[i];
    if (t->o.no_quant) {
        matmul_bwd(dinp, t->grads + q->w_off, NULL, dout, inp, w, t->N, K, O);
        return;
    }
    memset(t->dwq, 0, (size_t)O * K * sizeof(float));
    matmul_bwd(dinp, t->dwq, NULL, dout, inp, w, t->N, K, O);
    mq_fq_shape s = *shape;
    s.rows = q->rows, s.cols = q->cols;
    fakequant_slice_bwd(t->grads + q->w_off, t->grads + q->u_off, t->grads + q->l_off, t->dwq, t->params + q->w_off,
                        t->codes + q->wq_off, t->groups + q->g_off, &s);
}

/* Backward from t->dlogits through the student pass just run. */
static void backward(mq_qat *t, const mq_fq_shape *shape) {
    const mq_model *m = t->m;
    const mq_config *c = &m->cfg;
    int N = t->N, C = t->C, F = t->F, QD = t->QD, KD = t->KD;
    size_t NC = (size_t)N * C, NF = (size_t)N * F;
    memset(t->dxn, 0, NC * sizeof(float));
    mq_head_bwd(t->dxn, NULL, t->dlogits, t->xnf, m->lm_head, N, C, t->V);
    memset(t->dx, 0, NC * sizeof(float));
    rmsnorm_bwd(t->dx, NULL, t->dxn, t->xf, m->final_norm, t->rstdf, N, C, c->norm_plus_one);
    /* nothing is trained below the lowest scoped linear (the embeddings are
     * frozen): the backward stops there, as autograd's would */
    int lo = t->n_lin > 0 ? t->lin[0].layer : t->L;
    bool lo_attn = false;
    for (int k = 0; lo < t->L && k < MQ_LIN_COUNT; k++)
        lo_attn |= t->lin_of[lo * MQ_LIN_COUNT + k] >= 0 && k != MQ_LIN_GATE && k != MQ_LIN_UP && k != MQ_LIN_DOWN;
    for (int l = t->L - 1; l >= lo; l--) {
        const mq_layer *Lw = &m->layers[l];
        acts *a = &t->a[l];
        mq_attn_cfg ac = attn_cfg(t, l);
        bool last_ffn = l == lo && !lo_attn, last = l == lo;
        /* feed-forward: next = xm + down(act(gate) * up); dx holds d next */
        memset(t->dh, 0, NF * sizeof(float));
        linear_bwd(t, t->dh, t->dx, a->h, l, MQ_LIN_DOWN, shape);
        memset(t->dgate, 0, NF * sizeof(float));
        memset(t->dup, 0, NF * sizeof(float));
        if (c->act == MQ_ACT_SILU) swiglu_bwd(t->dgate, t->dup, t->dh, a->gate, a->up, NF);
        else geglu_bwd(t->dgate, t->dup, t->dh, a->gate, a->up, NF);
        memset(t->dxn, 0, NC * sizeof(float));
        linear_bwd(t, last_ffn ? NULL : t->dxn, t->dgate, a->xn2, l, MQ_LIN_GATE, shape);
        linear_bwd(t, last_ffn ? NULL : t->dxn, t->dup, a->xn2, l, MQ_LIN_UP, shape);
        if (last_ffn) break;
        rmsnorm_bwd(t->dx, NULL, t->dxn, a->xm, Lw->ffn_norm, a->rstd2, N, C, c->norm_plus_one);
        /* attention: xm = x + o(attn(rope(q), rope(k), v)); dx holds d xm */
        memset(t->dao, 0, (size_t)N * QD * sizeof(float));
        linear_bwd(t, t->dao, t->dx, a->ao, l, MQ_LIN_O, shape);
        memset(t->dq, 0, (size_t)N * QD * sizeof(float));
        memset(t->dk, 0, (size_t)N * KD * sizeof(float));
        memset(t->dv, 0, (size_t)N * KD * sizeof(float));
        attention_bwd(t->dq, t->dk, t->dv, t->att_scratch, t->dao, a->q, a->k, a->v, a->att, t->B, t->T, &ac);
        memset(t->dqp, 0, (size_t)N * QD * sizeof(float));
        memset(t->dkp, 0, (size_t)N * KD * sizeof(float));
        rope_bwd(t->dqp, t->dq, m->inv_freq, t->B, t->T, c->n_heads, c->head_dim);
        rope_bwd(t->dkp, t->dk, m->inv_freq, t->B, t->T, c->n_kv_heads, c->head_dim);
        memset(t->dxn, 0, NC * sizeof(float));
        linear_bwd(t, last ? NULL : t->dxn, t->dqp, a->xn1, l, MQ_LIN_Q, shape);
        linear_bwd(t, last ? NULL : t->dxn, t->dkp, a->xn1, l, MQ_LIN_K, shape);
        linear_bwd(t, last ? NULL : t->dxn, t->dv, a->xn1, l, MQ_LIN_V, shape);
        if (last) break;
        rmsnorm_bwd(t->dx, NULL, t->dxn, a->x, Lw->attn_norm, a->rstd1, N, C, c->norm_plus_one);
    }
}

static mq_fq_shape slice_shape(const mq_qat *t, int bits) {
    return (mq_fq_shape){.group = t->o.group, .grid_bits = t->grid, .bits = bits};
}

/* The N-bit codes and grids of every scoped weight, once per loss: the
 * latent weights do not change between the slices. */
static void fake_codes_all(mq_qat *t) {
    for (int i = 0; i < t->n_lin; i++) {
        const qlin *q = &t->lin[i];
        mq_fq_shape s = slice_shape(t, t->grid);
        s.rows = q->rows, s.cols = q->cols;
        fakequant_codes(t->codes + q->wq_off, t->groups + q->g_off, t->params + q->w_off, t->params + q->u_off,
                        t->params + q->l_off, &s);
    }
}

/* Every scoped weight at slice `bits` from the codes (= fakequant_fwd). */
static void fake_quantize_all(mq_qat *t, int bits) {
    for (int i = 0; i < t->n_lin; i++) {
        const qlin *q = &t->lin[i];
        mq_fq_shape s = slice_shape(t, bits);
        s.rows = q->rows, s.cols = q->cols;
        fakequant_slice_fwd(t->wq + q->wq_off, t->codes + q->wq_off, t->groups + q->g_off, &s);
    }
}

mq_status mq_qat_loss(mq_qat *t, const int32_t *tokens, bool grads, float scale, double *loss, double *per_slice) {
    const mq_qat_opts *o = &t->o;
    int N = t->N, V = t->V;
    for (int i = 0; i < N; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return mq_fail(MQ_ERR_ARG, "qat: token id %d outside the vocabulary", tokens[i]);
    /* a non-finite latent weight would be hidden by the fake quantizer's clamps: check first */
    for (int i = 0; i < t->n_t; i++) {
        int64_t bad = find_nonfinite_par(t->params + t->td[i].off, t->td[i].size);
        if (bad >= 0)
            return mq_fail(MQ_ERR_NUMERIC, "qat: non-finite parameter in %s (layer %d, element %lld)",
                           t->td[i].name_, t->td[i].layer, (long long)bad);
    }
    mq_status st = forward(t, tokens, false, t->logp_t, 0);
    if (st) return st;
    if (!o->no_quant) fake_codes_all(t);
    double total = 0;
    for (int j = 0; j < o->n_train; j++) {
        int k = t->order[j], bits = o->train_bits[k];
        bool needed = o->lambda[k] > 0 || t->logp_src[k];
        for (int c = 0; c < o->n_co; c++) needed |= o->co_to[c] == bits && o->co_weight[c] > 0;
        if (per_slice) per_slice[k] = 0;
        if (!needed) continue;
        if (!o->no_quant) fake_quantize_all(t, bits);
        st = forward(t, tokens, true, t->logp, bits);
        if (st) return st;
        double kl = mq_kl_fwd(t->logp_t, t->logp, N, V);
        if (per_slice) per_slice[k] = kl;
        total += o->lambda[k] * kl;
        if (grads) {
            memset(t->dlogits, 0, (size_t)N * V * sizeof(float));
            mq_kl_bwd(t->dlogits, t->logp_t, t->logp, N, V, o->lambda[k] * scale);
        }
        for (int c = 0; c < o->n_co; c++) {
            if (o->co_to[c] != bits) continue;
            const float *src = t->logp_src[width_index(o, o->co_from[c])];
            total += o->co_weight[c] * mq_kl_fwd(src, t->logp, N, V);
            if (grads) mq_kl_bwd(t->dlogits, src, t->logp, N, V, o->co_weight[c] * scale);
        }
        if (t->logp_src[k]) memcpy(t->logp_src[k], t->logp, (size_t)N * V * sizeof(float));
        if (grads) {
            mq_fq_shape s = slice_shape(t, bits);
            backward(t, &s);
        }
    }
    if (!isfinite(total)) return mq_fail(MQ_ERR_NUMERIC, "qat: the loss is not finite (%g)", total);
    *loss = total;
    return MQ_OK;
}

/* ----------------------------------------------------------- optimizer */

mq_status mq_qat_apply(mq_qat *t, double *gnorm) {
    for (int i = 0; i < t->n_t; i++) {
        const tdesc *d = &t->td[i];
        int64_t bad = find_nonfinite_par(t->grads + d->off, d->size);
        if (bad >= 0)
            return mq_fail(MQ_ERR_NUMERIC, "qat: non-finite gradient in %s (layer %d, element %lld) at step %lld",
                           d->name_, d->layer, (long long)bad, (long long)t->step);
    }
    double norm = mq_grad_norm(t->grads, t->n_params);
    if (gnorm) *gnorm = norm;
    float k = mq_clip_factor(norm, t->o.clip_norm);
    float lr = mq_lr_at(t->step, t->o.warmup, t->total, t->o.lr, t->o.min_lr_frac);
    float lrc = mq_lr_at(t->step, t->o.warmup, t->total, t->o.lr_clip, t->o.min_lr_frac);
    if (k != 1.0f) scale_par(t->grads, t->n_params, k);
    t->adam.t = t->step + 1;
    for (int i = 0; i < t->n_t; i++) {
        const tdesc *d = &t->td[i];
        mq_adamw_cfg ac = {.lr = d->clip ? lrc : lr, .beta1 = ADAM_B1, .beta2 = ADAM_B2, .eps = ADAM_EPS,
                           .weight_decay = d->clip ? 0.0f : t->o.weight_decay};
        mq_adamw_update(&t->adam, d->off, d->size, t->params + d->off, t->grads + d->off, &ac);
    }
    t->step++;
    return MQ_OK;
}

/* ------------------------------------------------------ training state */

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

typedef struct {
    char magic[8];
    uint32_t version, fp_len;
    int64_t step, total;
    uint64_t n_params;
    double last_loss;
    char fp[1024];
} state_header;

static mq_status save_state(mq_qat *t) {
    state_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, STATE_MAGIC, 8);
    h.version = 1;
    h.fp_len = (uint32_t)strlen(t->fingerprint);
    h.step = t->step, h.total = t->total, h.n_params = t->n_params, h.last_loss = t->last_loss;
    memcpy(h.fp, t->fingerprint, h.fp_len);
    size_t nb = t->n_params * sizeof(float);
    uint64_t sum = fnv(0xcbf29ce484222325ULL, &h, sizeof h);
    sum = fnv(sum, t->params, nb);
    sum = fnv(sum, t->adam.m, nb);
    sum = fnv(sum, t->adam.v, nb);
    mq_atomic_file af;
    mq_status st = mq_atomic_open(&af, t->o.state_path);
    if (st) return st;
    if ((st = mq_atomic_write(&af, &h, sizeof h)) || (st = mq_atomic_write(&af, t->params, nb)) ||
        (st = mq_atomic_write(&af, t->adam.m, nb)) || (st = mq_atomic_write(&af, t->adam.v, nb)) ||
        (st = mq_atomic_write(&af, &sum, sizeof sum))) {
        mq_atomic_abort(&af);
        return st;
    }
    return mq_atomic_commit(&af);
}

/* The first "key=value" word where two fingerprints differ, for the message. */
static void first_difference(const char *a, const char *b, char *out, size_t cap) {
    while (*a && *b) {
        size_t la = strcspn(a, " "), lb = strcspn(b, " ");
        if (la != lb || memcmp(a, b, la)) {
            snprintf(out, cap, "'%.*s' in the state, '%.*s' now", (int)la, a, (int)lb, b);
            return;
        }
        a += la + (a[la] == ' '), b += lb + (b[lb] == ' ');
    }
    snprintf(out, cap, "'%.200s' vs '%.200s'", a, b);
}

static mq_status load_state(mq_qat *t) {
    const char *path = t->o.state_path;
    mq_map mp;
    mq_status st = mq_map_file(path, &mp);
    if (st) {
        char why[400];
        snprintf(why, sizeof why, "%s", mq_last_error());
        return mq_fail(st, "qat: --resume: cannot read the training state (%s)", why);
    }
    size_t nb = t->n_params * sizeof(float);
    state_header h;
    st = MQ_OK;
    if (mp.size < sizeof h || memcmp(mp.data, STATE_MAGIC, 8)) {
        st = mq_fail(MQ_ERR_FORMAT, "%s: not a matquant QAT training state", path);
        goto done;
    }
    memcpy(&h, mp.data, sizeof h);
    if (h.version != 1 || h.fp_len >= sizeof h.fp) {
        st = mq_fail(MQ_ERR_FORMAT, "%s: unsupported training-state version %u", path, h.version);
        goto done;
    }
    h.fp[h.fp_len] = 0;
    if (strcmp(h.fp, t->fingerprint)) {
        char diff[600];
        first_difference(h.fp, t->fingerprint, diff, sizeof diff);
        st = mq_fail(MQ_ERR_ARG, "%s: the training state was made with other options: %s", path, diff);
        goto done;
    }
    if (h.n_params != t->n_params || mp.size != sizeof h + 3 * nb + sizeof(uint64_t) || h.step < 0 ||
        h.step > t->total || h.total != t->total) {
        st = mq_fail(MQ_ERR_FORMAT, "%s: truncated or inconsistent training state (%zu bytes)", path, mp.size);
        goto done;
    }
    const uint8_t *p = mp.data + sizeof h;
    uint64_t sum = fnv(0xcbf29ce484222325ULL, mp.data, sizeof h + 3 * nb), want;
    memcpy(&want, p + 3 * nb, sizeof want);
    if (sum != want) {
        st = mq_fail(MQ_ERR_FORMAT, "%s: training-state checksum mismatch (corrupt file)", path);
        goto done;
    }
    memcpy(t->params, p, nb);
    memcpy(t->adam.m, p + nb, nb);
    memcpy(t->adam.v, p + 2 * nb, nb);
    t->step = h.step;
    t->last_loss = h.last_loss;
done:
    mq_unmap(&mp);
    return st;
}

/* -------------------------------------------------------------- training */

static void say(const mq_qat *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const mq_qat *t, const char *fmt, ...) {
    if (!t->o.progress) return;
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    t->o.progress(t->o.user, line);
}

mq_status mq_qat_train(mq_qat *t, bool *done) {
    const mq_qat_opts *o = &t->o;
    *done = false;
    mq_status st;
    if (!t->data.tokens) return mq_fail(MQ_ERR_ARG, "qat: no training data (--data FILE)");
    if (o->resume) {
        if ((st = load_state(t))) return st;
        say(t, "resumed %s at step %lld/%lld", o->state_path, (long long)t->step, (long long)t->total);
    }
    say(t, "qat: %lld steps of %d x %d tokens (x %d accumulated), %zu trained parameters in %d tensors",
        (long long)t->total, t->B, t->T, o->accum, t->n_params, t->n_t);
    int log_every = o->log_every > 0 ? o->log_every : 10;
    int64_t ran = 0;
    double t0 = mq_now_ms(), tw = t0;
    int64_t tok_window = 0;
    while (t->step < t->total) {
        if (o->stop_after > 0 && ran >= o->stop_after) return MQ_OK;
        mq_qat_zero_grads(t);
        double loss = 0, slice[8] = {0}, ps[8];
        for (int mi = 0; mi < o->accum; mi++) {
            double l;
            if ((st = mq_qat_loss(t, mq_qat_batch(t, t->step, mi), true, 1.0f / (float)o->accum, &l, ps))) {
                mq_error_prefix("step %lld", (long long)t->step);
                return st;
            }
            loss += l / o->accum;
            for (int k = 0; k < o->n_train; k++) slice[k] += ps[k] / o->accum;
        }
        double gn;
        float lr = mq_lr_at(t->step, o->warmup, t->total, o->lr, o->min_lr_frac);
        if ((st = mq_qat_apply(t, &gn))) return st;
        t->last_loss = loss;
        memcpy(t->last_slice, slice, sizeof slice);
        ran++;
        tok_window += (int64_t)t->N * o->accum;
        if (t->step % log_every == 0 || t->step == t->total || t->step == 1) {
            char sl[256];
            size_t n = 0;
            for (int k = 0; k < o->n_train; k++)
                n += (size_t)snprintf(sl + n, n < sizeof sl ? sizeof sl - n : 0, "%skl%d %.5f", k ? ", " : "",
                                      o->train_bits[k], slice[k]);
            double now = mq_now_ms();
            say(t, "step %lld/%lld loss %.6f (%s) lr %.3g gnorm %.3g, %.1f tok/s", (long long)t->step,
                (long long)t->total, loss, sl, lr, gn, tok_window / ((now - tw) / 1e3));
            tw = now;
            tok_window = 0;
        }
        if (o->state_path && ((o->save_every > 0 && t->step % o->save_every == 0) || t->step == t->total)) {
            if ((st = save_state(t))) {
                mq_error_prefix("qat: saving the training state");
                return st;
            }
        }
    }
    say(t, "trained %lld steps (%lld tokens per step) in %.1fs; final loss %.9g", (long long)ran,
        (long long)t->N * o->accum, (mq_now_ms() - t0) / 1e3, t->last_loss);
    *done = true;
    return MQ_OK;
}

/* ---------------------------------------------------------------- fold */

mq_status mq_qat_finish(mq_qat *t, mq_model *m, mq_qlinear **out, int *nout) {
    *out = NULL;
    *nout = 0;
    MQ_ASSERT(m == t->m);
    int widest = 0;
    for (int i = 0; i < t->o.n_train; i++) widest = t->o.train_bits[i] > widest ? t->o.train_bits[i] : widest;
    mq_qlinear *q = mq_calloc((size_t)t->n_lin, sizeof *q);
    for (int i = 0; i < t->n_lin; i++) {
        const qlin *L = &t->lin[i];
        int group = t->o.group > 0 ? t->o.group : L->cols;
        size_t ng = (size_t)L->rows * L->G;
        q[i] = (mq_qlinear){.layer = L->layer, .kind = L->kind, .rows = L->rows, .cols = L->cols, .group = group};
        q[i].q = mq_malloc((size_t)L->rows * L->cols);
        q[i].scale = mq_malloc(ng * sizeof(float));
        q[i].zero = mq_malloc(ng);
        float *lo = mq_malloc(ng * sizeof(float)), *hi = mq_malloc(ng * sizeof(float));
        mq_fq_shape s = slice_shape(t, widest);
        s.rows = L->rows, s.cols = L->cols;
        const float *w = t->params + L->w_off;
        fakequant_ranges(lo, hi, w, t->params + L->u_off, t->params + L->l_off, &s);
        mq_status st = MQ_OK;
        if (t->grid == 8) {
            st = mq_ref_quantize_clip(w, L->rows, L->cols, t->o.group, lo, hi, q[i].q, q[i].scale, q[i].zero);
        } else {
            for (int r = 0; r < L->rows; r++)
                for (int g = 0; g < L->G; g++) {
                    size_t k = (size_t)r * L->G + g;
                    const float *wg = w + (size_t)r * L->cols + (size_t)g * group;
                    mq_ref_grid_bits(wg, group, &lo[k], &hi[k], t->grid, &q[i].scale[k], &q[i].zero[k]);
                    uint8_t *qc = q[i].q + (size_t)r * L->cols + (size_t)g * group;
                    for (int j = 0; j < group; j++) qc[j] = mq_ref_code_bits(wg[j], q[i].scale[k], q[i].zero[k], t->grid);
                }
        }
        free(lo);
        free(hi);
        if (st) {
            char nm[96];
            mq_linear_name(L->layer, L->kind, nm, sizeof nm);
            mq_error_prefix("qat: folding %s", nm);
            mq_qlinears_free(q, i + 1);
            return st;
        }
        int rows, cols;
        float *dst = mq_linear_weight(m, L->layer, L->kind, &rows, &cols);
        mq_ref_dequant(q[i].q, q[i].scale, q[i].zero, rows, cols, group, widest, false, dst);
    }
    *out = q;
    *nout = t->n_lin;
    return MQ_OK;
}

mq_status mq_qat_quantize(mq_model *m, const mq_qat_opts *o, mq_qlinear **out, int *n, bool *done) {
    *out = NULL;
    *n = 0;
    *done = false;
    mq_qat *t;
    mq_status st = mq_qat_new(m, o, &t);
    if (st) return st;
    st = mq_qat_train(t, done);
    if (st == MQ_OK && !*done && o->state_path) {
        /* stopped early: make sure the state of the last step is on disk */
        st = save_state(t);
        say(t, "stopped at step %lld/%lld as asked; state in %s (continue with --resume)", (long long)t->step,
            (long long)t->total, o->state_path);
    }
    if (st == MQ_OK && *done) {
        st = mq_qat_finish(t, m, out, n);
        if (st == MQ_OK && o->state_path) unlink(o->state_path);
    }
    mq_qat_free(t);
    return st;
}

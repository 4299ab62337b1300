/*
 * forward.c — the fp32 forward pass with a KV cache, for every family in
 * model.h. A call processes a batch of B consecutive tokens: projections are
 * (B, in) x (out, in)^T products through OpenBLAS, attention and the
 * element-wise ops run on OpenMP threads. All memory is planned in
 * mq_state_new; nothing is allocated per token.
 *
 * A served model's 16-bit linears, head and embedding table (quant/half.h)
 * and packed quantized linears (quant/kern.h) take the place of the fp32
 * matrices where the model has them.
 *
 * Not here: quantized kernels (src/quant) and backward passes (src/train).
 * References: transformers modeling_llama / modeling_gemma2 (op order, the
 * fp32 RoPE angle pos * inv_freq, soft-capping, sliding windows:
 * key j is visible from query p when p - W < j <= p).
 */
#include "nn/model.h"

#include "core/threads.h"
#include "core/vexp.h"
#include "nn/attn.h"

#include "quant/half.h"
#include "quant/kern.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#define ATT_TILE 64 /* queries per attention work item */

struct mq_state {
    int max_ctx, max_batch, nthreads;
    size_t kv_dim;
    float *k_cache;  /* (L, KV, max_ctx, D): each head's keys one contiguous stream */
    float *v_cache;  /* (L, KV, max_ctx, D) */
    float *x;        /* (B, C) residual stream */
    float *xb;       /* (B, C) normed input of a sub-block */
    float *xo;       /* (B, C) sub-block output */
    float *q;        /* (B, H*D) */
    float *k;        /* (B, KV*D) */
    float *v;        /* (B, KV*D) */
    float *att;      /* (B, H*D) attention output before o_proj */
    float *hb;       /* (B, F) gate */
    float *hb2;      /* (B, F) up */
    float *scores;   /* (nthreads, ATT_TILE, max_ctx) */
    float *rope_cs;  /* (max_ctx, D/2, 2) cos, sin of every position's RoPE angles */
    mq_kact *kact;   /* int8 activations of (B, max(C, H*D, F)) for packed linears */
    mq_half_scratch hscr; /* widened strips for 16-bit products with B > 1 (served models only) */
    mq_tap_fn tap;   /* activation observer (calibration) or NULL */
    void *tap_user;
};

const float *mq_state_residual(const mq_state *s) { return s->x; }

void mq_state_set_tap(mq_state *s, mq_tap_fn fn, void *user) {
    s->tap = fn;
    s->tap_user = user;
}

static inline void tap(mq_state *s, int layer, mq_tap_point at, const float *x, int B, int dim) {
    if (s->tap) s->tap(s->tap_user, layer, at, x, B, dim);
}

/* cos and sin of the RoPE angles p * inv_freq[i] of positions p = 0..n-1
 * into cs[(p * D/2 + i) * 2 + {0, 1}]: once per state, instead of a sincos
 * per layer, tensor and token. */
static void rope_table(float *cs, const float *inv_freq, int n, int D) {
    int half = D / 2;
    for (int p = 0; p < n; p++)
        for (int i = 0; i < half; i++) {
            float ang = (float)p * inv_freq[i];
            cs[((size_t)p * half + i) * 2] = cosf(ang);
            cs[((size_t)p * half + i) * 2 + 1] = sinf(ang);
        }
}

mq_state *mq_state_new(const mq_model *m, int max_ctx, int max_batch) {
    const mq_config *c = &m->cfg;
    if (max_ctx <= 0) max_ctx = c->max_seq;
    if (max_batch <= 0) max_batch = 1;
    if (max_batch > max_ctx) max_batch = max_ctx;
    mq_state *s = mq_calloc(1, sizeof *s);
    openblas_set_num_threads(1); /* the forward pass slices products over OpenMP threads itself */
    s->max_ctx = max_ctx;
    s->max_batch = max_batch;
    s->nthreads = omp_get_max_threads();
    size_t B = (size_t)max_batch, C = (size_t)c->dim, F = (size_t)c->hidden_dim;
    size_t QD = (size_t)c->n_heads * c->head_dim;
    s->kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    size_t cache = (size_t)c->n_layers * (size_t)max_ctx * s->kv_dim;
    s->k_cache = mq_aligned_alloc(cache * sizeof(float));
    s->v_cache = mq_aligned_alloc(cache * sizeof(float));
    s->x = mq_aligned_alloc(B * C * sizeof(float));
    s->xb = mq_aligned_alloc(B * C * sizeof(float));
    s->xo = mq_aligned_alloc(B * C * sizeof(float));
    s->q = mq_aligned_alloc(B * QD * sizeof(float));
    s->k = mq_aligned_alloc(B * s->kv_dim * sizeof(float));
    s->v = mq_aligned_alloc(B * s->kv_dim * sizeof(float));
    s->att = mq_aligned_alloc(B * QD * sizeof(float));
    s->hb = mq_aligned_alloc(B * F * sizeof(float));
    s->hb2 = mq_aligned_alloc(B * F * sizeof(float));
    s->scores = mq_aligned_alloc((size_t)s->nthreads * ATT_TILE * (size_t)max_ctx * sizeof(float));
    s->rope_cs = mq_aligned_alloc((size_t)max_ctx * (size_t)c->head_dim * sizeof(float));
    rope_table(s->rope_cs, m->inv_freq, max_ctx, c->head_dim);
    size_t kmax = C > QD ? C : QD;
    s->kact = mq_kact_new(max_batch, (int)(kmax > F ? kmax : F));
    if (m->n_half > 0 && max_batch > 1) mq_half_scratch_init(&s->hscr, s->nthreads, (int)(kmax > F ? kmax : F));
    return s;
}

void mq_state_free(mq_state *s) {
    if (!s) return;
    free(s->k_cache); free(s->v_cache); free(s->x); free(s->xb); free(s->xo);
    free(s->q); free(s->k); free(s->v); free(s->att); free(s->hb); free(s->hb2);
    free(s->scores); free(s->rope_cs);
    mq_kact_free(s->kact);
    mq_half_scratch_free(&s->hscr);
    free(s);
}

/* ================================================================= ops */

/* out(B, O) += bias(O) (nothing when bias is NULL) */
static void add_bias(float *out, const float *bias, int B, int O) {
    if (!bias) return;
    for (int b = 0; b < B; b++)
        for (int o = 0; o < O; o++) out[(size_t)b * O + o] += bias[o];
}

/* out(B, O) = inp(B, K) @ w(O, K)^T (+ bias(O)); with the packed form pk
 * (not NULL) through the integer kernels of quant/kern.h instead of w, else
 * with the 16-bit form h (not NULL) through quant/half.h.
 * One thread pool: OpenMP threads each multiply a slice of the output
 * features with single-threaded OpenBLAS (mq_set_threads keeps OpenBLAS at
 * one thread), so no second pool competes for the cores. */
static void matmul_fwd(mq_state *s, float *out, const float *inp, const float *w, const struct mq_packed *pk,
                       const mq_half *h, const float *bias, int B, int K, int O) {
    if (pk || h) {
        if (pk) {
            MQ_ASSERT(pk->rows == O && pk->cols == K);
            mq_kern_matmul(pk, inp, B, out, s->kact);
        } else {
            MQ_ASSERT(h->rows == O && h->cols == K);
            mq_half_matmul(h, inp, B, out, &s->hscr, NULL);
        }
        add_bias(out, bias, B, O);
        return;
    }
    MQ_ASSERT(w);
    int T = omp_get_max_threads();
    if ((size_t)O * K < ((size_t)1 << 16) || O < 64) T = 1;
#pragma omp parallel num_threads(T)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int o0, o1; /* slices of whole 16-row blocks */
        mq_thread_slice(O, 16, t, nt, &o0, &o1);
        if (o1 > o0) {
            if (B == 1)
                cblas_sgemv(CblasRowMajor, CblasNoTrans, o1 - o0, K, 1.0f, w + (size_t)o0 * K, K, inp, 1, 0.0f,
                            out + o0, 1);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, o1 - o0, K, 1.0f, inp, K,
                            w + (size_t)o0 * K, K, 0.0f, out + o0, O);
        }
    }
    add_bias(out, bias, B, O);
}

/* out(B, C) = inp * rsqrt(mean(inp^2) + eps) * (w or 1 + w) */
static void rmsnorm_fwd(float *out, const float *inp, const float *w, int B, int C, float eps,
                        bool plus_one) {
#pragma omp parallel for if (B > 4)
    for (int b = 0; b < B; b++) {
        const float *x = inp + (size_t)b * C;
        float *o = out + (size_t)b * C;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss) /* lane-wise partial sums: a serial sum was ~1% of a decode step */
        for (int i = 0; i < C; i++) ss += x[i] * x[i];
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        if (plus_one) {
#pragma omp simd
            for (int i = 0; i < C; i++) o[i] = x[i] * r * (1.0f + w[i]);
        } else {
#pragma omp simd
            for (int i = 0; i < C; i++) o[i] = x[i] * r * w[i];
        }
    }
}

/* Rotate each head of x (B rows of n_heads*D) by the angles cs of its
 * positions (rope_table's rows pos0..pos0+B-1), rotate-half pairing
 * (i, i + D/2). */
static void rope_fwd(float *x, const float *cs, int B, int n_heads, int D) {
    int half = D / 2;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)b * n_heads + h) * D;
            const float *t = cs + (size_t)b * half * 2;
            for (int i = 0; i < half; i++) {
                float a = v[i], c = v[i + half], co = t[2 * i], sn = t[2 * i + 1];
                v[i] = a * co - c * sn;
                v[i + half] = c * co + a * sn;
            }
        }
}

static inline float gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

#define GLU_PIECE 512 /* elements per exp call (a stack buffer) */

/* hb = act(hb) * hb2; SiLU's exp through core/vexp.h, a piece at a time */
static void glu_fwd(float *hb, const float *hb2, size_t n, mq_act act) {
    size_t pieces = (n + GLU_PIECE - 1) / GLU_PIECE;
#pragma omp parallel for if (n > 65536) /* a decode row (F ~ 6k) is cheaper than a fork-join */
    for (size_t k = 0; k < pieces; k++) {
        size_t i0 = k * GLU_PIECE, m = n - i0 < GLU_PIECE ? n - i0 : GLU_PIECE;
        float *g = hb + i0;
        const float *u = hb2 + i0;
        if (act != MQ_ACT_SILU) {
            for (size_t i = 0; i < m; i++) g[i] = gelu_tanh(g[i]) * u[i];
            continue;
        }
        float e[GLU_PIECE];
#pragma omp simd
        for (size_t i = 0; i < m; i++) e[i] = -g[i];
        mq_vexp(e, e, m);
#pragma omp simd
        for (size_t i = 0; i < m; i++) g[i] = g[i] / (1.0f + e[i]) * u[i];
    }
}

static void softcap_fwd(float *x, size_t n, float cap) {
    for (size_t i = 0; i < n; i++) x[i] = tanhf(x[i] / cap) * cap;
}

/* Mask, soft-cap and normalise one row of scores over keys jlo..jhi-1 for
 * the query at position p (visible: start <= j <= p). */
static void softmax_row(float *row, int jlo, int jhi, int start, int p, float softcap) {
    int nj = jhi - jlo;
    float mx = -INFINITY;
    for (int j = jlo; j < jhi; j++) {
        float d = row[j - jlo];
        if (j < start || j > p) {
            row[j - jlo] = -INFINITY;
            continue;
        }
        if (softcap > 0) d = tanhf(d / softcap) * softcap;
        row[j - jlo] = d;
        if (d > mx) mx = d;
    }
    float sum = 0.0f;
    for (int j = 0; j < nj; j++) {
        float e = row[j] == -INFINITY ? 0.0f : expf(row[j] - mx);
        row[j] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
    for (int j = 0; j < nj; j++) row[j] *= inv;
}

/* Causal attention of B queries at positions pos0.. over the layer's cache.
 * Work items are (head, tile of up to ATT_TILE queries); each computes
 * S = scale * Q_tile K^T and O_tile = softmax(S) V with OpenBLAS over the
 * keys the tile can see, masking per row (causality, sliding window). */
static void attention_fwd(mq_state *s, const mq_config *c, int layer, int B, int pos0) {
    int H = c->n_heads, D = c->head_dim, group = c->n_heads / c->n_kv_heads;
    size_t QD = (size_t)H * D, head_cache = (size_t)s->max_ctx * D;
    const float *kc = s->k_cache + (size_t)layer * c->n_kv_heads * head_cache;
    const float *vc = s->v_cache + (size_t)layer * c->n_kv_heads * head_cache;
    bool windowed = c->sliding_window > 0 && (!c->sliding_even_only || layer % 2 == 0);
    int W = c->sliding_window, tiles = (B + ATT_TILE - 1) / ATT_TILE;
    if (B == 1) { /* decode: one query per head, every visible key (nn/attn.h) */
        mq_attn_query_fn one = mq_attn_query();
        int p = pos0, j0 = windowed && p - W + 1 > 0 ? p - W + 1 : 0;
#pragma omp parallel for num_threads(s->nthreads) schedule(static)
        for (int h = 0; h < H; h++) {
            size_t koff = (size_t)(h / group) * head_cache;
            float *S = s->scores + (size_t)omp_get_thread_num() * ATT_TILE * s->max_ctx;
            one(s->q + (size_t)h * D, kc + koff, vc + koff, (size_t)D, D, c->query_scale, c->attn_softcap, j0, p + 1,
                S, s->att + (size_t)h * D);
        }
        return;
    }
#pragma omp parallel for collapse(2) num_threads(s->nthreads) schedule(dynamic, 1)
    for (int h = 0; h < H; h++) {
        for (int t = 0; t < tiles; t++) {
            int b0 = t * ATT_TILE, b1 = b0 + ATT_TILE < B ? b0 + ATT_TILE : B, nb = b1 - b0;
            int jlo = windowed && pos0 + b0 - W + 1 > 0 ? pos0 + b0 - W + 1 : 0, jhi = pos0 + b1;
            int nj = jhi - jlo;
            size_t koff = (size_t)(h / group) * head_cache;
            float *S = s->scores + (size_t)omp_get_thread_num() * ATT_TILE * s->max_ctx; /* (nb, nj) */
            const float *q = s->q + (size_t)b0 * QD + (size_t)h * D;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, nj, D, c->query_scale, q, (int)QD,
                        kc + koff + (size_t)jlo * D, D, 0.0f, S, nj);
            for (int i = 0; i < nb; i++) {
                int p = pos0 + b0 + i;
                int start = windowed && p - W + 1 > jlo ? p - W + 1 : jlo;
                softmax_row(S + (size_t)i * nj, jlo, jhi, start, p, c->attn_softcap);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, D, nj, 1.0f, S, nj,
                        vc + koff + (size_t)jlo * D, D, 0.0f, s->att + (size_t)b0 * QD + (size_t)h * D, (int)QD);
        }
    }
}

/* The B new keys and values (rows of KV*D) at positions pos0.. of layer l's cache. */
static void cache_store(mq_state *s, const mq_config *c, int l, int B, int pos0) {
    int KV = c->n_kv_heads, D = c->head_dim;
    size_t head_cache = (size_t)s->max_ctx * D, base = (size_t)l * KV * head_cache;
    for (int h = 0; h < KV; h++) {
        size_t off = base + (size_t)h * head_cache + (size_t)pos0 * D;
        for (int b = 0; b < B; b++) {
            memcpy(s->k_cache + off + (size_t)b * D, s->k + (size_t)b * s->kv_dim + (size_t)h * D, (size_t)D * sizeof(float));
            memcpy(s->v_cache + off + (size_t)b * D, s->v + (size_t)b * s->kv_dim + (size_t)h * D, (size_t)D * sizeof(float));
        }
    }
}

/* ============================================================ forward */

void mq_forward_block(const mq_model *m, mq_state *s, int l, float *x, int B, int pos0) {
    const mq_config *c = &m->cfg;
    const mq_layer *L = &m->layers[l];
    int C = c->dim, F = c->hidden_dim, D = c->head_dim;
    int QD = c->n_heads * D, KD = (int)s->kv_dim;
    MQ_ASSERT(B <= s->max_batch && pos0 + B <= s->max_ctx);
    /* attention sub-block */
    rmsnorm_fwd(s->xb, x, L->attn_norm, B, C, c->norm_eps, c->norm_plus_one);
    tap(s, l, MQ_TAP_ATTN_IN, s->xb, B, C);
    if (mq_kern_can_share(3, (const struct mq_packed *const *)L->packed)) {
        /* packed q/k/v: one quantization of xb, one parallel region */
        float *outs[3] = {s->q, s->k, s->v};
        mq_kern_matmul_shared(3, (const struct mq_packed *const *)L->packed, s->xb, B, outs, s->kact);
        add_bias(s->q, L->bq, B, QD);
        add_bias(s->k, L->bk, B, KD);
        add_bias(s->v, L->bv, B, KD);
    } else {
        matmul_fwd(s, s->q, s->xb, L->wq, L->packed[0], L->half[0], L->bq, B, C, QD);
        matmul_fwd(s, s->k, s->xb, L->wk, L->packed[1], L->half[1], L->bk, B, C, KD);
        matmul_fwd(s, s->v, s->xb, L->wv, L->packed[2], L->half[2], L->bv, B, C, KD);
    }
    const float *cs = s->rope_cs + (size_t)pos0 * D;
    rope_fwd(s->q, cs, B, c->n_heads, D);
    rope_fwd(s->k, cs, B, c->n_kv_heads, D);
    cache_store(s, c, l, B, pos0);
    attention_fwd(s, c, l, B, pos0);
    tap(s, l, MQ_TAP_ATTN_OUT, s->att, B, QD);
    matmul_fwd(s, s->xo, s->att, L->wo, L->packed[3], L->half[3], NULL, B, QD, C);
    if (L->post_attn_norm)
        rmsnorm_fwd(s->xo, s->xo, L->post_attn_norm, B, C, c->norm_eps, c->norm_plus_one);
    for (size_t i = 0; i < (size_t)B * C; i++) x[i] += s->xo[i];
    /* feed-forward sub-block */
    rmsnorm_fwd(s->xb, x, L->ffn_norm, B, C, c->norm_eps, c->norm_plus_one);
    tap(s, l, MQ_TAP_FFN_IN, s->xb, B, C);
    if (mq_kern_can_share(2, (const struct mq_packed *const *)L->packed + 4)) {
        float *outs[2] = {s->hb, s->hb2};
        mq_kern_matmul_shared(2, (const struct mq_packed *const *)L->packed + 4, s->xb, B, outs, s->kact);
    } else {
        matmul_fwd(s, s->hb, s->xb, L->w_gate, L->packed[4], L->half[4], NULL, B, C, F);
        matmul_fwd(s, s->hb2, s->xb, L->w_up, L->packed[5], L->half[5], NULL, B, C, F);
    }
    glu_fwd(s->hb, s->hb2, (size_t)B * F, c->act);
    tap(s, l, MQ_TAP_FFN_MID, s->hb, B, F);
    matmul_fwd(s, s->xo, s->hb, L->w_down, L->packed[6], L->half[6], NULL, B, F, C);
    if (L->post_ffn_norm)
        rmsnorm_fwd(s->xo, s->xo, L->post_ffn_norm, B, C, c->norm_eps, c->norm_plus_one);
    for (size_t i = 0; i < (size_t)B * C; i++) x[i] += s->xo[i];
}

void mq_embed(const mq_model *m, const int32_t *tokens, int B, float *x) {
    const mq_config *c = &m->cfg;
    int C = c->dim;
    float scale = sqrtf((float)C);
    for (int b = 0; b < B; b++) {
        if (m->tok_half) mq_half_row(m->tok_half, tokens[b], x + (size_t)b * C);
        else memcpy(x + (size_t)b * C, m->tok_emb + (size_t)tokens[b] * C, (size_t)C * sizeof(float));
        if (c->embed_scale)
            for (int i = 0; i < C; i++) x[(size_t)b * C + i] *= scale;
    }
}

void mq_logits(const mq_model *m, mq_state *s, const float *x, int R, float *logits) {
    const mq_config *c = &m->cfg;
    int C = c->dim;
    for (int r0 = 0; r0 < R; r0 += s->max_batch) {
        int n = R - r0 < s->max_batch ? R - r0 : s->max_batch;
        rmsnorm_fwd(s->xb, x + (size_t)r0 * C, m->final_norm, n, C, c->norm_eps, c->norm_plus_one);
        float *out = logits + (size_t)r0 * c->vocab_size;
        matmul_fwd(s, out, s->xb, m->lm_head, m->head_packed, m->head_half, NULL, n, C, c->vocab_size);
        if (c->final_softcap > 0) softcap_fwd(out, (size_t)n * c->vocab_size, c->final_softcap);
    }
}

static void forward_batch(const mq_model *m, mq_state *s, const int32_t *tokens, int B, int pos0,
                          float *logits, bool all_logits) {
    const mq_config *c = &m->cfg;
    mq_embed(m, tokens, B, s->x);
    for (int l = 0; l < c->n_layers; l++) mq_forward_block(m, s, l, s->x, B, pos0);
    if (!logits) return;
    int first = all_logits ? 0 : B - 1, R = all_logits ? B : 1;
    mq_logits(m, s, s->x + (size_t)first * c->dim, R, logits);
}

mq_status mq_forward(const mq_model *m, mq_state *s, const int32_t *tokens, int n, int pos,
                     float *logits, bool all_logits) {
    const mq_config *c = &m->cfg;
    if (n <= 0) return mq_fail(MQ_ERR_ARG, "forward: no tokens");
    if (pos < 0 || (int64_t)pos + n > s->max_ctx)
        return mq_fail(MQ_ERR_ARG, "forward: positions %d..%d exceed the context of %d tokens",
                       pos, pos + n - 1, s->max_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return mq_fail(MQ_ERR_ARG, "forward: token id %d at position %d is outside the "
                           "vocabulary (0..%d)", tokens[i], pos + i, c->vocab_size - 1);
    for (int done = 0; done < n;) {
        int B = n - done < s->max_batch ? n - done : s->max_batch;
        bool last = done + B == n;
        float *out = NULL;
        if (all_logits) out = logits + (size_t)done * c->vocab_size;
        else if (last) out = logits;
        forward_batch(m, s, tokens + done, B, pos + done, out, all_logits);
        done += B;
    }
    return MQ_OK;
}

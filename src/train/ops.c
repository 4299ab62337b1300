/*
 * ops.c — forward/backward pairs of the training ops (contracts in ops.h,
 * derivations in docs/derivations/). fp32 storage; reductions that feed a
 * gradient over many rows (dw of RMSNorm, the softmax row sums) stay in fp32
 * like PyTorch's CPU kernels, the MSE in double.
 *
 * Threads: one OpenMP pool. Matrix products are sliced over the threads,
 * each slice one single-threaded OpenBLAS sgemm (as nn/forward.c); every
 * slice writes a disjoint part of its output, so accumulation needs no
 * locks. Attention's backward runs one (sequence, KV head) per work item so
 * that the heads sharing a KV head (GQA) add into dk/dv from one thread.
 *
 * Not here: the KV-cache inference path (nn/forward.c), losses over the
 * vocabulary (train/ops_lm.c), optimizers (train/optim.c).
 */
#include "train/ops.h"

#include "core/threads.h"
#include "core/vexp.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* ================================================================ matmul */

/* Threads worth using for a product of m*n*k multiply-adds. */
static int threads_for(size_t m, size_t n, size_t k) {
    int T = omp_get_max_threads();
    return m * n * k < ((size_t)1 << 18) ? 1 : T;
}

void matmul_fwd(float *out, const float *inp, const float *w, const float *bias, int N, int K, int O) {
    int T = threads_for((size_t)N, (size_t)K, (size_t)O);
#pragma omp parallel num_threads(T)
    {
        int o0, o1;
        mq_thread_slice(O, 16, omp_get_thread_num(), omp_get_num_threads(), &o0, &o1);
        if (o1 > o0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, o1 - o0, K, 1.0f, inp, K, w + (size_t)o0 * K,
                        K, 0.0f, out + o0, O);
        if (bias && o1 > o0)
            for (int n = 0; n < N; n++)
                for (int o = o0; o < o1; o++) out[(size_t)n * O + o] += bias[o];
    }
}

void matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                int N, int K, int O) {
    int T = threads_for((size_t)N, (size_t)K, (size_t)O);
#pragma omp parallel num_threads(T)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        if (dinp) { /* rows of dinp: dinp[n0:n1] += dout[n0:n1] @ w */
            int n0, n1;
            mq_thread_slice(N, 4, t, nt, &n0, &n1);
            if (n1 > n0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n1 - n0, K, O, 1.0f, dout + (size_t)n0 * O,
                            O, w, K, 1.0f, dinp + (size_t)n0 * K, K);
        }
        int o0, o1;
        mq_thread_slice(O, 16, t, nt, &o0, &o1);
        if (dw && o1 > o0) /* rows of dw: dw[o0:o1] += dout[:, o0:o1]^T @ inp */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, o1 - o0, K, N, 1.0f, dout + o0, O, inp, K, 1.0f,
                        dw + (size_t)o0 * K, K);
        if (dbias)
            for (int o = o0; o < o1; o++) {
                float s = 0.0f;
                for (int n = 0; n < N; n++) s += dout[(size_t)n * O + o];
                dbias[o] += s;
            }
    }
}

/* =============================================================== rmsnorm */

void rmsnorm_fwd(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps,
                 bool plus_one) {
#pragma omp parallel for if (N > 8)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        float ss = 0.0f;
        for (int i = 0; i < C; i++) ss += x[i] * x[i];
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        rstd[n] = r;
        for (int i = 0; i < C; i++) o[i] = x[i] * r * (plus_one ? 1.0f + w[i] : w[i]);
    }
}

void rmsnorm_bwd(float *dinp, float *dw, const float *dout, const float *inp, const float *w, const float *rstd,
                 int N, int C, bool plus_one) {
    if (dinp) {
#pragma omp parallel for if (N > 8)
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
            float *dx = dinp + (size_t)n * C;
            float r = rstd[n], dot = 0.0f; /* sum_j dy_j g_j x_j */
            for (int i = 0; i < C; i++) dot += dy[i] * (plus_one ? 1.0f + w[i] : w[i]) * x[i];
            float k = r * r * r * dot / (float)C;
            for (int i = 0; i < C; i++) dx[i] += r * (plus_one ? 1.0f + w[i] : w[i]) * dy[i] - k * x[i];
        }
    }
    if (dw) {
        /* columns per thread: each dw[i] is summed over all rows by one thread */
#pragma omp parallel for if ((size_t)N * C > 65536)
        for (int i = 0; i < C; i++) {
            float s = 0.0f;
            for (int n = 0; n < N; n++) s += dout[(size_t)n * C + i] * inp[(size_t)n * C + i] * rstd[n];
            dw[i] += s;
        }
    }
}

/* ================================================================== rope */

/* y = R(dir * angle) x per head pair (i, i + D/2): dir = +1 is the forward
 * rotation, -1 its inverse (= transpose, the backward). accumulate adds into
 * y (gradients) instead of writing it; y may equal x only when writing. */
static void rope_rotate(float *y, const float *x, const float *inv_freq, int B, int T, int n_heads, int D,
                        float dir, bool accumulate) {
    int half = D / 2;
    size_t HD = (size_t)n_heads * D;
    /* positions outside, sequences inside: one cos/sin per (position, pair) for all B rows */
#pragma omp parallel for if ((size_t)B * T * HD > 65536)
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            float ang = (float)t * inv_freq[i];
            float cs = cosf(ang), sn = dir * sinf(ang);
            for (int b = 0; b < B; b++) {
                size_t row = ((size_t)b * T + t) * HD;
                for (int h = 0; h < n_heads; h++) {
                    const float *xh = x + row + (size_t)h * D;
                    float *yh = y + row + (size_t)h * D;
                    float a = xh[i], c = xh[i + half];
                    float ya = a * cs - c * sn, yc = c * cs + a * sn;
                    if (accumulate) {
                        yh[i] += ya;
                        yh[i + half] += yc;
                    } else {
                        yh[i] = ya;
                        yh[i + half] = yc;
                    }
                }
            }
        }
}

void rope_fwd(float *out, const float *inp, const float *inv_freq, int B, int T, int n_heads, int D) {
    rope_rotate(out, inp, inv_freq, B, T, n_heads, D, 1.0f, false);
}

void rope_bwd(float *dinp, const float *dout, const float *inv_freq, int B, int T, int n_heads, int D) {
    rope_rotate(dinp, dout, inv_freq, B, T, n_heads, D, -1.0f, true);
}

/* ============================================================= attention */

/* The first key query p sees: keys j with visible_from(p) <= j <= p are
 * visible (causal, and p - W < j with a sliding window W). */
static int visible_from(const mq_attn_cfg *a, int p) {
    return a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
}

void attention_fwd(float *out, float *att, const float *q, const float *k, const float *v, int B, int T,
                   const mq_attn_cfg *a) {
    int H = a->n_heads, KV = a->n_kv_heads, D = a->head_dim, grp = H / KV;
    MQ_ASSERT(H % KV == 0);
    size_t QD = (size_t)H * D, KD = (size_t)KV * D, TT = (size_t)T * T;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *qh = q + (size_t)b * T * QD + (size_t)h * D;
            const float *kg = k + (size_t)b * T * KD + (size_t)(h / grp) * D;
            const float *vg = v + (size_t)b * T * KD + (size_t)(h / grp) * D;
            float *P = att + ((size_t)b * H + h) * TT; /* (T, T) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, a->scale, qh, (int)QD, kg, (int)KD,
                        0.0f, P, T);
            for (int i = 0; i < T; i++) {
                /* the visible keys of query i are the range [j0, i]; the rest of the row is 0 */
                float *row = P + (size_t)i * T, mx = -INFINITY;
                int j0 = visible_from(a, i), m = i + 1 - j0;
                for (int j = j0; j <= i; j++) {
                    float s = row[j];
                    if (a->softcap > 0) s = tanhf(s / a->softcap) * a->softcap;
                    row[j] = s;
                    if (s > mx) mx = s;
                }
                for (int j = j0; j <= i; j++) row[j] -= mx;
                mq_vexp(row + j0, row + j0, (size_t)m);
                float sum = 0.0f;
                for (int j = j0; j <= i; j++) sum += row[j];
                float inv = 1.0f / sum;
                for (int j = 0; j < j0; j++) row[j] = 0.0f;
                for (int j = j0; j <= i; j++) row[j] *= inv;
                for (int j = i + 1; j < T; j++) row[j] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, 1.0f, P, T, vg, (int)KD, 0.0f,
                        out + (size_t)b * T * QD + (size_t)h * D, (int)QD);
        }
}

size_t attention_bwd_scratch(int T) {
    return (size_t)omp_get_max_threads() * 2 * (size_t)T * (size_t)T;
}

void attention_bwd(float *dq, float *dk, float *dv, float *scratch, const float *dout, const float *q,
                   const float *k, const float *v, const float *att, int B, int T, const mq_attn_cfg *a) {
    int H = a->n_heads, KV = a->n_kv_heads, D = a->head_dim, grp = H / KV;
    MQ_ASSERT(H % KV == 0);
    size_t QD = (size_t)H * D, KD = (size_t)KV * D, TT = (size_t)T * T;
    int nth = omp_get_max_threads();
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(nth)
    for (int b = 0; b < B; b++)
        for (int g = 0; g < KV; g++) {
            float *dS = scratch + (size_t)omp_get_thread_num() * 2 * TT; /* (T, T) */
            float *S = dS + TT;                                          /* (T, T) raw scores (soft-cap only) */
            const float *kg = k + (size_t)b * T * KD + (size_t)g * D;
            const float *vg = v + (size_t)b * T * KD + (size_t)g * D;
            float *dkg = dk + (size_t)b * T * KD + (size_t)g * D;
            float *dvg = dv + (size_t)b * T * KD + (size_t)g * D;
            for (int h = g * grp; h < (g + 1) * grp; h++) {
                const float *qh = q + (size_t)b * T * QD + (size_t)h * D;
                const float *doh = dout + (size_t)b * T * QD + (size_t)h * D;
                float *dqh = dq + (size_t)b * T * QD + (size_t)h * D;
                const float *P = att + ((size_t)b * H + h) * TT;
                /* dV += P^T dO;  dP = dO V^T */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, 1.0f, P, T, doh, (int)QD, 1.0f, dvg,
                            (int)KD);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, 1.0f, doh, (int)QD, vg, (int)KD, 0.0f,
                            dS, T);
                if (a->softcap > 0)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, a->scale, qh, (int)QD, kg,
                                (int)KD, 0.0f, S, T);
                /* softmax: dS = P * (dP - rowsum(P * dP)); soft-cap: * (1 - tanh^2) */
                for (int i = 0; i < T; i++) {
                    const float *p = P + (size_t)i * T;
                    float *ds = dS + (size_t)i * T, dot = 0.0f;
                    int j0 = visible_from(a, i);
                    for (int j = j0; j <= i; j++) dot += p[j] * ds[j]; /* p = 0 outside [j0, i] */
                    for (int j = 0; j < j0; j++) ds[j] = 0.0f;
                    for (int j = j0; j <= i; j++) {
                        float x = p[j] * (ds[j] - dot);
                        if (a->softcap > 0) {
                            float th = tanhf(S[(size_t)i * T + j] / a->softcap);
                            x *= 1.0f - th * th;
                        }
                        ds[j] = x;
                    }
                    for (int j = i + 1; j < T; j++) ds[j] = 0.0f;
                }
                /* dQ += scale dS K;  dK += scale dS^T Q */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, a->scale, dS, T, kg, (int)KD, 1.0f,
                            dqh, (int)QD);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, a->scale, dS, T, qh, (int)QD, 1.0f,
                            dkg, (int)KD);
            }
        }
}

/* ============================================================ gated FFN */

/* SiLU over blocks of SILU_BLOCK elements: exp(-gate) for a block by
 * mq_vexp into a stack buffer, then the products. */
#define SILU_BLOCK 512

void swiglu_fwd(float *out, const float *gate, const float *up, size_t n) {
    size_t nb = (n + SILU_BLOCK - 1) / SILU_BLOCK;
#pragma omp parallel for if (n > 16384)
    for (size_t b = 0; b < nb; b++) {
        size_t i0 = b * SILU_BLOCK, m = n - i0 < SILU_BLOCK ? n - i0 : SILU_BLOCK;
        float e[SILU_BLOCK];
        for (size_t j = 0; j < m; j++) e[j] = -gate[i0 + j];
        mq_vexp(e, e, m);
        for (size_t j = 0; j < m; j++) {
            float g = gate[i0 + j];
            out[i0 + j] = g / (1.0f + e[j]) * up[i0 + j];
        }
    }
}

void swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n) {
    size_t nb = (n + SILU_BLOCK - 1) / SILU_BLOCK;
#pragma omp parallel for if (n > 16384)
    for (size_t b = 0; b < nb; b++) {
        size_t i0 = b * SILU_BLOCK, m = n - i0 < SILU_BLOCK ? n - i0 : SILU_BLOCK;
        float e[SILU_BLOCK];
        for (size_t j = 0; j < m; j++) e[j] = -gate[i0 + j];
        mq_vexp(e, e, m);
        for (size_t j = 0; j < m; j++) {
            size_t i = i0 + j;
            float g = gate[i], sg = 1.0f / (1.0f + e[j]);
            dgate[i] += dout[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
            dup[i] += dout[i] * g * sg;
        }
    }
}

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

void geglu_fwd(float *out, const float *gate, const float *up, size_t n) {
#pragma omp parallel for if (n > 16384)
    for (size_t i = 0; i < n; i++) {
        float x = gate[i];
        out[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + GELU_C * x * x * x))) * up[i];
    }
}

void geglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n) {
#pragma omp parallel for if (n > 16384)
    for (size_t i = 0; i < n; i++) {
        float x = gate[i], th = tanhf(GELU_K * (x + GELU_C * x * x * x));
        float gelu = 0.5f * x * (1.0f + th);
        float dgelu = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * GELU_K * (1.0f + 3.0f * GELU_C * x * x);
        dgate[i] += dout[i] * up[i] * dgelu;
        dup[i] += dout[i] * gelu;
    }
}

/* ====================================================== fake quantizer */

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

static int group_of(const mq_fq_shape *s) { return s->group > 0 ? s->group : s->cols; }

/* nearbyintf in the default rounding mode (ties to even), inline: for
 * |x| < 2^22, adding and subtracting 1.5 * 2^23 leaves x rounded to an
 * integer by the fp32 addition itself (the sum has ulp 1); larger |x| (and
 * NaN) go to nearbyintf. Bit-identical to nearbyintf, including -0. */
static inline float round_even(float x) {
    if (fabsf(x) < 0x1p22f) {
        float r = (x + 0x1.8p23f) - 0x1.8p23f;
        return copysignf(r, x);
    }
    return nearbyintf(x);
}

/* The grid of group k (ops.h mq_fq_group): widened bounds, step a, zero z,
 * whether z's clamp is inactive, and the extreme elements. */
static void fq_grid_of(mq_fq_group *g, const float *wg, int n, float u, float l, int top) {
    g->mx = wg[0];
    g->mn = wg[0];
    g->imx = g->imn = 0;
    for (int j = 1; j < n; j++) {
        if (wg[j] > g->mx) g->mx = wg[j], g->imx = j;
        if (wg[j] < g->mn) g->mn = wg[j], g->imn = j;
    }
    g->su = sigmoidf(u);
    g->sl = sigmoidf(l);
    float hr = g->su * g->mx, lr = g->sl * g->mn;
    g->hi = hr > 0 ? hr : 0.0f;
    g->lo = lr < 0 ? lr : 0.0f;
    g->a = (g->hi - g->lo) / (float)top;
    g->z = 0.0f;
    g->pass_z = false;
    if (!(g->a > 0)) {
        g->a = 0.0f;
        return;
    }
    float zf = nearbyintf(-g->lo / g->a);
    g->pass_z = zf > 0 && zf < (float)top; /* strictly inside, as torch.clamp's gradient */
    g->z = zf < 0 ? 0.0f : zf > (float)top ? (float)top : zf;
}

void fakequant_ranges(float *lo, float *hi, const float *w, const float *u, const float *l, const mq_fq_shape *s) {
    int G = group_of(s), ng = s->cols / G, top = (1 << s->grid_bits) - 1;
    for (int r = 0; r < s->rows; r++)
        for (int k = 0; k < ng; k++) {
            mq_fq_group g;
            size_t ki = (size_t)r * ng + k;
            fq_grid_of(&g, w + (size_t)r * s->cols + (size_t)k * G, G, u[ki], l[ki], top);
            lo[ki] = g.lo;
            hi[ki] = g.hi;
        }
}

/* The grid's share of a group's gradient, given dA and dZ (the gradients
 * reaching the step a and zero z): through z = clamp(round(-lo / a)),
 * a = (hi - lo) / top, hi = max(sigmoid(u) mx, 0), lo = min(sigmoid(l) mn, 0)
 * into *du, *dl and the group's extreme weights dwg[imx], dwg[imn] (each
 * pointer may be NULL). */
static void grid_bwd(const mq_fq_group *g, float dA, float dZ, int top, float *dwg, float *du, float *dl) {
    float dhi = 0.0f, dlo = 0.0f;
    if (g->pass_z) {
        dlo -= dZ / g->a;
        dA += dZ * g->lo / (g->a * g->a);
    }
    dhi += dA / (float)top;
    dlo -= dA / (float)top;
    if (g->su * g->mx > 0) {
        if (du) *du += dhi * g->mx * g->su * (1.0f - g->su);
        if (dwg) dwg[g->imx] += dhi * g->su;
    }
    if (g->sl * g->mn < 0) {
        if (dl) *dl += dlo * g->mn * g->sl * (1.0f - g->sl);
        if (dwg) dwg[g->imn] += dlo * g->sl;
    }
}

/* A shape's slice constants (asserted valid): G columns per group, ng
 * groups per row, top = 2^N - 1 (the grid's last code), d = N - r, rtop =
 * 2^r - 1 and half = 2^(d-1), the round-half-up offset (0 when d = 0). */
typedef struct {
    int G, ng, top, d, rtop, half;
} fq_dims;
static fq_dims dims_of(const mq_fq_shape *s) {
    int G = group_of(s), N = s->grid_bits, d = N - s->bits;
    MQ_ASSERT(s->cols % G == 0 && s->bits >= 1 && s->bits <= N && N <= 8);
    return (fq_dims){G, s->cols / G, (1 << N) - 1, d, (1 << s->bits) - 1, d > 0 ? 1 << (d - 1) : 0};
}
/* Parent code q sliced to r bits and back in parent units (DESIGN §2:
 * min((q + half) >> d, rtop) << d); *kept: the slice did not clamp it. */
static inline int slice_code(int q, const fq_dims *c, bool *kept) {
    if (c->d == 0) {
        *kept = true;
        return q;
    }
    int t = (q + c->half) >> c->d;
    *kept = t < c->rtop;
    return (t < c->rtop ? t : c->rtop) << c->d;
}

void fakequant_fwd(float *wq, const float *w, const float *u, const float *l, const mq_fq_shape *s) {
    const fq_dims c = dims_of(s);
#pragma omp parallel for if ((size_t)s->rows * s->cols > 32768)
    for (int r = 0; r < s->rows; r++)
        for (int k = 0; k < c.ng; k++) {
            size_t ki = (size_t)r * c.ng + k, off = (size_t)r * s->cols + (size_t)k * c.G;
            mq_fq_group g;
            fq_grid_of(&g, w + off, c.G, u[ki], l[ki], c.top);
            for (int j = 0; j < c.G; j++) {
                if (g.a == 0) {
                    wq[off + j] = 0.0f;
                    continue;
                }
                float q = round_even(w[off + j] / g.a) + g.z;
                if (q != q) { /* a NaN weight stays NaN (never (int)NaN, which is undefined) */
                    wq[off + j] = q;
                    continue;
                }
                q = q < 0 ? 0.0f : q > (float)c.top ? (float)c.top : q;
                bool kept;
                wq[off + j] = g.a * ((float)slice_code((int)q, &c, &kept) - g.z);
            }
        }
}

void fakequant_bwd(float *dw, float *du, float *dl, const float *dwq, const float *w, const float *u,
                   const float *l, const mq_fq_shape *s) {
    const fq_dims c = dims_of(s);
#pragma omp parallel for if ((size_t)s->rows * s->cols > 32768)
    for (int r = 0; r < s->rows; r++)
        for (int k = 0; k < c.ng; k++) {
            size_t ki = (size_t)r * c.ng + k, off = (size_t)r * s->cols + (size_t)k * c.G;
            mq_fq_group g;
            fq_grid_of(&g, w + off, c.G, u[ki], l[ki], c.top);
            if (g.a == 0) continue; /* wq = 0 identically */
            float dA = 0.0f, dZ = 0.0f;
            for (int j = 0; j < c.G; j++) {
                float gr = dwq[off + j], x = w[off + j];
                float qp = round_even(x / g.a) + g.z;
                if (qp != qp) { /* NaN weight: the gradients become NaN too, so callers see it */
                    if (dw) dw[off + j] += qp;
                    dA += qp;
                    continue;
                }
                bool pass_q = qp > 0 && qp < (float)c.top;
                bool pass_s;
                int qs = slice_code((int)(qp < 0 ? 0.0f : qp > (float)c.top ? (float)c.top : qp), &c, &pass_s);
                /* wq = a (s - z) */
                dA += gr * ((float)qs - g.z);
                dZ -= gr * g.a;
                if (pass_s && pass_q) {
                    /* ds/dq = 1 (STE through the slice's round); dq/dw = 1/a, dq/da = -w/a^2,
                     * dq/dz = 1 (STE through round(w/a)); the a factors of dwq/ds cancel */
                    if (dw) dw[off + j] += gr;
                    dA -= gr * x / g.a;
                    dZ += gr * g.a;
                }
            }
            grid_bwd(&g, dA, dZ, c.top, dw ? dw + off : NULL, du ? du + ki : NULL, dl ? dl + ki : NULL);
        }
}

void fakequant_codes(uint8_t *q, mq_fq_group *g, const float *w, const float *u, const float *l,
                     const mq_fq_shape *s) {
    int G = group_of(s), ng = s->cols / G, top = (1 << s->grid_bits) - 1;
    MQ_ASSERT(s->cols % G == 0 && s->grid_bits >= 1 && s->grid_bits <= 8);
#pragma omp parallel for if ((size_t)s->rows * s->cols > 32768)
    for (int r = 0; r < s->rows; r++)
        for (int k = 0; k < ng; k++) {
            size_t ki = (size_t)r * ng + k, off = (size_t)r * s->cols + (size_t)k * G;
            const mq_fq_group *f = &g[ki];
            fq_grid_of(&g[ki], w + off, G, u[ki], l[ki], top);
            if (f->a == 0) {
                memset(q + off, 0, (size_t)G);
                continue;
            }
            for (int j = 0; j < G; j++) {
                float c = round_even(w[off + j] / f->a) + f->z;
                c = c < 0 ? 0.0f : c > (float)top ? (float)top : c; /* NaN fails both tests: code below */
                q[off + j] = c == c ? (uint8_t)c : 0;
            }
        }
}

void fakequant_slice_fwd(float *wq, const uint8_t *q, const mq_fq_group *g, const mq_fq_shape *s) {
    const fq_dims c = dims_of(s);
#pragma omp parallel for if ((size_t)s->rows * s->cols > 32768)
    for (int r = 0; r < s->rows; r++)
        for (int k = 0; k < c.ng; k++) {
            size_t ki = (size_t)r * c.ng + k, off = (size_t)r * s->cols + (size_t)k * c.G;
            float a = g[ki].a, z = g[ki].z;
            const uint8_t *qk = q + off;
            float *o = wq + off;
            if (a == 0) { /* as fakequant_fwd: +0 */
                for (int j = 0; j < c.G; j++) o[j] = 0.0f;
            } else if (c.d == 0) {
                for (int j = 0; j < c.G; j++) o[j] = a * ((float)qk[j] - z);
            } else { /* slice_code written out: without the flag this loop vectorizes */
                for (int j = 0; j < c.G; j++) {
                    int t = (qk[j] + c.half) >> c.d;
                    o[j] = a * ((float)((t < c.rtop ? t : c.rtop) << c.d) - z);
                }
            }
        }
}

void fakequant_slice_bwd(float *dw, float *du, float *dl, const float *dwq, const float *w, const uint8_t *q,
                         const mq_fq_group *g, const mq_fq_shape *s) {
    const fq_dims c = dims_of(s);
#pragma omp parallel for if ((size_t)s->rows * s->cols > 32768)
    for (int r = 0; r < s->rows; r++)
        for (int k = 0; k < c.ng; k++) {
            size_t ki = (size_t)r * c.ng + k, off = (size_t)r * s->cols + (size_t)k * c.G;
            const mq_fq_group *f = &g[ki];
            if (f->a == 0) continue; /* wq = 0 identically */
            /* wq = a (s - z): dA = sum gr (s - z) - sum_pass gr w / a, dZ = -a sum_blocked gr
             * (a passing element's dq/dz = 1 cancels its -a; see fakequant_bwd) */
            float sd = 0.0f, sw = 0.0f, sb = 0.0f;
            for (int j = 0; j < c.G; j++) {
                float gr = dwq[off + j];
                int qc = q[off + j];
                bool kept, pass = qc > 0 && qc < c.top;
                int qs = slice_code(qc, &c, &kept);
                pass = pass && kept;
                sd += gr * ((float)qs - f->z);
                if (pass) {
                    if (dw) dw[off + j] += gr;
                    sw += gr * w[off + j];
                } else {
                    sb += gr;
                }
            }
            grid_bwd(f, sd - sw / f->a, -f->a * sb, c.top, dw ? dw + off : NULL, du ? du + ki : NULL,
                     dl ? dl + ki : NULL);
        }
}

/* ============================================================ helpers */

void add_inplace(float *y, const float *x, size_t n) {
#pragma omp parallel for if (n > 65536)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

double mse_fwd_bwd(float *da, const float *a, const float *b, size_t n, float scale) {
    double s = 0.0;
#pragma omp parallel for reduction(+ : s) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - (double)b[i];
        s += e * e;
        if (da) da[i] += scale * 2.0f * (float)e / (float)n;
    }
    return s / (double)n;
}

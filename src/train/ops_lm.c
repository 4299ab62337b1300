/*
 * ops_lm.c — embedding, LM head, log-softmax, KL distillation and
 * cross-entropy forward/backward pairs, gradient norm and the LR schedule
 * (see ops_lm.h; derivations in docs/derivations/kl_head.md).
 *
 * Not here: anything inside the transformer blocks (ops.c).
 * Numerics: the log-sum-exp is max-shifted and summed in double; KL and
 * cross-entropy sums are double; every exponential is an fp32 mq_vexp
 * (core/vexp.h, within 1-2 ulp of expf) over chunks of a row, its result
 * widened to double where it feeds a double sum.
 */
#include "train/ops_lm.h"

#include "core/vexp.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* Elements of a row exponentiated at once (core/vexp.h) into a stack buffer. */
#define CHUNK 512

/* ------------------------------------------------------------ embedding */

void mq_embed_fwd(float *out, const int32_t *tokens, const float *emb, int N, int C, int V, float scale) {
    for (int n = 0; n < N; n++) {
        MQ_ASSERT(tokens[n] >= 0 && tokens[n] < V);
        const float *e = emb + (size_t)tokens[n] * C;
        float *o = out + (size_t)n * C;
        for (int i = 0; i < C; i++) o[i] = e[i] * scale;
    }
}

void mq_embed_bwd(float *demb, const float *dout, const int32_t *tokens, int N, int C, int V, float scale) {
    for (int n = 0; n < N; n++) {
        MQ_ASSERT(tokens[n] >= 0 && tokens[n] < V);
        float *d = demb + (size_t)tokens[n] * C;
        const float *g = dout + (size_t)n * C;
        for (int i = 0; i < C; i++) d[i] += scale * g[i];
    }
}

/* ----------------------------------------------------------------- head */

/* Output columns [v0, v1) of thread t of nt, in whole 16-column blocks. */
static void split_cols(int V, int t, int nt, int *v0, int *v1) {
    int blocks = (V + 15) / 16;
    *v0 = (int)((int64_t)blocks * t / nt) * 16;
    *v1 = (int)((int64_t)blocks * (t + 1) / nt) * 16;
    if (*v1 > V) *v1 = V;
    if (*v0 > V) *v0 = V;
}

static int head_threads(int N, int C, int V) {
    return (size_t)N * C * V < ((size_t)1 << 18) ? 1 : omp_get_max_threads();
}

void mq_head_fwd(float *logits, const float *x, const float *w, int N, int C, int V) {
#pragma omp parallel num_threads(head_threads(N, C, V))
    {
        int v0, v1;
        split_cols(V, omp_get_thread_num(), omp_get_num_threads(), &v0, &v1);
        if (v1 > v0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, v1 - v0, C, 1.0f, x, C, w + (size_t)v0 * C, C,
                        0.0f, logits + v0, V);
    }
}

void mq_head_bwd(float *dx, float *dw, const float *dlogits, const float *x, const float *w, int N, int C,
                 int V) {
    int T = head_threads(N, C, V);
    /* dx: rows split over threads (each writes its own rows) */
#pragma omp parallel num_threads(T)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int n0 = (int)((int64_t)N * t / nt), n1 = (int)((int64_t)N * (t + 1) / nt);
        if (n1 > n0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n1 - n0, C, V, 1.0f, dlogits + (size_t)n0 * V,
                        V, w, C, 1.0f, dx + (size_t)n0 * C, C);
        if (dw) {
            /* dw rows [v0, v1) = dlogits[:, v0:v1]^T @ x */
            int v0, v1;
            split_cols(V, t, nt, &v0, &v1);
            if (v1 > v0)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, v1 - v0, C, N, 1.0f, dlogits + v0, V, x, C,
                            1.0f, dw + (size_t)v0 * C, C);
        }
    }
}

/* ---------------------------------------------------------- log-softmax */

void mq_log_softmax_fwd(float *logp, const float *logits, int N, int V) {
#pragma omp parallel for if ((size_t)N * V > 65536)
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *o = logp + (size_t)n * V;
        float mx = -INFINITY, e[CHUNK];
        for (int v = 0; v < V; v++) mx = x[v] > mx ? x[v] : mx;
        double s = 0.0;
        for (int v0 = 0; v0 < V; v0 += CHUNK) {
            int m = V - v0 < CHUNK ? V - v0 : CHUNK;
            for (int j = 0; j < m; j++) e[j] = x[v0 + j] - mx;
            mq_vexp(e, e, (size_t)m);
            for (int j = 0; j < m; j++) s += (double)e[j];
        }
        double lse = (double)mx + log(s);
        for (int v = 0; v < V; v++) o[v] = (float)((double)x[v] - lse);
    }
}

/* ------------------------------------------------------------------- KL */

double mq_kl_fwd(const float *logp_t, const float *logp_s, int N, int V) {
    double total = 0.0;
#pragma omp parallel for reduction(+ : total) if ((size_t)N * V > 65536)
    for (int n = 0; n < N; n++) {
        const float *t = logp_t + (size_t)n * V, *s = logp_s + (size_t)n * V;
        double row = 0.0;
        float pt[CHUNK];
        for (int v0 = 0; v0 < V; v0 += CHUNK) {
            int m = V - v0 < CHUNK ? V - v0 : CHUNK;
            mq_vexp(pt, t + v0, (size_t)m);
            for (int j = 0; j < m; j++)
                if (pt[j] > 0.0f) row += (double)pt[j] * ((double)t[v0 + j] - (double)s[v0 + j]);
        }
        total += row;
    }
    return N > 0 ? total / N : 0.0;
}

void mq_kl_bwd(float *dlogits, const float *logp_t, const float *logp_s, int N, int V, float scale) {
    if (N <= 0) return;
    float k = scale / (float)N;
#pragma omp parallel for if ((size_t)N * V > 65536)
    for (int n = 0; n < N; n++) {
        const float *t = logp_t + (size_t)n * V, *s = logp_s + (size_t)n * V;
        float *d = dlogits + (size_t)n * V, ps[CHUNK], pt[CHUNK];
        for (int v0 = 0; v0 < V; v0 += CHUNK) {
            int m = V - v0 < CHUNK ? V - v0 : CHUNK;
            mq_vexp(ps, s + v0, (size_t)m);
            mq_vexp(pt, t + v0, (size_t)m);
            for (int j = 0; j < m; j++) d[v0 + j] += k * (ps[j] - pt[j]);
        }
    }
}

/* -------------------------------------------------------- cross-entropy */

static int count_targets(const int32_t *targets, int N) {
    int c = 0;
    for (int n = 0; n < N; n++) c += targets[n] >= 0;
    return c;
}

double mq_xent_fwd(const float *logp, const int32_t *targets, int N, int V) {
    double total = 0.0;
    int cnt = 0;
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        MQ_ASSERT(targets[n] < V);
        total -= (double)logp[(size_t)n * V + targets[n]];
        cnt++;
    }
    return cnt ? total / cnt : 0.0;
}

void mq_xent_bwd(float *dlogits, const float *logp, const int32_t *targets, int N, int V, float scale) {
    int cnt = count_targets(targets, N);
    if (!cnt) return;
    float k = scale / (float)cnt;
#pragma omp parallel for if ((size_t)N * V > 65536)
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        const float *s = logp + (size_t)n * V;
        float *d = dlogits + (size_t)n * V, ps[CHUNK];
        for (int v0 = 0; v0 < V; v0 += CHUNK) {
            int m = V - v0 < CHUNK ? V - v0 : CHUNK;
            mq_vexp(ps, s + v0, (size_t)m);
            for (int j = 0; j < m; j++) d[v0 + j] += k * ps[j];
        }
        d[targets[n]] -= k;
    }
}

/* ------------------------------------------------------ step utilities */

/* Pieces of a gradient summed separately (fixed, not per thread, so the sum
 * order and the result do not depend on the thread count). */
#define NORM_PIECES 64

double mq_grad_norm(const float *g, size_t n) {
    /* each piece a fixed-order double sum in 4 lanes; the pieces added in order */
    double part[NORM_PIECES];
#pragma omp parallel for if (n > ((size_t)1 << 20))
    for (int p = 0; p < NORM_PIECES; p++) {
        size_t i = n / NORM_PIECES * (size_t)p, end = p + 1 < NORM_PIECES ? n / NORM_PIECES * (size_t)(p + 1) : n;
        double a[4] = {0, 0, 0, 0};
        for (; i + 4 <= end; i += 4)
            for (int k = 0; k < 4; k++) a[k] += (double)g[i + k] * (double)g[i + k];
        for (; i < end; i++) a[0] += (double)g[i] * (double)g[i];
        part[p] = (a[0] + a[1]) + (a[2] + a[3]);
    }
    double s = 0.0;
    for (int p = 0; p < NORM_PIECES; p++) s += part[p];
    return sqrt(s);
}

float mq_clip_factor(double norm, float max_norm) {
    if (!(max_norm > 0) || !(norm > 0) || norm <= max_norm) return 1.0f;
    return (float)(max_norm / norm);
}

float mq_lr_at(int64_t step, int64_t warmup, int64_t total, float lr, float min_frac) {
    if (step < warmup) return lr * (float)(step + 1) / (float)warmup;
    int64_t span = total - warmup - 1;
    if (span <= 0) return lr;
    double p = (double)(step - warmup) / (double)span;
    if (p > 1) p = 1;
    double lo = (double)lr * min_frac;
    return (float)(lo + ((double)lr - lo) * 0.5 * (1.0 + cos(M_PI * p)));
}

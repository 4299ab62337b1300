/*
 * attn.c — the scalar reference of attn.h and the run-time choice of variant.
 * Not here: the AVX-512 variant (attn_avx512.c, the only file built with
 * AVX-512 flags for it).
 */
#include "nn/attn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void mq_attn_query_ref(const float *q, const float *kc, const float *vc, size_t ld, int D, float scale,
                       float softcap, int j0, int j1, float *scores, float *out) {
    int nj = j1 - j0;
    float mx = -INFINITY;
    for (int j = 0; j < nj; j++) {
        const float *k = kc + (size_t)(j0 + j) * ld;
        float dot = 0.0f;
        for (int d = 0; d < D; d++) dot += q[d] * k[d];
        float s = scale * dot;
        if (softcap > 0) s = tanhf(s / softcap) * softcap;
        scores[j] = s;
        if (s > mx) mx = s;
    }
    float sum = 0.0f;
    for (int j = 0; j < nj; j++) {
        scores[j] = expf(scores[j] - mx);
        sum += scores[j];
    }
    float inv = 1.0f / sum;
    for (int d = 0; d < D; d++) out[d] = 0.0f;
    for (int j = 0; j < nj; j++) {
        const float *v = vc + (size_t)(j0 + j) * ld;
        float p = scores[j] * inv;
        for (int d = 0; d < D; d++) out[d] += p * v[d];
    }
}

static int pick(void) {
#if defined(__x86_64__) || defined(__i386__)
    const char *e = getenv("MQ_KERNELS");
    if (e && !strcmp(e, "scalar")) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
    return 0;
#endif
}

mq_attn_query_fn mq_attn_query(void) {
    static int choice = -1; /* every thread picks the same value */
    int c = __atomic_load_n(&choice, __ATOMIC_RELAXED);
    if (c < 0) {
        c = pick();
        __atomic_store_n(&choice, c, __ATOMIC_RELAXED);
    }
    return c == 1 ? mq_attn_query_avx512 : mq_attn_query_ref;
}

/*
 * attn.c — the scalar reference of attn.h and the run-time choice of variant.
 * Not here: the SIMD variants (attn_avx512.c, attn_avx2.c, built with their
 * ISA's flags).
 */
#include "nn/attn.h"

#include "core/vexp.h"
#include "quant/kern.h"

#include <math.h>

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

/* The AVX-512 variant runs exactly where core/vexp's AVX-512 path does
 * (AVX-512F present, MQ_KERNELS neither "scalar" nor "avx2"): one decision
 * for both; else
 * the AVX2 one where the CPU runs the AVX2 kernels and the integer kernels'
 * choice (made once per process, quant/kern.h) is not the scalar one. */
mq_attn_query_fn mq_attn_query(void) {
    if (mq_vexp_level() == MQ_VEXP_AVX512) return mq_attn_query_avx512;
    if (mq_kern_active() != &mq_kern_scalar_ops && mq_kern_find("avx2")) return mq_attn_query_avx2;
    return mq_attn_query_ref;
}

/*
 * attn_avx512.c — attn.h's one-query attention with AVX-512F (this file is
 * built with the AVX-512 flags; nothing calls it unless attn.c found the
 * CPU has them).
 *
 * Layout: a head's cache rows k_j, v_j are D contiguous floats, ld apart.
 * Scores: per key, the D products in 16-lane fp32 partial sums (a masked
 * load for D % 16), reduced once; exp over all of them at once (core/vexp);
 * output: per 16 columns of the head, one register accumulates p_j v_j over
 * every key (up to 4 such registers kept live together, D <= 64 per pass).
 * Not here: masking, batches (attn.h).
 */
#include "nn/attn.h"

#include "core/vexp.h"

#include <immintrin.h>
#include <math.h>

void mq_attn_query_avx512(const float *q, const float *kc, const float *vc, size_t ld, int D, float scale,
                          float softcap, int j0, int j1, float *scores, float *out) {
    int nj = j1 - j0, nv = (D + 15) / 16;
    __mmask16 last = D % 16 ? (__mmask16)((1u << (D % 16)) - 1) : (__mmask16)0xFFFF;
    float mx = -INFINITY;
    for (int j = 0; j < nj; j++) {
        const float *k = kc + (size_t)(j0 + j) * ld;
        __m512 acc = _mm512_setzero_ps();
        for (int c = 0; c < nv; c++) {
            __mmask16 m = c == nv - 1 ? last : (__mmask16)0xFFFF;
            acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + 16 * c), _mm512_maskz_loadu_ps(m, k + 16 * c), acc);
        }
        float s = scale * _mm512_reduce_add_ps(acc);
        if (softcap > 0) s = tanhf(s / softcap) * softcap;
        scores[j] = s;
        if (s > mx) mx = s;
    }
    __m512 vmx = _mm512_set1_ps(mx);
    int j = 0;
    for (; j + 16 <= nj; j += 16) _mm512_storeu_ps(scores + j, _mm512_sub_ps(_mm512_loadu_ps(scores + j), vmx));
    for (; j < nj; j++) scores[j] -= mx;
    mq_vexp(scores, scores, (size_t)nj);
    __m512 vs = _mm512_setzero_ps();
    for (j = 0; j + 16 <= nj; j += 16) vs = _mm512_add_ps(vs, _mm512_loadu_ps(scores + j));
    float sum = _mm512_reduce_add_ps(vs);
    for (; j < nj; j++) sum += scores[j];
    __m512 inv = _mm512_set1_ps(1.0f / sum);
    for (int c0 = 0; c0 < nv; c0 += 4) { /* up to 4 output registers per pass over the values */
        int n = nv - c0 < 4 ? nv - c0 : 4;
        __m512 o[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (j = 0; j < nj; j++) {
            const float *v = vc + (size_t)(j0 + j) * ld + 16 * c0;
            __m512 p = _mm512_set1_ps(scores[j]);
            for (int c = 0; c < n; c++) {
                __mmask16 m = c0 + c == nv - 1 ? last : (__mmask16)0xFFFF;
                o[c] = _mm512_fmadd_ps(p, _mm512_maskz_loadu_ps(m, v + 16 * c), o[c]);
            }
        }
        for (int c = 0; c < n; c++) {
            __mmask16 m = c0 + c == nv - 1 ? last : (__mmask16)0xFFFF;
            _mm512_mask_storeu_ps(out + 16 * (c0 + c), m, _mm512_mul_ps(o[c], inv));
        }
    }
}

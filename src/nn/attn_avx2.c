/*
 * attn_avx2.c — attn.h's one-query attention with AVX2 + FMA, for CPUs
 * without AVX-512 (this file is built with -mavx2 -mfma; nothing calls it
 * unless attn.c found the CPU has them). The same pass as attn_avx512.c in
 * 8-lane registers:
 * scores: per key, the D products in 8-lane fp32 partial sums (a masked
 * load for D % 8); per 8 keys one transposed reduction of the 8 partial
 * vectors (three rounds of hadd and a lane swap); exp through core/vexp
 * (libm's expf without AVX-512);
 * output: per 8 columns of the head, one register accumulates p_j v_j over
 * every key (up to 8 such registers live together, D <= 64 per pass).
 * Without it a decode on AVX2 ran the scalar reference, whose serial
 * dot-product chains took ~20% of an int2 step on the 1.1B shape
 * (docs/results.md §12).
 * Not here: masking, batches (attn.h).
 */
#include "nn/attn.h"

#include "core/vexp.h"

#include <immintrin.h>
#include <math.h>

/* The lanes of chunk c of nv: all, but for the last `last` (a mask vector). */
static inline __m256i chunk_mask(int c, int nv, __m256i last) {
    return c == nv - 1 ? last : _mm256_set1_epi32(-1);
}

/* Lane i of the result = the sum of the 8 lanes of a[i]. */
static inline __m256 reduce8(const __m256 *a) {
    __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    /* u0 lanes: (a0 a1 a2 a3 | a0 a1 a2 a3) halves, u1 likewise for a4..a7 */
    __m256 lo = _mm256_permute2f128_ps(u0, u1, 0x20), hi = _mm256_permute2f128_ps(u0, u1, 0x31);
    return _mm256_add_ps(lo, hi);
}

void mq_attn_query_avx2(const float *q, const float *kc, const float *vc, size_t ld, int D, float scale,
                        float softcap, int j0, int j1, float *scores, float *out) {
    int nj = j1 - j0, nv = (D + 7) / 8;
    const __m256i iota = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    __m256i last = D % 8 ? _mm256_cmpgt_epi32(_mm256_set1_epi32(D % 8), iota) : _mm256_set1_epi32(-1);
    float mx = -INFINITY;
    for (int jb = 0; jb < nj; jb += 8) { /* 8 keys: 8 partial-sum vectors, one transposed reduction */
        int nk = nj - jb < 8 ? nj - jb : 8;
        __m256 acc[8];
        for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
        for (int i = 0; i < nk; i++) {
            const float *k = kc + (size_t)(j0 + jb + i) * ld;
            for (int c = 0; c < nv; c++) {
                __m256i m = chunk_mask(c, nv, last);
                acc[i] = _mm256_fmadd_ps(_mm256_maskload_ps(q + 8 * c, m), _mm256_maskload_ps(k + 8 * c, m), acc[i]);
            }
        }
        float sv[8];
        _mm256_storeu_ps(sv, _mm256_mul_ps(_mm256_set1_ps(scale), reduce8(acc)));
        for (int i = 0; i < nk; i++) {
            float x = sv[i];
            if (softcap > 0) x = tanhf(x / softcap) * softcap;
            scores[jb + i] = x;
            if (x > mx) mx = x;
        }
    }
    for (int j = 0; j < nj; j++) scores[j] -= mx;
    mq_vexp(scores, scores, (size_t)nj);
    float sum = 0.0f;
    for (int j = 0; j < nj; j++) sum += scores[j];
    __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (int c0 = 0; c0 < nv; c0 += 8) { /* up to 8 output registers per pass over the values */
        int n = nv - c0 < 8 ? nv - c0 : 8;
        __m256 o[8];
        for (int c = 0; c < 8; c++) o[c] = _mm256_setzero_ps();
        for (int j = 0; j < nj; j++) {
            const float *v = vc + (size_t)(j0 + j) * ld + 8 * c0;
            __m256 p = _mm256_set1_ps(scores[j]);
            for (int c = 0; c < n; c++)
                o[c] = _mm256_fmadd_ps(p, _mm256_maskload_ps(v + 8 * c, chunk_mask(c0 + c, nv, last)), o[c]);
        }
        for (int c = 0; c < n; c++)
            _mm256_maskstore_ps(out + 8 * (c0 + c), chunk_mask(c0 + c, nv, last), _mm256_mul_ps(o[c], inv));
    }
}

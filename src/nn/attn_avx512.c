/*
 * attn_avx512.c — attn.h's one-query attention with AVX-512F (this file is
 * built with the AVX-512 flags; nothing calls it unless attn.c found the
 * CPU has them).
 *
 * Layout: a head's cache rows k_j, v_j are D contiguous floats, ld apart.
 * Scores: per key, the D products in 16-lane fp32 partial sums (a masked
 * load for D % 16); per 16 keys one transposed reduction of the 16 partial
 * vectors (core/reduce16_avx512.h, shared with the gemm); exp over all of
 * them at once (core/vexp);
 * output: per 16 columns of the head, registers accumulate p_j v_j over
 * every key (up to 4 live together per pass; for D = 64 and 128 all of the
 * head's, over two interleaved key streams).
 * Head sizes 64 and 128 run with their chunk count fixed at compile time
 * (unmasked loads, accumulators in registers; the generic loop kept the 16
 * accumulators and the outputs on the stack).
 * Not here: masking, batches (attn.h).
 */
#include "nn/attn.h"

#include "core/reduce16_avx512.h"
#include "core/vexp.h"

#include <immintrin.h>
#include <math.h>

#define INLINE static inline __attribute__((always_inline))

/* The lanes of chunk c of nv: all but the last, which has `last`. */
INLINE __mmask16 chunk_mask(int c, int nv, __mmask16 last) { return c == nv - 1 ? last : (__mmask16)0xFFFF; }

/* One 16-key block of scores into sv[0..nk): NV > 0 is the compile-time
 * number of 16-float chunks of a head whose size is a multiple of 16 (the
 * block's 16 accumulators and the query then stay in registers); NV = 0 is
 * any head size (nv chunks, the last masked by `last`). */
INLINE void score_block(const float *q, const float *kc, size_t ld, int nk, int nv, __mmask16 last, float scale,
                        float *sv, const int NV) {
    __m512 acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    if (NV > 0 && nk == 16) {
        __m512 qv[8]; /* NV <= 8 */
        for (int c = 0; c < NV; c++) qv[c] = _mm512_loadu_ps(q + 16 * c);
        _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) {
            const float *k = kc + (size_t)i * ld;
            for (int c = 0; c < NV; c++) acc[i] = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k + 16 * c), acc[i]);
        }
    } else {
        for (int i = 0; i < nk; i++) {
            const float *k = kc + (size_t)i * ld;
            for (int c = 0; c < nv; c++) {
                __mmask16 m = chunk_mask(c, nv, last);
                acc[i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + 16 * c), _mm512_maskz_loadu_ps(m, k + 16 * c), acc[i]);
            }
        }
    }
    _mm512_storeu_ps(sv, _mm512_mul_ps(_mm512_set1_ps(scale), mq_reduce16(acc)));
}

/* out = sum_j p_j v_j / sum (p = scores[0..nj)), NV as in score_block. */
INLINE void weighted_values(const float *scores, const float *vc, size_t ld, int nj, int nv, __mmask16 last, __m512 inv,
                            float *out, const int NV) {
    if (NV > 0) {
        __m512 o[8], o2[8]; /* NV <= 8; two key streams: half the dependency chain */
        for (int c = 0; c < NV; c++) o[c] = o2[c] = _mm512_setzero_ps();
        int j = 0;
        for (; j + 2 <= nj; j += 2) {
            const float *v = vc + (size_t)j * ld;
            __m512 p = _mm512_set1_ps(scores[j]), p2 = _mm512_set1_ps(scores[j + 1]);
            for (int c = 0; c < NV; c++) {
                o[c] = _mm512_fmadd_ps(p, _mm512_loadu_ps(v + 16 * c), o[c]);
                o2[c] = _mm512_fmadd_ps(p2, _mm512_loadu_ps(v + ld + 16 * c), o2[c]);
            }
        }
        if (j < nj) {
            const float *v = vc + (size_t)j * ld;
            __m512 p = _mm512_set1_ps(scores[j]);
            for (int c = 0; c < NV; c++) o[c] = _mm512_fmadd_ps(p, _mm512_loadu_ps(v + 16 * c), o[c]);
        }
        for (int c = 0; c < NV; c++) _mm512_storeu_ps(out + 16 * c, _mm512_mul_ps(_mm512_add_ps(o[c], o2[c]), inv));
        return;
    }
    for (int c0 = 0; c0 < nv; c0 += 4) { /* up to 4 output registers per pass over the values */
        int n = nv - c0 < 4 ? nv - c0 : 4;
        __m512 o[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int j = 0; j < nj; j++) {
            const float *v = vc + (size_t)j * ld + 16 * c0;
            __m512 p = _mm512_set1_ps(scores[j]);
            for (int c = 0; c < n; c++) {
                __mmask16 m = chunk_mask(c0 + c, nv, last);
                o[c] = _mm512_fmadd_ps(p, _mm512_maskz_loadu_ps(m, v + 16 * c), o[c]);
            }
        }
        for (int c = 0; c < n; c++) {
            __mmask16 m = chunk_mask(c0 + c, nv, last);
            _mm512_mask_storeu_ps(out + 16 * (c0 + c), m, _mm512_mul_ps(o[c], inv));
        }
    }
}

INLINE void query(const float *q, const float *kc, const float *vc, size_t ld, int D, float scale, float softcap,
                  int j0, int j1, float *scores, float *out, const int NV) {
    int nj = j1 - j0, nv = (D + 15) / 16;
    __mmask16 last = D % 16 ? (__mmask16)((1u << (D % 16)) - 1) : (__mmask16)0xFFFF;
    kc += (size_t)j0 * ld;
    vc += (size_t)j0 * ld;
    float mx = -INFINITY;
    for (int jb = 0; jb < nj; jb += 16) { /* 16 keys: 16 partial-sum vectors, one transposed reduction */
        int nk = nj - jb < 16 ? nj - jb : 16;
        float sv[16];
        score_block(q, kc + (size_t)jb * ld, ld, nk, nv, last, scale, sv, NV);
        for (int i = 0; i < nk; i++) {
            float x = sv[i];
            if (softcap > 0) x = tanhf(x / softcap) * softcap;
            scores[jb + i] = x;
            if (x > mx) mx = x;
        }
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
    weighted_values(scores, vc, ld, nj, nv, last, _mm512_set1_ps(1.0f / sum), out, NV);
}

/* Head sizes 64 and 128 (most models) with their chunk count fixed at compile time. */
void mq_attn_query_avx512(const float *q, const float *kc, const float *vc, size_t ld, int D, float scale,
                          float softcap, int j0, int j1, float *scores, float *out) {
    if (D == 64) query(q, kc, vc, ld, D, scale, softcap, j0, j1, scores, out, 4);
    else if (D == 128) query(q, kc, vc, ld, D, scale, softcap, j0, j1, scores, out, 8);
    else query(q, kc, vc, ld, D, scale, softcap, j0, j1, scores, out, 0);
}

/*
 * reduce16_avx512.h — the 16 x 16 transpose-add shared by the AVX-512 files
 * (quant/kern_avx512.c, nn/attn_avx512.c): 16 vectors in, one vector of
 * their 16 lane sums out. Include only from files built with -mavx512f.
 */
#ifndef MQ_CORE_REDUCE16_AVX512_H
#define MQ_CORE_REDUCE16_AVX512_H

#include <immintrin.h>

/* out lane n = the sum of v[n]'s 16 lanes. */
static inline __attribute__((always_inline)) __m512 mq_reduce16(const __m512 *v) {
    __m512 s[8], q[4];
    for (int m = 0; m < 8; m++) /* 128-bit lane L: v2m_0+2, v2m+1_0+2, v2m_1+3, v2m+1_1+3 */
        s[m] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * m], v[2 * m + 1]), _mm512_unpackhi_ps(v[2 * m], v[2 * m + 1]));
    for (int m = 0; m < 4; m++) { /* 128-bit lane L: the lane-L sums of v4m..v4m+3 */
        __m512d a = _mm512_castps_pd(s[2 * m]), b = _mm512_castps_pd(s[2 * m + 1]);
        q[m] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    __m512 u01 = _mm512_add_ps(_mm512_shuffle_f32x4(q[0], q[1], 0x88), _mm512_shuffle_f32x4(q[0], q[1], 0xDD));
    __m512 u23 = _mm512_add_ps(_mm512_shuffle_f32x4(q[2], q[3], 0x88), _mm512_shuffle_f32x4(q[2], q[3], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(u01, u23, 0x88), _mm512_shuffle_f32x4(u01, u23, 0xDD));
}

#endif

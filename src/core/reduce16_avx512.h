/*
 * reduce16_avx512.h — the 16 x 16 transpose-add shared by the AVX-512 files
 * (quant/kern_avx512.c, nn/attn_avx512.c): 16 vectors in, one vector of
 * their 16 lane sums out. Include only from files built with -mavx512f.
 */
#ifndef MQ_CORE_REDUCE16_AVX512_H
#define MQ_CORE_REDUCE16_AVX512_H

#include <immintrin.h>

/* Written out, not as loops over arrays: GCC at -O2 kept the loops' arrays
 * in memory, and the prompt tile's reduction then cost ~20% of the whole
 * prompt kernel (docs/results.md §18). */
#define MQ_R16_S(a, b) _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b))
#define MQ_R16_Q(a, b)                                                                                  \
    _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b))), \
                  _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b))))
#define MQ_R16_F(a, b) _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD))

/* out lane n = the sum of v[n]'s 16 lanes. Step 1, 128-bit lane L of
 * s_m: v2m_0+2, v2m+1_0+2, v2m_1+3, v2m+1_1+3; step 2, 128-bit lane L of
 * q_m: the lane-L sums of v4m..v4m+3; steps 3-4 gather the four 128-bit
 * lanes. */
static inline __attribute__((always_inline)) __m512 mq_reduce16(const __m512 *v) {
    __m512 q0 = MQ_R16_Q(MQ_R16_S(v[0], v[1]), MQ_R16_S(v[2], v[3]));
    __m512 q1 = MQ_R16_Q(MQ_R16_S(v[4], v[5]), MQ_R16_S(v[6], v[7]));
    __m512 q2 = MQ_R16_Q(MQ_R16_S(v[8], v[9]), MQ_R16_S(v[10], v[11]));
    __m512 q3 = MQ_R16_Q(MQ_R16_S(v[12], v[13]), MQ_R16_S(v[14], v[15]));
    return MQ_R16_F(MQ_R16_F(q0, q1), MQ_R16_F(q2, q3));
}

/* The same for 12 vectors (lanes 12-15 of the result are 0): the prompt
 * tile's 4 rows x 3 tokens, without the 9 operations on zeros. */
static inline __attribute__((always_inline)) __m512 mq_reduce12(const __m512 *v) {
    __m512 q0 = MQ_R16_Q(MQ_R16_S(v[0], v[1]), MQ_R16_S(v[2], v[3]));
    __m512 q1 = MQ_R16_Q(MQ_R16_S(v[4], v[5]), MQ_R16_S(v[6], v[7]));
    __m512 q2 = MQ_R16_Q(MQ_R16_S(v[8], v[9]), MQ_R16_S(v[10], v[11]));
    return MQ_R16_F(MQ_R16_F(q0, q1), MQ_R16_F(q2, _mm512_setzero_ps()));
}

#endif

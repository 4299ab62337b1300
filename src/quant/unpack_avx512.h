/*
 * unpack_avx512.h — the 64 plain codes of one stored chunk of a packed row
 * (pack.h) in one zmm register: the AVX-512 unpack shared by kern_avx512.c
 * (decode, and the prompt kernel's slices) and kern_amx.c (the AMX prompt
 * kernel's weight tiles). Include only from files built with the AVX-512
 * flags (Makefile). Not here: the layouts themselves (pack.h,
 * docs/kernels.md).
 */
#ifndef MQ_UNPACK_AVX512_H
#define MQ_UNPACK_AVX512_H

#include "quant/pack.h"

#include <immintrin.h>
#include <string.h>

#ifndef INLINE
#define INLINE static inline __attribute__((always_inline))
#endif

INLINE __m512i p2(const uint8_t *src) {
    __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)src));
    v = _mm512_srlv_epi64(v, _mm512_set_epi64(6, 6, 4, 4, 2, 2, 0, 0));
    return _mm512_and_si512(v, _mm512_set1_epi8(3));
}
INLINE __m512i p4(const uint8_t *src) {
    __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)src));
    v = _mm512_srlv_epi64(v, _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0));
    return _mm512_and_si512(v, _mm512_set1_epi8(15));
}
INLINE __m512i p1(const uint8_t *src, int value) {
    uint64_t m;
    memcpy(&m, src, 8);
    return _mm512_maskz_mov_epi8((__mmask64)m, _mm512_set1_epi8((char)value));
}

/* The 64 codes of a chunk of width r (a compile-time constant at each call). */
INLINE __m512i unpack(const uint8_t *src, const int r) {
    switch (r) {
    case 8: return _mm512_loadu_si512(src);
    case 4: return p4(src);
    case 2: return p2(src);
    case 3: return _mm512_or_si512(p2(src), p1(src + 16, 4));
    default: /* 6 */ return _mm512_or_si512(p4(src), _mm512_slli_epi16(p2(src + 32), 4));
    }
}

/* The 64 plain codes of stored chunk c of a row (pack.h: its field of a G2
 * / G3 / G4 group at r = 2, 3 and 4 in the superblocks, else the chunk's
 * planes). */
INLINE __m512i unpack_at(const uint8_t *row, int c, int ns, const int r) {
    if (mq_pack_g3(r, ns, c)) {
        __m512i g = _mm512_srl_epi16(_mm512_loadu_si512(row + mq_pack_g3_offset(c)), _mm_cvtsi32_si128(mq_pack_g3_shift(c)));
        if (!mq_pack_g3_split(c)) return _mm512_and_si512(g, _mm512_set1_epi8(7));
        __m512i h = _mm512_srl_epi16(_mm512_loadu_si512(row + mq_pack_g3_hi_offset(c)),
                                     _mm_cvtsi32_si128(mq_pack_g3_hi_bit(c) - 2));
        return _mm512_ternarylogic_epi32(_mm512_set1_epi8(3), g, _mm512_and_si512(h, _mm512_set1_epi8(4)), 0xCA);
    }
    if (mq_pack_grouped(r, ns, c))
        return _mm512_and_si512(_mm512_srl_epi16(_mm512_loadu_si512(row + mq_pack_group_offset(r, c)),
                                                 _mm_cvtsi32_si128(mq_pack_group_shift(r, c))),
                                _mm512_set1_epi8((char)((1 << r) - 1)));
    return unpack(row + (size_t)c * 8 * r, r);
}

#endif

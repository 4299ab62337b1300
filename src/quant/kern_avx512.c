/*
 * kern_avx512.c — AVX-512 VNNI kernels for the packed layouts (pack.h):
 * unsigned r-bit codes times int8 activations with vpdpbusd, 64 weights per
 * instruction. Compiled with -mavx512f/bw/vl/vnni (Makefile per-file flags)
 * and only called when dispatch.c found those features.
 *
 * Not here: the reference semantics (kern_scalar.c, kern.h).
 *
 * Layout of one 64-weight chunk in a zmm after unpacking (pack.h planes):
 *   P2: the 16 plane bytes broadcast to the four 128-bit lanes, lane L
 *       shifted right by 2L (vpsrlvq), & 3      -> byte i = w[i]
 *   P4: the 32 plane bytes broadcast to both 256-bit halves, the upper
 *       shifted right by 4, & 15                -> byte i = w[i]
 *   P1: the 64-bit word is a byte mask (vmovdqu8 with zeroing)
 * so zmm byte i multiplies activation byte i: no shuffles of activations.
 * vpdpbusd lane l (0..15) sums w[4l..4l+3]*xq[4l..4l+3]: lanes 0-7 are
 * activation block 2c, lanes 8-15 block 2c+1. Each chunk's lanes are
 * converted to fp32 right away (one vpdpbusd per accumulator), so an int32
 * lane holds at most 4 * 255 * 127 = 129,540 (no overflow; docs/kernels.md).
 */
#include "quant/kern.h"

#include <immintrin.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

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

INLINE __m512i chunk_dot(__m512i w, const int8_t *x) {
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, _mm512_loadu_si512(x));
}

/* Per-lane weight scale of chunk c: s_g(2c) in lanes 0-7, s_g(2c+1) in 8-15. */
INLINE __m512 chunk_scale(const mq_packed *p, const float *s, int c) {
    return _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(s[mq_kern_group_of(p, 2 * c)]),
                                _mm512_set1_ps(s[mq_kern_group_of(p, 2 * c + 1)]));
}

/* sum_g b_g * G_g + the overflow weights of row o, for token t. */
static float row_tail(const mq_packed *p, int o, const mq_kact *a, int t) {
    int nb = a->kp / MQ_PACK_BLOCK, ng = p->ngroups;
    const float *b = p->bias + (size_t)o * ng, *G = a->gsum + (size_t)t * nb;
    __m512 acc = _mm512_setzero_ps();
    int g = 0;
    for (; g + 16 <= ng; g += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(b + g), _mm512_loadu_ps(G + g), acc);
    float y = _mm512_reduce_add_ps(acc);
    for (; g < ng; g++) y += b[g] * G[g];
    if (p->extra) y += mq_kern_over_float(p, o, a, t);
    return y;
}

/* ----------------------------------------------------------- integers */

INLINE void dots_r(const mq_packed *p, int o0, int o1, const mq_kact *a, int t, int32_t *out, const int r) {
    int nc = p->kp / MQ_PACK_CHUNK, nb = 2 * nc;
    const int8_t *x = a->q + (size_t)t * a->kp;
    for (int o = o0; o < o1; o++) {
        const uint8_t *w = p->data + (size_t)o * p->row_bytes;
        int32_t *I = out + (size_t)(o - o0) * nb;
        for (int c = 0; c < nc; c++) {
            __m512i P = chunk_dot(unpack(w + (size_t)c * 8 * r, r), x + (size_t)c * MQ_PACK_CHUNK);
            I[2 * c] = _mm512_mask_reduce_add_epi32(0x00FF, P);
            I[2 * c + 1] = _mm512_mask_reduce_add_epi32(0xFF00, P);
        }
        if (p->extra) mq_kern_over_dots(p, o, x, I);
    }
}

static void dots_avx512(const mq_packed *p, int o0, int o1, const mq_kact *a, int t, int32_t *out) {
    switch (p->bits) {
    case 8: dots_r(p, o0, o1, a, t, out, 8); break;
    case 6: dots_r(p, o0, o1, a, t, out, 6); break;
    case 4: dots_r(p, o0, o1, a, t, out, 4); break;
    case 3: dots_r(p, o0, o1, a, t, out, 3); break;
    default: dots_r(p, o0, o1, a, t, out, 2); break;
    }
}

/* --------------------------------------------------------------- gemv */

/* Decode: one token. When a whole chunk lies in one group (per channel, or
 * groups of 64 and more) the chunk terms are summed per group and scaled once
 * per group; groups of 32 take a per-lane scale per chunk. */
INLINE void gemv_r(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y, const int r) {
    int nc = p->kp / MQ_PACK_CHUNK, ng = p->ngroups;
    int cpg = ng == 1 ? nc : p->group / MQ_PACK_CHUNK; /* chunks per group, 0 for groups of 32 */
    const int8_t *x = a->q;
    const float *dv = a->dvec;
    for (int o = o0; o < o1; o++) {
        const uint8_t *w = p->data + (size_t)o * p->row_bytes;
        const float *s = p->scale + (size_t)o * ng;
        if (o + 1 < o1) _mm_prefetch((const char *)(w + p->row_bytes), _MM_HINT_T0);
        __m512 acc = _mm512_setzero_ps();
        if (cpg > 0) {
            for (int c0 = 0, g = 0; c0 < nc; c0 += cpg, g++) {
                __m512 ga = _mm512_setzero_ps();
                int c1 = c0 + cpg < nc ? c0 + cpg : nc;
                for (int c = c0; c < c1; c++) {
                    __m512i P = chunk_dot(unpack(w + (size_t)c * 8 * r, r), x + (size_t)c * MQ_PACK_CHUNK);
                    ga = _mm512_fmadd_ps(_mm512_cvtepi32_ps(P), _mm512_load_ps(dv + (size_t)c * 16), ga);
                }
                acc = _mm512_fmadd_ps(ga, _mm512_set1_ps(s[g]), acc);
            }
        } else {
            for (int c = 0; c < nc; c++) {
                __m512i P = chunk_dot(unpack(w + (size_t)c * 8 * r, r), x + (size_t)c * MQ_PACK_CHUNK);
                __m512 m = _mm512_mul_ps(_mm512_load_ps(dv + (size_t)c * 16), chunk_scale(p, s, c));
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(P), m, acc);
            }
        }
        y[o] = _mm512_reduce_add_ps(acc) + row_tail(p, o, a, 0);
    }
}

static void gemv_avx512(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y) {
    switch (p->bits) {
    case 8: gemv_r(p, o0, o1, a, y, 8); break;
    case 6: gemv_r(p, o0, o1, a, y, 6); break;
    case 4: gemv_r(p, o0, o1, a, y, 4); break;
    case 3: gemv_r(p, o0, o1, a, y, 3); break;
    default: gemv_r(p, o0, o1, a, y, 2); break;
    }
}

/* --------------------------------------------------------------- gemm */

#define NT 4 /* tokens per tile: a chunk is unpacked once for NT tokens */

/* Rows o0..o1-1 for tokens t0..t0+nt-1 (nt <= NT, a constant per call). */
INLINE void gemm_tile(const mq_packed *p, int o0, int o1, const mq_kact *a, int t0, float *y, int ldy,
                      const int r, const int nt) {
    int nc = p->kp / MQ_PACK_CHUNK, ng = p->ngroups, kp = a->kp;
    int cpg = ng == 1 ? nc : p->group / MQ_PACK_CHUNK; /* chunks per group, 0 for groups of 32 */
    const int8_t *x = a->q + (size_t)t0 * kp;
    const float *dv = a->dvec + (size_t)t0 * (kp / 4);
    for (int o = o0; o < o1; o++) {
        const uint8_t *w = p->data + (size_t)o * p->row_bytes;
        const float *s = p->scale + (size_t)o * ng;
        __m512 acc[NT];
        for (int i = 0; i < nt; i++) acc[i] = _mm512_setzero_ps();
        if (cpg > 0) { /* whole chunks per group: scale once per group */
            for (int c0 = 0, g = 0; c0 < nc; c0 += cpg, g++) {
                __m512 ga[NT];
                for (int i = 0; i < nt; i++) ga[i] = _mm512_setzero_ps();
                int c1 = c0 + cpg < nc ? c0 + cpg : nc;
                for (int c = c0; c < c1; c++) {
                    __m512i W = unpack(w + (size_t)c * 8 * r, r);
                    for (int i = 0; i < nt; i++) {
                        __m512i P = chunk_dot(W, x + (size_t)i * kp + (size_t)c * MQ_PACK_CHUNK);
                        ga[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(P),
                                                _mm512_load_ps(dv + (size_t)i * (kp / 4) + (size_t)c * 16), ga[i]);
                    }
                }
                __m512 S = _mm512_set1_ps(s[g]);
                for (int i = 0; i < nt; i++) acc[i] = _mm512_fmadd_ps(ga[i], S, acc[i]);
            }
        } else { /* groups of 32: a per-lane scale per chunk */
            for (int c = 0; c < nc; c++) {
                __m512i W = unpack(w + (size_t)c * 8 * r, r);
                __m512 S = chunk_scale(p, s, c);
                for (int i = 0; i < nt; i++) {
                    __m512i P = chunk_dot(W, x + (size_t)i * kp + (size_t)c * MQ_PACK_CHUNK);
                    __m512 m = _mm512_mul_ps(_mm512_load_ps(dv + (size_t)i * (kp / 4) + (size_t)c * 16), S);
                    acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(P), m, acc[i]);
                }
            }
        }
        for (int i = 0; i < nt; i++)
            y[(size_t)(t0 + i) * ldy + o] = _mm512_reduce_add_ps(acc[i]) + row_tail(p, o, a, t0 + i);
    }
}

/* Rows in strips of 16 so that one strip's weights (at most 16 * 5.6 KB at
 * int8 for K = 5632) stay in L2 while every token tile passes over them. */
INLINE void gemm_r(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y, int ldy, const int r) {
    for (int s0 = o0; s0 < o1; s0 += 16) {
        int s1 = s0 + 16 < o1 ? s0 + 16 : o1;
        int t = 0;
        for (; t + NT <= a->B; t += NT) gemm_tile(p, s0, s1, a, t, y, ldy, r, NT);
        switch (a->B - t) {
        case 3: gemm_tile(p, s0, s1, a, t, y, ldy, r, 3); break;
        case 2: gemm_tile(p, s0, s1, a, t, y, ldy, r, 2); break;
        case 1: gemm_tile(p, s0, s1, a, t, y, ldy, r, 1); break;
        default: break;
        }
    }
}

static void gemm_avx512(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y, int ldy) {
    switch (p->bits) {
    case 8: gemm_r(p, o0, o1, a, y, ldy, 8); break;
    case 6: gemm_r(p, o0, o1, a, y, ldy, 6); break;
    case 4: gemm_r(p, o0, o1, a, y, ldy, 4); break;
    case 3: gemm_r(p, o0, o1, a, y, ldy, 3); break;
    default: gemm_r(p, o0, o1, a, y, ldy, 2); break;
    }
}

const mq_kern_ops mq_kern_avx512_ops = {"avx512", dots_avx512, gemv_avx512, gemm_avx512};

/*
 * kern_avx512.c — AVX-512 VNNI kernels for the packed layouts (pack.h):
 * unsigned r-bit codes times int8 activations with vpdpbusd, 64 weights per
 * instruction, in register tiles of rows x tokens. Compiled with -mavx512f/bw/vl/vnni (Makefile per-file flags)
 * and only called when dispatch.c found those features.
 *
 * Not here: the reference semantics (kern_scalar.c, kern.h).
 *
 * Layout of one 64-weight stored chunk in a zmm after unpacking (pack.h):
 *   P2: the 16 plane bytes broadcast to the four 128-bit lanes, lane L
 *       shifted right by 2L (vpsrlvq), & 3      -> byte i = w[i]
 *   P4: the 32 plane bytes broadcast to both 256-bit halves, the upper
 *       shifted right by 4, & 15                -> byte i = w[i]
 *   P1: the 64-bit word is a byte mask (vmovdqu8 with zeroing)
 * (gemv/gemm skip the shifts at widths 2 and 4: see unpack_scaled), so zmm
 * byte i multiplies activation byte i of the same stored chunk (mq_kact.qs).
 * Superblocks (the first kp/512*512 columns): in each of the 8 stored chunks
 * of a superblock, bytes 4l..4l+3 are 4 columns of activation block l, so
 * vpdpbusd lane l (0..15) only sees block l and 8 accumulating vpdpbusd give
 * the 16 blocks' integer dots in one register; one fp32 conversion and one
 * fma with d_k * s_g(k) per 512 weights. Tail chunks (natural order): lanes
 * 0-7 are block 2c, 8-15 block 2c+1, converted per chunk.
 * Overflow (docs/kernels.md): a superblock lane sums 32 products of codes
 * <= 255 (or shift-free bytes <= 240) and |xq| <= 127: <= 1,036,320 < 2^24,
 * exact in int32 and in its fp32 conversion; a tail lane sums 4 products.
 */
#include "quant/kern.h"

#include <immintrin.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))
/* the small loops over a tile's rows and tokens must unroll, so that the
 * accumulator arrays live in registers */
#define UNROLL _Pragma("GCC unroll 16")

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

/* The groups of chunk c's two activation blocks (kern.h mq_kern_group_of),
 * with a shift when the group is a power of two (sh >= 0; sh < 0: divide). */
INLINE void chunk_groups(const mq_packed *p, int c, int sh, int *g0, int *g1) {
    int k = 2 * c;
    if (sh >= 0) {
        *g0 = (k * MQ_PACK_BLOCK) >> sh;
        *g1 = ((k + 1) * MQ_PACK_BLOCK) >> sh;
        if (*g1 > p->ngroups - 1) *g1 = p->ngroups - 1;
    } else {
        *g0 = mq_kern_group_of(p, k);
        *g1 = mq_kern_group_of(p, k + 1);
    }
}
INLINE int group_shift(const mq_packed *p) {
    return (p->group & (p->group - 1)) == 0 ? __builtin_ctz((unsigned)p->group) : -1;
}
/* Per-lane weight scale of a chunk: s[g0] in lanes 0-7, s[g1] in 8-15. */
INLINE __m512 chunk_scale(const float *s, int g0, int g1) {
    return _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(s[g0]), _mm512_set1_ps(s[g1]));
}

/* --------------------------------------------------- scaled unpacking */

/* gemv and gemm skip the shifts of the 2- and 4-bit unpacks: each 128-bit
 * lane L of a P2 chunk keeps its field where it is (byte & 3 << 2L, i.e.
 * 4^L * w) and the upper half of a P4 chunk its high nibble (16 * w). The
 * int32 lanes of vpdpbusd then carry a constant factor per lane (at most
 * 4 * 240 * 127 = 121,920 < 2^24, so their conversion to fp32 is exact), and
 * the row's fp32 accumulator, linear in those lanes, is multiplied by the
 * inverse factors once at the end (powers of two: exact). Widths 8, 6 and 3
 * unpack to plain codes (factor 1). */
INLINE __m512i unpack_scaled(const uint8_t *src, const int r) {
    switch (r) {
    case 4:
        return _mm512_and_si512(_mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)src)),
                                _mm512_set_epi64(-0x0F0F0F0F0F0F0F10LL, -0x0F0F0F0F0F0F0F10LL, -0x0F0F0F0F0F0F0F10LL,
                                                 -0x0F0F0F0F0F0F0F10LL, 0x0F0F0F0F0F0F0F0FLL, 0x0F0F0F0F0F0F0F0FLL,
                                                 0x0F0F0F0F0F0F0F0FLL, 0x0F0F0F0F0F0F0F0FLL));
    case 2:
        return _mm512_and_si512(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)src)),
                                _mm512_set_epi64(-0x3F3F3F3F3F3F3F40LL, -0x3F3F3F3F3F3F3F40LL, 0x3030303030303030LL,
                                                 0x3030303030303030LL, 0x0C0C0C0C0C0C0C0CLL, 0x0C0C0C0C0C0C0C0CLL,
                                                 0x0303030303030303LL, 0x0303030303030303LL));
    default: return unpack(src, r);
    }
}

/* The inverse lane factors of unpack_scaled for width r. */
INLINE __m512 lane_factor(const int r) {
    if (r == 4)
        return _mm512_set_ps(0.0625f, 0.0625f, 0.0625f, 0.0625f, 0.0625f, 0.0625f, 0.0625f, 0.0625f, 1, 1, 1, 1, 1,
                             1, 1, 1);
    if (r == 2)
        return _mm512_set_ps(0.015625f, 0.015625f, 0.015625f, 0.015625f, 0.0625f, 0.0625f, 0.0625f, 0.0625f, 0.25f,
                             0.25f, 0.25f, 0.25f, 1, 1, 1, 1);
    return _mm512_set1_ps(1.0f);
}

/* ----------------------------------------------------------- row ends */

/* The upper 8 lanes (AVX-512F only: extractf32x8 would need DQ). */
INLINE __m256 hi256(__m512 v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }
/* Sums of 4 vectors' lanes: lane i of the result is the sum of v_i. */
INLINE __m128 reduce4(__m512 v0, __m512 v1, __m512 v2, __m512 v3) {
    __m256 a0 = _mm256_add_ps(_mm512_castps512_ps256(v0), hi256(v0));
    __m256 a1 = _mm256_add_ps(_mm512_castps512_ps256(v1), hi256(v1));
    __m256 a2 = _mm256_add_ps(_mm512_castps512_ps256(v2), hi256(v2));
    __m256 a3 = _mm256_add_ps(_mm512_castps512_ps256(v3), hi256(v3));
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

#define OV_T 64 /* gemm: tokens per chunk of precomputed overflow terms */

/* y[i] for the nr (<= 4) rows o..o+nr-1 of token t from their fp32
 * accumulators acc[i] times the inverse lane factors f: the lanes' sum,
 * plus sum_g b_g * G_g, plus the overflow list (ov[i * OV_T] when given,
 * else summed here). */
INLINE void rows_out(const mq_packed *p, int o, const mq_kact *a, int t, const __m512 *acc, __m512 f, float *y,
                     const int nr, const float *ov) {
    int ng = p->ngroups, nb = a->kp / MQ_PACK_BLOCK;
    const float *G = a->gsum + (size_t)t * nb;
    __m512 v[4];
    for (int i = 0; i < 4; i++) v[i] = i < nr ? _mm512_mul_ps(acc[i], f) : _mm512_setzero_ps();
    for (int g = 0; g < ng; g += 16) {
        __mmask16 m = ng - g >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (ng - g)) - 1);
        __m512 Gv = _mm512_maskz_loadu_ps(m, G + g);
        for (int i = 0; i < nr; i++)
            v[i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p->bias + (size_t)(o + i) * ng + g), Gv, v[i]);
    }
    float out[4];
    _mm_storeu_ps(out, reduce4(v[0], v[1], v[2], v[3]));
    if (ov) /* the overflow terms of these rows for this token, precomputed (gemm) */
        for (int i = 0; i < nr; i++) y[i] = out[i] + ov[i * OV_T];
    else
        for (int i = 0; i < nr; i++) y[i] = out[i] + (p->extra ? mq_kern_over_float(p, o + i, a, t) : 0.0f);
}

/* -------------------------------------------------------- superblocks */

/* The lane -> group offset of a superblock for power-of-two groups of 32
 * and more (sh = log2(group) >= 5): lane l (block l) is in group
 * g0 + (l >> (sh - 5)). Computed once per tile. */
INLINE __m512i block_group_idx(int sh) {
    return _mm512_srli_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), sh >= 5 ? sh - 5 : 0);
}

/* Lane l of the result = the scale of block 16 sb + l of row s (kern.h
 * mq_kern_group_of), for more than one group. Power-of-two groups: one
 * masked window load and a permute (lanes past the last group get 0; their
 * blocks are padding, with d_k = 0). */
INLINE __m512 block_scales(const mq_packed *p, const float *s, int sb, int sh, __m512i idx) {
    int ng = p->ngroups, k0 = 16 * sb;
    if (sh >= 5) {
        int g0 = (k0 * MQ_PACK_BLOCK) >> sh, n = ng - g0;
        __mmask16 m = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
        return _mm512_permutexvar_ps(idx, _mm512_maskz_loadu_ps(m, s + g0));
    }
    float v[16];
    for (int l = 0; l < 16; l++) v[l] = s[mq_kern_group_of(p, k0 + l)];
    return _mm512_loadu_ps(v);
}

/* ----------------------------------------------------------- integers */

INLINE void dots_r(const mq_packed *p, int o0, int o1, const mq_kact *a, int t, int32_t *out, const int r) {
    int nc = p->kp / MQ_PACK_CHUNK, nb = 2 * nc, ns = p->nsuper;
    const int8_t *x = a->qs + (size_t)t * a->kp;
    for (int o = o0; o < o1; o++) {
        const uint8_t *w = p->data + (size_t)o * p->row_bytes;
        int32_t *I = out + (size_t)(o - o0) * nb;
        for (int sb = 0; sb < ns; sb++) { /* lane l = block 16 sb + l */
            __m512i acc = _mm512_setzero_si512();
            for (int v = 0; v < 8; v++) {
                int c = 8 * sb + v;
                acc = _mm512_dpbusd_epi32(acc, unpack(w + (size_t)c * 8 * r, r), _mm512_loadu_si512(x + (size_t)c * 64));
            }
            _mm512_storeu_si512(I + 16 * sb, acc);
        }
        for (int c = 8 * ns; c < nc; c++) {
            __m512i P = chunk_dot(unpack(w + (size_t)c * 8 * r, r), x + (size_t)c * MQ_PACK_CHUNK);
            I[2 * c] = _mm512_mask_reduce_add_epi32(0x00FF, P);
            I[2 * c + 1] = _mm512_mask_reduce_add_epi32(0xFF00, P);
        }
        if (p->extra) mq_kern_over_dots(p, o, a->q + (size_t)t * a->kp, I);
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

/* --------------------------------------------------- a tile of products */

#define TR 8 /* rows per tile at most: each activation chunk serves them all */
#define TT 4 /* tokens per tile at most: each unpacked chunk serves them all */
#define GV_ROWS 4 /* gemv: 4 rows x 1 token; 8 rows streamed at once from memory decoded 35% slower (docs/results.md §7) */
#define GM_ROWS 4 /* gemm: 4 rows x 4 tokens (16 accumulators) */
#define PF_AHEAD 16384 /* prefetch distance in bytes (best of 6-24 KiB measured, §8) */

/* Rows o..o+nr-1 times tokens t0..t0+nt-1 (nr <= TR, nt <= TT, constants
 * per call) into y[(t0+j)*ldy + o + i]. Superblocks: per row and token one
 * int32 accumulator takes the 8 chunks' vpdpbusd (lane l = block l), then
 * one conversion and one fma with d_k * s_g(k) per 512 weights. Tail
 * chunks: one conversion per chunk with the per-lane d (dvec). */
INLINE void tile(const mq_packed *p, int o, const mq_kact *a, int t0, float *y, int ldy, const int r, const int nr,
                 const int nt, const float *ov) {
    int nc = p->kp / MQ_PACK_CHUNK, ng = p->ngroups, kp = a->kp, nb = kp / MQ_PACK_BLOCK, ns = p->nsuper;
    int sh = group_shift(p);
    __m512i gidx = block_group_idx(sh);
    const int8_t *x = a->qs + (size_t)t0 * kp;
    const float *d = a->d + (size_t)t0 * nb, *dv = a->dvec + (size_t)t0 * (kp / 4);
    const uint8_t *w = p->data + (size_t)o * p->row_bytes;
    const float *s = p->scale + (size_t)o * ng;
    size_t rb = p->row_bytes;
    __m512 facc[TR][TT];
    UNROLL
    for (int i = 0; i < nr; i++)
        UNROLL
        for (int j = 0; j < nt; j++) facc[i][j] = _mm512_setzero_ps();
    /* software prefetch into L2, PF_AHEAD bytes ahead of the tile's reads
     * (its rows are contiguous, and so are consecutive tiles): a 2048-column
     * row at int2 is 8 cache lines, too short a stream for the hardware
     * prefetchers to lock on; with this, a 2-thread decode streams its
     * weights at ~85% of the measured read bandwidth instead of ~45%
     * (docs/results.md §8). Only the first token tile prefetches. */
    const char *pf = (const char *)w + PF_AHEAD;
    if (p->extra && t0 == 0) { /* the overflow list is a second stream: ~3 lines per tile, 4 KiB ahead */
        const char *oc = (const char *)(p->over_col + p->over_ptr[o]) + 4096;
        _mm_prefetch(oc, _MM_HINT_T1);
        _mm_prefetch(oc + 64, _MM_HINT_T1);
        _mm_prefetch(oc + 128, _MM_HINT_T1);
    }
    for (int sb = 0; sb < ns; sb++) {
        if (t0 == 0) {
            UNROLL
            for (int l = 0; l < nr * r; l++) _mm_prefetch(pf + 64 * l, _MM_HINT_T1);
            pf += nr * 64 * r;
        }
        __m512i acc[TR][TT];
        UNROLL
        for (int i = 0; i < nr; i++)
            UNROLL
            for (int j = 0; j < nt; j++) acc[i][j] = _mm512_setzero_si512();
        UNROLL
        for (int v = 0; v < 8; v++) {
            int c = 8 * sb + v;
            __m512i W[TR];
            UNROLL
            for (int i = 0; i < nr; i++) W[i] = unpack_scaled(w + (size_t)i * rb + (size_t)c * 8 * r, r);
            UNROLL
            for (int j = 0; j < nt; j++) {
                __m512i X = _mm512_loadu_si512(x + (size_t)j * kp + (size_t)c * MQ_PACK_CHUNK);
                UNROLL
                for (int i = 0; i < nr; i++) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], W[i], X);
            }
        }
        UNROLL
        for (int i = 0; i < nr; i++) {
            __m512 S = ng == 1 ? _mm512_set1_ps(1.0f) : block_scales(p, s + (size_t)i * ng, sb, sh, gidx);
            UNROLL
            for (int j = 0; j < nt; j++) {
                __m512 D = _mm512_loadu_ps(d + (size_t)j * nb + 16 * sb);
                if (ng > 1) D = _mm512_mul_ps(D, S);
                facc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i][j]), D, facc[i][j]);
            }
        }
    }
    /* tail chunks, natural order: lanes 0-7 block 2c, 8-15 block 2c+1 */
    for (int c = 8 * ns; c < nc; c++) {
        int g0 = 0, g1 = 0;
        if (ng > 1) chunk_groups(p, c, sh, &g0, &g1);
        __m512i W[TR];
        UNROLL
        for (int i = 0; i < nr; i++) W[i] = unpack_scaled(w + (size_t)i * rb + (size_t)c * 8 * r, r);
        UNROLL
        for (int j = 0; j < nt; j++) {
            __m512i X = _mm512_loadu_si512(x + (size_t)j * kp + (size_t)c * MQ_PACK_CHUNK);
            __m512 D = _mm512_load_ps(dv + (size_t)j * (kp / 4) + (size_t)c * 16);
            UNROLL
            for (int i = 0; i < nr; i++) {
                __m512 m = ng > 1 ? _mm512_mul_ps(D, chunk_scale(s + (size_t)i * ng, g0, g1)) : D;
                facc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), W[i], X)),
                                             m, facc[i][j]);
            }
        }
    }
    __m512 f = lane_factor(r);
    UNROLL
    for (int j = 0; j < nt; j++) {
        __m512 col[TR];
        UNROLL
        for (int i = 0; i < nr; i++) col[i] = ng == 1 ? _mm512_mul_ps(facc[i][j], _mm512_set1_ps(s[(size_t)i * ng])) : facc[i][j];
        float *yj = y + (size_t)(t0 + j) * ldy + o;
        rows_out(p, o, a, t0 + j, col, f, yj, nr < 4 ? nr : 4, ov ? ov + j : NULL);
        if (nr > 4) rows_out(p, o + 4, a, t0 + j, col + 4, f, yj + 4, nr - 4, ov ? ov + 4 * OV_T + j : NULL);
    }
}

/* --------------------------------------------------------------- gemv */

INLINE void gemv_r(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y, const int r) {
    int o = o0;
    for (; o + GV_ROWS <= o1; o += GV_ROWS) tile(p, o, a, 0, y, 0, r, GV_ROWS, 1, NULL);
    switch (o1 - o) {
    case 7: tile(p, o, a, 0, y, 0, r, 7, 1, NULL); break;
    case 6: tile(p, o, a, 0, y, 0, r, 6, 1, NULL); break;
    case 5: tile(p, o, a, 0, y, 0, r, 5, 1, NULL); break;
    case 4: tile(p, o, a, 0, y, 0, r, 4, 1, NULL); break;
    case 3: tile(p, o, a, 0, y, 0, r, 3, 1, NULL); break;
    case 2: tile(p, o, a, 0, y, 0, r, 2, 1, NULL); break;
    case 1: tile(p, o, a, 0, y, 0, r, 1, 1, NULL); break;
    default: break;
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

/* The overflow terms of rows o..o+nr-1 (nr <= TR) for tokens tc..tc+nt-1
 * (nt <= OV_T) into ov[i * OV_T + t]: each overflow weight adds s_g times
 * its column of xhat_t (the chunk's tokens, 16 per vector). */
static void over_chunk(const mq_packed *p, int o, int nr, const mq_kact *a, int tc, int nt, float *ov) {
    int B = a->B, ng = p->ngroups, sh = group_shift(p);
    __mmask16 m[4];
    for (int k = 0; k < 4; k++) {
        int left = nt - 16 * k;
        m[k] = left >= 16 ? (__mmask16)0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
    }
    for (int i = 0; i < nr; i++) {
        int row = o + i;
        const float *s = p->scale + (size_t)row * ng;
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (uint32_t n = p->over_ptr[row]; n < p->over_ptr[row + 1]; n++) {
            uint32_t c = p->over_col[n];
            const float *xc = a->xhat_t + (size_t)c * B + tc;
            __m512 sv = _mm512_set1_ps(ng == 1 ? 1.0f : s[sh >= 0 ? (int)(c >> sh) : (int)(c / (uint32_t)p->group)]);
            for (int k = 0; k < 4; k++)
                if (m[k]) acc[k] = _mm512_fmadd_ps(sv, _mm512_maskz_loadu_ps(m[k], xc + 16 * k), acc[k]);
        }
        __m512 s0 = _mm512_set1_ps(ng == 1 ? s[0] : 1.0f);
        for (int k = 0; k < 4; k++) _mm512_storeu_ps(ov + (size_t)i * OV_T + 16 * k, _mm512_mul_ps(acc[k], s0));
    }
}

/* The token tiles of one row tile of nr rows. With an overflow list (2x)
 * and B > 1, tokens go in chunks of OV_T whose overflow terms are computed
 * first for all of the chunk's tokens at once (over_chunk) and added as
 * each tile stores its outputs. */
INLINE void gemm_rows(const mq_packed *p, int o, const mq_kact *a, float *y, int ldy, const int r, const int nr) {
    bool pre = p->extra && a->B > 1 && a->xhat_t;
    float ov[TR * OV_T] __attribute__((aligned(64)));
    for (int tc = 0; tc < a->B; tc += OV_T) {
        int te = tc + OV_T < a->B ? tc + OV_T : a->B;
        if (pre) over_chunk(p, o, nr, a, tc, te - tc, ov);
        int t = tc;
        for (; t + TT <= te; t += TT) tile(p, o, a, t, y, ldy, r, nr, TT, pre ? ov + (t - tc) : NULL);
        switch (te - t) {
        case 3: tile(p, o, a, t, y, ldy, r, nr, 3, pre ? ov + (t - tc) : NULL); break;
        case 2: tile(p, o, a, t, y, ldy, r, nr, 2, pre ? ov + (t - tc) : NULL); break;
        case 1: tile(p, o, a, t, y, ldy, r, nr, 1, pre ? ov + (t - tc) : NULL); break;
        default: break;
        }
    }
}

/* Rows in tiles of GM_ROWS; every row tile passes over all tokens while its
 * weights (at most 4 rows * 5.6 KB at int8 for K = 5632) stay in L1. The
 * last 1-3 rows go one at a time. */
INLINE void gemm_r(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y, int ldy, const int r) {
    int o = o0;
    for (; o + GM_ROWS <= o1; o += GM_ROWS) gemm_rows(p, o, a, y, ldy, r, GM_ROWS);
    for (; o < o1; o++) gemm_rows(p, o, a, y, ldy, r, 1);
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

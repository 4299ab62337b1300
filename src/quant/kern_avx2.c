/*
 * kern_avx2.c — AVX2 kernels for the packed layouts (pack.h): unsigned codes
 * times int8 activations with vpmaddubsw + vpmaddwd, 32 weights per step,
 * in register tiles of rows x tokens. Compiled with -mavx2 -mfma (Makefile per-file
 * flags) and only called when dispatch.c found AVX2 and FMA.
 *
 * Not here: the reference semantics (kern_scalar.c, kern.h).
 *
 * A 64-weight stored chunk unpacks into two ymm halves (bytes 0-31, 32-63),
 * byte i of a half multiplying activation byte i of the same half
 * (mq_kact.qs, the stored order of pack.h):
 *   P2: the 16 plane bytes broadcast to both 128-bit lanes, qwords shifted
 *       by (0,0,2,2) for the low half and (4,4,6,6) for the high one, & 3
 *   P4: the 32 plane bytes, & 15 (low half) and >> 4 & 15 (high half)
 *   P1: 32 mask bits spread to bytes (vpshufb of the broadcast word,
 *       test against 1,2,4,..,128, compare)
 * Superblocks (pack.h): int32 lane l of the low half's dot belongs to block
 * l, of the high half's to block 8 + l, in all 8 stored chunks, so they are
 * summed in int32 over the superblock and converted once per 256 weights;
 * tail chunks (natural order): each half is one block, converted at once.
 * Overflow: vpmaddubsw adds two u8*s8 products into a saturating int16, so a
 * pair must stay within 32767: for r <= 7 codes are <= 127 and
 * 2 * 127 * 127 = 32258 fits; 8-bit codes are split into nibbles
 * (q = lo + 16*hi, each pair <= 2 * 15 * 127), recombined by vpmaddwd with
 * weights 1 and 16. A lane sums 4 products per chunk (<= 129,540) and 32
 * over a superblock (<= 1,036,320 < 2^24, exact in fp32; docs/kernels.md).
 */
#include "quant/kern.h"

#include <immintrin.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))
/* the small loops over a tile's rows and tokens must unroll, so that the
 * accumulator arrays live in registers */
#define UNROLL _Pragma("GCC unroll 16")

typedef struct {
    __m256i lo, hi;
} half2;

INLINE half2 p2(const uint8_t *src) {
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)src));
    __m256i m = _mm256_set1_epi8(3);
    half2 h = {_mm256_and_si256(_mm256_srlv_epi64(v, _mm256_set_epi64x(2, 2, 0, 0)), m),
               _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_set_epi64x(6, 6, 4, 4)), m)};
    return h;
}
INLINE half2 p4(const uint8_t *src) {
    __m256i v = _mm256_loadu_si256((const __m256i *)src), m = _mm256_set1_epi8(15);
    half2 h = {_mm256_and_si256(v, m), _mm256_and_si256(_mm256_srli_epi16(v, 4), m)};
    return h;
}
INLINE __m256i bits_to_bytes(uint32_t m, int value) {
    const __m256i idx = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i sel = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)m), idx);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel);
    return _mm256_and_si256(v, _mm256_set1_epi8((char)value));
}
INLINE half2 p1(const uint8_t *src, int value) {
    uint32_t lo, hi;
    memcpy(&lo, src, 4);
    memcpy(&hi, src + 4, 4);
    half2 h = {bits_to_bytes(lo, value), bits_to_bytes(hi, value)};
    return h;
}

INLINE half2 unpack(const uint8_t *src, const int r) {
    half2 h, e;
    switch (r) {
    case 8:
        h.lo = _mm256_loadu_si256((const __m256i *)src);
        h.hi = _mm256_loadu_si256((const __m256i *)(src + 32));
        return h;
    case 4: return p4(src);
    case 2: return p2(src);
    case 3:
        h = p2(src);
        e = p1(src + 16, 4);
        h.lo = _mm256_or_si256(h.lo, e.lo);
        h.hi = _mm256_or_si256(h.hi, e.hi);
        return h;
    default: /* 6 */
        h = p4(src);
        e = p2(src + 32);
        h.lo = _mm256_or_si256(h.lo, _mm256_slli_epi16(e.lo, 4));
        h.hi = _mm256_or_si256(h.hi, _mm256_slli_epi16(e.hi, 4));
        return h;
    }
}

/* Eight int32 partial sums of one 32-weight block: codes w (u8) times x. */
INLINE __m256i block_dot(__m256i w, const int8_t *xp, const int r) {
    __m256i x = _mm256_loadu_si256((const __m256i *)xp);
    if (r == 8) {
        __m256i m = _mm256_set1_epi8(15);
        __m256i lo = _mm256_maddubs_epi16(_mm256_and_si256(w, m), x);
        __m256i hi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(w, 4), m), x);
        return _mm256_add_epi32(_mm256_madd_epi16(lo, _mm256_set1_epi16(1)),
                                _mm256_madd_epi16(hi, _mm256_set1_epi16(16)));
    }
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}

INLINE int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}
INLINE float hsum_f32(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* sum_g b_g * G_g + the overflow weights of row o, for token t. */
static float row_tail(const mq_packed *p, int o, const mq_kact *a, int t) {
    int nb = a->kp / MQ_PACK_BLOCK, ng = p->ngroups;
    const float *b = p->bias + (size_t)o * ng, *G = a->gsum + (size_t)t * nb;
    __m256 acc = _mm256_setzero_ps();
    int g = 0;
    for (; g + 8 <= ng; g += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(b + g), _mm256_loadu_ps(G + g), acc);
    float y = hsum_f32(acc);
    for (; g < ng; g++) y += b[g] * G[g];
    if (p->extra) y += mq_kern_over_float(p, o, a, t);
    return y;
}

/* ----------------------------------------------------------- integers */

/* Lanes l = 0..7 of the two results: the integer dots of blocks 16 sb + l
 * (lo) and 16 sb + 8 + l (hi) of one row, from the 8 stored chunks of
 * superblock sb (pack.h: in chunk v, bytes 4l..4l+3 belong to block l). */
INLINE void super_dots(const uint8_t *w, const int8_t *x, int sb, const int r, __m256i *lo, __m256i *hi) {
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    for (int v = 0; v < 8; v++) {
        int c = 8 * sb + v;
        half2 W = unpack(w + (size_t)c * 8 * r, r);
        a0 = _mm256_add_epi32(a0, block_dot(W.lo, x + (size_t)c * MQ_PACK_CHUNK, r));
        a1 = _mm256_add_epi32(a1, block_dot(W.hi, x + (size_t)c * MQ_PACK_CHUNK + 32, r));
    }
    *lo = a0;
    *hi = a1;
}

INLINE void dots_r(const mq_packed *p, int o0, int o1, const mq_kact *a, int t, int32_t *out, const int r) {
    int nc = p->kp / MQ_PACK_CHUNK, nb = 2 * nc, ns = p->nsuper;
    const int8_t *x = a->qs + (size_t)t * a->kp;
    for (int o = o0; o < o1; o++) {
        const uint8_t *w = p->data + (size_t)o * p->row_bytes;
        int32_t *I = out + (size_t)(o - o0) * nb;
        for (int sb = 0; sb < ns; sb++) {
            __m256i lo, hi;
            super_dots(w, x, sb, r, &lo, &hi);
            _mm256_storeu_si256((__m256i *)(I + 16 * sb), lo);
            _mm256_storeu_si256((__m256i *)(I + 16 * sb + 8), hi);
        }
        for (int c = 8 * ns; c < nc; c++) {
            half2 W = unpack(w + (size_t)c * 8 * r, r);
            I[2 * c] = hsum_i32(block_dot(W.lo, x + (size_t)c * MQ_PACK_CHUNK, r));
            I[2 * c + 1] = hsum_i32(block_dot(W.hi, x + (size_t)c * MQ_PACK_CHUNK + 32, r));
        }
        if (p->extra) mq_kern_over_dots(p, o, a->q + (size_t)t * a->kp, I);
    }
}

static void dots_avx2(const mq_packed *p, int o0, int o1, const mq_kact *a, int t, int32_t *out) {
    switch (p->bits) {
    case 8: dots_r(p, o0, o1, a, t, out, 8); break;
    case 6: dots_r(p, o0, o1, a, t, out, 6); break;
    case 4: dots_r(p, o0, o1, a, t, out, 4); break;
    case 3: dots_r(p, o0, o1, a, t, out, 3); break;
    default: dots_r(p, o0, o1, a, t, out, 2); break;
    }
}

/* ------------------------------------------------------ gemv and gemm */

#define TR 4 /* rows per tile at most */
#define TT 2 /* tokens per tile at most */

/* The 16 block scales s_g(k) of superblock sb of row s: lanes 0-7 in *lo,
 * 8-15 in *hi (per channel: a broadcast; sh = log2(group) when the group is
 * a power of two, else -1). */
INLINE void block_scales(const mq_packed *p, const float *s, int sb, int sh, __m256 *lo, __m256 *hi) {
    int ng = p->ngroups;
    if (ng == 1) {
        *lo = *hi = _mm256_set1_ps(s[0]);
        return;
    }
    const __m256i iota = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    if (sh >= 5) { /* power-of-two groups: masked window loads (padding blocks get 0: their d_k is 0) */
        int g0 = (16 * sb * MQ_PACK_BLOCK) >> sh, n = ng - g0;
        if (sh == 5) {
            *lo = _mm256_maskload_ps(s + g0, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), iota));
            *hi = _mm256_maskload_ps(s + g0 + 8, _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8), iota));
            return;
        }
        __m256 win = _mm256_maskload_ps(s + g0, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), iota));
        __m128i shift = _mm_cvtsi32_si128(sh - 5);
        *lo = _mm256_permutevar8x32_ps(win, _mm256_srl_epi32(iota, shift));
        *hi = _mm256_permutevar8x32_ps(win, _mm256_srl_epi32(_mm256_add_epi32(iota, _mm256_set1_epi32(8)), shift));
        return;
    }
    float v[16];
    for (int l = 0; l < 16; l++) v[l] = s[mq_kern_group_of(p, 16 * sb + l)];
    *lo = _mm256_loadu_ps(v);
    *hi = _mm256_loadu_ps(v + 8);
}

/* Rows o..o+nr-1 times tokens t0..t0+nt-1 (constants per call) into
 * y[(t0+j)*ldy + o + i]. Superblocks: int32 sums of 8 chunks per block
 * lane, then one conversion and fma with d_k * s_g(k) per 256 weights;
 * tail chunks: each block's 8 lanes times the broadcast d_k * s_g(k). */
INLINE void tile(const mq_packed *p, int o, const mq_kact *a, int t0, float *y, int ldy, const int r, const int nr,
                 const int nt) {
    int nc = p->kp / MQ_PACK_CHUNK, ng = p->ngroups, kp = a->kp, nb = kp / MQ_PACK_BLOCK, ns = p->nsuper;
    const int8_t *x = a->qs + (size_t)t0 * kp;
    const float *d = a->d + (size_t)t0 * nb;
    const uint8_t *w = p->data + (size_t)o * p->row_bytes;
    const float *s = p->scale + (size_t)o * ng;
    size_t rb = p->row_bytes;
    int sh = (p->group & (p->group - 1)) == 0 ? __builtin_ctz((unsigned)p->group) : -1;
    __m256 facc[TR][TT];
    UNROLL
    for (int i = 0; i < nr; i++)
        UNROLL
        for (int j = 0; j < nt; j++) facc[i][j] = _mm256_setzero_ps();
    /* software prefetch into L2 16 KiB ahead of the tile's contiguous rows
     * (as kern_avx512.c: short rows are too short a stream for the hardware
     * prefetchers); only the first token tile prefetches */
    const char *pf = (const char *)w + 16384;
    for (int sb = 0; sb < ns; sb++) {
        if (t0 == 0) {
            UNROLL
            for (int l = 0; l < nr * r; l++) _mm_prefetch(pf + 64 * l, _MM_HINT_T1);
            pf += nr * 64 * r;
        }
        __m256i lo[TR][TT], hi[TR][TT];
        UNROLL
        for (int i = 0; i < nr; i++)
            UNROLL
            for (int j = 0; j < nt; j++) lo[i][j] = hi[i][j] = _mm256_setzero_si256();
        for (int v = 0; v < 8; v++) {
            int c = 8 * sb + v;
            UNROLL
            for (int i = 0; i < nr; i++) {
                half2 W = unpack(w + (size_t)i * rb + (size_t)c * 8 * r, r);
                UNROLL
                for (int j = 0; j < nt; j++) {
                    const int8_t *xj = x + (size_t)j * kp + (size_t)c * MQ_PACK_CHUNK;
                    lo[i][j] = _mm256_add_epi32(lo[i][j], block_dot(W.lo, xj, r));
                    hi[i][j] = _mm256_add_epi32(hi[i][j], block_dot(W.hi, xj + 32, r));
                }
            }
        }
        UNROLL
        for (int i = 0; i < nr; i++) {
            __m256 S0, S1;
            block_scales(p, s + (size_t)i * ng, sb, sh, &S0, &S1);
            UNROLL
            for (int j = 0; j < nt; j++) {
                const float *dj = d + (size_t)j * nb + 16 * sb;
                __m256 D0 = _mm256_mul_ps(_mm256_loadu_ps(dj), S0), D1 = _mm256_mul_ps(_mm256_loadu_ps(dj + 8), S1);
                facc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo[i][j]), D0, facc[i][j]);
                facc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi[i][j]), D1, facc[i][j]);
            }
        }
    }
    for (int c = 8 * ns; c < nc; c++) {
        int g0 = mq_kern_group_of(p, 2 * c), g1 = mq_kern_group_of(p, 2 * c + 1);
        UNROLL
        for (int i = 0; i < nr; i++) {
            half2 W = unpack(w + (size_t)i * rb + (size_t)c * 8 * r, r);
            float s0 = s[(size_t)i * ng + g0], s1 = s[(size_t)i * ng + g1];
            UNROLL
            for (int j = 0; j < nt; j++) {
                const int8_t *xj = x + (size_t)j * kp + (size_t)c * MQ_PACK_CHUNK;
                const float *dj = d + (size_t)j * nb + 2 * c;
                facc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_dot(W.lo, xj, r)), _mm256_set1_ps(dj[0] * s0),
                                             facc[i][j]);
                facc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_dot(W.hi, xj + 32, r)),
                                             _mm256_set1_ps(dj[1] * s1), facc[i][j]);
            }
        }
    }
    UNROLL
    for (int i = 0; i < nr; i++)
        UNROLL
        for (int j = 0; j < nt; j++)
            y[(size_t)(t0 + j) * ldy + o + i] = hsum_f32(facc[i][j]) + row_tail(p, o + i, a, t0 + j);
}

INLINE void gemv_r(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y, const int r) {
    int o = o0;
    for (; o + TR <= o1; o += TR) tile(p, o, a, 0, y, 0, r, TR, 1);
    switch (o1 - o) {
    case 3: tile(p, o, a, 0, y, 0, r, 3, 1); break;
    case 2: tile(p, o, a, 0, y, 0, r, 2, 1); break;
    case 1: tile(p, o, a, 0, y, 0, r, 1, 1); break;
    default: break;
    }
}

/* Row pairs over all tokens in pairs (the pair's weights stay in L1); an
 * odd last row or token goes alone. */
INLINE void gemm_r(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y, int ldy, const int r) {
    int o = o0;
    for (; o + 2 <= o1; o += 2) {
        int t = 0;
        for (; t + TT <= a->B; t += TT) tile(p, o, a, t, y, ldy, r, 2, TT);
        if (t < a->B) tile(p, o, a, t, y, ldy, r, 2, 1);
    }
    if (o < o1) {
        int t = 0;
        for (; t + TT <= a->B; t += TT) tile(p, o, a, t, y, ldy, r, 1, TT);
        if (t < a->B) tile(p, o, a, t, y, ldy, r, 1, 1);
    }
}

static void gemv_avx2(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y) {
    switch (p->bits) {
    case 8: gemv_r(p, o0, o1, a, y, 8); break;
    case 6: gemv_r(p, o0, o1, a, y, 6); break;
    case 4: gemv_r(p, o0, o1, a, y, 4); break;
    case 3: gemv_r(p, o0, o1, a, y, 3); break;
    default: gemv_r(p, o0, o1, a, y, 2); break;
    }
}

static void gemm_avx2(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y, int ldy) {
    switch (p->bits) {
    case 8: gemm_r(p, o0, o1, a, y, ldy, 8); break;
    case 6: gemm_r(p, o0, o1, a, y, ldy, 6); break;
    case 4: gemm_r(p, o0, o1, a, y, ldy, 4); break;
    case 3: gemm_r(p, o0, o1, a, y, ldy, 3); break;
    default: gemm_r(p, o0, o1, a, y, ldy, 2); break;
    }
}

const mq_kern_ops mq_kern_avx2_ops = {"avx2", dots_avx2, gemv_avx2, gemm_avx2};

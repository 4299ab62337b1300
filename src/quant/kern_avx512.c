/*
 * kern_avx512.c — AVX-512 VNNI kernels for the packed layouts (pack.h):
 * unsigned r-bit codes times int8 activations with vpdpbusd, 64 weights per
 * instruction, in register tiles of rows x tokens. Compiled with -mavx512f/bw/vl/vnni (Makefile per-file flags)
 * and only called when dispatch.c found those features.
 *
 * Not here: the reference semantics (kern_scalar.c, kern.h).
 *
 * Layout of one 64-weight stored chunk in a zmm after unpacking (pack.h):
 *   G2 (r = 2, superblocks): the group's 64 bytes, shifted right by 2f for
 *       field f = c % 4, & 3                    -> byte i = w[i]
 *   P2: the 16 plane bytes broadcast to the four 128-bit lanes, lane L
 *       shifted right by 2L (vpsrlvq), & 3      -> byte i = w[i]
 *   P4: the 32 plane bytes broadcast to both 256-bit halves, the upper
 *       shifted right by 4, & 15                -> byte i = w[i]
 *   G3 (r = 3, superblocks): the group's 64 bytes >> 3 (c % 8 % 3), & 7;
 *       chunks 2 and 5: & 3, bit 2 from group 2 (bit 6 or 7)
 *   P1: the 64-bit word is a byte mask (vmovdqu8 with zeroing)
 * (gemv skips the shifts at widths 2, 3 and 4 in the superblocks, see
 * sb_grouped and sb_g3), so zmm
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

#include "core/reduce16_avx512.h"
#include "quant/unpack_avx512.h"

#include <immintrin.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))
/* the small loops over a tile's rows and tokens must unroll, so that the
 * accumulator arrays live in registers */
#define UNROLL _Pragma("GCC unroll 16")

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

/* The overflow terms (mq_kern_over_float) of rows o..o+nr-1 (nr <= 4)
 * added to v[i] as vectors whose lanes sum to them: the rows' lists are
 * contiguous, so the tile's entries run 16 to a masked gather of xhat (and,
 * with groups, of their scales) in one loop, each lane credited to its row
 * by comparing its list index with the rows' offsets. One gather per row
 * (~10 entries each at 2048 columns) and a loop exit per row cost ~30% of
 * a one-thread 2x product on Zen 4; this streamed it ~12% faster
 * (docs/results.md §17). Groups that are not a power of two take the
 * scalar loop (lane 0). */
INLINE void over_tile(const mq_packed *p, int o, const mq_kact *a, int t, __m512 *v, const int nr) {
    MQ_ASSERT(a->xhat_ready);
    int ng = p->ngroups, sh = group_shift(p);
    if (ng > 1 && sh < 0) {
        for (int i = 0; i < nr; i++)
            v[i] = _mm512_add_ps(v[i], _mm512_maskz_mov_ps(1, _mm512_set1_ps(mq_kern_over_float(p, o + i, a, t))));
        return;
    }
    const float *xh = a->xhat + (size_t)t * a->kp, *s = p->scale + (size_t)o * ng;
    const uint32_t *ptr = p->over_ptr + o;
    uint32_t n0 = ptr[0], n1 = ptr[nr];
    __m512i bnd[4], lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    __m512 acc[4];
    UNROLL
    for (int i = 0; i < 4; i++) {
        bnd[i] = _mm512_set1_epi32((int)ptr[i < nr ? i : nr]);
        acc[i] = _mm512_setzero_ps();
    }
    for (uint32_t n = n0; n < n1; n += 16) {
        __mmask16 m = n1 - n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n1 - n)) - 1);
        __m512i col = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p->over_col + n));
        __m512 x = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, col, xh, 4);
        __m512i idx = _mm512_add_epi32(_mm512_set1_epi32((int)n), lane);
        __mmask16 ge[4];
        UNROLL
        for (int i = 1; i < 4; i++) ge[i] = i < nr ? _mm512_cmpge_epu32_mask(idx, bnd[i]) : 0;
        if (ng > 1) { /* lane's scale: row (o + its row) * ng + col >> sh */
            __m512i g = _mm512_srli_epi32(col, sh);
            UNROLL
            for (int i = 1; i < nr; i++) g = _mm512_mask_add_epi32(g, ge[i], g, _mm512_set1_epi32(ng));
            x = _mm512_mul_ps(x, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, g, s, 4));
        }
        UNROLL
        for (int i = 0; i < nr; i++) {
            __mmask16 mi = i + 1 < nr ? (__mmask16)(m & ~ge[i + 1]) : m;
            if (i > 0) mi &= ge[i];
            acc[i] = _mm512_mask_add_ps(acc[i], mi, acc[i], x);
        }
    }
    UNROLL
    for (int i = 0; i < nr; i++)
        v[i] = _mm512_add_ps(v[i], acc[i]); /* per channel, rows_out applies the row scale */
}

/* y[i] for the nr (<= 4) rows o..o+nr-1 of token t from their fp32
 * accumulators acc[i] (per channel: not yet times the row scale): the
 * lanes' sum plus the overflow list (over_tile), per channel times s_i
 * and plus b_i G, with groups plus sum_g b_g * G_g. The accumulators stay
 * in registers (over_tile's array only with an overflow list), and per
 * channel the scale and bias are one 4-lane fma after the reduction: at
 * int2 a 2048-column tile is 4 superblocks a row, and this end of it had
 * cost ~15% of a one-thread stream on Zen 4 (docs/results.md §18). */
INLINE void rows_out(const mq_packed *p, int o, const mq_kact *a, int t, const __m512 *acc, float *y,
                     const int nr, const bool in_regs) {
    int ng = p->ngroups, nb = a->kp / MQ_PACK_BLOCK;
    const float *G = a->gsum + (size_t)t * nb;
    const __mmask8 rm = (__mmask8)((1u << nr) - 1);
    __m512 v0, v1, v2, v3;
    if (in_regs) {
        const __m512 z = _mm512_setzero_ps();
        v0 = acc[0], v1 = nr > 1 ? acc[1] : z, v2 = nr > 2 ? acc[2] : z, v3 = nr > 3 ? acc[3] : z;
        if (p->extra) {
            __m512 v[4] = {v0, v1, v2, v3};
            over_tile(p, o, a, t, v, nr);
            v0 = v[0], v1 = v[1], v2 = v[2], v3 = v[3];
        }
    } else {
        __m512 v[4];
        for (int i = 0; i < 4; i++) v[i] = i < nr ? acc[i] : _mm512_setzero_ps();
        if (p->extra) over_tile(p, o, a, t, v, nr);
        v0 = v[0], v1 = v[1], v2 = v[2], v3 = v[3];
    }
    if (ng == 1) {
        __m128 S = _mm_maskz_loadu_ps(rm, p->scale + o), Bv = _mm_maskz_loadu_ps(rm, p->bias + o);
        _mm_mask_storeu_ps(y, rm, _mm_fmadd_ps(reduce4(v0, v1, v2, v3), S, _mm_mul_ps(Bv, _mm_set1_ps(G[0]))));
        return;
    }
    for (int g = 0; g < ng; g += 16) {
        __mmask16 m = ng - g >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (ng - g)) - 1);
        __m512 Gv = _mm512_maskz_loadu_ps(m, G + g);
        const float *b = p->bias + (size_t)o * ng + g;
        v0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, b), Gv, v0);
        if (nr > 1) v1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, b + ng), Gv, v1);
        if (nr > 2) v2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, b + 2 * (size_t)ng), Gv, v2);
        if (nr > 3) v3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, b + 3 * (size_t)ng), Gv, v3);
    }
    _mm_mask_storeu_ps(y, rm, reduce4(v0, v1, v2, v3));
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
                acc = _mm512_dpbusd_epi32(acc, unpack_at(w, c, ns, r), _mm512_loadu_si512(x + (size_t)c * 64));
            }
            _mm512_storeu_si512(I + 16 * sb, acc);
        }
        for (int c = 8 * ns; c < nc; c++) {
            __m512i P = chunk_dot(unpack_at(w, c, ns, r), x + (size_t)c * MQ_PACK_CHUNK);
            I[2 * c] = _mm512_mask_reduce_add_epi32(0x00FF, P);
            I[2 * c + 1] = _mm512_mask_reduce_add_epi32(0xFF00, P);
        }
        if (p->extra) mq_kern_over_dots(p, o, a->q + (size_t)t * a->kp, I);
    }
}

static void dots_avx512(const mq_packed *p, int o0, int o1, const mq_kact *a, int t, int32_t *out) {
    MQ_KERN_BY_WIDTH(p->bits, dots_r, p, o0, o1, a, t, out);
}

/* --------------------------------------------------- a tile of products */

#define TR 4 /* gemv rows per tile at most (each activation chunk serves them all): 8 rows streamed at once
                from memory decoded 35% slower (docs/results.md §7); see gemv_tile_rows for 2 or 4 */
#define PF_AHEAD 16384 /* prefetch distance in bytes (best of 6-24 KiB measured, §8; 8-32 KiB alike on a Xeon, §16) */

/* One superblock of grouped rows (G2 at r = 2, G4 at r = 4; pack.h) w, w +
 * rb, .. (nr <= TR) into the int32 block dots out[i] (lane l = block l),
 * from whole 64-byte loads: per group of F = 8/r chunks and row one load,
 * and field f masked in place ((2^r - 1) << rf: 2^(rf) times chunk
 * F q + f's codes, in stored order) times activation chunk F q + f, one
 * accumulator per field; the fields are joined exactly at the end (an
 * arithmetic shift of a multiple of 2^(rf)). On Zen 4 this step runs at
 * ~1.0-1.3 core cycles per 64 weights, a 16- or 32-byte broadcast per chunk at
 * ~2 (bench/vnnimix.c, docs/results.md §14). A lane sums 8/F chunks x 4
 * products of at most 192 * 127 (r = 2) or 240 * 127 (r = 4): < 2^24. */
/* sb_grouped's step over the group of chunks c.. of every row (explicit
 * calls, not a loop: -O1 cannot honour an unroll pragma there, and the
 * rolled loop cost int2 a quarter of its speed) */
INLINE void group_step(const uint8_t *w, size_t rb, const int8_t *x, int c, const __m512i *m, __m512i (*acc)[4],
                       const int nr, const int r) {
    const int F = 8 / r;
    __m512i X[4];
    UNROLL
    for (int f = 0; f < F; f++) X[f] = _mm512_loadu_si512(x + (size_t)(c + f) * MQ_PACK_CHUNK);
    UNROLL
    for (int i = 0; i < nr; i++) {
        __m512i W = _mm512_loadu_si512(w + (size_t)i * rb + (size_t)c * 8 * r);
        UNROLL
        for (int f = 0; f < F; f++) acc[i][f] = _mm512_dpbusd_epi32(acc[i][f], _mm512_and_si512(W, m[f]), X[f]);
    }
}

INLINE void sb_grouped(const uint8_t *w, size_t rb, const int8_t *x, int sb, __m512i *out, const int nr,
                       const int r) {
    const int F = 8 / r;
    __m512i m[4], acc[TR][4];
    UNROLL
    for (int f = 0; f < F; f++) m[f] = _mm512_set1_epi8((char)(((1 << r) - 1) << (r * f)));
    UNROLL
    for (int i = 0; i < nr; i++)
        UNROLL
        for (int f = 0; f < F; f++) acc[i][f] = _mm512_setzero_si512();
    int c = 8 * sb;
    group_step(w, rb, x, c, m, acc, nr, r);
    group_step(w, rb, x, c + F, m, acc, nr, r);
    if (F == 2) { /* G4: 4 groups of 2 chunks */
        group_step(w, rb, x, c + 4, m, acc, nr, r);
        group_step(w, rb, x, c + 6, m, acc, nr, r);
    }
    UNROLL
    for (int i = 0; i < nr; i++) {
        out[i] = acc[i][0];
        UNROLL
        for (int f = 1; f < F; f++) out[i] = _mm512_add_epi32(out[i], _mm512_srai_epi32(acc[i][f], r * f));
    }
}

/* One G3 superblock (pack.h) of rows w, w + rb, .. (nr <= TR) into the
 * int32 block dots out[i] (lane l = block l), as sb_grouped does for G2:
 * per row its 3 groups in 3 whole 64-byte loads, each chunk's field masked
 * in place: chunks 0, 3, 6 at factor 1 (& 7), 1, 4, 7 at factor 8
 * (& 0x38), and 2, 5 at factor 16 (the 2 low bits shifted down to bits
 * 4-5, bit 2 at bit 6, merged by one bitwise select), one accumulator per
 * factor, joined exactly by arithmetic shifts. ~1.4-1.7 core cycles per 64
 * weights on Zen 4, P3 ~2.7-3.2 (bench/vnnimix.c, docs/results.md §15). A
 * lane sums at most 3 chunks x 4 products of 56 * 127 (factor 8) or 2 x 4
 * of 112 * 127 (factor 16): < 2^24. */
INLINE void sb_g3(const uint8_t *w, size_t rb, const int8_t *x, int sb, __m512i *out, const int nr) {
    const __m512i m7 = _mm512_set1_epi8(7), m38 = _mm512_set1_epi8(0x38), m30 = _mm512_set1_epi8(0x30),
                  m40 = _mm512_set1_epi8(0x40);
    const int8_t *xs = x + (size_t)sb * MQ_PACK_SUPER;
    __m512i X[8];
    UNROLL
    for (int v = 0; v < 8; v++) X[v] = _mm512_loadu_si512(xs + (size_t)v * MQ_PACK_CHUNK);
    UNROLL
    for (int i = 0; i < nr; i++) {
        const uint8_t *g = w + (size_t)i * rb + (size_t)sb * 192;
        __m512i g0 = _mm512_loadu_si512(g), g1 = _mm512_loadu_si512(g + 64), g2 = _mm512_loadu_si512(g + 128);
        __m512i a1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(g0, m7), X[0]);
        __m512i a8 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(g0, m38), X[1]);
        __m512i a16 = _mm512_dpbusd_epi32(
            _mm512_setzero_si512(),
            _mm512_ternarylogic_epi32(m30, _mm512_srli_epi16(g0, 2), _mm512_and_si512(g2, m40), 0xCA), X[2]);
        a1 = _mm512_dpbusd_epi32(a1, _mm512_and_si512(g1, m7), X[3]);
        a8 = _mm512_dpbusd_epi32(a8, _mm512_and_si512(g1, m38), X[4]);
        a16 = _mm512_dpbusd_epi32(
            a16, _mm512_ternarylogic_epi32(m30, _mm512_srli_epi16(g1, 2), _mm512_and_si512(_mm512_srli_epi16(g2, 1), m40), 0xCA),
            X[5]);
        a1 = _mm512_dpbusd_epi32(a1, _mm512_and_si512(g2, m7), X[6]);
        a8 = _mm512_dpbusd_epi32(a8, _mm512_and_si512(g2, m38), X[7]);
        out[i] = _mm512_add_epi32(a1, _mm512_add_epi32(_mm512_srai_epi32(a8, 3), _mm512_srai_epi32(a16, 4)));
    }
}

/* Decode: rows o..o+nr-1 (nr <= TR, a constant per call) of token 0 into
 * y[o + i]. Superblocks: per row one int32 accumulator takes the 8 chunks'
 * vpdpbusd (lane l = block l), then one conversion and one fma with
 * d_k * s_g(k) per 512 weights. Tail chunks: one conversion per chunk with
 * the per-lane d (dvec). */
INLINE void gv_tile(const mq_packed *p, int o, const mq_kact *a, float *y, const int r, const int nr) {
    int nc = p->kp / MQ_PACK_CHUNK, ng = p->ngroups, ns = p->nsuper;
    int sh = group_shift(p);
    __m512i gidx = block_group_idx(sh);
    const int8_t *x = a->qs;
    const float *d = a->d, *dv = a->dvec;
    const uint8_t *w = p->data + (size_t)o * p->row_bytes;
    const float *s = p->scale + (size_t)o * ng;
    size_t rb = p->row_bytes;
    __m512 facc[TR];
    UNROLL
    for (int i = 0; i < nr; i++) facc[i] = _mm512_setzero_ps();
    /* software prefetch into L2, PF_AHEAD bytes ahead of the tile's reads
     * (its rows are contiguous, and so are consecutive tiles): a 2048-column
     * row at int2 is 8 cache lines, too short a stream for the hardware
     * prefetchers to lock on; with this, a 2-thread decode streams its
     * weights at ~85% of the measured read bandwidth instead of ~45%
     * (docs/results.md §8). */
    const char *pf = (const char *)w + PF_AHEAD;
    if (p->extra) { /* the overflow list is a second stream: the tile's lines of it, 4 KiB ahead */
        uintptr_t b0 = ((uintptr_t)(p->over_col + p->over_ptr[o]) + 4096) & ~(uintptr_t)63;
        uintptr_t b1 = (uintptr_t)(p->over_col + p->over_ptr[o + nr]) + 4096;
        for (uintptr_t b = b0; b < b1; b += 64) _mm_prefetch((const char *)b, _MM_HINT_T1);
    }
    for (int sb = 0; sb < ns; sb++) {
        UNROLL
        for (int l = 0; l < nr * r; l++) _mm_prefetch(pf + 64 * l, _MM_HINT_T1);
        pf += nr * 64 * r;
        __m512i acc[TR];
        if (r == 2 || r == 4) {
            sb_grouped(w, rb, x, sb, acc, nr, r);
        } else if (r == 3) {
            sb_g3(w, rb, x, sb, acc, nr);
        } else {
            UNROLL
            for (int i = 0; i < nr; i++) acc[i] = _mm512_setzero_si512();
            UNROLL
            for (int v = 0; v < 8; v++) {
                int c = 8 * sb + v;
                __m512i X = _mm512_loadu_si512(x + (size_t)c * MQ_PACK_CHUNK);
                UNROLL
                for (int i = 0; i < nr; i++)
                    acc[i] = _mm512_dpbusd_epi32(acc[i], unpack(w + (size_t)i * rb + (size_t)c * 8 * r, r), X);
            }
        }
        __m512 D = _mm512_loadu_ps(d + 16 * sb);
        UNROLL
        for (int i = 0; i < nr; i++) {
            __m512 m = ng == 1 ? D : _mm512_mul_ps(D, block_scales(p, s + (size_t)i * ng, sb, sh, gidx));
            facc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i]), m, facc[i]);
        }
    }
    /* tail chunks, natural order: lanes 0-7 block 2c, 8-15 block 2c+1 */
    for (int c = 8 * ns; c < nc; c++) {
        int g0 = 0, g1 = 0;
        if (ng > 1) chunk_groups(p, c, sh, &g0, &g1);
        __m512i X = _mm512_loadu_si512(x + (size_t)c * MQ_PACK_CHUNK);
        __m512 D = _mm512_load_ps(dv + (size_t)c * 16);
        UNROLL
        for (int i = 0; i < nr; i++) {
            __m512i W = unpack(w + (size_t)i * rb + (size_t)c * 8 * r, r);
            __m512 m = ng > 1 ? _mm512_mul_ps(D, chunk_scale(s + (size_t)i * ng, g0, g1)) : D;
            facc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), W, X)), m, facc[i]);
        }
    }
    rows_out(p, o, a, 0, facc, y + o, nr, r != 4);
}

/* --------------------------------------------------------------- gemv */

/* Rows per decode tile: 2 on Intel CPUs, 4 elsewhere; mq_kern_set_gemv_rows
 * overrides (tests). On a 2-core Xeon with AMX (docs/results.md §16) tiles
 * of 2 rows streamed the 1.1B shape 4-13% faster than 4 at every width (three
 * alternated rounds); 4 rows were chosen on AMD machines (§7, §14), where 2
 * were not measured and load ports are the int2 step's limit. */
static int gemv_rows_set;
void mq_kern_set_gemv_rows(int rows) {
    MQ_ASSERT(rows == 0 || rows == 2 || rows == 4);
    __atomic_store_n(&gemv_rows_set, rows, __ATOMIC_RELAXED);
}
static int gemv_tile_rows(void) {
    static int cpu;
    int r = __atomic_load_n(&gemv_rows_set, __ATOMIC_RELAXED);
    if (r) return r;
    if (!(r = __atomic_load_n(&cpu, __ATOMIC_RELAXED))) {
        __builtin_cpu_init();
        r = __builtin_cpu_is("intel") ? 2 : 4;
        __atomic_store_n(&cpu, r, __ATOMIC_RELAXED);
    }
    return r;
}

INLINE void gemv_r(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y, const int r) {
    int o = o0;
    if (gemv_tile_rows() == 2)
        for (; o + 2 <= o1; o += 2) gv_tile(p, o, a, y, r, 2);
    else
        for (; o + 4 <= o1; o += 4) gv_tile(p, o, a, y, r, 4);
    switch (o1 - o) { /* fewer than a tile left */
    case 3: gv_tile(p, o, a, y, r, 3); break;
    case 2: gv_tile(p, o, a, y, r, 2); break;
    case 1: gv_tile(p, o, a, y, r, 1); break;
    default: break;
    }
}

/* One function per width, not one switch over inlined bodies: GCC
 * allocates registers over a whole function, and with every width's loop in
 * one body a change to one width's code moved another's spills and its
 * speed by up to 25% (docs/results.md §18). */
#define GEMV_WIDTH(R)                                                                                          \
    static __attribute__((noinline)) void gemv_w##R(const mq_packed *p, int o0, int o1, const mq_kact *a,     \
                                                    float *y) {                                               \
        gemv_r(p, o0, o1, a, y, R);                                                                            \
    }
GEMV_WIDTH(8)
GEMV_WIDTH(6)
GEMV_WIDTH(4)
GEMV_WIDTH(3)
GEMV_WIDTH(2)
#define GEMV_CALL(p, o0, o1, a, y, R) gemv_w##R(p, o0, o1, a, y)

static void gemv_avx512(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y) {
    MQ_KERN_BY_WIDTH(p->bits, GEMV_CALL, p, o0, o1, a, y);
}

/* --------------------------------------------------------------- gemm */

#define OV_T 144 /* gemm: tokens per pass of precomputed overflow terms at most (9 vectors of 16) */
#define OV_V (OV_T / 16)

/* The overflow terms of rows o..o+nr-1 (nr <= TR) for tokens tc..tc+nt-1
 * (nt <= OV_T) into ov[i * OV_T + t]: each overflow weight adds s_g times
 * its column of xhat_t (the chunk's tokens, 16 per vector). */
static void over_chunk(const mq_packed *p, int o, int nr, const mq_kact *a, int tc, int nt, float *ov) {
    int B = a->B, ng = p->ngroups, sh = group_shift(p), nv = (nt + 15) / 16;
    __mmask16 m[OV_V];
    for (int k = 0; k < OV_V; k++) {
        int left = nt - 16 * k;
        m[k] = left >= 16 ? (__mmask16)0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
    }
    for (int i = 0; i < nr; i++) {
        int row = o + i;
        const float *s = p->scale + (size_t)row * ng;
        __m512 acc[OV_V];
        for (int k = 0; k < OV_V; k++) acc[k] = _mm512_setzero_ps();
        for (uint32_t n = p->over_ptr[row]; n < p->over_ptr[row + 1]; n++) {
            uint32_t c = p->over_col[n];
            const float *xc = a->xhat_t + (size_t)c * B + tc;
            __m512 sv = _mm512_set1_ps(ng == 1 ? 1.0f : s[sh >= 0 ? (int)(c >> sh) : (int)(c / (uint32_t)p->group)]);
            for (int k = 0; k < nv; k++) acc[k] = _mm512_fmadd_ps(sv, _mm512_maskz_loadu_ps(m[k], xc + 16 * k), acc[k]);
        }
        __m512 s0 = _mm512_set1_ps(ng == 1 ? s[0] : 1.0f);
        for (int k = 0; k < nv; k++) _mm512_storeu_ps(ov + (size_t)i * OV_T + 16 * k, _mm512_mul_ps(acc[k], s0));
    }
}

/* Prompt products (B > 1) in tiles of GR = 4 rows x MQ_KACT_TT = 3 tokens.
 * Per row tile, pass of up to TOK_CHUNK tokens and K-slice (KS superblocks:
 * 4 rows x 2048 codes = 8 KiB, which stay in L1 while the pass's token
 * tiles run over them) the packed codes are unpacked once into plain bytes
 * (unpack), rows interleaved in stored chunk order: chunk c of row i at
 * wb[((c - c0) * GR + i) * 64]; with more than one group the steps' lane
 * scales likewise (sb). A token tile reads the activations and lane scales
 * in the tiled copies a->xt and a->dt (kern.h), so one pointer walks each
 * and 12 int32 accumulators take 12 vpdpbusd per chunk. After each step (a
 * superblock, or one tail chunk) they are converted and folded into 12 fp32
 * accumulators; after each slice those are reduced to one vector of the
 * tile's sums (lane 4j + i: token j, row i; mq_reduce12) and added to the
 * tile's partial outputs. The row scale (per channel), the bias term and
 * the overflow terms are applied once per tile at the end. Rows past o1
 * are zero codes, tokens past B are zero in xt/dt; neither is stored.
 * Unpacking to plain codes costs one pass per 129 tokens, and makes every
 * width run the int8 inner loop. docs/kernels.md draws it. */
#define GR 4
#define KS 4                   /* superblocks per K-slice */
#define WB_CHUNKS (8 * KS + 7) /* chunks of a slice at most: KS superblocks and the tail chunks */
#define WB_STEPS (KS + 7)
/* tokens per pass over an unpacked slice, whole tiles: 129 (one pass for a
 * 128-token prompt; <= OV_T, the overflow terms of a pass) */
#define TOK_CHUNK (43 * MQ_KACT_TT)
_Static_assert(TOK_CHUNK <= OV_T, "a pass's overflow terms must fit ov");

/* Rows o..o+nr-1, steps s0..s1-1 into wb and (groups) sb, rows past nr zero. */
INLINE void unpack_slice(const mq_packed *p, int o, int nr, int s0, int s1, uint8_t *wb, float *sb, const int r) {
    int ns = p->nsuper, ng = p->ngroups, sh = group_shift(p);
    int c0 = mq_kern_step_chunk(s0, ns), c1 = mq_kern_step_chunk(s1, ns);
    const uint8_t *w = p->data + (size_t)o * p->row_bytes;
    for (int c = c0; c < c1; c++)
        for (int i = 0; i < GR; i++)
            _mm512_store_si512(wb + ((size_t)(c - c0) * GR + i) * 64,
                               i < nr ? unpack_at(w + (size_t)i * p->row_bytes, c, ns, r) : _mm512_setzero_si512());
    if (ng == 1) return;
    __m512i gidx = block_group_idx(sh);
    for (int s = s0; s < s1; s++)
        for (int i = 0; i < GR; i++) {
            const float *srow = p->scale + (size_t)(o + i) * ng;
            __m512 S = _mm512_setzero_ps();
            if (i < nr && s < ns) S = block_scales(p, srow, s, sh, gidx);
            else if (i < nr) {
                int g0, g1;
                chunk_groups(p, mq_kern_step_chunk(s, ns), sh, &g0, &g1);
                S = chunk_scale(srow, g0, g1);
            }
            _mm512_store_ps(sb + ((size_t)(s - s0) * GR + i) * 16, S);
        }
}

/* vpdpbusd of the 4 unpacked weight chunks w0..w3 (rows 0-3) with the
 * activation chunks of NX tokens at x + off (64 bytes each) into the
 * accumulators A[4j + i]. In assembly because GCC, short of registers with
 * the tile's fp32 accumulators live, re-loaded the weights for every token
 * or spilled accumulators (measured: 20 loads per 16 vpdpbusd). */
#define DP_TOK2(off, A)                                                                                        \
    __asm__("vmovdqa64 " #off "(%[x]), %%zmm30\n\t"                                                           \
            "vmovdqa64 " #off "+64(%[x]), %%zmm31\n\t"                                                        \
            "vpdpbusd %%zmm30, %[w0], %[a0]\n\t"                                                              \
            "vpdpbusd %%zmm30, %[w1], %[a1]\n\t"                                                              \
            "vpdpbusd %%zmm30, %[w2], %[a2]\n\t"                                                              \
            "vpdpbusd %%zmm30, %[w3], %[a3]\n\t"                                                              \
            "vpdpbusd %%zmm31, %[w0], %[a4]\n\t"                                                              \
            "vpdpbusd %%zmm31, %[w1], %[a5]\n\t"                                                              \
            "vpdpbusd %%zmm31, %[w2], %[a6]\n\t"                                                              \
            "vpdpbusd %%zmm31, %[w3], %[a7]\n\t"                                                              \
            : [a0] "+v"((A)[0]), [a1] "+v"((A)[1]), [a2] "+v"((A)[2]), [a3] "+v"((A)[3]), [a4] "+v"((A)[4]), \
              [a5] "+v"((A)[5]), [a6] "+v"((A)[6]), [a7] "+v"((A)[7])                                        \
            : [w0] "v"(W0), [w1] "v"(W1), [w2] "v"(W2), [w3] "v"(W3), [x] "r"(xv),                           \
              "m"(*(const int8_t(*)[MQ_KACT_TT * 64])xv)                                                     \
            : "zmm30", "zmm31")
#define DP_TOK1(off, A)                                                                                        \
    __asm__("vmovdqa64 " #off "(%[x]), %%zmm30\n\t"                                                           \
            "vpdpbusd %%zmm30, %[w0], %[a0]\n\t"                                                              \
            "vpdpbusd %%zmm30, %[w1], %[a1]\n\t"                                                              \
            "vpdpbusd %%zmm30, %[w2], %[a2]\n\t"                                                              \
            "vpdpbusd %%zmm30, %[w3], %[a3]\n\t"                                                              \
            : [a0] "+v"((A)[0]), [a1] "+v"((A)[1]), [a2] "+v"((A)[2]), [a3] "+v"((A)[3])                     \
            : [w0] "v"(W0), [w1] "v"(W1), [w2] "v"(W2), [w3] "v"(W3), [x] "r"(xv),                           \
              "m"(*(const int8_t(*)[MQ_KACT_TT * 64])xv)                                                     \
            : "zmm30")

/* The n (8: a superblock, 1: a tail chunk) chunks of one step into the
 * tile's NACC = 4 x 3 fp32 accumulators (all of them, the 12 int32 ones,
 * 4 weight and 2 activation registers: 30 of the 32 zmm). */
#define NACC (GR * MQ_KACT_TT)
INLINE void tile_step(const uint8_t *wc, const int8_t *xc, const float *dp, const float *sp, bool grouped,
                      __m512 *facc, const int n) {
    _Static_assert(MQ_KACT_TT == 3, "tile_step's assembly is written for 3 tokens per tile");
    __m512i acc[NACC];
    UNROLL
    for (int k = 0; k < NACC; k++) acc[k] = _mm512_setzero_si512();
    UNROLL
    for (int v = 0; v < n; v++) {
        const uint8_t *wv = wc + (size_t)v * GR * 64;
        const int8_t *xv = xc + (size_t)v * MQ_KACT_TT * 64;
        __m512i W0 = _mm512_load_si512(wv), W1 = _mm512_load_si512(wv + 64), W2 = _mm512_load_si512(wv + 128),
                W3 = _mm512_load_si512(wv + 192);
        /* the activation stream comes from L2: into L1 8 chunks ahead */
        _mm_prefetch((const char *)xv + 8 * MQ_KACT_TT * 64, _MM_HINT_T0);
        _mm_prefetch((const char *)xv + 8 * MQ_KACT_TT * 64 + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)xv + 8 * MQ_KACT_TT * 64 + 128, _MM_HINT_T0);
        DP_TOK2(0, acc);
        DP_TOK1(128, acc + 8);
    }
    UNROLL
    for (int j = 0; j < MQ_KACT_TT; j++) {
        __m512 D = _mm512_load_ps(dp + 16 * j);
        UNROLL
        for (int i = 0; i < GR; i++) {
            __m512 m = grouped ? _mm512_mul_ps(D, _mm512_load_ps(sp + 16 * i)) : D;
            facc[4 * j + i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[4 * j + i]), m, facc[4 * j + i]);
        }
    }
}

/* Token tile T over steps s0..s1-1 of the unpacked slice: *part += the tile's sums (lane 4j + i). */
INLINE void tile_slice(const mq_kact *a, int T, int s0, int s1, int ns, const uint8_t *wb, const float *sb,
                       bool grouped, __m512 *part) {
    int nc = a->kp / MQ_PACK_CHUNK;
    const int8_t *xt = a->xt + (size_t)T * nc * MQ_KACT_TT * 64;
    const float *dt = a->dt + (size_t)T * mq_kact_nsteps(a->kp) * MQ_KACT_TT * 16;
    __m512 facc[NACC];
    UNROLL
    for (int k = 0; k < NACC; k++) facc[k] = _mm512_setzero_ps();
    const uint8_t *wc = wb;
    for (int s = s0; s < s1; s++) {
        const int8_t *xc = xt + (size_t)mq_kern_step_chunk(s, ns) * MQ_KACT_TT * 64;
        const float *dp = dt + (size_t)s * MQ_KACT_TT * 16, *sp = sb + (size_t)(s - s0) * GR * 16;
        if (s < ns) {
            tile_step(wc, xc, dp, sp, grouped, facc, 8);
            wc += 8 * GR * 64;
        } else {
            tile_step(wc, xc, dp, sp, grouped, facc, 1);
            wc += GR * 64;
        }
    }
    *part = _mm512_add_ps(*part, mq_reduce12(facc));
}

/* Outputs of token tile (tokens t0..t0+nt-1, rows o..o+nr-1) from its sums
 * part: times the row scale (per channel; groups folded it per step), plus
 * sum_g b_g * G_g, plus the overflow terms ov (2x, rows x OV_T, token t0 at
 * ov[0]); masked stores. */
static void tile_out(const mq_packed *p, int o, int nr, const mq_kact *a, int t0, int nt, __m512 part, const float *ov,
                     float *y, int ldy) {
    int ng = p->ngroups, nb = a->kp / MQ_PACK_BLOCK;
    __mmask8 rm = (__mmask8)((1u << nr) - 1);
    __m512 out = part;
    if (ng == 1) {
        __m512 S = _mm512_broadcast_f32x4(_mm_maskz_loadu_ps(rm, p->scale + o));
        __m512 Bv = _mm512_broadcast_f32x4(_mm_maskz_loadu_ps(rm, p->bias + o));
        float g4[4];
        for (int j = 0; j < 4; j++) g4[j] = j < nt ? a->gsum[(size_t)(t0 + j) * nb] : 0.0f;
        __m512 Gv = _mm512_permutexvar_ps(_mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0),
                                          _mm512_castps128_ps512(_mm_loadu_ps(g4)));
        out = _mm512_fmadd_ps(Bv, Gv, _mm512_mul_ps(out, S));
    } else { /* sum_g b_g G_g: the tile's 12 sums in registers (whole loops; missing rows and tokens are zeros) */
        __m512 bacc[16];
        UNROLL
        for (int k = 0; k < 16; k++) bacc[k] = _mm512_setzero_ps();
        for (int g = 0; g < ng; g += 16) {
            __mmask16 m = ng - g >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (ng - g)) - 1);
            __m512 Gv[MQ_KACT_TT];
            UNROLL
            for (int j = 0; j < MQ_KACT_TT; j++)
                Gv[j] = _mm512_maskz_loadu_ps(j < nt ? m : 0, a->gsum + (size_t)(t0 + (j < nt ? j : 0)) * nb + g);
            UNROLL
            for (int i = 0; i < GR; i++) {
                __m512 Bi = _mm512_maskz_loadu_ps(i < nr ? m : 0, p->bias + (size_t)(o + (i < nr ? i : 0)) * ng + g);
                UNROLL
                for (int j = 0; j < MQ_KACT_TT; j++) bacc[4 * j + i] = _mm512_fmadd_ps(Bi, Gv[j], bacc[4 * j + i]);
            }
        }
        out = _mm512_add_ps(out, mq_reduce16(bacc));
    }
    if (ov) {
        float res[16] __attribute__((aligned(64)));
        for (int k = 0; k < 16; k++) res[k] = 0.0f;
        for (int j = 0; j < nt; j++)
            for (int i = 0; i < nr; i++) res[4 * j + i] = ov[i * OV_T + j];
        out = _mm512_add_ps(out, _mm512_load_ps(res));
    }
    _Static_assert(MQ_KACT_TT == 3, "tile_out stores 3 tokens");
    _mm_mask_storeu_ps(y + (size_t)t0 * ldy + o, rm, _mm512_castps512_ps128(out));
    if (nt > 1) _mm_mask_storeu_ps(y + (size_t)(t0 + 1) * ldy + o, rm, _mm512_extractf32x4_ps(out, 1));
    if (nt > 2) _mm_mask_storeu_ps(y + (size_t)(t0 + 2) * ldy + o, rm, _mm512_extractf32x4_ps(out, 2));
}

INLINE void gemm_r(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y, int ldy, const int r) {
    int B = a->B, ns = p->nsuper, nsteps = mq_kact_nsteps(a->kp);
    bool grouped = p->ngroups > 1;
    uint8_t wb[WB_CHUNKS * GR * 64] __attribute__((aligned(64)));
    float sb[WB_STEPS * GR * 16] __attribute__((aligned(64)));
    float ov[GR * OV_T] __attribute__((aligned(64)));
    __m512 part[TOK_CHUNK / MQ_KACT_TT];
    for (int o = o0; o < o1; o += GR) {
        int nr = o1 - o < GR ? o1 - o : GR;
        for (int tc = 0; tc < B; tc += TOK_CHUNK) {
            int te = tc + TOK_CHUNK < B ? tc + TOK_CHUNK : B, ntile = (te - tc + MQ_KACT_TT - 1) / MQ_KACT_TT;
            if (p->extra) over_chunk(p, o, nr, a, tc, te - tc, ov);
            for (int q = 0; q < ntile; q++) part[q] = _mm512_setzero_ps();
            for (int s0 = 0, s1; s0 < nsteps; s0 = s1) {
                s1 = s0 + KS < ns ? s0 + KS : nsteps;
                unpack_slice(p, o, nr, s0, s1, wb, sb, r);
                mq_kern_prefetch_next_slice(p, o, o1, GR, s1, KS, r);
                for (int q = 0; q < ntile; q++)
                    tile_slice(a, tc / MQ_KACT_TT + q, s0, s1, ns, wb, sb, grouped, &part[q]);
            }
            for (int q = 0; q < ntile; q++) {
                int t0 = tc + MQ_KACT_TT * q, nt = te - t0 < MQ_KACT_TT ? te - t0 : MQ_KACT_TT;
                tile_out(p, o, nr, a, t0, nt, part[q], p->extra ? ov + (t0 - tc) : NULL, y, ldy);
            }
        }
    }
}

static void gemm_avx512(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y, int ldy) {
    if (a->B == 1 || !a->xt) { /* one token: the decode kernel */
        gemv_avx512(p, o0, o1, a, y);
        return;
    }
    MQ_KERN_BY_WIDTH(p->bits, gemm_r, p, o0, o1, a, y, ldy);
}

const mq_kern_ops mq_kern_avx512_ops = {"avx512", dots_avx512, gemv_avx512, gemm_avx512};

/*
 * kern_avx2.c — AVX2 kernels for the packed layouts (pack.h): unsigned codes
 * times int8 activations with vpmaddubsw (u8 x s8 pairs summed into int16),
 * 32 weights per instruction. Compiled with -mavx2 -mfma -mf16c (Makefile
 * per-file flags) and only called when dispatch.c found AVX2 and FMA.
 *
 * Not here: the reference semantics (kern_scalar.c, kern.h).
 *
 * A 64-weight stored chunk unpacks into two ymm halves (bytes 0-31, 32-63),
 * byte i of a half multiplying activation byte i of the same half
 * (mq_kact.qs, the stored order of pack.h). In a superblock int32 lane l of
 * the low half's dot belongs to block l and of the high half's to block
 * 8 + l, in all 8 stored chunks; in a tail chunk (natural order) each half
 * is one block.
 *
 * The multiplier is the bottleneck of an AVX2 core (Zen 3 issues about one
 * vpmaddubsw/vpmaddwd pair per cycle), so the kernels spend as few of them
 * per weight as the int16 range allows (docs/kernels.md, "AVX2"):
 *  - int16 sums: vpmaddubsw's pairs (<= 2 * qmax * 127) are added in int16
 *    over K16(r) chunks before one vpmaddwd widens them: all 8 chunks of a
 *    superblock for r <= 4, 2 for r = 6, 1 for r = 8;
 *  - r = 8: codes up to 255 would overflow a pair, so the code is centred,
 *    w' = q - 128 (one xor), and vpmaddubsw(|w'|, sign(x, w')) gives
 *    sum w' x with pairs <= 2 * 128 * 127 = 32512; the missing
 *    128 * sum x of each block is 128 * s_g * G_g per group, added with the
 *    bias term (in dots: 128 * the block's integer sum);
 *  - r = 2 unpacks without the second shift: the low half's upper 128-bit
 *    lane keeps its codes at bits 2-3 (4 * w), so int32 lanes 4-7 carry a
 *    factor 4 in every chunk, undone once per row (a power of two: exact);
 *    the decode superblocks (sb_g2) skip the shifts altogether: fields
 *    masked in place, one int16 accumulator per factor.
 * Unpacking: G2 (r = 2 superblocks, pack.h) = the group's two 32-byte
 * halves >> 2f, & 3, the upper 128-bit lanes moved up 2 bits for the same
 * factor 4 (unpack_at); G4 (r = 4 superblocks) = the halves >> 4f, & 15;
 * G3 (r = 3 superblocks) = the halves >> 3f', & 7 (chunks 2 and 5: & 3,
 * bit 2 from group 2's halves);
 * P2 = the 16 plane bytes broadcast to both lanes, & (3 | 12)
 * and (>> 4) & (3 | 12); P4 = & 15 and (>> 4) & 15; P1 = 32 bits per half
 * spread to bytes (vpshufb of the broadcast word, test 1,2,..,128, compare);
 * r = 6 places its P2 bits at 4-5 with one variable shift and a mask.
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

/* Chunks whose vpmaddubsw pairs are summed in int16 before widening:
 * 8 * 2 * 12 * 127 (r = 2 with the factor 4) = 24384, 8 * 2 * 7 * 127 =
 * 14224 (r = 3), 8 * 2 * 15 * 127 = 30480 (r = 4), 2 * 2 * 63 * 127 = 32004
 * (r = 6), 2 * 128 * 127 = 32512 (r = 8, centred): all <= 32767. */
INLINE int k16(const int r) { return r == 8 ? 1 : r == 6 ? 2 : 8; }

INLINE __m256i p1_half(const uint8_t *src, int value) {
    const __m256i idx = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i sel = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    int32_t m;
    memcpy(&m, src, 4);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(m), idx);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel);
    return _mm256_and_si256(v, _mm256_set1_epi8((char)value));
}

/* The 64 codes of one stored chunk. scaled: r = 2 leaves the factor 4 in
 * the upper 128-bit lanes (see the header); else plain codes. r = 8: the
 * bytes as stored (the callers centre them). */
INLINE half2 unpack(const uint8_t *src, const int r, const bool scaled) {
    half2 h;
    const __m256i m15 = _mm256_set1_epi8(15);
    switch (r) {
    case 8:
        h.lo = _mm256_loadu_si256((const __m256i *)src);
        h.hi = _mm256_loadu_si256((const __m256i *)(src + 32));
        return h;
    case 4: {
        __m256i v = _mm256_loadu_si256((const __m256i *)src);
        h.lo = _mm256_and_si256(v, m15);
        h.hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m15);
        return h;
    }
    case 2: {
        __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)src));
        if (scaled) {
            const __m256i m = _mm256_set_m128i(_mm_set1_epi8(12), _mm_set1_epi8(3));
            h.lo = _mm256_and_si256(v, m);
            h.hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m);
        } else {
            const __m256i m = _mm256_set1_epi8(3);
            h.lo = _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_set_epi64x(2, 2, 0, 0)), m);
            h.hi = _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_set_epi64x(6, 6, 4, 4)), m);
        }
        return h;
    }
    case 3: {
        __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)src)), m = _mm256_set1_epi8(3);
        h.lo = _mm256_or_si256(_mm256_and_si256(_mm256_srlv_epi64(v, _mm256_set_epi64x(2, 2, 0, 0)), m),
                               p1_half(src + 16, 4));
        h.hi = _mm256_or_si256(_mm256_and_si256(_mm256_srlv_epi64(v, _mm256_set_epi64x(6, 6, 4, 4)), m),
                               p1_half(src + 20, 4));
        return h;
    }
    default: { /* 6: P4 (w & 15), then P2 (w >> 4) moved to bits 4-5 */
        __m256i v = _mm256_loadu_si256((const __m256i *)src);
        __m256i u = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(src + 32)));
        const __m256i m48 = _mm256_set1_epi8(48);
        h.lo = _mm256_or_si256(_mm256_and_si256(v, m15),
                               _mm256_and_si256(_mm256_sllv_epi64(u, _mm256_set_epi64x(2, 2, 4, 4)), m48));
        h.hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m15),
                               _mm256_and_si256(_mm256_srlv_epi64(u, _mm256_set_epi64x(2, 2, 0, 0)), m48));
        return h;
    }
    }
}

/* Stored chunk c of a row as unpack gives it (pack.h: the chunk's field
 * of its G2 / G3 / G4 group in the superblocks at r = 2, 3 and 4, two
 * 32-byte loads, one shift and one mask per half, and at r = 3 for chunks
 * 2 and 5 the same for bit 2 from group 2; scaled, at r = 2, moves each
 * half's upper 128-bit lane up by 2 bits, the factor 4 of unpack's P2). */
INLINE half2 unpack_at(const uint8_t *row, int c, int ns, const int r, const bool scaled) {
    if (mq_pack_g3(r, ns, c)) { /* the group's halves >> 3 (c % 8 % 3), & 7, or & 3 and bit 2 from group 2 */
        const uint8_t *g = row + mq_pack_g3_offset(c), *hg = row + mq_pack_g3_hi_offset(c);
        __m128i sh = _mm_cvtsi32_si128(mq_pack_g3_shift(c)), hs = _mm_cvtsi32_si128(mq_pack_g3_hi_bit(c) - 2);
        bool split = mq_pack_g3_split(c);
        const __m256i m = _mm256_set1_epi8(split ? 3 : 7), m4 = _mm256_set1_epi8(4);
        half2 h;
        h.lo = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)g), sh), m);
        h.hi = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(g + 32)), sh), m);
        if (split) {
            h.lo = _mm256_or_si256(h.lo, _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)hg), hs), m4));
            h.hi = _mm256_or_si256(h.hi,
                                   _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(hg + 32)), hs), m4));
        }
        return h;
    }
    if (mq_pack_grouped(r, ns, c)) {
        const uint8_t *g = row + mq_pack_group_offset(r, c);
        __m128i sh = _mm_cvtsi32_si128(mq_pack_group_shift(r, c));
        const __m256i m = _mm256_set1_epi8((char)((1 << r) - 1));
        half2 h;
        h.lo = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)g), sh), m);
        h.hi = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(g + 32)), sh), m);
        if (r == 2 && scaled) {
            const __m256i up = _mm256_set_epi64x(2, 2, 0, 0);
            h.lo = _mm256_sllv_epi64(h.lo, up);
            h.hi = _mm256_sllv_epi64(h.hi, up);
        }
        return h;
    }
    return unpack(row + (size_t)c * 8 * r, r, scaled);
}

/* The int16 pair sums of one half: codes w times activations x (r = 8: w
 * the stored codes, centred here). */
INLINE __m256i mul16(__m256i w, __m256i x, const int r) {
    if (r == 8) {
        __m256i c = _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80));
        return _mm256_maddubs_epi16(_mm256_abs_epi8(c), _mm256_sign_epi8(x, c));
    }
    return _mm256_maddubs_epi16(w, x);
}
INLINE __m256i widen(__m256i s16) { return _mm256_madd_epi16(s16, _mm256_set1_epi16(1)); }

/* log2(group) when the group is a power of two, else -1 (block_scales). */
INLINE int group_shift(const mq_packed *p) {
    return (p->group & (p->group - 1)) == 0 ? __builtin_ctz((unsigned)p->group) : -1;
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
/* The lane factors of unpack(.., scaled = true) undone: lanes 4-7 / 4 at r = 2. */
INLINE __m256 unscale(__m256 v, const int r) {
    return r == 2 ? _mm256_mul_ps(v, _mm256_set_ps(0.25f, 0.25f, 0.25f, 0.25f, 1, 1, 1, 1)) : v;
}

/* sum_g b_g * G_g (+ 128 * s_g * G_g at r = 8, the centring) + the
 * overflow weights of row o, for token t. */
static float row_tail(const mq_packed *p, int o, const mq_kact *a, int t) {
    int nb = a->kp / MQ_PACK_BLOCK, ng = p->ngroups;
    const float *b = p->bias + (size_t)o * ng, *s = p->scale + (size_t)o * ng, *G = a->gsum + (size_t)t * nb;
    /* at r = 8 the bias term is sum_g (b_g + 128 s_g) G_g */
    const __m256 c128 = _mm256_set1_ps(p->bits == 8 ? 128.0f : 0.0f);
    __m256 acc = _mm256_setzero_ps();
    int g = 0;
    for (; g + 8 <= ng; g += 8)
        acc = _mm256_fmadd_ps(_mm256_fmadd_ps(c128, _mm256_loadu_ps(s + g), _mm256_loadu_ps(b + g)),
                              _mm256_loadu_ps(G + g), acc);
    float y = hsum_f32(acc), k = p->bits == 8 ? 128.0f : 0.0f;
    for (; g < ng; g++) y += (b[g] + k * s[g]) * G[g];
    if (p->extra) y += mq_kern_over_float(p, o, a, t);
    return y;
}

/* ----------------------------------------------------------- integers */

INLINE void dots_r(const mq_packed *p, int o0, int o1, const mq_kact *a, int t, int32_t *out, const int r) {
    int nc = p->kp / MQ_PACK_CHUNK, nb = 2 * nc, ns = p->nsuper, K = k16(r);
    const int8_t *x = a->qs + (size_t)t * a->kp, *xn = a->q + (size_t)t * a->kp;
    const __m256i fac = r == 2 ? _mm256_set_epi32(2, 2, 2, 2, 0, 0, 0, 0) : _mm256_setzero_si256();
    for (int o = o0; o < o1; o++) {
        const uint8_t *w = p->data + (size_t)o * p->row_bytes;
        int32_t *I = out + (size_t)(o - o0) * nb;
        /* the same sums as gemv: int16 over K chunks, widened, lane factors */
        for (int sb = 0; sb < ns; sb++) {
            __m256i lo = _mm256_setzero_si256(), hi = lo;
            for (int v = 0; v < 8; v += K) {
                __m256i l16 = _mm256_setzero_si256(), h16 = l16;
                for (int u = 0; u < K; u++) {
                    int c = 8 * sb + v + u;
                    half2 W = unpack_at(w, c, ns, r, true);
                    const int8_t *xc = x + (size_t)c * MQ_PACK_CHUNK;
                    l16 = _mm256_add_epi16(l16, mul16(W.lo, _mm256_loadu_si256((const __m256i *)xc), r));
                    h16 = _mm256_add_epi16(h16, mul16(W.hi, _mm256_loadu_si256((const __m256i *)(xc + 32)), r));
                }
                lo = _mm256_add_epi32(lo, widen(l16));
                hi = _mm256_add_epi32(hi, widen(h16));
            }
            _mm256_storeu_si256((__m256i *)(I + 16 * sb), _mm256_srav_epi32(lo, fac));
            _mm256_storeu_si256((__m256i *)(I + 16 * sb + 8), _mm256_srav_epi32(hi, fac));
        }
        for (int c = 8 * ns; c < nc; c++) {
            half2 W = unpack_at(w, c, ns, r, true);
            const int8_t *xc = x + (size_t)c * MQ_PACK_CHUNK;
            I[2 * c] = hsum_i32(_mm256_srav_epi32(widen(mul16(W.lo, _mm256_loadu_si256((const __m256i *)xc), r)), fac));
            I[2 * c + 1] = hsum_i32(
                _mm256_srav_epi32(widen(mul16(W.hi, _mm256_loadu_si256((const __m256i *)(xc + 32)), r)), fac));
        }
        if (r == 8) /* the centring: + 128 * each block's sum of activations */
            for (int k = 0; k < nb; k++) {
                int32_t sx = 0;
                for (int j = 0; j < MQ_PACK_BLOCK; j++) sx += xn[k * MQ_PACK_BLOCK + j];
                I[k] += 128 * sx;
            }
        if (p->extra) mq_kern_over_dots(p, o, xn, I);
    }
}

static void dots_avx2(const mq_packed *p, int o0, int o1, const mq_kact *a, int t, int32_t *out) {
    MQ_KERN_BY_WIDTH(p->bits, dots_r, p, o0, o1, a, t, out);
}

/* The 16 block scales s_g(k) of superblock sb of row s: lanes 0-7 in *lo,
 * 8-15 in *hi (sh = log2(group) when the group is a power of two, else -1;
 * per channel the callers apply the one scale at the end). */
INLINE void block_scales(const mq_packed *p, const float *s, int sb, int sh, __m256 *lo, __m256 *hi) {
    int ng = p->ngroups;
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

/* --------------------------------------------------------------- gemv */

#define GV_ROWS 4       /* rows per decode tile: each activation chunk is loaded once for all */
#define PF_AHEAD 16384  /* software prefetch distance (as kern_avx512.c) */

/* One G2 superblock (r = 2, pack.h) of the row at w into its two int32
 * block-dot halves (lanes as unpack_at's scaled form gives them: the
 * upper 128-bit lane of each half times 4), without the unpack's shifts:
 * per 4-chunk group two 32-byte loads, field f masked in place (4^f times
 * chunk 4q+f's codes; field 3 shifted down to the plain codes), and one
 * int16 accumulator per factor 1, 4, 16 and half, joined by exact
 * arithmetic shifts before widening. About half the vector operations of
 * unpack_at's shift, mask and lane shift per chunk (docs/results.md §15).
 * int16 bounds: factor 1 sums 4 chunks of pairs <= 2 * 3 * 127 (3048),
 * factor 4 two of 2 * 12 * 127 (6096), factor 16 two of 2 * 48 * 127
 * (24384); the join <= 6096: no saturation. */
INLINE void sb_g2(const uint8_t *w, const int8_t *x, int sb, __m256i *lo, __m256i *hi) {
    const __m256i m3 = _mm256_set1_epi8(3), m12 = _mm256_set1_epi8(12), m48 = _mm256_set1_epi8(48);
    __m256i l1 = _mm256_setzero_si256(), l4 = l1, l16 = l1, h1 = l1, h4 = l1, h16 = l1;
    UNROLL
    for (int q = 0; q < 2; q++) {
        const uint8_t *g = w + (size_t)sb * 128 + (size_t)q * 64;
        const int8_t *xc = x + ((size_t)sb * 8 + (size_t)q * 4) * MQ_PACK_CHUNK;
        __m256i G0 = _mm256_loadu_si256((const __m256i *)g), G1 = _mm256_loadu_si256((const __m256i *)(g + 32));
#define X_(f, h) _mm256_loadu_si256((const __m256i *)(xc + (f) * MQ_PACK_CHUNK + 32 * (h)))
        l1 = _mm256_add_epi16(l1, _mm256_maddubs_epi16(_mm256_and_si256(G0, m3), X_(0, 0)));
        h1 = _mm256_add_epi16(h1, _mm256_maddubs_epi16(_mm256_and_si256(G1, m3), X_(0, 1)));
        l4 = _mm256_add_epi16(l4, _mm256_maddubs_epi16(_mm256_and_si256(G0, m12), X_(1, 0)));
        h4 = _mm256_add_epi16(h4, _mm256_maddubs_epi16(_mm256_and_si256(G1, m12), X_(1, 1)));
        l16 = _mm256_add_epi16(l16, _mm256_maddubs_epi16(_mm256_and_si256(G0, m48), X_(2, 0)));
        h16 = _mm256_add_epi16(h16, _mm256_maddubs_epi16(_mm256_and_si256(G1, m48), X_(2, 1)));
        l1 = _mm256_add_epi16(l1, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(G0, 6), m3), X_(3, 0)));
        h1 = _mm256_add_epi16(h1, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(G1, 6), m3), X_(3, 1)));
#undef X_
    }
    const __m256i up = _mm256_set_epi32(2, 2, 2, 2, 0, 0, 0, 0);
    l1 = _mm256_add_epi16(l1, _mm256_add_epi16(_mm256_srai_epi16(l4, 2), _mm256_srai_epi16(l16, 4)));
    h1 = _mm256_add_epi16(h1, _mm256_add_epi16(_mm256_srai_epi16(h4, 2), _mm256_srai_epi16(h16, 4)));
    *lo = _mm256_sllv_epi32(widen(l1), up);
    *hi = _mm256_sllv_epi32(widen(h1), up);
}

/* Superblock sb of rows w, w + rb, .. (nr <= GV_ROWS) into their int32
 * block-dot halves lo[i], hi[i] through unpack_at: per row and half an
 * int16 accumulator takes K16(r) chunks of vpmaddubsw, widened by one
 * vpmaddwd. */
INLINE void sb_unpacked(const uint8_t *w, size_t rb, const int8_t *x, int sb, int ns, __m256i *lo, __m256i *hi,
                        const int r, const int nr) {
    const int K = k16(r);
    UNROLL
    for (int i = 0; i < nr; i++) lo[i] = hi[i] = _mm256_setzero_si256();
    for (int v = 0; v < 8; v += K) {
        __m256i l16[GV_ROWS], h16[GV_ROWS];
        UNROLL
        for (int i = 0; i < nr; i++) l16[i] = h16[i] = _mm256_setzero_si256();
        UNROLL
        for (int u = 0; u < K; u++) {
            int c = 8 * sb + v + u;
            __m256i X0 = _mm256_loadu_si256((const __m256i *)(x + (size_t)c * MQ_PACK_CHUNK));
            __m256i X1 = _mm256_loadu_si256((const __m256i *)(x + (size_t)c * MQ_PACK_CHUNK + 32));
            UNROLL
            for (int i = 0; i < nr; i++) {
                half2 W = unpack_at(w + (size_t)i * rb, c, ns, r, true);
                l16[i] = _mm256_add_epi16(l16[i], mul16(W.lo, X0, r));
                h16[i] = _mm256_add_epi16(h16[i], mul16(W.hi, X1, r));
            }
        }
        UNROLL
        for (int i = 0; i < nr; i++) {
            lo[i] = _mm256_add_epi32(lo[i], widen(l16[i]));
            hi[i] = _mm256_add_epi32(hi[i], widen(h16[i]));
        }
    }
}

/* Decode: rows o..o+nr-1 of token 0 into y[o + i]. Per superblock and row
 * its two int32 block-dot halves (sb_g2 at r = 2, else sb_unpacked) are
 * converted and multiplied with d_k (* s_g(k)) into the row's fp32 lanes. */
INLINE void gv_tile(const mq_packed *p, int o, const mq_kact *a, float *y, const int r, const int nr) {
    int nc = p->kp / MQ_PACK_CHUNK, ng = p->ngroups, ns = p->nsuper;
    int sh = group_shift(p);
    const int8_t *x = a->qs;
    const float *d = a->d, *dv = a->dvec;
    const uint8_t *w = p->data + (size_t)o * p->row_bytes;
    const float *s = p->scale + (size_t)o * ng;
    size_t rb = p->row_bytes;
    __m256 facc[GV_ROWS];
    UNROLL
    for (int i = 0; i < nr; i++) facc[i] = _mm256_setzero_ps();
    /* prefetch into L2 ahead of the tile's contiguous rows: a short row is
     * too short a stream for the hardware prefetchers (kern_avx512.c) */
    const char *pf = (const char *)w + PF_AHEAD;
    if (p->extra) {
        const char *oc = (const char *)(p->over_col + p->over_ptr[o]) + 4096;
        _mm_prefetch(oc, _MM_HINT_T1);
        _mm_prefetch(oc + 64, _MM_HINT_T1);
    }
    for (int sb = 0; sb < ns; sb++) {
        UNROLL
        for (int l = 0; l < nr * r; l++) _mm_prefetch(pf + 64 * l, _MM_HINT_T1);
        pf += nr * 64 * r;
        __m256i lo[GV_ROWS], hi[GV_ROWS];
        if (r == 2) {
            UNROLL
            for (int i = 0; i < nr; i++) sb_g2(w + (size_t)i * rb, x, sb, &lo[i], &hi[i]);
        } else {
            sb_unpacked(w, rb, x, sb, ns, lo, hi, r, nr);
        }
        __m256 D0 = _mm256_loadu_ps(d + 16 * sb), D1 = _mm256_loadu_ps(d + 16 * sb + 8);
        UNROLL
        for (int i = 0; i < nr; i++) {
            __m256 M0 = D0, M1 = D1;
            if (ng > 1) {
                __m256 S0, S1;
                block_scales(p, s + (size_t)i * ng, sb, sh, &S0, &S1);
                M0 = _mm256_mul_ps(D0, S0);
                M1 = _mm256_mul_ps(D1, S1);
            }
            facc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo[i]), M0, facc[i]);
            facc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi[i]), M1, facc[i]);
        }
    }
    /* tail chunks, natural order: the low half is block 2c, the high 2c+1 */
    for (int c = 8 * ns; c < nc; c++) {
        int g0 = mq_kern_group_of(p, 2 * c), g1 = mq_kern_group_of(p, 2 * c + 1);
        __m256i X0 = _mm256_loadu_si256((const __m256i *)(x + (size_t)c * MQ_PACK_CHUNK));
        __m256i X1 = _mm256_loadu_si256((const __m256i *)(x + (size_t)c * MQ_PACK_CHUNK + 32));
        __m256 D0 = _mm256_load_ps(dv + (size_t)c * 16), D1 = _mm256_load_ps(dv + (size_t)c * 16 + 8);
        UNROLL
        for (int i = 0; i < nr; i++) {
            half2 W = unpack_at(w + (size_t)i * rb, c, ns, r, true);
            __m256 M0 = D0, M1 = D1;
            if (ng > 1) {
                M0 = _mm256_mul_ps(D0, _mm256_set1_ps(s[(size_t)i * ng + g0]));
                M1 = _mm256_mul_ps(D1, _mm256_set1_ps(s[(size_t)i * ng + g1]));
            }
            facc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(widen(mul16(W.lo, X0, r))), M0, facc[i]);
            facc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(widen(mul16(W.hi, X1, r))), M1, facc[i]);
        }
    }
    UNROLL
    for (int i = 0; i < nr; i++) {
        float v = hsum_f32(unscale(facc[i], r));
        if (ng == 1) v *= s[i];
        y[o + i] = v + row_tail(p, o + i, a, 0);
    }
}

INLINE void gemv_r(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y, const int r) {
    int o = o0;
    for (; o + GV_ROWS <= o1; o += GV_ROWS) gv_tile(p, o, a, y, r, GV_ROWS);
    switch (o1 - o) {
    case 3: gv_tile(p, o, a, y, r, 3); break;
    case 2: gv_tile(p, o, a, y, r, 2); break;
    case 1: gv_tile(p, o, a, y, r, 1); break;
    default: break;
    }
}

static void gemv_avx2(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y) {
    MQ_KERN_BY_WIDTH(p->bits, gemv_r, p, o0, o1, a, y);
}

/* --------------------------------------------------------------- gemm */

/* Prompts: for each tile of GR rows and K-slice of KS superblocks (plus
 * the row's tail chunks in its last slice), the packed codes are unpacked
 * once into plain bytes in a stack buffer (r = 8: as stored; the products
 * centre them), chunk-major with the rows interleaved, and with groups the
 * step's lane scales likewise; then every pair of tokens runs over the
 * slice from L1. Per step (a superblock's half or a tail chunk's half) and
 * (row, token) one accumulator: int16 for r <= 4 (8 chunks of pairs fit,
 * see k16), int32 otherwise; widened, converted and multiplied by d (* s)
 * into fp32, whose horizontal sum is added to y once per slice. */
#define GR 4
#define GT 2
#define KS 4
#define WB_CHUNKS (8 * KS + 7)
#define WB_STEPS (KS + 7)

/* Unpack rows o..o+nr-1, steps s0..s1-1 into wb[((c - c0) * GR + i) * 64]
 * (rows past nr: zero codes) and, with groups, their lane scales into
 * sb[((st - s0) * GR + i) * 16] (lanes 0-7: the low half's, 8-15: the
 * high half's). */
INLINE void unpack_slice(const mq_packed *p, int o, int nr, int s0, int s1, uint8_t *wb, float *sb, int sh, const int r) {
    int ns = p->nsuper, c0 = mq_kern_step_chunk(s0, ns), c1 = mq_kern_step_chunk(s1, ns), ng = p->ngroups;
    for (int c = c0; c < c1; c++)
        for (int i = 0; i < GR; i++) {
            uint8_t *dst = wb + ((size_t)(c - c0) * GR + i) * 64;
            if (i >= nr) {
                /* zero codes: at r = 8 the products centre the bytes, so
                 * store 128 (w' = 0) */
                memset(dst, r == 8 ? 128 : 0, 64);
                continue;
            }
            half2 W = unpack_at(p->data + (size_t)(o + i) * p->row_bytes, c, p->nsuper, r, false);
            _mm256_storeu_si256((__m256i *)dst, W.lo);
            _mm256_storeu_si256((__m256i *)(dst + 32), W.hi);
        }
    if (ng == 1) return;
    for (int st = s0; st < s1; st++)
        for (int i = 0; i < GR; i++) {
            float *dst = sb + ((size_t)(st - s0) * GR + i) * 16;
            if (i >= nr) {
                memset(dst, 0, 16 * sizeof(float));
                continue;
            }
            const float *s = p->scale + (size_t)(o + i) * ng;
            if (st < ns) {
                __m256 S0, S1;
                block_scales(p, s, st, sh, &S0, &S1);
                _mm256_storeu_ps(dst, S0);
                _mm256_storeu_ps(dst + 8, S1);
            } else {
                int c = mq_kern_step_chunk(st, ns);
                _mm256_storeu_ps(dst, _mm256_set1_ps(s[mq_kern_group_of(p, 2 * c)]));
                _mm256_storeu_ps(dst + 8, _mm256_set1_ps(s[mq_kern_group_of(p, 2 * c + 1)]));
            }
        }
}

/* One token pair (nt <= GT tokens from t0) over steps s0..s1-1 of the
 * unpacked slice: adds each (row, token) sum to y[(t0+j)*ldy + o + i]
 * (nr real rows) or stores it when first. */
INLINE void gm_slice(const mq_kact *a, int t0, int s0, int s1, int ns, const uint8_t *wb, const float *sbuf,
                     bool grouped, float *y, int ldy, int o, int nr, bool first, const int r, const int nt) {
    int kp = a->kp, nb = kp / MQ_PACK_BLOCK, nc = kp / MQ_PACK_CHUNK, c0 = mq_kern_step_chunk(s0, ns);
    const int K = r <= 4 ? 8 : 1;
    __m256 facc[GR][GT];
    UNROLL
    for (int i = 0; i < GR; i++)
        UNROLL
        for (int j = 0; j < nt; j++) facc[i][j] = _mm256_setzero_ps();
    for (int st = s0; st < s1; st++) {
        int c = mq_kern_step_chunk(st, ns), n = st < ns ? 8 : 1;
        for (int h = 0; h < 2; h++) {
            __m256i acc[GR][GT];
            UNROLL
            for (int i = 0; i < GR; i++)
                UNROLL
                for (int j = 0; j < nt; j++) acc[i][j] = _mm256_setzero_si256();
            for (int v = 0; v < n; v++) {
                const int8_t *xc = a->qs + (size_t)t0 * kp + (size_t)(c + v) * MQ_PACK_CHUNK + 32 * h;
                __m256i X[GT];
                UNROLL
                for (int j = 0; j < nt; j++) X[j] = _mm256_loadu_si256((const __m256i *)(xc + (size_t)j * kp));
                const uint8_t *wc = wb + ((size_t)(c + v - c0) * GR) * 64 + 32 * h;
                UNROLL
                for (int i = 0; i < GR; i++) {
                    __m256i W = _mm256_loadu_si256((const __m256i *)(wc + 64 * i));
                    UNROLL
                    for (int j = 0; j < nt; j++) {
                        if (K == 8) acc[i][j] = _mm256_add_epi16(acc[i][j], mul16(W, X[j], r));
                        else acc[i][j] = _mm256_add_epi32(acc[i][j], widen(mul16(W, X[j], r)));
                    }
                }
            }
            const float *dbase = st < ns ? a->d + (size_t)t0 * nb + 16 * st + 8 * h
                                         : a->dvec + ((size_t)t0 * nc + c) * 16 + 8 * h;
            size_t dstride = st < ns ? (size_t)nb : (size_t)nc * 16;
            UNROLL
            for (int j = 0; j < nt; j++) {
                __m256 D = _mm256_loadu_ps(dbase + (size_t)j * dstride);
                UNROLL
                for (int i = 0; i < GR; i++) {
                    __m256 M = grouped ? _mm256_mul_ps(D, _mm256_loadu_ps(sbuf + ((size_t)(st - s0) * GR + i) * 16 + 8 * h))
                                       : D;
                    __m256i I = K == 8 ? widen(acc[i][j]) : acc[i][j];
                    facc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I), M, facc[i][j]);
                }
            }
        }
    }
    UNROLL
    for (int i = 0; i < GR; i++) {
        if (i >= nr) break;
        UNROLL
        for (int j = 0; j < nt; j++) {
            float v = hsum_f32(facc[i][j]);
            float *yo = y + (size_t)(t0 + j) * ldy + o + i;
            *yo = first ? v : *yo + v;
        }
    }
}

INLINE void gemm_r(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y, int ldy, const int r) {
    int ns = p->nsuper, nsteps = mq_kact_nsteps(p->kp), B = a->B, ng = p->ngroups;
    int sh = group_shift(p);
    bool grouped = ng > 1;
    _Alignas(64) uint8_t wb[WB_CHUNKS * GR * 64];
    _Alignas(64) float sbuf[WB_STEPS * GR * 16];
    for (int o = o0; o < o1; o += GR) {
        int nr = o1 - o < GR ? o1 - o : GR;
        for (int s0 = 0; s0 < nsteps;) {
            /* a slice: KS superblocks, or (the last) all the tail chunks */
            int s1 = s0 + KS < ns ? s0 + KS : nsteps; /* the tail chunks ride with the last superblocks */
            unpack_slice(p, o, nr, s0, s1, wb, sbuf, sh, r);
            mq_kern_prefetch_next_slice(p, o, o1, GR, s1, KS, r);
            int t = 0;
            for (; t + GT <= B; t += GT) gm_slice(a, t, s0, s1, ns, wb, sbuf, grouped, y, ldy, o, nr, s0 == 0, r, GT);
            if (t < B) gm_slice(a, t, s0, s1, ns, wb, sbuf, grouped, y, ldy, o, nr, s0 == 0, r, 1);
            s0 = s1;
        }
        for (int i = 0; i < nr; i++)
            for (int t = 0; t < B; t++) {
                float *yo = y + (size_t)t * ldy + o + i;
                *yo = (grouped ? *yo : *yo * p->scale[(size_t)(o + i)]) + row_tail(p, o + i, a, t);
            }
    }
}

static void gemm_avx2(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y, int ldy) {
    MQ_KERN_BY_WIDTH(p->bits, gemm_r, p, o0, o1, a, y, ldy);
}

const mq_kern_ops mq_kern_avx2_ops = {"avx2", dots_avx2, gemv_avx2, gemm_avx2};

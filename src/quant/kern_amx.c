/*
 * kern_amx.c — the prompt product (B > 1 tokens) on Intel AMX (AMX-INT8
 * tile multiply, Sapphire Rapids and later): variant "amx" = this gemm plus
 * the AVX-512 decode kernel (gemv) of kern_avx512.c. Built with the AVX-512
 * and AMX flags (Makefile); chosen at run time only where the CPU has
 * AMX-TILE and AMX-INT8 and Linux grants the tile state
 * (arch_prctl ARCH_REQ_XCOMP_PERM), see mq_kern_amx_usable.
 *
 * What one tile multiply computes. TDPBSUD C, A, B with A = 16 tokens x 32
 * signed activation codes (one activation block k of each token, natural
 * column order, straight from a->q with the token stride kp), B = the
 * matching 32 unsigned weight codes of 16 rows in the VNNI layout (8 rows of
 * 64 bytes: row v holds, for weight row n = 0..15, the 4 codes of columns
 * 32k + 4v .. 32k + 4v + 3 at bytes 4n .. 4n + 3), C = 16 x 16 int32:
 * C[j][n] = I[o + n][k] of token t0 + j — exactly the integer block dot of
 * docs/kernels.md, one per (token, row). One block per multiply (K = 32)
 * because every block has its own activation scale d_k: after each
 * multiply the tile is stored (1 KiB) and each of its 16 rows is converted
 * and folded into that token's fp32 accumulator, facc[j] += cvt(C[j]) *
 * d[t0 + j][k] (times the 16 rows' scales of k's group when the matrix has
 * groups): lane n of facc[j] is y[t0 + j][o + n].
 *
 *     weight tile (B), block k        activation tile (A)       C (int32)
 *     v = 0..7, 64 bytes each:        16 tokens x 32 bytes      16 tokens x 16 rows
 *     [r0 c4v..4v+3 | r1 .. | r15]    a->q + t*kp + 32k         lane n = row o + n
 *
 * Weight tiles are built once per 16-row tile and K-slice (2 superblocks
 * = 32 blocks, 16 KiB, which stays in L1/L2 while all the pass's token tiles
 * run over it): each stored chunk of the 16 rows is unpacked to plain
 * bytes (unpack_avx512.h) and the 16 x 16 dwords transposed — stored chunk
 * v of a superblock holds in dword l the 4 codes of block l at 4v (pack.h),
 * so after the transpose dword n of vector l is row n's dword: row v of
 * block l's tile; a tail chunk (natural order) holds blocks 2c and 2c + 1,
 * dword 8h + v being row v of block 2c + h's tile. Missing rows (past o1)
 * are zero codes; tokens past B are the zero padding of a->q (mq_kact_new
 * rounds its token capacity to 16) and are never stored.
 *
 * Overflow: a lane is one block dot, at most 32 x 255 x 127 < 2^20, exact in
 * int32 and in fp32 (< 2^24), as for vpdpbusd (docs/kernels.md).
 * Bias terms, per-channel scales and the overflow lists (2x) are applied
 * once per tile at the end, as in kern_avx512.c.
 *
 * Not here: decode (one token: kern_avx512.c's gemv, which is bandwidth
 * bound and gains nothing from tiles), activation quantization (dispatch.c).
 * Reference: Intel 64 and IA-32 Architectures Software Developer's Manual,
 * vol. 1 ch. 18 (AMX) and vol. 2 (LDTILECFG, TILELOADD, TDPBSUD); Linux
 * Documentation/arch/x86/xstate.rst (ARCH_REQ_XCOMP_PERM).
 */
#include "quant/kern.h"

#include "quant/amx_config.h"
#include "quant/unpack_avx512.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define AT 16     /* rows per tile (C's lanes) and tokens per tile (C's rows) */
#define SLICE 32  /* activation blocks per K-slice: 2 superblocks, 32 weight tiles of 512 bytes */
#define TOKP 128  /* tokens per pass over a slice (8 token tiles; 8 KiB of partial sums) */
#define NPT (TOKP / AT)

/* tile registers: A 0 and 6 (16 x 32 bytes), B 1 and 7 (8 x 64), C 2 to 5 (16 x 64) */
static void tiles_on(void) {
    mq_amx_config c;
    memset(&c, 0, sizeof c);
    c.rows[0] = c.rows[6] = AT, c.colsb[0] = c.colsb[6] = MQ_PACK_BLOCK;
    c.rows[1] = c.rows[7] = MQ_PACK_BLOCK / 4, c.colsb[1] = c.colsb[7] = 4 * AT;
    for (int t = 2; t < 6; t++) c.rows[t] = AT, c.colsb[t] = 4 * AT;
    mq_amx_load_config(&c);
}

/* ------------------------------------------------------- weight tiles */

/* r[l] (dword n) = r_in[n] (dword l): a 16 x 16 transpose of dwords. */
INLINE void transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    __m512i u[16]; /* u[4i + j], 128-bit lane L: dword j + 4L of rows 4i..4i+3 */
    for (int i = 0; i < 4; i++) {
        u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int j = 0; j < 4; j++) {
        __m512i x0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88), x1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xDD);
        __m512i y0 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88), y1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xDD);
        r[j] = _mm512_shuffle_i32x4(x0, y0, 0x88);
        r[4 + j] = _mm512_shuffle_i32x4(x1, y1, 0x88);
        r[8 + j] = _mm512_shuffle_i32x4(x0, y0, 0xDD);
        r[12 + j] = _mm512_shuffle_i32x4(x1, y1, 0xDD);
    }
}

/* Blocks k0 .. k1-1 of rows o .. o+nr-1 as weight tiles wt[(k - k0) * 512]
 * (chunks c0 .. c1-1 hold exactly those blocks: a slice never splits a
 * superblock), rows past nr zero; with groups and st not NULL,
 * st[(k - k0) * 16 + n] = the scale of row o + n in block k's group (0 past nr). */
INLINE void weight_tiles(const mq_packed *p, int o, int nr, int k0, int c0, int c1, uint8_t *wt, float *st,
                         const int r) {
    int ns = p->nsuper;
    const uint8_t *w = p->data + (size_t)o * p->row_bytes;
    for (int c = c0; c < c1; c++) {
        __m512i R[16];
        for (int n = 0; n < AT; n++)
            R[n] = n < nr ? unpack_at(w + (size_t)n * p->row_bytes, c, ns, r) : _mm512_setzero_si512();
        transpose16(R);
        if (c < 8 * ns) { /* superblock chunk v: vector l is row v of block 16 s + l */
            int kb = 16 * (c / 8) - k0, v = c % 8;
            for (int l = 0; l < 16; l++) _mm512_store_si512(wt + ((size_t)(kb + l) * 8 + v) * 64, R[l]);
        } else { /* tail chunk: vector 8h + v is row v of block 2c + h */
            for (int d = 0; d < 16; d++)
                _mm512_store_si512(wt + ((size_t)(2 * c + d / 8 - k0) * 8 + d % 8) * 64, R[d]);
        }
    }
    if (p->ngroups == 1 || !st) return;
    int nb = c1 * 2 - c0 * 2;
    for (int k = 0; k < nb; k++) {
        int g = mq_kern_group_of(p, k0 + k);
        for (int n = 0; n < AT; n++) st[k * AT + n] = n < nr ? p->scale[(size_t)(o + n) * p->ngroups + g] : 0.0f;
    }
}

/* The chunk range and end block of the slice starting at block k0. */
static void slice_of(const mq_packed *p, int k0, int *k1, int *c0, int *c1) {
    int nbs = 16 * p->nsuper, nb = p->kp / MQ_PACK_BLOCK;
    if (k0 < nbs) {
        *k1 = k0 + SLICE < nbs ? k0 + SLICE : nbs;
        *c0 = k0 / 2, *c1 = *k1 / 2;
    } else { /* all tail chunks at once: at most 7 chunks = 14 blocks */
        *k1 = nb;
        *c0 = k0 / 2, *c1 = nb / 2;
    }
}

/* ------------------------------------------------------------ products */

#define UNROLL _Pragma("GCC unroll 16")

/* Fold the stored tile cb (token j's 16 row dots at cb + 16 j) of block k
 * into facc: times the block's d of each token (d + j * nb), times the
 * rows' group scales S when grouped. */
INLINE void fold(const int32_t *cb, const float *d, int nb, const bool grouped, __m512 S, __m512 *facc) {
    UNROLL
    for (int j = 0; j < AT; j++) {
        __m512 c = _mm512_cvtepi32_ps(_mm512_load_si512(cb + 16 * j));
        if (grouped) c = _mm512_mul_ps(c, S);
        facc[j] = _mm512_fmadd_ps(c, _mm512_set1_ps(d[(size_t)j * nb]), facc[j]);
    }
}

/* block kk's multiply into C tile tc, from A tile ta and B tile tb */
#define DP(ta, tb, tc, kk)                                                 \
    do {                                                                   \
        _tile_loadd(ta, xa + (size_t)(kk) * MQ_PACK_BLOCK, kp);            \
        _tile_loadd(tb, wt + (size_t)((kk) - k0) * 512, 64);               \
        _tile_zero(tc);                                                    \
        _tile_dpbsud(tc, ta, tb);                                          \
    } while (0)
/* C tile tc (block kk) stored and folded */
#define FOLD(tc, kk)                                                                                   \
    do {                                                                                               \
        _tile_stored(tc, cb, 64);                                                                      \
        fold(cb, d + (kk), nb, grouped, grouped ? _mm512_load_ps(st + (size_t)((kk) - k0) * AT) : zero, \
             facc);                                                                                    \
    } while (0)

/* Token tile t0 over blocks k0 .. k1-1 (an even count: a slice is whole
 * chunks) of the weight tiles wt: part (16 tokens x 16 rows) += the tile's
 * sums. Pairs of blocks go to C tiles 2, 3 and 4, 5 in turn, and a pair is
 * stored and folded only after the next pair's multiplies are issued, so
 * the tile unit and the fold overlap. */
INLINE void tile_pass(const mq_kact *a, int t0, int k0, int k1, const uint8_t *wt, const float *st, const bool grouped,
                      float *part) {
    int kp = a->kp, nb = kp / MQ_PACK_BLOCK, np = (k1 - k0) / 2;
    const int8_t *xa = a->q + (size_t)t0 * kp;
    const float *d = a->d + (size_t)t0 * nb;
    int32_t cb[AT * AT] __attribute__((aligned(64)));
    const __m512 zero = _mm512_setzero_ps();
    __m512 facc[AT];
    UNROLL
    for (int j = 0; j < AT; j++) facc[j] = _mm512_load_ps(part + 16 * j);
    DP(0, 1, 2, k0);
    DP(6, 7, 3, k0 + 1);
    for (int q = 1; q < np; q++) {
        int k = k0 + 2 * q;
        if (q & 1) {
            DP(0, 1, 4, k);
            DP(6, 7, 5, k + 1);
            FOLD(2, k - 2);
            FOLD(3, k - 1);
        } else {
            DP(0, 1, 2, k);
            DP(6, 7, 3, k + 1);
            FOLD(4, k - 2);
            FOLD(5, k - 1);
        }
    }
    if (np & 1) {
        FOLD(2, k1 - 2);
        FOLD(3, k1 - 1);
    } else {
        FOLD(4, k1 - 2);
        FOLD(5, k1 - 1);
    }
    UNROLL
    for (int j = 0; j < AT; j++) _mm512_store_ps(part + 16 * j, facc[j]);
}

/* Outputs of rows o..o+nr-1 for tokens t0..t0+nt-1 from part (token j's 16
 * row sums at part + 16 j): times the row scale (per channel; groups folded
 * theirs per block), plus sum_g b_g G_g, plus the overflow terms (2x: each
 * overflow weight adds s_g * xhat of its column); masked stores. */
static void tile_out(const mq_packed *p, int o, int nr, const mq_kact *a, int t0, int nt, float *part, float *y,
                     int ldy) {
    int ng = p->ngroups, nb = a->kp / MQ_PACK_BLOCK;
    __mmask16 rm = (__mmask16)((1u << nr) - 1);
    if (p->extra) { /* into part first, before the per-channel scale: per row, its tokens in one vector */
        __mmask16 tm = (__mmask16)((1u << nt) - 1);
        __m512i ov[AT];
        for (int n = 0; n < AT; n++) {
            __m512 acc = _mm512_setzero_ps();
            const float *s = p->scale + (size_t)(o + n) * ng;
            for (uint32_t e = n < nr ? p->over_ptr[o + n] : 0, e1 = n < nr ? p->over_ptr[o + n + 1] : 0; e < e1; e++) {
                uint32_t c = p->over_col[e]; /* rows past nr: an empty range */
                float sv = ng == 1 ? 1.0f : s[mq_kern_group_of(p, (int)(c / MQ_PACK_BLOCK))];
                acc = _mm512_fmadd_ps(_mm512_set1_ps(sv), _mm512_maskz_loadu_ps(tm, a->xhat_t + (size_t)c * a->B + t0), acc);
            }
            ov[n] = _mm512_castps_si512(acc);
        }
        transpose16(ov); /* ov[j] lane n: row n, token j */
        for (int j = 0; j < nt; j++)
            _mm512_store_ps(part + 16 * j, _mm512_add_ps(_mm512_load_ps(part + 16 * j), _mm512_castsi512_ps(ov[j])));
    }
    if (ng == 1) {
        __m512 S = _mm512_maskz_loadu_ps(rm, p->scale + o), Bv = _mm512_maskz_loadu_ps(rm, p->bias + o);
        for (int j = 0; j < nt; j++) {
            __m512 v = _mm512_fmadd_ps(Bv, _mm512_set1_ps(a->gsum[(size_t)(t0 + j) * nb]),
                                       _mm512_mul_ps(_mm512_load_ps(part + 16 * j), S));
            _mm512_mask_storeu_ps(y + (size_t)(t0 + j) * ldy + o, rm, v);
        }
        return;
    }
    __m512 acc[AT];
    for (int j = 0; j < nt; j++) acc[j] = _mm512_load_ps(part + 16 * j);
    __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                     _mm512_set1_epi32(ng));
    const float *b = p->bias + (size_t)o * ng;
    for (int g = 0; g < ng; g++) { /* the 16 rows' biases of group g: a masked gather (stride ng) */
        __m512 Bg = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), rm, idx, b + g, 4);
        for (int j = 0; j < nt; j++)
            acc[j] = _mm512_fmadd_ps(Bg, _mm512_set1_ps(a->gsum[(size_t)(t0 + j) * nb + g]), acc[j]);
    }
    for (int j = 0; j < nt; j++) _mm512_mask_storeu_ps(y + (size_t)(t0 + j) * ldy + o, rm, acc[j]);
}

INLINE void gemm_r(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y, int ldy, const int r) {
    int B = a->B, nb = a->kp / MQ_PACK_BLOCK;
    bool grouped = p->ngroups > 1;
    uint8_t wt[SLICE * 512] __attribute__((aligned(64)));
    float st[SLICE * AT] __attribute__((aligned(64)));
    float part[NPT * AT * AT] __attribute__((aligned(64)));
    tiles_on();
    for (int o = o0; o < o1; o += AT) {
        int nr = o1 - o < AT ? o1 - o : AT;
        for (int tc = 0; tc < B; tc += TOKP) {
            int te = tc + TOKP < B ? tc + TOKP : B, ntile = (te - tc + AT - 1) / AT;
            memset(part, 0, (size_t)ntile * AT * AT * sizeof(float));
            for (int k0 = 0, k1, c0, c1; k0 < nb; k0 = k1) {
                slice_of(p, k0, &k1, &c0, &c1);
                weight_tiles(p, o, nr, k0, c0, c1, wt, st, r);
                int ns = p->nsuper, s1 = c1 <= 8 * ns ? c1 / 8 : ns + (c1 - 8 * ns);
                mq_kern_prefetch_next_slice(p, o, o1, AT, s1, SLICE / 16, r);
                for (int q = 0; q < ntile; q++) {
                    float *pq = part + (size_t)q * AT * AT;
                    if (grouped) tile_pass(a, tc + AT * q, k0, k1, wt, st, true, pq);
                    else tile_pass(a, tc + AT * q, k0, k1, wt, st, false, pq);
                }
            }
            for (int q = 0; q < ntile; q++) {
                int t0 = tc + AT * q, nt = te - t0 < AT ? te - t0 : AT;
                tile_out(p, o, nr, a, t0, nt, part + (size_t)q * AT * AT, y, ldy);
            }
        }
    }
    _tile_release();
}

static void gemm_amx(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y, int ldy) {
    if (a->B == 1) { /* one token: the decode kernel */
        mq_kern_avx512_ops.gemv(p, o0, o1, a, y);
        return;
    }
    MQ_KERN_BY_WIDTH(p->bits, gemm_r, p, o0, o1, a, y, ldy);
}

/* The integer block dots of token t through the tiles (for tests): the
 * gemm's weight tiles and multiply, the token's row loaded 16 times (tile
 * stride 0), row 0 of C kept, plus the overflow weights' codes.
 * out[(o - o0) * nb + k] = I[o][k]. */
INLINE void dots_r(const mq_packed *p, int o0, int o1, const mq_kact *a, int t, int32_t *out, const int r) {
    int kp = a->kp, nb = kp / MQ_PACK_BLOCK;
    uint8_t wt[SLICE * 512] __attribute__((aligned(64)));
    int32_t cb[AT * AT] __attribute__((aligned(64)));
    const int8_t *xa = a->q + (size_t)t * kp;
    tiles_on();
    for (int o = o0; o < o1; o += AT) {
        int nr = o1 - o < AT ? o1 - o : AT;
        for (int k0 = 0, k1, c0, c1; k0 < nb; k0 = k1) {
            slice_of(p, k0, &k1, &c0, &c1);
            weight_tiles(p, o, nr, k0, c0, c1, wt, NULL, r); /* integer dots: no scales */
            for (int k = k0; k < k1; k++) {
                _tile_loadd(0, xa + (size_t)k * MQ_PACK_BLOCK, 0);
                _tile_loadd(1, wt + (size_t)(k - k0) * 512, 64);
                _tile_zero(2);
                _tile_dpbsud(2, 0, 1);
                _tile_stored(2, cb, 64);
                for (int n = 0; n < nr; n++) out[(size_t)(o - o0 + n) * nb + k] = cb[n];
            }
        }
    }
    _tile_release();
    if (p->extra)
        for (int o = o0; o < o1; o++) mq_kern_over_dots(p, o, xa, out + (size_t)(o - o0) * nb);
}

static void dots_amx(const mq_packed *p, int o0, int o1, const mq_kact *a, int t, int32_t *out) {
    MQ_KERN_BY_WIDTH(p->bits, dots_r, p, o0, o1, a, t, out);
}

static void gemv_amx(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y) {
    mq_kern_avx512_ops.gemv(p, o0, o1, a, y);
}

const mq_kern_ops mq_kern_amx_ops = {"amx", dots_amx, gemv_amx, gemm_amx};

/* AMX-TILE and AMX-INT8 (CPUID), with the OS saving the tile state (XCR0
 * bits 17-18) and granting it to this process (Linux 5.16+: one
 * arch_prctl, which holds for every thread of the process). */
bool mq_kern_amx_usable(void) {
    static int ok = -1;
    int v = __atomic_load_n(&ok, __ATOMIC_ACQUIRE);
    if (v < 0) {
        v = 0;
        __builtin_cpu_init();
        if (__builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-int8") &&
            __builtin_cpu_supports("avx512vnni")) {
            unsigned lo, hi;
            __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            if ((lo & (3u << 17)) == (3u << 17) && syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */,
                                                           18 /* XFEATURE_XTILEDATA */) == 0)
                v = 1;
        }
        __atomic_store_n(&ok, v, __ATOMIC_RELEASE);
    }
    return v == 1;
}

/*
 * vnnimix.c — what one core sustains of the decode kernel's inner step, in
 * core cycles per 64 weights (one vpdpbusd), apart from memory: the
 * operands are in L1. The gemv of kern_avx512.c spends, per stored chunk of
 * 64 weights and row, a share of a 64-byte load of the packed codes (the
 * grouped layouts G2, G3, G4 of pack.h; until §14 of docs/results.md a 16-
 * or 32-byte broadcast per chunk at int2 and int4), one or two mask
 * operations and one vpdpbusd, with each activation chunk loaded once for
 * 4 rows. Measured here on one thread, best of several runs (the
 * broadcast rows are the layouts the grouped ones replaced):
 *
 *   vpdpbusd alone      12 independent chains, no loads (membw's int8 peak)
 *   int8 step           load 64 B + vpdpbusd, 4 rows
 *   int4 step           broadcast 32 B + and + vpdpbusd, 4 rows
 *   int2 step           broadcast 16 B + and + vpdpbusd, 4 rows
 *   int2 step, 8 chains the same with 2 accumulators a row (rules out latency)
 *   int2, plain load    the int2 step with a 64-byte load in place of the
 *                       broadcast (wrong products: timing only)
 *   int2, 4 fields      G2 (the gemv's int2 superblocks since §14): one
 *                       64-byte load serves 4 chunks, field f masked with
 *                       3 << 2f, one accumulator per row and field (16)
 *   int3 P3             the int3 tail layout (and the superblocks' before
 *                       G3): 16-byte broadcast, shifts, mask, P1 byte mask
 *   int3, masked add    a G3 tried and not used (bit 2 by a masked add)
 *   int3 G3             the gemv's int3 superblocks: 3 loads per 8 chunks,
 *                       fields masked in place at factors 1, 8, 16
 *
 * and the core clock against the TSC (a chain of dependent adds, one per
 * core cycle), so that the kernels' TSC cycles per weight (kernbench) can
 * be read as core cycles. With --json one line {core_ghz, dpbusd, int8,
 * int4, int2, int2_8chains, int2_plain, int2_fields, int3_p3,
 * int3_maskadd, int3_g3} (core cycles per 64 weights).
 *
 * Not here: memory (membw), the real kernels (kernbench), other ISAs (needs
 * AVX-512 VNNI; says so and exits 0 without it).
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>

#define ROWB 2048 /* bytes of packed codes per row: 4 rows and the activations (at most 16 KiB) stay in L1 */
#define REPS 400
#define ROUNDS 7

static uint8_t W[4][ROWB] __attribute__((aligned(64)));
static int8_t X[4 * ROWB] __attribute__((aligned(64)));
static volatile int sink;

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vnni"), noinline))

VNNI static void keep(__m512i v) {
    int32_t t[16];
    _mm512_storeu_si512(t, v);
    sink += t[0] ^ t[15];
}

/* 12 chains of vpdpbusd, no memory (named accumulators: an array of them
 * is kept on the stack at -O2): returns the instruction count */
VNNI static double alone(void) {
    __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-5);
    __m512i a0 = _mm512_set1_epi32(0), a1 = _mm512_set1_epi32(1), a2 = _mm512_set1_epi32(2),
            a3 = _mm512_set1_epi32(3), a4 = _mm512_set1_epi32(4), a5 = _mm512_set1_epi32(5),
            a6 = _mm512_set1_epi32(6), a7 = _mm512_set1_epi32(7), a8 = _mm512_set1_epi32(8),
            a9 = _mm512_set1_epi32(9), a10 = _mm512_set1_epi32(10), a11 = _mm512_set1_epi32(11);
    for (int r = 0; r < REPS * 64; r++) {
#define D1(a) a = _mm512_dpbusd_epi32(a, u, s)
        D1(a0); D1(a1); D1(a2); D1(a3); D1(a4); D1(a5);
        D1(a6); D1(a7); D1(a8); D1(a9); D1(a10); D1(a11);
#undef D1
    }
    __m512i t = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                                 _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)));
    keep(_mm512_add_epi32(t, _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11))));
    return (double)REPS * 64 * 12;
}

/* The body of the 4-row steps below: n chunks, per chunk c one activation
 * load x and U(i, a_i, c) for rows i = 0..3 (one vpdpbusd each); returns
 * the vpdpbusd count. */
#define FOUR_ROWS(n, U)                                                                                            \
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;                                                \
    for (int r = 0; r < REPS; r++)                                                                                 \
        for (int c = 0; c < (n); c++) {                                                                            \
            __m512i x = _mm512_load_si512(X + 64 * c);                                                             \
            U(0, a0, c);                                                                                           \
            U(1, a1, c);                                                                                           \
            U(2, a2, c);                                                                                           \
            U(3, a3, c);                                                                                           \
        }                                                                                                          \
    keep(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)));                                    \
    return (double)REPS * (n) * 4

#define U8(i, a, cc) a = _mm512_dpbusd_epi32(a, _mm512_load_si512(W[i] + 64 * (cc)), x)
VNNI static double step8(void) { FOUR_ROWS(ROWB / 64, U8); }

VNNI static double step4(void) {
    const __m512i m = _mm512_set_epi64(-0x0F0F0F0F0F0F0F10LL, -0x0F0F0F0F0F0F0F10LL, -0x0F0F0F0F0F0F0F10LL,
                                       -0x0F0F0F0F0F0F0F10LL, 0x0F0F0F0F0F0F0F0FLL, 0x0F0F0F0F0F0F0F0FLL,
                                       0x0F0F0F0F0F0F0F0FLL, 0x0F0F0F0F0F0F0F0FLL);
#define U4(i, a, cc)                                                                                               \
    a = _mm512_dpbusd_epi32(                                                                                       \
        a, _mm512_and_si512(_mm512_broadcast_i64x4(_mm256_load_si256((const __m256i *)(W[i] + 32 * (cc)))), m), x)
    FOUR_ROWS(ROWB / 32, U4);
}

#define P2MASK                                                                                                     \
    _mm512_set_epi64(-0x3F3F3F3F3F3F3F40LL, -0x3F3F3F3F3F3F3F40LL, 0x3030303030303030LL, 0x3030303030303030LL,    \
                     0x0C0C0C0C0C0C0C0CLL, 0x0C0C0C0C0C0C0C0CLL, 0x0303030303030303LL, 0x0303030303030303LL)
#define U2(i, a, cc)                                                                                               \
    a = _mm512_dpbusd_epi32(                                                                                       \
        a, _mm512_and_si512(_mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)(W[i] + 16 * (cc)))), m), x)

VNNI static double step2(void) {
    const __m512i m = P2MASK;
    FOUR_ROWS(ROWB / 16, U2); /* X is 4 * ROWB: 64 activations per 16 code bytes */
}

VNNI static double step2x8(void) {
    const __m512i m = P2MASK;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (int r = 0; r < REPS; r++)
        for (int c = 0; c < ROWB / 16; c += 2) {
            __m512i x = _mm512_load_si512(X + 64 * c);
            U2(0, a0, c);
            U2(1, a1, c);
            U2(2, a2, c);
            U2(3, a3, c);
            x = _mm512_load_si512(X + 64 * (c + 1));
            U2(0, b0, c + 1);
            U2(1, b1, c + 1);
            U2(2, b2, c + 1);
            U2(3, b3, c + 1);
        }
    keep(_mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                          _mm512_add_epi32(_mm512_add_epi32(b0, b1), _mm512_add_epi32(b2, b3))));
    return (double)REPS * (ROWB / 16) * 4;
}


VNNI static double nobcast(void) {
    const __m512i m = P2MASK;
#define UN(i, a, cc) a = _mm512_dpbusd_epi32(a, _mm512_and_si512(_mm512_load_si512(W[i] + 16 * ((cc) & ~3)), m), x)
    FOUR_ROWS(ROWB / 16, UN);
}
/* 4 chunks per 64-byte load, field f masked in place, one accumulator per
 * row and field (16, named: an array of them is kept on the stack at -O2) */
#define ROW4(i, b0, b1, b2, b3)                                                                                    \
    do {                                                                                                           \
        __m512i w = _mm512_load_si512(W[i] + 64 * c);                                                             \
        b0 = _mm512_dpbusd_epi32(b0, _mm512_and_si512(w, m0), x0);                                                 \
        b1 = _mm512_dpbusd_epi32(b1, _mm512_and_si512(w, m1), x1);                                                 \
        b2 = _mm512_dpbusd_epi32(b2, _mm512_and_si512(w, m2), x2);                                                 \
        b3 = _mm512_dpbusd_epi32(b3, _mm512_and_si512(w, m3), x3);                                                 \
    } while (0)
VNNI static __m512i sum4(__m512i a, __m512i b, __m512i c, __m512i d) {
    return _mm512_add_epi32(_mm512_add_epi32(a, b), _mm512_add_epi32(c, d));
}
VNNI static double fields(void) {
    const __m512i m0 = _mm512_set1_epi8(3), m1 = _mm512_set1_epi8(12), m2 = _mm512_set1_epi8(48),
                  m3 = _mm512_set1_epi8(-64), z = _mm512_setzero_si512();
    __m512i a00 = z, a01 = z, a02 = z, a03 = z, a10 = z, a11 = z, a12 = z, a13 = z;
    __m512i a20 = z, a21 = z, a22 = z, a23 = z, a30 = z, a31 = z, a32 = z, a33 = z;
    for (int r = 0; r < REPS; r++)
        for (int c = 0; c < ROWB / 64; c++) {
            const int8_t *xp = X + 256 * c;
            __m512i x0 = _mm512_load_si512(xp), x1 = _mm512_load_si512(xp + 64);
            __m512i x2 = _mm512_load_si512(xp + 128), x3 = _mm512_load_si512(xp + 192);
            ROW4(0, a00, a01, a02, a03);
            ROW4(1, a10, a11, a12, a13);
            ROW4(2, a20, a21, a22, a23);
            ROW4(3, a30, a31, a32, a33);
        }
    keep(sum4(sum4(a00, a01, a02, a03), sum4(a10, a11, a12, a13), sum4(a20, a21, a22, a23),
              sum4(a30, a31, a32, a33)));
    return (double)REPS * (ROWB / 64) * 16;
}

/* int3 as P3 (the tail layout, and the superblocks' before G3): the
 * 16-byte P2 broadcast, shifted per 128-bit lane and masked, or 4 where
 * the chunk's 64-bit P1 word has its bit set; 4 rows */
#define U3(i, a, cc)                                                                                               \
    do {                                                                                                           \
        const uint8_t *src = W[i] + 24 * (cc);                                                                     \
        uint64_t hb;                                                                                               \
        memcpy(&hb, src + 16, 8);                                                                                  \
        __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)src));                                \
        v = _mm512_and_si512(_mm512_srlv_epi64(v, sh), m3);                                                        \
        v = _mm512_or_si512(v, _mm512_maskz_mov_epi8(_cvtu64_mask64(hb), h4));                                    \
        a = _mm512_dpbusd_epi32(a, v, x);                                                                          \
    } while (0)
VNNI static double step3p(void) {
    const __m512i sh = _mm512_set_epi64(6, 6, 4, 4, 2, 2, 0, 0), m3 = _mm512_set1_epi8(3), h4 = _mm512_set1_epi8(4);
    FOUR_ROWS(ROWB / 24, U3);
}
/* int3, a layout tried and not used: one 64-byte load of 4 chunks' low
 * bits, field f masked in place, plus 4^(f+1) by a masked byte add where
 * the chunk's bit-2 word (P1) is set (field 3 shifted down first), three
 * accumulators per row; 4 rows */
#define HB(i, k) _cvtu64_mask64(((const uint64_t *)(W[i] + 64 * (c + 1)))[k])
#define ROW3M(i, b0, b1, b2)                                                                                        \
    do {                                                                                                           \
        __m512i w = _mm512_load_si512(W[i] + 64 * c), v;                                                           \
        v = _mm512_mask_add_epi8(_mm512_and_si512(w, m0), HB(i, 0), _mm512_and_si512(w, m0), h4);                  \
        b0 = _mm512_dpbusd_epi32(b0, v, x0);                                                                       \
        v = _mm512_mask_add_epi8(_mm512_and_si512(w, m1), HB(i, 1), _mm512_and_si512(w, m1), h16);                 \
        b1 = _mm512_dpbusd_epi32(b1, v, x1);                                                                       \
        v = _mm512_mask_add_epi8(_mm512_and_si512(w, m2), HB(i, 2), _mm512_and_si512(w, m2), h64);                 \
        b2 = _mm512_dpbusd_epi32(b2, v, x2);                                                                       \
        v = _mm512_and_si512(_mm512_srli_epi16(w, 6), m0);                                                         \
        v = _mm512_mask_add_epi8(v, HB(i, 3), v, h4);                                                              \
        b0 = _mm512_dpbusd_epi32(b0, v, x3);                                                                       \
    } while (0)
VNNI static double maskadd3(void) {
    const __m512i m0 = _mm512_set1_epi8(3), m1 = _mm512_set1_epi8(12), m2 = _mm512_set1_epi8(48),
                  h4 = _mm512_set1_epi8(4), h16 = _mm512_set1_epi8(16), h64 = _mm512_set1_epi8(64),
                  z = _mm512_setzero_si512();
    __m512i a00 = z, a01 = z, a02 = z, a10 = z, a11 = z, a12 = z, a20 = z, a21 = z, a22 = z, a30 = z, a31 = z, a32 = z;
    for (int r = 0; r < REPS; r++)
        for (int c = 0; c + 1 < ROWB / 64; c += 2) { /* 64 B of low bits, then 32 of P1 words (of 64 read) */
            const int8_t *xp = X + 128 * c;
            __m512i x0 = _mm512_load_si512(xp), x1 = _mm512_load_si512(xp + 64);
            __m512i x2 = _mm512_load_si512(xp + 128), x3 = _mm512_load_si512(xp + 192);
            ROW3M(0, a00, a01, a02);
            ROW3M(1, a10, a11, a12);
            ROW3M(2, a20, a21, a22);
            ROW3M(3, a30, a31, a32);
        }
    keep(sum4(sum4(a00, a01, a02, a10), sum4(a11, a12, a20, a21), sum4(a22, a30, a31, a32), z));
    return (double)REPS * (ROWB / 128) * 16;
}

/* int3 as G3 (pack.h, kern_avx512.c sb_g3): a superblock's 8 chunks in 3
 * groups of 64 bytes (codes 0, 1 and the low 2 bits of 2 in the first; 3,
 * 4, 5 likewise; 6, 7 and the third bits of 2 and 5 in the last), fields
 * masked in place at factors 1, 8 and 16, three accumulators per row; 4
 * rows */
#define ROW3B(i, b0, b1, b2)                                                                                       \
    do {                                                                                                           \
        const uint8_t *g = W[i] + 64 * c;                                                                          \
        __m512i g0 = _mm512_load_si512(g), g1 = _mm512_load_si512(g + 64), g2 = _mm512_load_si512(g + 128);        \
        b0 = _mm512_dpbusd_epi32(b0, _mm512_and_si512(g0, m7), x0);                                                \
        b1 = _mm512_dpbusd_epi32(b1, _mm512_and_si512(g0, m38), x1);                                               \
        b2 = _mm512_dpbusd_epi32(b2, _mm512_ternarylogic_epi32(m30, _mm512_srli_epi16(g0, 2),                      \
                                                               _mm512_and_si512(g2, m40), 0xCA), x2);              \
        b0 = _mm512_dpbusd_epi32(b0, _mm512_and_si512(g1, m7), x3);                                                \
        b1 = _mm512_dpbusd_epi32(b1, _mm512_and_si512(g1, m38), x4);                                               \
        b2 = _mm512_dpbusd_epi32(b2, _mm512_ternarylogic_epi32(m30, _mm512_srli_epi16(g1, 2),                      \
                                                               _mm512_and_si512(_mm512_srli_epi16(g2, 1), m40),    \
                                                               0xCA), x5);                                         \
        b0 = _mm512_dpbusd_epi32(b0, _mm512_and_si512(g2, m7), x6);                                                \
        b1 = _mm512_dpbusd_epi32(b1, _mm512_and_si512(g2, m38), x7);                                               \
    } while (0)
VNNI static double fields3(void) {
    const __m512i m7 = _mm512_set1_epi8(7), m38 = _mm512_set1_epi8(0x38), m30 = _mm512_set1_epi8(0x30),
                  m40 = _mm512_set1_epi8(0x40), z = _mm512_setzero_si512();
    __m512i a00 = z, a01 = z, a02 = z, a10 = z, a11 = z, a12 = z, a20 = z, a21 = z, a22 = z, a30 = z, a31 = z, a32 = z;
    for (int r = 0; r < REPS; r++)
        for (int c = 0; c + 2 < ROWB / 64; c += 3) {
            const int8_t *xp = X + 512 * (c / 3);
            __m512i x0 = _mm512_load_si512(xp), x1 = _mm512_load_si512(xp + 64), x2 = _mm512_load_si512(xp + 128),
                    x3 = _mm512_load_si512(xp + 192), x4 = _mm512_load_si512(xp + 256),
                    x5 = _mm512_load_si512(xp + 320), x6 = _mm512_load_si512(xp + 384),
                    x7 = _mm512_load_si512(xp + 448);
            ROW3B(0, a00, a01, a02);
            ROW3B(1, a10, a11, a12);
            ROW3B(2, a20, a21, a22);
            ROW3B(3, a30, a31, a32);
        }
    keep(sum4(sum4(a00, a01, a02, a10), sum4(a11, a12, a20, a21), sum4(a22, a30, a31, a32), z));
    return (double)REPS * (ROWB / 192) * 32;
}

/* core cycles per TSC cycle: a chain of dependent adds retires one per cycle */
static double clock_ratio(void) {
    unsigned long n = 200000000UL, x = 1;
    uint64_t t0 = __rdtsc();
    for (unsigned long i = 0; i < n; i++)
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
    uint64_t t1 = __rdtsc();
    sink += (int)x;
    return 4.0 * (double)n / (double)(t1 - t0);
}

/* best TSC cycles per instruction of f over ROUNDS runs */
static double best(double (*f)(void)) {
    double b = 1e30;
    for (int k = 0; k < ROUNDS; k++) {
        uint64_t t0 = __rdtsc();
        double n = f();
        double c = (double)(__rdtsc() - t0) / n;
        if (c < b) b = c;
    }
    return b;
}

int main(int argc, char **argv) {
    int json = argc > 1 && !strcmp(argv[1], "--json");
    if (argc > 1 && !json) {
        fprintf(stderr, "usage: vnnimix [--json]\n");
        return 2;
    }
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx512bw")) {
        printf("vnnimix: this CPU has no AVX-512 VNNI; nothing to measure\n");
        return 0;
    }
    srand(1);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < ROWB; j++) W[i][j] = (uint8_t)rand();
    for (int j = 0; j < 4 * ROWB; j++) X[j] = (int8_t)rand();
    double ratio = clock_ratio(), tsc_ghz = 0;
    /* the TSC rate from the kernel's cpu MHz would be a guess; time it */
    {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        uint64_t t0 = __rdtsc();
        do clock_gettime(CLOCK_MONOTONIC, &b);
        while ((double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec) < 0.2);
        tsc_ghz = (double)(__rdtsc() - t0) / 1e9 /
                  ((double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec));
    }
    double v[10] = {best(alone),   best(step8),   best(step4),  best(step2), best(step2x8),
                   best(nobcast), best(fields), best(step3p), best(maskadd3), best(fields3)};
    for (int i = 0; i < 10; i++) v[i] *= ratio; /* TSC -> core cycles */
    if (json) {
        printf("{\"core_ghz\":%.3f,\"dpbusd\":%.3f,\"int8\":%.3f,\"int4\":%.3f,\"int2\":%.3f,\"int2_8chains\":%.3f,"
               "\"int2_plain\":%.3f,\"int2_fields\":%.3f,\"int3_p3\":%.3f,\"int3_maskadd\":%.3f,\"int3_g3\":%.3f}\n",
               ratio * tsc_ghz, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]);
        return 0;
    }
    printf("core clock %.2f GHz (TSC %.3f GHz x %.3f)\n", ratio * tsc_ghz, tsc_ghz, ratio);
    const char *name[10] = {"vpdpbusd alone (12 chains)",          "int8 step (load, dpbusd; 4 rows)",
                           "int4 step (bcast 32 B, and, dpbusd)", "int2 step (bcast 16 B, and, dpbusd)",
                           "int2 step, 8 chains",                 "int2, plain 64-B load (timing only)",
                           "int2, 4 fields per 64-B load",        "int3 P3 (bcast 16 B, srlv, and, P1 mask)",
                           "int3, bit 2 by masked add (not used)",   "int3 G3 (3 groups, fields x1, x8, x16)"};
    for (int i = 0; i < 10; i++) printf("%-38s %.2f core cycles per 64 weights\n", name[i], v[i]);
    return 0;
}

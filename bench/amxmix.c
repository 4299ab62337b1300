/*
 * amxmix.c — one core's cost of the AMX prompt kernel's inner step
 * (src/quant/kern_amx.c), operands in L1: two blocks of 32 (16 tokens x
 * 16 rows each, TDPBSUD with K = 32) per step, in four stages —
 *   mult   the tile loads and multiplies only,
 *   store  + the two C tiles stored (1 KiB each),
 *   fold   + each stored row converted and folded into 16 fp32 sums
 *          with a per-token scale (what the kernel does),
 *   nostore the fold's vector work without the tile stores (its loads
 *          read a buffer the tiles do not write),
 * printed as TSC cycles per step (best of 5). It shows where the kernel's
 * time goes: docs/kernels.md "AMX", docs/results.md §16.
 *
 * Not here: unpacking, the transposition, memory traffic (kernbench).
 * Needs AMX-INT8 and Linux's grant of the tile state; exits 0 with a
 * message where either is missing.
 * Usage: build/amxmix
 */
#include "quant/amx_config.h"

#include <cpuid.h>
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <x86intrin.h>


static int8_t A[16 * 2048] __attribute__((aligned(64)));
static uint8_t W[64 * 512] __attribute__((aligned(64)));
static int32_t cb[2][256] __attribute__((aligned(64)));
static int32_t other[2][256] __attribute__((aligned(64)));
static float d[16 * 64] __attribute__((aligned(64)));

enum { MULT, STORE, FOLD, NOSTORE };

/* as kern_amx.c's fold: unrolled, the 16 sums in registers */
static inline __attribute__((always_inline)) void fold(const int32_t *c, const float *dk, __m512 *f) {
    _Pragma("GCC unroll 16")
    for (int j = 0; j < 16; j++)
        f[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * j)), _mm512_set1_ps(dk[j * 64]), f[j]);
}

static double run(int mode) {
    __m512 f[16];
    for (int j = 0; j < 16; j++) f[j] = _mm512_setzero_ps();
    const int n = 200000;
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        uint64_t t0 = __rdtsc();
        for (int i = 0; i < n; i++) {
            int k = i & 31;
            _tile_loadd(0, A + k * 32, 2048);
            _tile_loadd(1, W + k * 512, 64);
            _tile_zero(2);
            _tile_dpbsud(2, 0, 1);
            _tile_loadd(6, A + k * 32 + 32, 2048);
            _tile_loadd(7, W + k * 512 + 512, 64);
            _tile_zero(3);
            _tile_dpbsud(3, 6, 7);
            if (mode == STORE || mode == FOLD) {
                _tile_stored(2, cb[0], 64);
                _tile_stored(3, cb[1], 64);
            }
            if (mode == FOLD) {
                fold(cb[0], d + k, f);
                fold(cb[1], d + k + 1, f);
            } else if (mode == NOSTORE) {
                fold(other[0], d + k, f);
                fold(other[1], d + k + 1, f);
            }
        }
        double c = (double)(__rdtsc() - t0) / n;
        if (c < best) best = c;
    }
    float s = 0;
    for (int j = 0; j < 16; j++) s += _mm512_reduce_add_ps(f[j]);
    return best + 0.0 * s;
}

int main(void) {
    unsigned a, b, c, dx;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &dx) || !(dx & (1u << 24)) || !(dx & (1u << 25))) {
        printf("amxmix: this CPU has no AMX-TILE/AMX-INT8: nothing to measure\n");
        return 0;
    }
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) != 0) {
        printf("amxmix: Linux does not grant the AMX tile state: nothing to measure\n");
        return 0;
    }
    for (int i = 0; i < (int)sizeof A; i++) A[i] = (int8_t)(i % 13 - 6);
    for (int i = 0; i < (int)sizeof W; i++) W[i] = (uint8_t)(i % 251);
    for (int i = 0; i < 16 * 64; i++) d[i] = 1e-3f * (float)(i % 7);
    mq_amx_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.rows[0] = cfg.rows[6] = 16, cfg.colsb[0] = cfg.colsb[6] = 32;
    cfg.rows[1] = cfg.rows[7] = 8, cfg.colsb[1] = cfg.colsb[7] = 64;
    for (int t = 2; t < 6; t++) cfg.rows[t] = 16, cfg.colsb[t] = 64;
    mq_amx_load_config(&cfg);
    const char *names[] = {"mult", "store", "fold", "nostore"};
    printf("# amxmix: TSC cycles per step of 2 blocks (16 tokens x 16 rows x 32, 16384 MACs), best of 5\n");
    for (int m = MULT; m <= NOSTORE; m++) {
        double cyc = run(m);
        printf("%-8s %7.1f   (%.0f MACs per TSC cycle)\n", names[m], cyc, 16384.0 / cyc);
    }
    _tile_release();
    return 0;
}

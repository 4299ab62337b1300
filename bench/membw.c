/*
 * membw.c — the machine's ceilings that kernel figures are compared with:
 * read bandwidth of one and two threads (each streaming its own slice of a
 * 512 MiB buffer, far larger than the caches; the better of plain loads
 * and loads with software prefetches 8 KiB ahead), the fp32 FMA peak and the
 * int8 VNNI (vpdpbusd) peak per thread count, as best of several runs.
 * Built by `make bench` (build/membw) with AVX-512 flags; prints a table and,
 * with --json, one JSON line {read_gbs_1t, read_gbs_2t (the better of the
 * two), plain_gbs_1t, plain_gbs_2t (plain loads only), fma_gflops_1t,
 * fma_gflops_2t, vnni_gops_1t, vnni_gops_2t}.
 *
 * Not here: anything about matquant's kernels (tools/cmd_bench.c).
 * Counting: an FMA is 2 flops per lane (16 lanes); a vpdpbusd is 64
 * multiply-adds, counted as 128 ops, the convention behind "int8 TOPS".
 */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* GB/s reading n bytes of buf with nt threads (best of reps), with
 * software prefetches into L2 pf bytes ahead of the loads (pf = 0: none,
 * the hardware prefetchers only). */
static double read_bw(const uint8_t *buf, size_t n, int nt, int reps, size_t pf) {
    double best = 0;
    volatile long long sink = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        long long tot = 0;
#pragma omp parallel num_threads(nt) reduction(+ : tot)
        {
            int t = omp_get_thread_num(), k = omp_get_num_threads();
            size_t a = n / (size_t)k * (size_t)t, b = n / (size_t)k * (size_t)(t + 1);
            a &= ~(size_t)255;
            b &= ~(size_t)255;
            __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
            for (size_t i = a; i < b; i += 256) {
                if (pf) /* the last 8 KiB prefetch past the buffer: harmless, prefetches never fault */
                    for (int l = 0; l < 4; l++) _mm_prefetch((const char *)buf + i + pf + 64 * l, _MM_HINT_T1);
                s0 = _mm512_add_epi64(s0, _mm512_load_si512(buf + i));
                s1 = _mm512_add_epi64(s1, _mm512_load_si512(buf + i + 64));
                s2 = _mm512_add_epi64(s2, _mm512_load_si512(buf + i + 128));
                s3 = _mm512_add_epi64(s3, _mm512_load_si512(buf + i + 192));
            }
            s0 = _mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3));
            tot += _mm512_reduce_add_epi64(s0);
        }
        double dt = now_s() - t0;
        sink += tot;
        if ((double)n / dt / 1e9 > best) best = (double)n / dt / 1e9;
    }
    (void)sink;
    return best;
}

#define ITERS 20000000L

/* GFLOP/s of independent FMA chains on nt threads. */
static double fma_peak(int nt) {
    double t0 = now_s();
    float out = 0;
#pragma omp parallel num_threads(nt) reduction(+ : out)
    {
        __m512 a[12], m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
        for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
        for (long it = 0; it < ITERS; it++)
#pragma GCC unroll 12
            for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
        for (int i = 1; i < 12; i++) a[0] = _mm512_add_ps(a[0], a[i]);
        out += _mm512_reduce_add_ps(a[0]);
    }
    double dt = now_s() - t0;
    if (out == 12345.0f) printf(" ");
    return (double)ITERS * 12 * 16 * 2 * nt / dt / 1e9;
}

/* G int8 ops/s (2 per multiply-add) of independent vpdpbusd chains. */
static double vnni_peak(int nt) {
    double t0 = now_s();
    long long out = 0;
#pragma omp parallel num_threads(nt) reduction(+ : out)
    {
        __m512i a[12], u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-2);
        for (int i = 0; i < 12; i++) a[i] = _mm512_set1_epi32(i);
        for (long it = 0; it < ITERS; it++)
#pragma GCC unroll 12
            for (int i = 0; i < 12; i++) a[i] = _mm512_dpbusd_epi32(a[i], u, s);
        for (int i = 1; i < 12; i++) a[0] = _mm512_add_epi32(a[0], a[i]);
        out += _mm512_reduce_add_epi32(a[0]);
    }
    double dt = now_s() - t0;
    if (out == 12345) printf(" ");
    return (double)ITERS * 12 * 64 * 2 * nt / dt / 1e9;
}

int main(int argc, char **argv) {
    int json = argc > 1 && !strcmp(argv[1], "--json");
    if (argc > 1 && !json) {
        fprintf(stderr, "usage: membw [--json]\n");
        return 2;
    }
    size_t n = (size_t)512 << 20;
    uint8_t *buf = aligned_alloc(64, n);
    if (!buf) {
        fprintf(stderr, "membw: cannot allocate %zu bytes\n", n);
        return 1;
    }
    memset(buf, 1, n);
    /* the ceiling is the better of a plain stream and one with software
     * prefetches 8 KiB ahead (as the decode kernels issue): on this VM the
     * hardware prefetchers alone leave 20-30% of the bandwidth unused */
    double p1 = read_bw(buf, n, 1, 5, 0), p2 = read_bw(buf, n, 2, 5, 0);
    double q1 = read_bw(buf, n, 1, 5, 8192), q2 = read_bw(buf, n, 2, 5, 8192);
    double r1 = p1 > q1 ? p1 : q1, r2 = p2 > q2 ? p2 : q2;
    double f1 = fma_peak(1), f2 = fma_peak(2), v1 = vnni_peak(1), v2 = vnni_peak(2);
    free(buf);
    printf("read bandwidth  1 thread %6.1f GB/s   2 threads %6.1f GB/s  (plain loads %.1f / %.1f, "
           "with prefetch %.1f / %.1f)\n", r1, r2, p1, p2, q1, q2);
    printf("fp32 FMA peak   1 thread %6.0f GFLOP/s 2 threads %6.0f GFLOP/s\n", f1, f2);
    printf("int8 VNNI peak  1 thread %6.0f GOP/s   2 threads %6.0f GOP/s\n", v1, v2);
    if (json)
        printf("{\"read_gbs_1t\":%.2f,\"read_gbs_2t\":%.2f,\"plain_gbs_1t\":%.2f,\"plain_gbs_2t\":%.2f,\"fma_gflops_1t\":%.1f,\"fma_gflops_2t\":%.1f,"
               "\"vnni_gops_1t\":%.1f,\"vnni_gops_2t\":%.1f}\n", r1, r2, p1, p2, f1, f2, v1, v2);
    return 0;
}

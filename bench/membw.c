/*
 * membw.c — the machine's ceilings that kernel figures are compared with:
 * read bandwidth of one and two threads (each streaming its own slice of a
 * 512 MiB huge-page buffer, far larger than the caches; the best of plain
 * loads, loads with software prefetches 8 KiB ahead, and four streams per
 * thread with prefetches, as a decode tile reads four rows), the fp32 FMA peak and the
 * int8 multiply-add peak per thread count, as best of several runs.
 * Built by `make bench` (build/membw) for baseline x86-64; each measurement
 * runs the widest form the CPU has (AVX-512 where present, else AVX2, chosen
 * at run time), and the table says which. Prints a table and, with --json,
 * one JSON line {isa ("avx512" or "avx2"), read_gbs_1t, read_gbs_2t (the
 * best of the three), plain_gbs_1t, plain_gbs_2t (plain loads only),
 * streams4_gbs_1t, streams4_gbs_2t (four streams a thread),
 * fma_gflops_1t, fma_gflops_2t, int8_gops_1t, int8_gops_2t, vnni_gops_1t,
 * vnni_gops_2t}. The int8 peak is vpdpbusd with AVX-512 VNNI, else AVX2's
 * vpmaddubsw + vpmaddwd + vpaddd (32 multiply-adds per three instructions,
 * what the AVX2 kernels use); vnni_gops_* are the same figure with VNNI and
 * null without it.
 *
 * Not here: anything about matquant's kernels (tools/cmd_bench.c).
 * Counting: an FMA is 2 flops per lane (16 lanes zmm, 8 ymm); a vpdpbusd is
 * 64 multiply-adds, counted as 128 ops, the convention behind "int8 TOPS";
 * an AVX2 vpmaddubsw/vpmaddwd/vpaddd triple is 32 multiply-adds (64 ops).
 */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Sum of buf[a..b) as 64-bit lanes (b - a a multiple of 256), with
 * software prefetches into L2 pf bytes ahead (pf = 0: none). */
__attribute__((target("avx512f"))) static long long sum512(const uint8_t *buf, size_t a, size_t b, size_t pf) {
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
    return _mm512_reduce_add_epi64(s0);
}

__attribute__((target("avx2"))) static long long sum256(const uint8_t *buf, size_t a, size_t b, size_t pf) {
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = a; i < b; i += 256) {
        if (pf)
            for (int l = 0; l < 4; l++) _mm_prefetch((const char *)buf + i + pf + 64 * l, _MM_HINT_T1);
        for (int l = 0; l < 256; l += 128) {
            s0 = _mm256_add_epi64(s0, _mm256_load_si256((const __m256i *)(buf + i + l)));
            s1 = _mm256_add_epi64(s1, _mm256_load_si256((const __m256i *)(buf + i + l + 32)));
            s2 = _mm256_add_epi64(s2, _mm256_load_si256((const __m256i *)(buf + i + l + 64)));
            s3 = _mm256_add_epi64(s3, _mm256_load_si256((const __m256i *)(buf + i + l + 96)));
        }
    }
    s0 = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    long long v[4];
    _mm256_storeu_si256((__m256i *)v, s0);
    return v[0] + v[1] + v[2] + v[3];
}

/* The same sum over four streams at once: [a, b) cut into four equal
 * parts read in lockstep, 64 bytes from each per step, each with its own
 * prefetch pf bytes ahead -- the access pattern of a decode tile, which
 * reads four weight rows side by side. (b - a) / 4 a multiple of 64. */
__attribute__((target("avx512f"))) static long long sum512x4(const uint8_t *buf, size_t a, size_t b, size_t pf) {
    size_t q = (b - a) / 4;
    const uint8_t *p0 = buf + a, *p1 = p0 + q, *p2 = p1 + q, *p3 = p2 + q;
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < q; i += 64) {
        if (pf) {
            _mm_prefetch((const char *)p0 + i + pf, _MM_HINT_T1);
            _mm_prefetch((const char *)p1 + i + pf, _MM_HINT_T1);
            _mm_prefetch((const char *)p2 + i + pf, _MM_HINT_T1);
            _mm_prefetch((const char *)p3 + i + pf, _MM_HINT_T1);
        }
        s0 = _mm512_add_epi64(s0, _mm512_load_si512(p0 + i));
        s1 = _mm512_add_epi64(s1, _mm512_load_si512(p1 + i));
        s2 = _mm512_add_epi64(s2, _mm512_load_si512(p2 + i));
        s3 = _mm512_add_epi64(s3, _mm512_load_si512(p3 + i));
    }
    s0 = _mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3));
    return _mm512_reduce_add_epi64(s0);
}

__attribute__((target("avx2"))) static long long sum256x4(const uint8_t *buf, size_t a, size_t b, size_t pf) {
    size_t q = (b - a) / 4;
    const uint8_t *p[4] = {buf + a, buf + a + q, buf + a + 2 * q, buf + a + 3 * q};
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < q; i += 64) {
        if (pf)
            for (int l = 0; l < 4; l++) _mm_prefetch((const char *)p[l] + i + pf, _MM_HINT_T1);
        s0 = _mm256_add_epi64(s0, _mm256_add_epi64(_mm256_load_si256((const __m256i *)(p[0] + i)),
                                                   _mm256_load_si256((const __m256i *)(p[0] + i + 32))));
        s1 = _mm256_add_epi64(s1, _mm256_add_epi64(_mm256_load_si256((const __m256i *)(p[1] + i)),
                                                   _mm256_load_si256((const __m256i *)(p[1] + i + 32))));
        s2 = _mm256_add_epi64(s2, _mm256_add_epi64(_mm256_load_si256((const __m256i *)(p[2] + i)),
                                                   _mm256_load_si256((const __m256i *)(p[2] + i + 32))));
        s3 = _mm256_add_epi64(s3, _mm256_add_epi64(_mm256_load_si256((const __m256i *)(p[3] + i)),
                                                   _mm256_load_si256((const __m256i *)(p[3] + i + 32))));
    }
    s0 = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    long long v[4];
    _mm256_storeu_si256((__m256i *)v, s0);
    return v[0] + v[1] + v[2] + v[3];
}

static int has512, hasvnni; /* set in main from __builtin_cpu_supports */

/* GB/s reading n bytes of buf with nt threads (best of reps), with
 * software prefetches into L2 pf bytes ahead of the loads (pf = 0: none,
 * the hardware prefetchers only). */
static double read_bw(const uint8_t *buf, size_t n, int nt, int reps, size_t pf, int four) {
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
            if (four)
                tot += has512 ? sum512x4(buf, a, b, pf) : sum256x4(buf, a, b, pf);
            else
                tot += has512 ? sum512(buf, a, b, pf) : sum256(buf, a, b, pf);
        }
        double dt = now_s() - t0;
        sink += tot;
        if ((double)n / dt / 1e9 > best) best = (double)n / dt / 1e9;
    }
    (void)sink;
    return best;
}

#define ITERS 20000000L

/* fp32 flops of ITERS rounds of 12 independent FMA chains on this thread. */
__attribute__((target("avx512f"))) static double fma512(float *out) {
    __m512 a[12], m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < ITERS; it++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
    for (int i = 1; i < 12; i++) a[0] = _mm512_add_ps(a[0], a[i]);
    *out += _mm512_reduce_add_ps(a[0]);
    return (double)ITERS * 12 * 16 * 2;
}

__attribute__((target("avx2,fma"))) static double fma256(float *out) {
    __m256 a[12], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < ITERS; it++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
    for (int i = 1; i < 12; i++) a[0] = _mm256_add_ps(a[0], a[i]);
    float v[8];
    _mm256_storeu_ps(v, a[0]);
    for (int i = 0; i < 8; i++) *out += v[i];
    return (double)ITERS * 12 * 8 * 2;
}

/* GFLOP/s of independent FMA chains on nt threads. */
static double fma_peak(int nt) {
    double t0 = now_s(), flops = 0;
    float out = 0;
#pragma omp parallel num_threads(nt) reduction(+ : out, flops)
    flops += has512 ? fma512(&out) : fma256(&out);
    double dt = now_s() - t0;
    if (out == 12345.0f) printf(" ");
    return flops / dt / 1e9;
}

/* int8 ops (2 per multiply-add) of ITERS rounds of 12 independent chains. */
__attribute__((target("avx512f,avx512vnni"))) static double int8_512(long long *out) {
    __m512i a[12], u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-2);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_epi32(i);
    for (long it = 0; it < ITERS; it++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_dpbusd_epi32(a[i], u, s);
    for (int i = 1; i < 12; i++) a[0] = _mm512_add_epi32(a[0], a[i]);
    *out += _mm512_reduce_add_epi32(a[0]);
    return (double)ITERS * 12 * 64 * 2;
}

/* AVX2: u8 x s8 pairs to int16 (vpmaddubsw), pairs of those to int32
 * (vpmaddwd with ones), accumulated (vpaddd): 32 multiply-adds a triple. */
__attribute__((target("avx2"))) static double int8_256(long long *out) {
    __m256i a[12], s = _mm256_set1_epi8(-2), one = _mm256_set1_epi16(1);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_epi32(i);
    /* each chain's bytes are its own next unsigned operand, so nothing is
     * loop-invariant; 12 chains of 7 cycles' latency outrun the multipliers */
    for (long it = 0; it < ITERS; it++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            a[i] = _mm256_add_epi32(a[i], _mm256_madd_epi16(_mm256_maddubs_epi16(a[i], s), one));
    for (int i = 1; i < 12; i++) a[0] = _mm256_add_epi32(a[0], a[i]);
    int v[8];
    _mm256_storeu_si256((__m256i *)v, a[0]);
    for (int i = 0; i < 8; i++) *out += v[i];
    return (double)ITERS * 12 * 32 * 2;
}

/* G int8 ops/s (2 per multiply-add) of independent chains on nt threads. */
static double int8_peak(int nt) {
    double t0 = now_s(), ops = 0;
    long long out = 0;
#pragma omp parallel num_threads(nt) reduction(+ : out, ops)
    ops += hasvnni ? int8_512(&out) : int8_256(&out);
    double dt = now_s() - t0;
    if (out == 12345) printf(" ");
    return ops / dt / 1e9;
}

int main(int argc, char **argv) {
    int json = argc > 1 && !strcmp(argv[1], "--json");
    if (argc > 1 && !json) {
        fprintf(stderr, "usage: membw [--json]\n");
        return 2;
    }
    __builtin_cpu_init();
    has512 = __builtin_cpu_supports("avx512f");
    hasvnni = has512 && __builtin_cpu_supports("avx512vnni");
    if (!has512 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
        fprintf(stderr, "membw: this CPU has neither AVX-512F nor AVX2+FMA\n");
        return 1;
    }
    size_t n = (size_t)512 << 20;
    /* 2 MiB aligned with huge-page advice, as matquant's weight arena is
     * (mq_stream_alloc), so TLB misses do not lower the ceiling */
    uint8_t *buf = NULL;
    if (posix_memalign((void **)&buf, (size_t)2 << 20, n) != 0) buf = NULL;
    if (buf) (void)madvise(buf, n, MADV_HUGEPAGE); /* advice only */
    if (!buf) {
        fprintf(stderr, "membw: cannot allocate %zu bytes\n", n);
        return 1;
    }
    memset(buf, 1, n);
    /* the ceiling is the best of a plain stream, one with software
     * prefetches 8 KiB ahead (as the decode kernels issue: on this VM the
     * hardware prefetchers alone leave 20-30% of the bandwidth unused) and
     * four streams per thread with prefetches (as a decode tile reads four
     * rows: more streams in flight draw more from some machines' memory) */
    double p1 = read_bw(buf, n, 1, 5, 0, 0), p2 = read_bw(buf, n, 2, 5, 0, 0);
    double q1 = read_bw(buf, n, 1, 5, 8192, 0), q2 = read_bw(buf, n, 2, 5, 8192, 0);
    double m1 = read_bw(buf, n, 1, 5, 8192, 1), m2 = read_bw(buf, n, 2, 5, 8192, 1);
    double r1 = p1 > q1 ? p1 : q1, r2 = p2 > q2 ? p2 : q2;
    if (m1 > r1) r1 = m1;
    if (m2 > r2) r2 = m2;
    double f1 = fma_peak(1), f2 = fma_peak(2), v1 = int8_peak(1), v2 = int8_peak(2);
    free(buf);
    const char *isa = has512 ? "avx512" : "avx2";
    printf("read bandwidth  1 thread %6.1f GB/s   2 threads %6.1f GB/s  (plain loads %.1f / %.1f, "
           "with prefetch %.1f / %.1f, four streams a thread %.1f / %.1f)\n", r1, r2, p1, p2, q1, q2, m1, m2);
    printf("fp32 FMA peak   1 thread %6.0f GFLOP/s 2 threads %6.0f GFLOP/s  (%s)\n", f1, f2, isa);
    printf("int8 peak       1 thread %6.0f GOP/s   2 threads %6.0f GOP/s    (%s)\n", v1, v2,
           hasvnni ? "AVX-512 VNNI vpdpbusd" : "AVX2 vpmaddubsw+vpmaddwd+vpaddd");
    if (json) {
        char vn[64] = "\"vnni_gops_1t\":null,\"vnni_gops_2t\":null";
        if (hasvnni) snprintf(vn, sizeof vn, "\"vnni_gops_1t\":%.1f,\"vnni_gops_2t\":%.1f", v1, v2);
        printf("{\"isa\":\"%s\",\"read_gbs_1t\":%.2f,\"read_gbs_2t\":%.2f,\"plain_gbs_1t\":%.2f,\"plain_gbs_2t\":%.2f,"
               "\"streams4_gbs_1t\":%.2f,\"streams4_gbs_2t\":%.2f,"
               "\"fma_gflops_1t\":%.1f,\"fma_gflops_2t\":%.1f,\"int8_gops_1t\":%.1f,\"int8_gops_2t\":%.1f,%s}\n",
               isa, r1, r2, p1, p2, m1, m2, f1, f2, v1, v2, vn);
    }
    return 0;
}

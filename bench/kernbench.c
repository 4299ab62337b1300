/*
 * kernbench.c — single-threaded microbenchmark of the packed integer
 * kernels (quant/kern.h): cycles per weight of one variant's gemv (decode,
 * B = 1) and gemm (prompt, B tokens) on linears of the TinyLlama-1.1B shape
 * (2048x2048, 5632x2048, 2048x5632) at widths 8, 6, 4, 3, 2 and 2x, per
 * channel and with groups of 64. The yardstick for kernel work on a shared
 * machine: the counter is the calling thread's own user-mode cycles
 * (perf_event_open, exclude_kernel), so time spent descheduled by other
 * jobs does not count; where perf events are unavailable (virtual machines)
 * it counts the thread's CPU time (CLOCK_THREAD_CPUTIME_ID, which also
 * leaves out descheduled time) in TSC ticks, and says so in its header.
 *
 * Not here: threads, activation quantization and the forward pass (they
 * are in `matquant bench`); memory bandwidth (bench/membw.c). The matrices
 * are small enough to stay partly in L2/L3 across repetitions, so these are
 * compute costs, not DRAM-bound decode speeds. Codes are what MinMax gives
 * Gaussian weights (normal around 128 with sd 37.5, clamped to 0..255: a
 * row's range is about +-3.4 sd), so the extra-precision overflow list is
 * as sparse as on a real checkpoint (~0.5% at 2x, printed); otherwise speed
 * does not depend on the values. Each figure is the best of --reps
 * measurements.
 *
 * --stream T: instead, the decode product as served, from memory: the 154
 * linears of 22 TinyLlama-1.1B layers (q, k, v, o, gate, up, down; ~1 GB
 * at int8, far beyond the caches) packed at each width and multiplied in
 * turn by one token with mq_kern_matmul on T threads (activation
 * quantization included; the code planes in one huge-page arena, as a
 * served model holds them), best of --reps passes: GB/s of packed weights
 * streamed and weights/s. Wall-clock, so only meaningful on a quiet
 * machine; compare with build/membw of the same moment.
 *
 * --only kact: instead, the activation quantization every product starts
 * with (mq_kact_quantize, one thread): cycles and microseconds a token
 * at 2048 and 5632 columns, for one token (decode, where it runs before
 * the product's threads start) and for --batch tokens.
 *
 * Usage: build/kernbench [--kern avx512|avx2|scalar] [--reps N] [--batch B]
 *                        [--only gemv|gemm|kact] [--widths 8,4,2x] [--json]
 *        build/kernbench --stream T [--widths 8,4,2] [--reps N]
 */
#include "quant/kern.h"

#include <linux/perf_event.h>
#include <omp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <immintrin.h>
#include <x86intrin.h>

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* A MinMax-like parent code of a Gaussian weight (Box-Muller). */
static uint8_t code(void) {
    double u1 = ((double)rnd() + 1.0) / 4294967297.0, u2 = (double)rnd() / 4294967296.0;
    double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    long v = lround(128.0 + 37.5 * z);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* ---------------------------------------------------------- counter */

static int perf_fd = -1;
static double tsc_per_ns; /* TSC ticks per nanosecond, calibrated once */

/* Open a user-mode cycle counter for this thread; false if not allowed
 * (virtual machines often expose no hardware counters). */
static bool counter_open(void) {
    struct perf_event_attr pe;
    memset(&pe, 0, sizeof pe);
    pe.type = PERF_TYPE_HARDWARE;
    pe.size = sizeof pe;
    pe.config = PERF_COUNT_HW_CPU_CYCLES;
    pe.exclude_kernel = 1;
    pe.exclude_hv = 1;
    perf_fd = (int)syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0);
    if (perf_fd >= 0) return true;
    /* fallback: this thread's CPU time (descheduled time excluded) in TSC
     * ticks, the TSC rate measured against CLOCK_MONOTONIC over 50 ms */
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    uint64_t t0 = __rdtsc();
    do clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec) < 50000000LL);
    uint64_t t1 = __rdtsc();
    tsc_per_ns = (double)(t1 - t0) / (double)((b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
    return false;
}

/* Cycles so far: user-mode core cycles of this thread (perf), else its CPU
 * time in TSC ticks. */
static uint64_t counter_read(void) {
    if (perf_fd >= 0) {
        uint64_t v = 0;
        if (read(perf_fd, &v, sizeof v) == (ssize_t)sizeof v) return v;
    }
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)(((double)ts.tv_sec * 1e9 + (double)ts.tv_nsec) * tsc_per_ns);
}

/* The ceiling on the same counter: cycles per weight of 12 independent
 * vpdpbusd chains (64 weights each). */
__attribute__((target("avx512f,avx512vnni"))) static double vnni_peak_cpw(void) {
    __m512i a[12], u = _mm512_set1_epi8(3), x = _mm512_set1_epi8(-2);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_epi32(i);
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        uint64_t c0 = counter_read();
        /* unrolled, so the 12 chains live in registers: without the pragma
         * GCC kept a[] in memory and the loop measured store-to-load
         * forwarding, half the real rate (kernbench printed 0.022-0.029
         * until 1 December 2026; the true ceiling is ~0.0114 at TSC 2.6 GHz) */
        for (int n = 0; n < 200000; n++)
#pragma GCC unroll 12
            for (int i = 0; i < 12; i++) a[i] = _mm512_dpbusd_epi32(a[i], u, x);
        uint64_t c1 = counter_read();
        double cpw = (double)(c1 - c0) / (200000.0 * 12 * 64);
        if (cpw < best) best = cpw;
    }
    volatile int sink = 0;
    for (int i = 0; i < 12; i++) sink += _mm512_reduce_add_epi32(a[i]);
    (void)sink;
    return best;
}

/* The same without VNNI: 12 chains of the AVX2 kernels' u8 x s8 triple
 * (vpmaddubsw, vpmaddwd with ones, vpaddd; 32 weights each), each chain's
 * bytes its own next operand so that nothing is loop-invariant. */
__attribute__((target("avx2"))) static double avx2_peak_cpw(void) {
    __m256i a[12], x = _mm256_set1_epi8(-2), one = _mm256_set1_epi16(1);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_epi32(i);
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        uint64_t c0 = counter_read();
        for (int n = 0; n < 200000; n++)
#pragma GCC unroll 12
            for (int i = 0; i < 12; i++)
                a[i] = _mm256_add_epi32(a[i], _mm256_madd_epi16(_mm256_maddubs_epi16(a[i], x), one));
        uint64_t c1 = counter_read();
        double cpw = (double)(c1 - c0) / (200000.0 * 12 * 32);
        if (cpw < best) best = cpw;
    }
    volatile int sink = 0;
    int v[8];
    for (int i = 0; i < 12; i++) {
        _mm256_storeu_si256((__m256i *)v, a[i]);
        sink += v[0];
    }
    (void)sink;
    return best;
}

/* The int8 ceiling of this CPU and the instruction it is measured on (-1
 * when it has neither AVX-512 VNNI nor AVX2). */
static double int8_peak_cpw(const char **what) {
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni")) {
        *what = "vpdpbusd zmm";
        return vnni_peak_cpw();
    }
    if (__builtin_cpu_supports("avx2")) {
        *what = "vpmaddubsw+vpmaddwd+vpaddd ymm";
        return avx2_peak_cpw();
    }
    *what = "none (no AVX2)";
    return -1;
}

/* ------------------------------------------------------------ cases */

typedef struct {
    const mq_kern_ops *k;
    int reps, batch;
    bool do_gemv, do_gemm, do_kact, json;
} opts;

/* Best cycles per weight of reps calls of one kernel on p (B tokens). */
static double measure(const opts *o, const mq_packed *p, const mq_kact *a, float *y, bool gemm) {
    double w = (double)p->rows * p->cols * (gemm ? a->B : 1);
    /* enough calls per measurement for ~2e7 weight-products */
    int calls = (int)(2e7 / w) + 1;
    double best = 1e30;
    for (int r = 0; r < o->reps + 1; r++) { /* the first is a warm-up */
        uint64_t c0 = counter_read();
        for (int i = 0; i < calls; i++) {
            if (gemm) o->k->gemm(p, 0, p->rows, a, y, p->rows);
            else o->k->gemv(p, 0, p->rows, a, y);
        }
        uint64_t c1 = counter_read();
        double cpw = (double)(c1 - c0) / (w * calls);
        if (r > 0 && cpw < best) best = cpw;
    }
    return best;
}

static void one_shape(const opts *o, int rows, int cols, int r, bool extra, int group, mq_kact *a, const float *x,
                      float *y) {
    size_t n = (size_t)rows * cols;
    int ng = cols / group;
    uint8_t *q = mq_malloc(n), *zero = mq_malloc((size_t)rows * ng);
    float *alpha = mq_malloc((size_t)rows * ng * sizeof(float));
    for (size_t i = 0; i < n; i++) q[i] = code();
    for (int i = 0; i < rows * ng; i++) {
        alpha[i] = 0.001f + 1e-5f * (float)(rnd() % 1000);
        zero[i] = (uint8_t)(rnd() & 255);
    }
    mq_packed p;
    if (mq_pack_build(q, alpha, zero, rows, cols, group, r, extra, &p) != MQ_OK) {
        fprintf(stderr, "kernbench: %s\n", mq_last_error());
        exit(1);
    }
    double gv = -1, gm = -1;
    if (o->do_gemv) {
        mq_kact_quantize(a, x, 1, cols);
        mq_kact_group_sums(a, &p);
        gv = measure(o, &p, a, y, false);
    }
    if (o->do_gemm) {
        mq_kact_quantize(a, x, o->batch, cols);
        mq_kact_group_sums(a, &p);
        gm = measure(o, &p, a, y, true);
    }
    char wname[8], gname[16];
    snprintf(wname, sizeof wname, "%d%s", r, extra ? "x" : "");
    if (group == cols) snprintf(gname, sizeof gname, "channel");
    else snprintf(gname, sizeof gname, "g%d", group);
    if (o->json)
        printf("{\"kern\":\"%s\",\"rows\":%d,\"cols\":%d,\"bits\":\"%s\",\"group\":\"%s\",\"gemv_cpw\":%.5f,"
               "\"gemm_cpw\":%.5f,\"batch\":%d,\"overflow\":%.5f}\n",
               o->k->name, rows, cols, wname, gname, gv, gm, o->batch, (double)p.n_over / (double)n);
    else
        printf("%-7s %5dx%-5d %-3s %-8s %10.4f %10.5f %8.2f%%\n", o->k->name, rows, cols, wname, gname, gv, gm,
               100.0 * (double)p.n_over / (double)n);
    fflush(stdout);
    free(q); free(zero); free(alpha);
    mq_pack_free(&p);
}

/* The widths of a comma list ("8,4,2x") into r[] / extra[] (at most 16);
 * the count, or -1 (with a message) for a width without a packed layout. */
static int parse_widths(const char *widths, int *r, bool *extra) {
    char list[64];
    snprintf(list, sizeof list, "%s", widths);
    int n = 0;
    for (char *tok = strtok(list, ","); tok && n < 16; tok = strtok(NULL, ",")) {
        r[n] = atoi(tok);
        extra[n] = strchr(tok, 'x') != NULL;
        if (!mq_pack_supported(r[n], extra[n])) {
            fprintf(stderr, "kernbench: width %s has no layout\n", tok);
            return -1;
        }
        n++;
    }
    return n;
}

/* --only kact: see the header. One thread, as a decode product runs it. */
static int kact_bench(const opts *o) {
    bool perf = counter_open();
    printf("# kernbench --only kact: mq_kact_quantize on one thread, %s (TSC %.2f GHz), best of %d\n"
           "# %-6s %-6s %12s %12s\n",
           perf ? "user-mode core cycles (perf_event)" : "thread CPU time in TSC cycles (no perf events)", tsc_per_ns,
           o->reps, "cols", "tokens", "cycles/tok", "us/tok");
    const int cols[2] = {2048, 5632};
    mq_kact *a = mq_kact_new(o->batch, 5632);
    float *x = mq_malloc((size_t)o->batch * 5632 * sizeof(float));
    for (size_t i = 0; i < (size_t)o->batch * 5632; i++) x[i] = (float)((double)rnd() / 2147483648.0 - 1.0);
    int bs[2] = {1, o->batch};
    omp_set_num_threads(1);
    for (int c = 0; c < 2; c++)
        for (int b = 0; b < (o->batch > 1 ? 2 : 1); b++) {
            int B = bs[b], calls = (int)(2e7 / ((double)cols[c] * B)) + 1;
            double best = 1e30;
            for (int r = 0; r < o->reps + 1; r++) { /* the first is a warm-up */
                uint64_t c0 = counter_read();
                for (int i = 0; i < calls; i++) mq_kact_quantize(a, x, B, cols[c]);
                double cyc = (double)(counter_read() - c0) / ((double)calls * B);
                if (r > 0 && cyc < best) best = cyc;
            }
            printf("  %-6d %-6d %12.0f %12.3f\n", cols[c], B, best, best / tsc_per_ns / 1000.0);
        }
    mq_kact_free(a);
    free(x);
    return 0;
}

/* --stream: see the header. */
static int stream_bench(int T, const char *widths, int reps) {
    const int shapes[7][2] = {{2048, 2048}, {256, 2048}, {256, 2048}, {2048, 2048},
                              {5632, 2048}, {5632, 2048}, {2048, 5632}};
    const int nl = 22, nm = 7 * nl;
    size_t big = (size_t)5632 * 2048;
    uint8_t *q = mq_malloc(big), *zero = mq_malloc(5632);
    float *alpha = mq_malloc(5632 * sizeof(float));
    for (size_t i = 0; i < big; i++) q[i] = code();
    for (int i = 0; i < 5632; i++) {
        alpha[i] = 0.001f + 1e-5f * (float)(rnd() % 1000);
        zero[i] = (uint8_t)(rnd() & 255);
    }
    mq_kact *a = mq_kact_new(1, 5632);
    float *x = mq_malloc(5632 * sizeof(float)), *y = mq_malloc(5632 * sizeof(float));
    for (int i = 0; i < 5632; i++) x[i] = (float)((double)rnd() / 2147483648.0 - 1.0);
    omp_set_num_threads(T);
    printf("# kernbench --stream: 154 linears of 22 TinyLlama-1.1B layers, one token, %d thread(s), kernels %s, "
           "best of %d passes (wall clock)\n# %-4s %10s %10s %10s %12s\n", T, mq_kern_active()->name, reps, "w",
           "MB", "ms", "GB/s", "Gweights/s");
    int rs[16], nw;
    bool xs[16];
    if ((nw = parse_widths(widths, rs, xs)) < 0) return 2;
    for (int w = 0; w < nw; w++) {
        int r = rs[w];
        bool extra = xs[w];
        char tok[8];
        snprintf(tok, sizeof tok, "%d%s", r, extra ? "x" : "");
        mq_packed *P = mq_calloc((size_t)nm, sizeof *P);
        size_t bytes = 0, total = 0, off = 0;
        double weights = 0;
        for (int i = 0; i < nm; i++) total += mq_pack_data_bytes(shapes[i % 7][0], shapes[i % 7][1], r);
        uint8_t *arena = mq_stream_alloc(total); /* as qmodel.c serves a model: one huge-page arena */
        for (int i = 0; i < nm; i++) {
            int R = shapes[i % 7][0], C = shapes[i % 7][1];
            if (mq_pack_build_at(q, alpha, zero, R, C, C, r, extra, arena + off, &P[i]) != MQ_OK) {
                fprintf(stderr, "kernbench: %s\n", mq_last_error());
                return 1;
            }
            off += mq_pack_data_bytes(R, C, r);
            bytes += mq_pack_bytes(&P[i]);
            weights += (double)R * C;
        }
        double best = 1e30;
        for (int rep = 0; rep < reps + 1; rep++) { /* the first pass is a warm-up */
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            for (int i = 0; i < nm; i++) mq_kern_matmul(&P[i], x, 1, y, a);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
            if (rep > 0 && dt < best) best = dt;
        }
        printf("%-6s %10.1f %10.2f %10.2f %12.1f\n", tok, (double)bytes / 1e6, best * 1e3, (double)bytes / best / 1e9,
               weights / best / 1e9);
        fflush(stdout);
        for (int i = 0; i < nm; i++) mq_pack_free(&P[i]);
        free(P);
        free(arena);
    }
    mq_kact_free(a);
    free(q); free(zero); free(alpha); free(x); free(y);
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: kernbench [--kern avx512|avx2|scalar] [--reps N (3)] [--batch B (128)]\n"
                    "                 [--only gemv|gemm|kact] [--widths LIST (8,6,4,3,2,2x)] [--json]\n"
                    "       kernbench --stream THREADS [--widths LIST] [--reps N]   (decode from memory, 1.1B shape)\n");
}

int main(int argc, char **argv) {
    opts o = {mq_kern_active(), 3, 128, true, true, false, false};
    const char *widths = "8,6,4,3,2,2x";
    int stream = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--kern") && v) {
            o.k = mq_kern_find(v);
            if (!o.k) { fprintf(stderr, "kernbench: --kern %s: not a variant this CPU runs\n", v); return 2; }
            i++;
        } else if (!strcmp(argv[i], "--reps") && v) { o.reps = atoi(v); i++; }
        else if (!strcmp(argv[i], "--batch") && v) { o.batch = atoi(v); i++; }
        else if (!strcmp(argv[i], "--only") && v) {
            o.do_gemv = !strcmp(v, "gemv");
            o.do_gemm = !strcmp(v, "gemm");
            o.do_kact = !strcmp(v, "kact");
            if (!o.do_gemv && !o.do_gemm && !o.do_kact) { usage(); return 2; }
            i++;
        } else if (!strcmp(argv[i], "--widths") && v) { widths = v; i++; }
        else if (!strcmp(argv[i], "--json")) o.json = true;
        else if (!strcmp(argv[i], "--stream") && v) { stream = atoi(v); i++; if (stream < 1) { usage(); return 2; } }
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(); return 0; }
        else { usage(); return 2; }
    }
    if (o.reps < 1 || o.batch < 1 || o.batch > 4096) { usage(); return 2; }
    if (stream) return stream_bench(stream, widths, o.reps);
    if (o.do_kact) return kact_bench(&o);
    int rs[16], nw;
    bool xs[16];
    if ((nw = parse_widths(widths, rs, xs)) < 0) return 2;
    bool perf = counter_open();
    const char *peak_isa;
    double peak = int8_peak_cpw(&peak_isa);
    if (!o.json)
        printf("# kernbench: variant %s, single thread, %s (TSC %.2f GHz), best of %d; gemv B=1, gemm B=%d\n"
               "# ceiling: %s throughput = %.4f cycles/weight\n"
               "# %-5s %-11s %-3s %-8s %10s %10s %9s\n",
               o.k->name, perf ? "user-mode core cycles (perf_event)" : "thread CPU time in TSC cycles (no perf events)",
               tsc_per_ns, o.reps, o.batch, peak_isa, peak, "kern", "shape", "w", "group", "gemv c/w", "gemm c/w", "overflow");
    const int shapes[3][2] = {{2048, 2048}, {5632, 2048}, {2048, 5632}};
    int maxc = 5632;
    mq_kact *a = mq_kact_new(o.batch, maxc);
    float *x = mq_malloc((size_t)o.batch * maxc * sizeof(float));
    float *y = mq_malloc((size_t)o.batch * 5632 * sizeof(float));
    for (size_t i = 0; i < (size_t)o.batch * maxc; i++) x[i] = (float)((double)rnd() / 2147483648.0 - 1.0);
    for (int s = 0; s < 3; s++) {
        int rows = shapes[s][0], cols = shapes[s][1];
        for (int w = 0; w < nw; w++) {
            int r = rs[w];
            bool extra = xs[w];
            one_shape(&o, rows, cols, r, extra, cols, a, x, y);
            one_shape(&o, rows, cols, r, extra, 64, a, x, y);
        }
    }
    mq_kact_free(a);
    free(x); free(y);
    if (perf_fd >= 0) close(perf_fd);
    return 0;
}

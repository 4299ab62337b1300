/*
 * threads.c — the thread count. matquant runs one pool (OpenMP); OpenBLAS
 * is kept single-threaded and called per thread on slices.
 */
#include "core/threads.h"

#include <stdint.h>

#include <cblas.h>
#include <omp.h>

void mq_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    /* matrix products split their rows over the OpenMP threads themselves
     * (forward.c); a second, OpenBLAS-owned pool would only compete */
    openblas_set_num_threads(1);
}

int mq_get_threads(void) { return omp_get_max_threads(); }

void mq_thread_slice(int n, int align, int t, int nt, int *lo, int *hi) {
    int blocks = (n + align - 1) / align;
    *lo = (int)((int64_t)blocks * t / nt) * align;
    *hi = (int)((int64_t)blocks * (t + 1) / nt) * align;
    if (*hi > n) *hi = n;
    if (*lo > n) *lo = n;
}

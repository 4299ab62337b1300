/*
 * threads.c — one knob for the two thread pools matquant uses: OpenMP (our
 * loops) and OpenBLAS (matrix products).
 */
#include "core/threads.h"

#include <cblas.h>
#include <omp.h>

void mq_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int mq_get_threads(void) { return omp_get_max_threads(); }

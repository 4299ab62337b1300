/*
 * gptq.c — the GPTQ solver (see gptq.h). Hessian work is in double: the
 * Cholesky factorisations are where fp32 loses definiteness first.
 * LAPACK (dpotrf/dpotri) comes with OpenBLAS; column updates use cblas.
 */
#include "train/gptq.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* LAPACK (Fortran ABI), provided by OpenBLAS */
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info);

void mq_hessian_init(mq_hessian *H, int cols) {
    H->cols = cols;
    H->n = 0;
    H->h = mq_calloc((size_t)cols * cols, sizeof(double));
}

void mq_hessian_free(mq_hessian *H) {
    free(H->h);
    H->h = NULL;
}

void mq_hessian_add(mq_hessian *H, const float *x, int N) {
    int K = H->cols;
    /* widen to double in chunks, then a rank-N update of the upper triangle */
    enum { CH = 64 };
    double *xd = mq_malloc((size_t)CH * K * sizeof(double));
    for (int r0 = 0; r0 < N; r0 += CH) {
        int n = N - r0 < CH ? N - r0 : CH;
        for (size_t i = 0; i < (size_t)n * K; i++) xd[i] = x[(size_t)r0 * K + i];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, K, n, 1.0, xd, K, 1.0, H->h, K);
    }
    free(xd);
    H->n += N;
}

mq_status mq_gptq_run(float *W, int rows, int cols, const mq_hessian *H, const mq_gptq_opts *o) {
    if (H->n <= 0) return mq_fail(MQ_ERR_ARG, "gptq: no calibration activations");
    if (H->cols != cols) return mq_fail(MQ_ERR_ARG, "gptq: Hessian is %dx%d for %d columns", H->cols, H->cols, cols);
    int group = o->group > 0 ? o->group : cols, bs = o->block > 0 ? o->block : 128;
    if (cols % group) return mq_fail(MQ_ERR_ARG, "gptq: %d columns are not a multiple of group %d", cols, group);
    size_t K = (size_t)cols;
    /* the Cholesky factorisations and block updates are OpenBLAS's to thread */
    openblas_set_num_threads(omp_get_max_threads());
    double *h = mq_malloc(K * K * sizeof(double));
    /* full symmetric H * 2/N from the upper triangle */
    double sc = 2.0 / (double)H->n;
    for (size_t i = 0; i < K; i++)
        for (size_t j = i; j < K; j++) h[i * K + j] = h[j * K + i] = H->h[i * K + j] * sc;
    double mean_diag = 0;
    for (size_t i = 0; i < K; i++) {
        if (h[i * K + i] == 0) { /* dead input: no signal, weight irrelevant */
            h[i * K + i] = 1;
            for (int r = 0; r < rows; r++) W[(size_t)r * K + i] = 0;
        }
        mean_diag += h[i * K + i];
    }
    mean_diag /= (double)K;
    for (size_t i = 0; i < K; i++) h[i * K + i] += o->damp * mean_diag;
    /* U = chol(H^-1, upper). Column-major LAPACK on a row-major symmetric
     * matrix: asking for 'L' of the column-major view is the upper triangle
     * of our row-major one. */
    int n = cols, info = 0;
    dpotrf_("L", &n, h, &n, &info);
    if (info == 0) dpotri_("L", &n, h, &n, &info);
    if (info == 0) {
        for (size_t i = 0; i < K; i++) /* symmetrise: upper (row-major) -> lower */
            for (size_t j = i + 1; j < K; j++) h[j * K + i] = h[i * K + j];
        dpotrf_("U", &n, h, &n, &info); /* col-major upper = row-major lower L; U = L^T */
    }
    if (info != 0) {
        free(h);
        openblas_set_num_threads(1);
        return mq_fail(MQ_ERR_NUMERIC, "gptq: the Hessian is not positive definite (LAPACK info %d); "
                       "increase dampening or calibration data", info);
    }
    /* after dpotrf('U') on the column-major view, the factor R (A = R^T R,
     * R upper in column-major) sits in our row-major lower triangle as R^T.
     * We need Hinv = U^T U with U upper row-major: U[i][j] = R[i][j] = h[j*K+i]. */
    float *U = mq_malloc(K * K * sizeof(float));
    for (size_t i = 0; i < K; i++)
        for (size_t j = 0; j < K; j++) U[i * K + j] = j >= i ? (float)h[j * K + i] : 0.0f;
    free(h);
    float *resid = mq_malloc((size_t)rows * sizeof(float));
    float *E = mq_malloc((size_t)rows * bs * sizeof(float)); /* (rows, bs) block errors */
    for (int b0 = 0; b0 < cols; b0 += bs) {
        int b1 = b0 + bs < cols ? b0 + bs : cols, nb = b1 - b0;
        for (int i = b0; i < b1; i++) {
            if (i % group == 0 && o->on_group) o->on_group(o->user, i, W + i, rows, group, K);
            o->on_column(o->user, i, W + i, K, rows, resid);
            float d = U[(size_t)i * K + i];
            for (int r = 0; r < rows; r++) {
                float e = resid[r] / d;
                E[(size_t)r * bs + (i - b0)] = e;
                float *wr = W + (size_t)r * K;
                const float *ui = U + (size_t)i * K;
                for (int j = i + 1; j < b1; j++) wr[j] -= e * ui[j];
            }
        }
        if (b1 < cols) /* W[:, b1:] -= E(rows, nb) @ U[b0:b1, b1:] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols - b1, nb, -1.0f, E, bs,
                        U + (size_t)b0 * K + b1, (int)K, 1.0f, W + b1, (int)K);
    }
    free(E);
    free(resid);
    free(U);
    openblas_set_num_threads(1);
    return MQ_OK;
}

/*
 * gptq.h — GPTQ (Frantar et al., 2023) for one linear layer, with the
 * per-weight rounding left to a callback so that the same solver serves
 * plain GPTQ at one width and MatGPTQ's multi-width rounding (Kleinegger et
 * al., 2026: each weight takes the parent code minimising
 * sum_r lambda_r (w - w_r(q))^2; the error carried to later columns is the
 * mean of the per-width residuals).
 *
 * Algorithm (as the GPTQ reference implementation): H = (2/N) sum x x^T;
 * columns whose diagonal is 0 are dead (H_ii = 1, weights zeroed); H +=
 * damp * mean(diag H) * I; U = upper Cholesky factor of H^-1; columns are
 * quantized left to right in blocks of `block`, each column's error
 * e = residual / U_ii updates the rest of its block at once and the columns
 * after the block lazily (one GEMM per block).
 *
 * Not here: collecting H (the caller's, from activation taps), the
 * quantization grid (the callback's).
 */
#ifndef MQ_GPTQ_H
#define MQ_GPTQ_H

#include "core/core.h"

/* Called when column `col` starts a new quantization group (col % group ==
 * 0): set up the grid for each row from the current, error-updated weights
 * W[:, col .. col+group). w points to row 0 of that group, row stride ld. */
typedef void (*mq_gptq_group_fn)(void *user, int col, const float *w, int rows, int group, size_t ld);
/* Quantize column `col` (rows values, stride ld): write the chosen codes'
 * residual r = w - w_hat (the value carried as error) into resid[rows]. */
typedef void (*mq_gptq_column_fn)(void *user, int col, const float *w, size_t ld, int rows,
                                  float *resid);

typedef struct {
    int group;            /* columns per quantization group (cols = per channel) */
    int block;            /* lazy-update block (128) */
    float damp;           /* relative dampening (0.01) */
    mq_gptq_group_fn on_group;
    mq_gptq_column_fn on_column;
    void *user;
} mq_gptq_opts;

/* Hessian accumulator: H += X^T X for rows x of X (N, cols); mq_gptq_run
 * scales by 2/N. */
typedef struct {
    int cols;
    int64_t n;     /* rows accumulated */
    double *h;     /* (cols, cols), symmetric */
} mq_hessian;
void mq_hessian_init(mq_hessian *H, int cols);
void mq_hessian_add(mq_hessian *H, const float *x, int N); /* x: (N, cols) */
void mq_hessian_free(mq_hessian *H);

/* Run GPTQ on W (rows, cols), row-major, modified in place (on return it
 * holds the error-updated weights; the codes are wherever the callbacks put
 * them). Errors: no data in H, cols % group != 0, H not positive definite
 * even after dampening. */
mq_status mq_gptq_run(float *W, int rows, int cols, const mq_hessian *H, const mq_gptq_opts *o);

#endif

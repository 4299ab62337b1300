/*
 * ref.h — the executable specification of matquant's quantization contract
 * (docs/format.md): int8 asymmetric MinMax parent codes per row or group,
 * slicing to r bits with round-half-up and clamp, extra precision (no clamp,
 * overflow kept in a sparse list), dequantization, and MatGPTQ's multi-width
 * choice of parent code. Scalar and simple on purpose: kernels and learning
 * methods are tested against these functions.
 *
 *   alpha = (hi - lo) / 255,  z = clamp(round(-lo / alpha), 0, 255)
 *   q     = clamp(round(w / alpha) + z, 0, 255)          round: ties to even
 *   q_r   = min((q + 2^(d-1)) >> d, 2^r - 1),  d = 8 - r  (q_8 = q)
 *   w_r   = alpha * (q_r * 2^d - z)
 * with [lo, hi] the row/group range widened to include 0.
 */
#ifndef MQ_REF_H
#define MQ_REF_H

#include "core/core.h"

/* Grid of one row or group of n weights: [lo, hi] = [min(w), max(w)] (or
 * the given lo/hi, e.g. learned clipping), widened to include 0. An
 * all-zero range gives alpha = 0, z = 0 (every code 0, dequantizing to 0). */
void mq_ref_grid(const float *w, int n, const float *lo, const float *hi, float *alpha, uint8_t *z);
/* A native r-bit MinMax grid (2^r - 1 steps over [lo, hi], the single-width
 * baselines) written as a parent grid: alpha = alpha_r / 2^d and
 * z = z_r * 2^d, so that slicing to r returns the native codes exactly. r = 8
 * is mq_ref_grid. */
void mq_ref_grid_bits(const float *w, int n, const float *lo, const float *hi, int r, float *alpha, uint8_t *z);
/* Round-to-nearest code of w on the native r-bit grid, as a parent code
 * q_r * 2^d (r = 8: mq_ref_code). */
uint8_t mq_ref_code_bits(float w, float alpha, uint8_t z, int r);
/* The parent code of w on grid (alpha, z). */
uint8_t mq_ref_code(float w, float alpha, uint8_t z);
/* Slice a parent code to r bits (1..8); extra: without the clamp (may be 2^r). */
int mq_ref_slice(uint8_t q, int r, bool extra);
/* Dequantized value of parent code q at width r (clamped slice unless extra). */
float mq_ref_dequant_one(uint8_t q, float alpha, uint8_t z, int r, bool extra);

/* Dequantize a (rows, cols) matrix of parent codes at width r; scale and
 * zero are (rows, cols/group). */
void mq_ref_dequant(const uint8_t *q, const float *scale, const uint8_t *zero, int rows, int cols, int group,
                    int r, bool extra, float *out);
/* Quantize a (rows, cols) fp32 matrix per row (group = cols) or per group
 * with round to nearest: codes (rows, cols), scale/zero (rows, cols/group).
 * Errors: group not dividing cols, non-finite weights (naming row, column). */
mq_status mq_ref_quantize(const float *w, int rows, int cols, int group, uint8_t *q, float *scale,
                          uint8_t *zero);

/* MatGPTQ's code choice: argmin over q in 0..255 of
 * sum_k lambda[k] * (w - w_{bits[k]}(q))^2 (ties: the smallest q).
 * table: (n, 256) dequantized values from mq_ref_code_table, so that a row
 * group's grid is expanded once. */
void mq_ref_code_table(float alpha, uint8_t z, const int *bits, int n, float *table);
uint8_t mq_ref_best_code_table(float w, const float *table, const float *lambda, int n);
uint8_t mq_ref_best_code(float w, float alpha, uint8_t z, const int *bits, const float *lambda, int n);

/* Extra precision at width r: codes whose unclamped slice is 2^r. */
int64_t mq_ref_count_overflow(const uint8_t *q, size_t n, int r);
/* Bits per weight of width r (extra: with n_over overflow weights among
 * numel): effective = r + n_over/numel (the paper's count); storage adds a
 * 32-bit index per overflow weight: r + 32 * n_over / numel. */
double mq_ref_effective_bits(int r, bool extra, int64_t n_over, int64_t numel);
double mq_ref_storage_bits(int r, bool extra, int64_t n_over, int64_t numel);

#endif

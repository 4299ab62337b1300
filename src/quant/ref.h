/*
 * ref.h — the executable specification of matquant's quantization contract
 * (docs/format.md): int8 asymmetric MinMax parent codes per row or group,
 * slicing to r bits with round-half-up and clamp, extra precision (no clamp,
 * overflow kept in a sparse list), dequantization, MatGPTQ's multi-width
 * choice of parent code, code histograms and bit accounting. Scalar and
 * simple on purpose: kernels and learning methods are tested against these
 * functions (tests/test_quant_ref.c).
 *
 *   alpha = (hi - lo) / 255,  z = clamp(round(-lo / alpha), 0, 255)
 *   q     = clamp(round(w / alpha) + z, 0, 255)          round: ties to even
 *   q_r   = min((q + 2^(d-1)) >> d, 2^r - 1),  d = 8 - r  (q_8 = q)
 *   w_r   = alpha * (q_r * 2^d - z)
 * with [lo, hi] the row/group range widened to include 0; all arithmetic in
 * fp32 (no fast-math; FP contraction is off in ISO C mode).
 *
 * Not here: packing into kernel layouts (quant/pack), learning the codes
 * (train/), reading or writing checkpoints (io/checkpoint).
 */
#ifndef MQ_REF_H
#define MQ_REF_H

#include "core/core.h"

/* ------------------------------------------------------------ parent grid */

/* Grid of one row or group of n weights: [lo, hi] = [min(w), max(w)] (or
 * the values lo[0] and hi[0] when both are non-NULL, e.g. learned clipping; w is then
 * not read), widened to include 0. alpha = (hi - lo) / 255 in fp32 and
 * z = clamp(round(-lo / alpha), 0, 255). A range with alpha = 0 (all-zero
 * weights, or a range so small that /255 underflows) gives alpha = 0, z = 0:
 * every code is 0 and dequantizes to exactly 0, with no 0/0 anywhere.
 * Inputs must be finite (mq_ref_quantize_clip checks). */
void mq_ref_grid(const float *w, int n, const float *lo, const float *hi, float *alpha, uint8_t *z);
/* A native r-bit MinMax grid (2^r - 1 steps over [lo, hi], the single-width
 * baselines) written as a parent grid: alpha = alpha_r / 2^d and
 * z = z_r * 2^d, so that slicing to r returns the native codes exactly. r = 8
 * is mq_ref_grid. */
void mq_ref_grid_bits(const float *w, int n, const float *lo, const float *hi, int r, float *alpha, uint8_t *z);
/* Round-to-nearest code of w on the native r-bit grid, as a parent code
 * q_r * 2^d (r = 8: mq_ref_code). */
uint8_t mq_ref_code_bits(float w, float alpha, uint8_t z, int r);
/* The parent code of w on grid (alpha, z): clamp(round(w/alpha) + z, 0, 255);
 * z when alpha = 0. */
uint8_t mq_ref_code(float w, float alpha, uint8_t z);

/* Quantize a (rows, cols) fp32 matrix per output channel (group = cols, or 0)
 * or per group of group in {32, 64, 128, 256} consecutive columns
 * (cols % group == 0). lo/hi: (rows, cols/group) clipped ranges, or both NULL
 * for min/max. Writes q (rows, cols), scale = alpha (rows, cols/group) and
 * zero = z (rows, cols/group); all owned by the caller.
 * Errors (nothing useful written): MQ_ERR_ARG for a bad group size or shape,
 * or a clipped range with lo > hi or non-finite; MQ_ERR_NUMERIC for a
 * non-finite weight (message names row and column) or a range whose width
 * overflows fp32 (names the row and group). */
mq_status mq_ref_quantize_clip(const float *w, int rows, int cols, int group, const float *lo, const float *hi,
                               uint8_t *q, float *scale, uint8_t *zero);
/* mq_ref_quantize_clip with min/max ranges. */
mq_status mq_ref_quantize(const float *w, int rows, int cols, int group, uint8_t *q, float *scale,
                          uint8_t *zero);

/* --------------------------------------------------------------- slicing */

/* Slice a parent code to r bits (1..8); extra: without the clamp (may be 2^r,
 * which happens exactly for the top 2^(d-1) parent codes when r < 8). */
int mq_ref_slice(uint8_t q, int r, bool extra);
/* Dequantized value of parent code q at width r (clamped slice unless extra):
 * alpha * (q_r * 2^d - z), one fp32 rounding. */
float mq_ref_dequant_one(uint8_t q, float alpha, uint8_t z, int r, bool extra);
/* The per-row (per-group) affine form kernels use: w_r ~= scale_r * q_r + bias
 * with scale_r = alpha * 2^d (exact) and bias = -alpha * z (r-independent).
 * Equal to mq_ref_dequant_one up to two extra fp32 roundings (not bitwise). */
float mq_ref_row_scale(float alpha, int r);
float mq_ref_row_bias(float alpha, uint8_t z);

/* Dequantize a (rows, cols) matrix of parent codes at width r into out
 * (rows, cols); scale and zero are (rows, cols/group), group divides cols
 * (asserted: shapes here come from validated tensors). */
void mq_ref_dequant(const uint8_t *q, const float *scale, const uint8_t *zero, int rows, int cols, int group,
                    int r, bool extra, float *out);

/* ------------------------------------------------------- extra precision */

/* Extra precision at width r: the number of codes among q[0..n) whose
 * unclamped slice is 2^r (0 for r = 8). */
int64_t mq_ref_count_overflow(const uint8_t *q, size_t n, int r);
/* Split codes q (n) into the stored form of width r with extra precision:
 * plane (n) gets min(q_r, 2^r - 1); over (cap) gets the flat indices, in
 * increasing order, where q_r = 2^r; *n_over their number. over may be NULL
 * (count only). Errors: MQ_ERR_ARG if r is not 1..7, n > 2^32 (indices are
 * 32-bit) or more than cap overflows (*n_over still holds the count). */
mq_status mq_ref_extra_split(const uint8_t *q, size_t n, int r, uint8_t *plane, uint32_t *over, size_t cap,
                             size_t *n_over);
/* The inverse: unclamped slices qr (n) from plane (n) and the overflow list.
 * Errors (MQ_ERR_FORMAT): an index out of range or not increasing, a plane
 * value out of 0..2^r-1, or an overflow index whose plane value is not 2^r-1
 * (the stored form always clamps there). */
mq_status mq_ref_extra_join(const uint8_t *plane, size_t n, int r, const uint32_t *over, size_t n_over, int *qr);
/* Bits per weight of width r (extra: with n_over overflow weights among
 * numel). effective = r + n_over/numel (the paper's "2.05 bits");
 * storage = r + 32 * n_over / numel (one 32-bit flat index per overflow
 * weight, what mq_ref_extra_split produces). Without extra both are r. */
double mq_ref_effective_bits(int r, bool extra, int64_t n_over, int64_t numel);
double mq_ref_storage_bits(int r, bool extra, int64_t n_over, int64_t numel);

/* ------------------------------------------------------------ histograms */

/* hist[c] = number of parent codes equal to c among q[0..n) (overwritten). */
void mq_ref_histogram(const uint8_t *q, size_t n, int64_t hist[256]);
/* The histogram of the r-bit slices derived from a parent histogram: out has
 * 2^r + 1 entries, out[v] = weights with q_r = v; out[2^r] counts overflow
 * (nonzero only when extra). */
void mq_ref_slice_histogram(const int64_t hist[256], int r, bool extra, int64_t *out);
/* Fraction of weights whose unclamped r-bit slice is 2^r (0 if empty or r=8). */
double mq_ref_overflow_share(const int64_t hist[256], int r);

/* ---------------------------------------------------- multi-width codes */

/* MatGPTQ's code choice: argmin over q in 0..255 of
 *   cost(q) = sum_{k=0..n-1} lambda[k] * (w - w_{bits[k]}(q))^2
 * evaluated in fp32 exactly as written: e = w - t, term = (lambda*e)*e,
 * accumulated from 0.0f in order k = 0..n-1; ties go to the smallest q.
 * table: (n, 256) dequantized values (mq_ref_code_table) so that a row
 * group's grid is expanded once. n is 1..8, lambda >= 0, w finite.
 * _table is the brute force over all 256 codes (the spec); _fast returns the
 * same code (proved in its comment and tested exhaustively against _table)
 * evaluating only the codes between the last q where every width is <= w and
 * the first where every width is >= w. */
void mq_ref_code_table(float alpha, uint8_t z, const int *bits, int n, float *table);
uint8_t mq_ref_best_code_table(float w, const float *table, const float *lambda, int n);
uint8_t mq_ref_best_code_fast(float w, const float *table, const float *lambda, int n);
uint8_t mq_ref_best_code(float w, float alpha, uint8_t z, const int *bits, const float *lambda, int n);

#endif

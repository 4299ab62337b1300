/*
 * half.h — unquantized weight matrices served in their 16-bit source form
 * (IEEE F16 or BF16) and the products with them: y (B, rows) = x (B, cols)
 * times W (rows, cols)^T with x and y in fp32, W widened to fp32 on the fly
 * (F16 by the F16C conversion, BF16 by a 16-bit shift), products and sums
 * in fp32. A model served with kernels keeps its unquantized linears and
 * its embedding table this way (nn/model.h: half[], tok_half, head_half),
 * so no fp32 copy of them exists.
 *
 * Variants: scalar (the reference), AVX2 + F16C + FMA, AVX-512F, chosen as
 * the integer kernels are (MQ_KERNELS=scalar|avx2|avx512 forces one, amx
 * runs the AVX-512 one, the default is the best the CPU runs; mq_kern_active
 * in quant/kern.h).
 * B = 1 (decode) is a GEMV that streams W once; B > 1 widens a strip of
 * rows into per-thread scratch and multiplies it with OpenBLAS sgemm, so
 * the conversion is paid once per strip, not once per token.
 * Every variant computes each output as a sum of exact fp32 products
 * w_j * x_j (a 16-bit value widened is exact); only the order of the fp32
 * additions differs between variants, so results agree exactly whenever
 * the partial sums are exactly representable (tests/test_half.c).
 *
 * Not here: the integer kernels (kern.h), the fp32 path (nn/forward.c),
 * training (which always works on fp32).
 * References: IEEE 754 binary16; bfloat16 = the upper 16 bits of binary32;
 * Intel intrinsics _mm256_cvtph_ps / _mm512_cvtph_ps.
 */
#ifndef MQ_HALF_H
#define MQ_HALF_H

#include "core/core.h"

typedef struct mq_half {
    int rows, cols;       /* logical shape (out, in) */
    mq_dtype dtype;       /* MQ_DTYPE_F16 or MQ_DTYPE_BF16 */
    uint16_t *data;       /* (rows, cols) row-major, 64-byte aligned; owned */
} mq_half;

/* Per-thread scratch for B > 1 products, planned once (no allocation per
 * token): nthreads strips of cap floats each. */
typedef struct mq_half_scratch {
    int nthreads;
    size_t cap;           /* floats per thread, >= 16 * max_cols */
    float *buf;           /* (nthreads, cap) */
} mq_half_scratch;

/* One ISA's kernels, rows o0..o1-1 of h.
 *  gemv: y[o] = dot(W[o], x) for token x (cols).
 *  widen: dst (o1-o0, cols) = W[o0..o1) as fp32. */
typedef struct {
    const char *name;
    void (*gemv)(const mq_half *h, int o0, int o1, const float *x, float *y);
    void (*widen)(const mq_half *h, int o0, int o1, float *dst);
} mq_half_ops;

extern const mq_half_ops mq_half_scalar_ops;
extern const mq_half_ops mq_half_avx2_ops;
extern const mq_half_ops mq_half_avx512_ops;

/* The variant named "scalar", "avx2" or "avx512" if this CPU runs it, else
 * NULL. */
const mq_half_ops *mq_half_find(const char *name);
/* The variant matching the integer kernels in use (mq_kern_active), so
 * MQ_KERNELS forces both at once. */
const mq_half_ops *mq_half_active(void);

/* Build h from n = rows*cols fp32 values w, rounded to nearest even into
 * dtype (F16 or BF16; exact when w came from that dtype). Errors: another
 * dtype, bad shape (MQ_ERR_ARG); a value that F16 cannot hold (overflow to
 * Inf) is MQ_ERR_NUMERIC naming `what`. On error h is left empty. */
mq_status mq_half_from_f32(const float *w, int rows, int cols, mq_dtype dtype, const char *what, mq_half *h);
/* Build h from 16-bit data already in dtype (copied). */
void mq_half_from_bits(const uint16_t *src, int rows, int cols, mq_dtype dtype, mq_half *h);
void mq_half_free(mq_half *h);
/* Bytes of the 16-bit matrix. */
size_t mq_half_bytes(const mq_half *h);
/* out (cols) = row r of h as fp32 (the embedding lookup). */
void mq_half_row(const mq_half *h, int r, float *out);

/* Scratch for products with up to max_cols inputs on nthreads threads. */
void mq_half_scratch_init(mq_half_scratch *s, int nthreads, int max_cols);
void mq_half_scratch_free(mq_half_scratch *s);

/* y (B, h->rows) = x (B, h->cols) times h^T, on up to s->nthreads OpenMP
 * threads (rows in slices of 16), with ops (NULL: mq_half_active()).
 * B = 1: the variant's GEMV; B > 1: strips widened into s and multiplied by
 * single-threaded OpenBLAS sgemm. Asserts h->cols fits s. */
void mq_half_matmul(const mq_half *h, const float *x, int B, float *y, mq_half_scratch *s,
                    const mq_half_ops *ops);

#endif

/*
 * vexp.h — exp over arrays of fp32 for the softmaxes, KL and SiLU of the
 * training ops and the forward pass: an AVX-512 or AVX2 polynomial (picked
 * at run time) with a scalar fallback that calls libm's expf.
 *
 * Accuracy of the AVX-512 path, and of the AVX2 path, which gives the same
 * bits (measured over every 97th float bit pattern in [-104, 89] by
 * tests/test_vexp.c): within 2 ulp of expf for normal
 * results; subnormal results (x < -87.34) within 2^-149 absolute of expf;
 * x > 88.7228 gives +inf, -inf gives 0, NaN gives NaN, as expf.
 *
 * Not here: other transcendental functions, double precision.
 * Method: x = n ln2 + r with n = round(x log2 e), |r| <= ln2/2, ln2 split
 * in a high part exact in fp32 and a low part (Cody & Waite); e^r by the
 * degree-7 Taylor polynomial in Horner form (truncation below 6e-9
 * relative); the result scaled by 2^n with vscalefps, which produces
 * subnormals and overflow to inf itself (AVX2: by two exact power-of-two
 * factors, rounding once).
 */
#ifndef MQ_CORE_VEXP_H
#define MQ_CORE_VEXP_H

#include <stdbool.h>
#include <stddef.h>

/* out[i] = exp(in[i]) for i < n (out may equal in). */
void mq_vexp(float *out, const float *in, size_t n);
enum { MQ_VEXP_SCALAR = 0, MQ_VEXP_AVX2 = 1, MQ_VEXP_AVX512 = 2 };
/* The path mq_vexp takes: the best the CPU runs (AVX-512F, else AVX2 with
 * FMA, else libm), capped by MQ_KERNELS=avx2 or MQ_KERNELS=scalar in the
 * environment and by mq_vexp_force. */
int mq_vexp_level(void);
const char *mq_vexp_name(int level);
/* Tests only: cap the path at level (-1: no cap). */
void mq_vexp_force(int level);

#endif

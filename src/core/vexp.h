/*
 * vexp.h — exp over arrays of fp32 for the softmaxes, KL and SiLU of the
 * training ops and the forward pass: an AVX-512 polynomial (picked at run
 * time) with a scalar fallback that calls libm's expf.
 *
 * Accuracy of the AVX-512 path (measured over every 97th float bit pattern
 * in [-104, 89] by tests/test_vexp.c): within 2 ulp of expf for normal
 * results; subnormal results (x < -87.34) within 2^-149 absolute of expf;
 * x > 88.7228 gives +inf, -inf gives 0, NaN gives NaN, as expf.
 *
 * Not here: other transcendental functions, double precision.
 * Method: x = n ln2 + r with n = round(x log2 e), |r| <= ln2/2, ln2 split
 * in a high part exact in fp32 and a low part (Cody & Waite); e^r by the
 * degree-7 Taylor polynomial in Horner form (truncation below 6e-9
 * relative); the result scaled by 2^n with vscalefps, which produces
 * subnormals and overflow to inf itself.
 */
#ifndef MQ_CORE_VEXP_H
#define MQ_CORE_VEXP_H

#include <stdbool.h>
#include <stddef.h>

/* out[i] = exp(in[i]) for i < n (out may equal in). */
void mq_vexp(float *out, const float *in, size_t n);
/* Whether mq_vexp uses the AVX-512 polynomial (false: libm expf per
 * element). MQ_KERNELS=scalar in the environment forces the fallback. */
bool mq_vexp_simd(void);
/* Tests only: force the fallback (true) or the default choice (false). */
void mq_vexp_force_scalar(bool on);

#endif

/*
 * vexp.c — exp over fp32 arrays (see vexp.h for the method and accuracy).
 * The AVX-512 body is one function compiled with a target attribute and
 * called only when the CPU reports AVX-512F, so the rest of the file, like
 * the whole build, stays baseline x86-64.
 *
 * Not here: other ISAs (an AVX2 body would follow the same steps with the
 * exponent added to the bits by hand, since AVX2 has no vscalefps).
 */
#include "core/vexp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MQ_VEXP_X86 1
#endif

static int choice = -1;    /* -1 unknown, 0 scalar, 1 avx512 (atomic: any thread may pick first) */
static int forced_scalar; /* atomic */

#ifdef MQ_VEXP_X86
__attribute__((target("avx512f,fma"))) static void vexp_avx512(float *out, const float *in, size_t n) {
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693145751953125f); /* 12 significant bits: n * ln2_hi is exact */
    const __m512 ln2_lo = _mm512_set1_ps(1.42860682030941723212e-6f);
    const __m512 lo = _mm512_set1_ps(-104.0f), hi = _mm512_set1_ps(89.0f);
    /* 1/k!, k = 7..0 */
    const __m512 c7 = _mm512_set1_ps(1.0f / 5040.0f), c6 = _mm512_set1_ps(1.0f / 720.0f),
                 c5 = _mm512_set1_ps(1.0f / 120.0f), c4 = _mm512_set1_ps(1.0f / 24.0f),
                 c3 = _mm512_set1_ps(1.0f / 6.0f), c2 = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    size_t i = 0;
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(k, in + i);
        /* clamp keeps n small (NaN passes through max/min as the second operand: keep it) */
        __m512 xc = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
        __m512 nf = _mm512_roundscale_ps(_mm512_mul_ps(xc, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512 r = _mm512_fnmadd_ps(nf, ln2_hi, xc);
        r = _mm512_fnmadd_ps(nf, ln2_lo, r);
        __m512 p = _mm512_fmadd_ps(c7, r, c6);
        p = _mm512_fmadd_ps(p, r, c5);
        p = _mm512_fmadd_ps(p, r, c4);
        p = _mm512_fmadd_ps(p, r, c3);
        p = _mm512_fmadd_ps(p, r, c2);
        p = _mm512_fmadd_ps(p, r, one);
        p = _mm512_fmadd_ps(p, r, one);
        __m512 y = _mm512_scalef_ps(p, nf);
        /* NaN in, NaN out (the clamp turned it into a bound) */
        __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
        y = _mm512_mask_mov_ps(y, nan, x);
        _mm512_mask_storeu_ps(out + i, k, y);
    }
}
#endif

static void vexp_scalar(float *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = expf(in[i]);
}

static int pick(void) {
#ifdef MQ_VEXP_X86
    const char *e = getenv("MQ_KERNELS");
    if (e && !strcmp(e, "scalar")) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
    return 0;
#endif
}

bool mq_vexp_simd(void) {
    if (__atomic_load_n(&forced_scalar, __ATOMIC_RELAXED)) return false;
    int c = __atomic_load_n(&choice, __ATOMIC_RELAXED);
    if (c < 0) {
        c = pick(); /* every thread picks the same value */
        __atomic_store_n(&choice, c, __ATOMIC_RELAXED);
    }
    return c == 1;
}

void mq_vexp_force_scalar(bool on) { __atomic_store_n(&forced_scalar, on ? 1 : 0, __ATOMIC_RELAXED); }

void mq_vexp(float *out, const float *in, size_t n) {
#ifdef MQ_VEXP_X86
    if (mq_vexp_simd()) {
        vexp_avx512(out, in, n);
        return;
    }
#endif
    vexp_scalar(out, in, n);
}

/*
 * vexp.c — exp over fp32 arrays (see vexp.h for the method and accuracy).
 * The AVX-512 and AVX2 bodies are functions compiled with target
 * attributes and called only when the CPU reports the ISA, so the rest of
 * the file, like the whole build, stays baseline x86-64.
 *
 * Not here: other ISAs (NEON, SVE).
 */
#include "core/vexp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MQ_VEXP_X86 1
#endif

static int choice = -1; /* -1 unknown, else an MQ_VEXP_* level (atomic: any thread may pick first) */
static int forced = -1; /* tests: -1 none, else the highest level allowed (atomic) */

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

/* The same steps on 8 lanes. AVX2 has no vscalefps: 2^n is applied as two
 * factors 2^(n>>1) and 2^(n-(n>>1)), each a normal float built from its
 * exponent bits (n is in [-150, 128] after the clamp, so both halves lie
 * in [-75, 64]). The first product is exact (p is in [0.7, 1.42]), so the
 * second rounds once, as vscalefps does: the result equals the AVX-512
 * path's bit for bit, subnormals and overflow to inf included. */
__attribute__((target("avx2,fma"))) static void vexp_avx2(float *out, const float *in, size_t n) {
    const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 ln2_hi = _mm256_set1_ps(0.693145751953125f);
    const __m256 ln2_lo = _mm256_set1_ps(1.42860682030941723212e-6f);
    const __m256 lo = _mm256_set1_ps(-104.0f), hi = _mm256_set1_ps(89.0f);
    const __m256 c7 = _mm256_set1_ps(1.0f / 5040.0f), c6 = _mm256_set1_ps(1.0f / 720.0f),
                 c5 = _mm256_set1_ps(1.0f / 120.0f), c4 = _mm256_set1_ps(1.0f / 24.0f),
                 c3 = _mm256_set1_ps(1.0f / 6.0f), c2 = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (size_t i = 0; i < n; i += 8) {
        int left = n - i >= 8 ? 8 : (int)(n - i);
        __m256i k = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), lane);
        __m256 x = _mm256_maskload_ps(in + i, k);
        __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
        __m256 nf = _mm256_round_ps(_mm256_mul_ps(xc, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256 r = _mm256_fnmadd_ps(nf, ln2_hi, xc);
        r = _mm256_fnmadd_ps(nf, ln2_lo, r);
        __m256 p = _mm256_fmadd_ps(c7, r, c6);
        p = _mm256_fmadd_ps(p, r, c5);
        p = _mm256_fmadd_ps(p, r, c4);
        p = _mm256_fmadd_ps(p, r, c3);
        p = _mm256_fmadd_ps(p, r, c2);
        p = _mm256_fmadd_ps(p, r, one);
        p = _mm256_fmadd_ps(p, r, one);
        __m256i ni = _mm256_cvtps_epi32(nf);
        __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
        __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
        __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
        __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
        __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
        y = _mm256_blendv_ps(y, x, nan);
        _mm256_maskstore_ps(out + i, k, y);
    }
}
#endif

static void vexp_scalar(float *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = expf(in[i]);
}

/* The best level the CPU runs, capped by MQ_KERNELS (scalar or avx2 force
 * that level or lower, as for the integer kernels). */
static int pick(void) {
#ifdef MQ_VEXP_X86
    const char *e = getenv("MQ_KERNELS");
    int cap = MQ_VEXP_AVX512;
    if (e && !strcmp(e, "scalar")) cap = MQ_VEXP_SCALAR;
    if (e && !strcmp(e, "avx2")) cap = MQ_VEXP_AVX2;
    __builtin_cpu_init();
    int have = __builtin_cpu_supports("avx512f") ? MQ_VEXP_AVX512
               : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? MQ_VEXP_AVX2
                                                                                 : MQ_VEXP_SCALAR;
    return have < cap ? have : cap;
#else
    return MQ_VEXP_SCALAR;
#endif
}

int mq_vexp_level(void) {
    int c = __atomic_load_n(&choice, __ATOMIC_RELAXED);
    if (c < 0) {
        c = pick(); /* every thread picks the same value */
        __atomic_store_n(&choice, c, __ATOMIC_RELAXED);
    }
    int f = __atomic_load_n(&forced, __ATOMIC_RELAXED);
    return f >= 0 && f < c ? f : c;
}

const char *mq_vexp_name(int level) {
    return level == MQ_VEXP_AVX512 ? "avx512" : level == MQ_VEXP_AVX2 ? "avx2" : "scalar";
}

void mq_vexp_force(int level) { __atomic_store_n(&forced, level, __ATOMIC_RELAXED); }

void mq_vexp(float *out, const float *in, size_t n) {
#ifdef MQ_VEXP_X86
    int c = mq_vexp_level();
    if (c == MQ_VEXP_AVX512) {
        vexp_avx512(out, in, n);
        return;
    }
    if (c == MQ_VEXP_AVX2) {
        vexp_avx2(out, in, n);
        return;
    }
#endif
    vexp_scalar(out, in, n);
}

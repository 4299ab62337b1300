/*
 * half.c — products with 16-bit (F16/BF16) weight matrices (see half.h):
 * the scalar reference, AVX2 + F16C + FMA and AVX-512F variants (compiled
 * with function target attributes and run only after __builtin_cpu_supports
 * says so, so this file builds for baseline x86-64), the threaded product.
 *
 * Layout: W is row-major (rows, cols) uint16; nothing is padded, so every
 * variant handles a ragged tail of cols % 16 (or % 8) elements in scalar
 * code. Widening is exact: an F16 or BF16 value is a binary32 value.
 * GEMV accumulation: four vector accumulators per row (64 lanes on AVX-512,
 * 32 on AVX2), then the vector tail, then the scalar tail, then a fixed
 * horizontal sum; the scalar reference adds in column order.
 *
 * Not here: integer kernels (kern_*.c), the choice of which tensors are
 * served 16-bit (nn/model.c, quant/qmodel.c).
 * References: Intel Intrinsics Guide (vcvtph2ps, vpmovzxwd); IEEE 754.
 */
#include "quant/half.h"

#include "core/threads.h"
#include "quant/kern.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* ============================================================ scalar */

static inline float widen1(const mq_half *h, uint16_t v) {
    return h->dtype == MQ_DTYPE_F16 ? mq_f16_to_f32(v) : mq_bf16_to_f32(v);
}

static void gemv_scalar(const mq_half *h, int o0, int o1, const float *x, float *y) {
    size_t K = (size_t)h->cols;
    for (int o = o0; o < o1; o++) {
        const uint16_t *w = h->data + (size_t)o * K;
        float acc = 0.0f;
        for (size_t j = 0; j < K; j++) acc += widen1(h, w[j]) * x[j];
        y[o] = acc;
    }
}

static void widen_scalar(const mq_half *h, int o0, int o1, float *dst) {
    size_t K = (size_t)h->cols, n = (size_t)(o1 - o0) * K;
    const uint16_t *w = h->data + (size_t)o0 * K;
    for (size_t i = 0; i < n; i++) dst[i] = widen1(h, w[i]);
}

const mq_half_ops mq_half_scalar_ops = {"scalar", gemv_scalar, widen_scalar};

/* ============================================================== AVX2 */

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

AVX2_TARGET static inline __m256 ld8_avx2(const uint16_t *p, bool f16) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    if (f16) return _mm256_cvtph_ps(v);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
}

AVX2_TARGET static inline float hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2_TARGET static void gemv_avx2(const mq_half *h, int o0, int o1, const float *x, float *y) {
    size_t K = (size_t)h->cols;
    bool f16 = h->dtype == MQ_DTYPE_F16;
    for (int o = o0; o < o1; o++) {
        const uint16_t *w = h->data + (size_t)o * K;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        size_t j = 0;
        for (; j + 32 <= K; j += 32) {
            a0 = _mm256_fmadd_ps(ld8_avx2(w + j, f16), _mm256_loadu_ps(x + j), a0);
            a1 = _mm256_fmadd_ps(ld8_avx2(w + j + 8, f16), _mm256_loadu_ps(x + j + 8), a1);
            a2 = _mm256_fmadd_ps(ld8_avx2(w + j + 16, f16), _mm256_loadu_ps(x + j + 16), a2);
            a3 = _mm256_fmadd_ps(ld8_avx2(w + j + 24, f16), _mm256_loadu_ps(x + j + 24), a3);
        }
        for (; j + 8 <= K; j += 8) a0 = _mm256_fmadd_ps(ld8_avx2(w + j, f16), _mm256_loadu_ps(x + j), a0);
        float acc = hsum_avx2(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; j < K; j++) acc += widen1(h, w[j]) * x[j];
        y[o] = acc;
    }
}

AVX2_TARGET static void widen_avx2(const mq_half *h, int o0, int o1, float *dst) {
    size_t K = (size_t)h->cols, n = (size_t)(o1 - o0) * K, i = 0;
    const uint16_t *w = h->data + (size_t)o0 * K;
    bool f16 = h->dtype == MQ_DTYPE_F16;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, ld8_avx2(w + i, f16));
    for (; i < n; i++) dst[i] = widen1(h, w[i]);
}

const mq_half_ops mq_half_avx2_ops = {"avx2", gemv_avx2, widen_avx2};

/* =========================================================== AVX-512 */

#define AVX512_TARGET __attribute__((target("avx512f,avx2,fma,f16c")))

AVX512_TARGET static inline __m512 ld16_avx512(const uint16_t *p, bool f16) {
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    if (f16) return _mm512_cvtph_ps(v);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}

AVX512_TARGET static void gemv_avx512(const mq_half *h, int o0, int o1, const float *x, float *y) {
    size_t K = (size_t)h->cols;
    bool f16 = h->dtype == MQ_DTYPE_F16;
    for (int o = o0; o < o1; o++) {
        const uint16_t *w = h->data + (size_t)o * K;
        if (o + 1 < o1) _mm_prefetch((const char *)(w + K), _MM_HINT_T0);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        size_t j = 0;
        for (; j + 64 <= K; j += 64) {
            a0 = _mm512_fmadd_ps(ld16_avx512(w + j, f16), _mm512_loadu_ps(x + j), a0);
            a1 = _mm512_fmadd_ps(ld16_avx512(w + j + 16, f16), _mm512_loadu_ps(x + j + 16), a1);
            a2 = _mm512_fmadd_ps(ld16_avx512(w + j + 32, f16), _mm512_loadu_ps(x + j + 32), a2);
            a3 = _mm512_fmadd_ps(ld16_avx512(w + j + 48, f16), _mm512_loadu_ps(x + j + 48), a3);
        }
        for (; j + 16 <= K; j += 16) a0 = _mm512_fmadd_ps(ld16_avx512(w + j, f16), _mm512_loadu_ps(x + j), a0);
        float acc = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
        for (; j < K; j++) acc += widen1(h, w[j]) * x[j];
        y[o] = acc;
    }
}

AVX512_TARGET static void widen_avx512(const mq_half *h, int o0, int o1, float *dst) {
    size_t K = (size_t)h->cols, n = (size_t)(o1 - o0) * K, i = 0;
    const uint16_t *w = h->data + (size_t)o0 * K;
    bool f16 = h->dtype == MQ_DTYPE_F16;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, ld16_avx512(w + i, f16));
    for (; i < n; i++) dst[i] = widen1(h, w[i]);
}

const mq_half_ops mq_half_avx512_ops = {"avx512", gemv_avx512, widen_avx512};

/* ========================================================== dispatch */

const mq_half_ops *mq_half_find(const char *name) {
    if (!name) return NULL;
    if (!strcmp(name, "amx")) name = "avx512"; /* AVX-512 plus tile products for the integer kernels */
    __builtin_cpu_init();
    if (!strcmp(name, "scalar")) return &mq_half_scalar_ops;
    if (!strcmp(name, "avx2") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c"))
        return &mq_half_avx2_ops;
    if (!strcmp(name, "avx512") && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        return &mq_half_avx512_ops;
    return NULL;
}

const mq_half_ops *mq_half_active(void) {
    const mq_half_ops *h = mq_half_find(mq_kern_active()->name);
    if (!h) h = mq_half_find("avx2"); /* an integer variant this file lacks: the next best */
    return h ? h : &mq_half_scalar_ops;
}

/* ========================================================== matrices */

mq_status mq_half_from_f32(const float *w, int rows, int cols, mq_dtype dtype, const char *what, mq_half *h) {
    memset(h, 0, sizeof *h);
    if (dtype != MQ_DTYPE_F16 && dtype != MQ_DTYPE_BF16)
        return mq_fail(MQ_ERR_ARG, "%s: 16-bit weights must be F16 or BF16, not %s", what, mq_dtype_name(dtype));
    if (rows <= 0 || cols <= 0) return mq_fail(MQ_ERR_ARG, "%s: bad shape [%d, %d]", what, rows, cols);
    size_t n = (size_t)rows * (size_t)cols;
    uint16_t *d = mq_aligned_alloc(n * sizeof *d);
    int64_t bad = -1;
#pragma omp parallel for if (n > ((size_t)1 << 20)) reduction(max : bad)
    for (size_t i = 0; i < n; i++) {
        uint16_t v = dtype == MQ_DTYPE_F16 ? mq_f32_to_f16(w[i]) : mq_f32_to_bf16(w[i]);
        float back = dtype == MQ_DTYPE_F16 ? mq_f16_to_f32(v) : mq_bf16_to_f32(v);
        if (isfinite(w[i]) && !isfinite(back) && (int64_t)i > bad) bad = (int64_t)i;
        d[i] = v;
    }
    if (bad >= 0) {
        free(d);
        return mq_fail(MQ_ERR_NUMERIC, "%s: element %lld (%g) does not fit in %s", what, (long long)bad,
                       w[bad], mq_dtype_name(dtype));
    }
    *h = (mq_half){.rows = rows, .cols = cols, .dtype = dtype, .data = d};
    return MQ_OK;
}

void mq_half_from_bits(const uint16_t *src, int rows, int cols, mq_dtype dtype, mq_half *h) {
    MQ_ASSERT((dtype == MQ_DTYPE_F16 || dtype == MQ_DTYPE_BF16) && rows > 0 && cols > 0);
    size_t n = (size_t)rows * (size_t)cols;
    *h = (mq_half){.rows = rows, .cols = cols, .dtype = dtype, .data = mq_aligned_alloc(n * sizeof(uint16_t))};
    memcpy(h->data, src, n * sizeof(uint16_t));
}

void mq_half_free(mq_half *h) {
    if (!h) return;
    free(h->data);
    memset(h, 0, sizeof *h);
}

size_t mq_half_bytes(const mq_half *h) { return (size_t)h->rows * (size_t)h->cols * sizeof(uint16_t); }

void mq_half_row(const mq_half *h, int r, float *out) {
    MQ_ASSERT(r >= 0 && r < h->rows);
    mq_half_active()->widen(h, r, r + 1, out);
}

void mq_half_scratch_init(mq_half_scratch *s, int nthreads, int max_cols) {
    MQ_ASSERT(nthreads > 0 && max_cols > 0);
    s->nthreads = nthreads;
    s->cap = (size_t)64 * (size_t)max_cols; /* strips of 64 rows at the widest input */
    s->buf = mq_aligned_alloc((size_t)nthreads * s->cap * sizeof(float));
}

void mq_half_scratch_free(mq_half_scratch *s) {
    free(s->buf);
    memset(s, 0, sizeof *s);
}

/* ============================================================ product */

void mq_half_matmul(const mq_half *h, const float *x, int B, float *y, mq_half_scratch *s,
                    const mq_half_ops *ops) {
    if (!ops) ops = mq_half_active();
    int O = h->rows, K = h->cols;
    MQ_ASSERT(B > 0);
    MQ_ASSERT(B == 1 || (s && s->buf && (size_t)16 * (size_t)K <= s->cap));
    int T = omp_get_max_threads();
    if (B > 1 && T > s->nthreads) T = s->nthreads;
    if ((size_t)O * K < ((size_t)1 << 16) || O < 64) T = 1;
#pragma omp parallel num_threads(T)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int o0, o1;
        mq_thread_slice(O, 16, t, nt, &o0, &o1);
        if (o1 > o0 && B == 1) {
            ops->gemv(h, o0, o1, x, y);
        } else if (o1 > o0) {
            float *buf = s->buf + (size_t)t * s->cap;
            int strip = (int)(s->cap / (size_t)K) / 16 * 16;
            for (int o = o0; o < o1; o += strip) {
                int n = o1 - o < strip ? o1 - o : strip;
                ops->widen(h, o, o + n, buf);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, n, K, 1.0f, x, K, buf, K, 0.0f, y + o, O);
            }
        }
    }
}

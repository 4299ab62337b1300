/*
 * ref.c — the scalar reference of the quantization contract (see ref.h and
 * docs/format.md). Every other implementation (kernels, learners) is tested
 * against this file.
 * References: Nair et al., "Matryoshka Quantization" (ICML 2025) §3 (slicing
 * S(q, r)); MatGPTQ (Kleinegger et al., 2026) for round-half-up, the clamp and
 * the multi-width code choice; GPTQ's MinMax grid (range widened to 0).
 */
#include "quant/ref.h"

#include <math.h>
#include <string.h>

static void range_of(const float *w, int n, const float *lo_in, const float *hi_in, float *lo, float *hi);

void mq_ref_grid(const float *w, int n, const float *lo_in, const float *hi_in, float *alpha, uint8_t *z) {
    float lo, hi;
    range_of(w, n, lo_in, hi_in, &lo, &hi);
    float a = (hi - lo) / 255.0f;
    if (!(a > 0)) {
        *alpha = 0.0f;
        *z = 0;
        return;
    }
    float zf = nearbyintf(-lo / a);
    *alpha = a;
    *z = (uint8_t)(zf < 0 ? 0 : zf > 255 ? 255 : zf);
}

/* [lo, hi] of a row/group (or the given clipped values), widened to include 0 */
static void range_of(const float *w, int n, const float *lo_in, const float *hi_in, float *lo, float *hi) {
    *lo = 0.0f;
    *hi = 0.0f;
    if (lo_in && hi_in) {
        *lo = *lo_in < 0 ? *lo_in : 0.0f;
        *hi = *hi_in > 0 ? *hi_in : 0.0f;
        return;
    }
    for (int i = 0; i < n; i++) {
        *lo = w[i] < *lo ? w[i] : *lo;
        *hi = w[i] > *hi ? w[i] : *hi;
    }
}

void mq_ref_grid_bits(const float *w, int n, const float *lo_in, const float *hi_in, int r, float *alpha, uint8_t *z) {
    MQ_ASSERT(r >= 1 && r <= 8);
    float lo, hi;
    range_of(w, n, lo_in, hi_in, &lo, &hi);
    int d = 8 - r, top = (1 << r) - 1;
    float ar = (hi - lo) / (float)top;
    if (!(ar > 0)) {
        *alpha = 0.0f;
        *z = 0;
        return;
    }
    float zr = nearbyintf(-lo / ar);
    zr = zr < 0 ? 0 : zr > (float)top ? (float)top : zr;
    *alpha = ar / (float)(1 << d);
    *z = (uint8_t)((int)zr << d);
}

uint8_t mq_ref_code_bits(float w, float alpha, uint8_t z, int r) {
    if (r == 8) return mq_ref_code(w, alpha, z);
    int d = 8 - r, top = (1 << r) - 1;
    if (!(alpha > 0)) return z;
    float ar = alpha * (float)(1 << d);
    float q = nearbyintf(w / ar) + (float)(z >> d);
    q = q < 0 ? 0 : q > (float)top ? (float)top : q;
    return (uint8_t)((int)q << d);
}

uint8_t mq_ref_code(float w, float alpha, uint8_t z) {
    if (!(alpha > 0)) return z;
    float q = nearbyintf(w / alpha) + (float)z;
    return (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
}

int mq_ref_slice(uint8_t q, int r, bool extra) {
    MQ_ASSERT(r >= 1 && r <= 8);
    if (r == 8) return q;
    int d = 8 - r, s = (q + (1 << (d - 1))) >> d, top = (1 << r) - 1;
    return extra || s <= top ? s : top;
}

float mq_ref_dequant_one(uint8_t q, float alpha, uint8_t z, int r, bool extra) {
    return alpha * (float)(mq_ref_slice(q, r, extra) * (1 << (8 - r)) - (int)z);
}

void mq_ref_dequant(const uint8_t *q, const float *scale, const uint8_t *zero, int rows, int cols, int group,
                    int r, bool extra, float *out) {
    int ng = cols / group;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            size_t g = (size_t)i * ng + j / group;
            out[(size_t)i * cols + j] = mq_ref_dequant_one(q[(size_t)i * cols + j], scale[g], zero[g], r, extra);
        }
}

mq_status mq_ref_quantize(const float *w, int rows, int cols, int group, uint8_t *q, float *scale,
                          uint8_t *zero) {
    if (group <= 0 || cols % group)
        return mq_fail(MQ_ERR_ARG, "quantize: %d columns are not a multiple of the group size %d", cols, group);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            if (!isfinite(w[(size_t)i * cols + j]))
                return mq_fail(MQ_ERR_NUMERIC, "quantize: weight at row %d, column %d is %g", i, j,
                               w[(size_t)i * cols + j]);
    int ng = cols / group;
    for (int i = 0; i < rows; i++)
        for (int g = 0; g < ng; g++) {
            const float *wg = w + (size_t)i * cols + (size_t)g * group;
            float a;
            uint8_t zz;
            mq_ref_grid(wg, group, NULL, NULL, &a, &zz);
            scale[(size_t)i * ng + g] = a;
            zero[(size_t)i * ng + g] = zz;
            for (int j = 0; j < group; j++) q[(size_t)i * cols + (size_t)g * group + j] = mq_ref_code(wg[j], a, zz);
        }
    return MQ_OK;
}

void mq_ref_code_table(float alpha, uint8_t z, const int *bits, int n, float *table) {
    for (int k = 0; k < n; k++)
        for (int q = 0; q < 256; q++) table[k * 256 + q] = mq_ref_dequant_one((uint8_t)q, alpha, z, bits[k], false);
}

uint8_t mq_ref_best_code_table(float w, const float *table, const float *lambda, int n) {
    float cost[256];
    for (int q = 0; q < 256; q++) cost[q] = 0.0f;
    for (int k = 0; k < n; k++) {
        const float *t = table + k * 256;
        float l = lambda[k];
        for (int q = 0; q < 256; q++) {
            float e = w - t[q];
            cost[q] += l * e * e;
        }
    }
    int best = 0;
    for (int q = 1; q < 256; q++)
        if (cost[q] < cost[best]) best = q;
    return (uint8_t)best;
}

uint8_t mq_ref_best_code(float w, float alpha, uint8_t z, const int *bits, const float *lambda, int n) {
    float table[8 * 256];
    MQ_ASSERT(n >= 1 && n <= 8);
    mq_ref_code_table(alpha, z, bits, n, table);
    return mq_ref_best_code_table(w, table, lambda, n);
}

int64_t mq_ref_count_overflow(const uint8_t *q, size_t n, int r) {
    if (r >= 8) return 0;
    int64_t c = 0;
    for (size_t i = 0; i < n; i++) c += mq_ref_slice(q[i], r, true) == (1 << r);
    return c;
}

double mq_ref_effective_bits(int r, bool extra, int64_t n_over, int64_t numel) {
    return r + (extra && numel > 0 ? (double)n_over / (double)numel : 0.0);
}

double mq_ref_storage_bits(int r, bool extra, int64_t n_over, int64_t numel) {
    return r + (extra && numel > 0 ? 32.0 * (double)n_over / (double)numel : 0.0);
}

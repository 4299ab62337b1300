/*
 * ref.c — the scalar reference of the quantization contract (see ref.h and
 * docs/format.md). Every other implementation (kernels, learners, the
 * checkpoint loader) is tested against this file; it favours the obvious
 * formula over speed, except mq_ref_best_code_fast, whose equality with the
 * brute force is proved below and tested.
 *
 * Not here: packed layouts, SIMD, file I/O.
 * References: Nair et al., "Matryoshka Quantization" (ICML 2025) §3 (slicing
 * S(q, r), extra precision); MatGPTQ (Kleinegger et al., 2026) for
 * round-half-up, the clamp and the multi-width code choice; GPTQ's MinMax
 * grid (range widened to include 0); torch.round (ties to even).
 */
#include "quant/ref.h"

#include <math.h>
#include <string.h>

/* ============================================================ parent grid */

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

void mq_ref_grid(const float *w, int n, const float *lo_in, const float *hi_in, float *alpha, uint8_t *z) {
    float lo, hi;
    range_of(w, n, lo_in, hi_in, &lo, &hi);
    float a = (hi - lo) / 255.0f;
    /* alpha = 0 (zero range or underflow): every code is z = 0 and
     * dequantizes to 0 * (q - 0) = 0 exactly; no -lo/alpha is ever formed. */
    if (!(a > 0)) {
        *alpha = 0.0f;
        *z = 0;
        return;
    }
    float zf = nearbyintf(-lo / a);
    *alpha = a;
    *z = (uint8_t)(zf < 0 ? 0 : zf > 255 ? 255 : zf);
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

/* ================================================================ matrices */

static bool group_ok(int cols, int group) {
    return group == cols || ((group == 32 || group == 64 || group == 128 || group == 256) && cols % group == 0);
}

mq_status mq_ref_quantize_clip(const float *w, int rows, int cols, int group, const float *lo, const float *hi,
                               uint8_t *q, float *scale, uint8_t *zero) {
    if (rows < 0 || cols <= 0)
        return mq_fail(MQ_ERR_ARG, "quantize: bad shape [%d, %d]", rows, cols);
    if (group == 0) group = cols;
    if (!group_ok(cols, group))
        return mq_fail(MQ_ERR_ARG, "quantize: %d columns cannot be split into groups of the group size %d "
                       "(per channel, or 32/64/128/256 dividing the columns)", cols, group);
    if ((lo == NULL) != (hi == NULL))
        return mq_fail(MQ_ERR_ARG, "quantize: clipped ranges need both lo and hi");
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            if (!isfinite(w[(size_t)i * cols + j]))
                return mq_fail(MQ_ERR_NUMERIC, "quantize: weight at row %d, column %d is %g", i, j,
                               w[(size_t)i * cols + j]);
    int ng = cols / group;
    for (int i = 0; i < rows; i++)
        for (int g = 0; g < ng; g++) {
            size_t k = (size_t)i * ng + g;
            if (lo && (!isfinite(lo[k]) || !isfinite(hi[k]) || lo[k] > hi[k]))
                return mq_fail(MQ_ERR_ARG, "quantize: row %d, group %d: clipped range [%g, %g] is not a finite "
                               "lo <= hi", i, g, lo[k], hi[k]);
            const float *wg = w + (size_t)i * cols + (size_t)g * group;
            float a;
            uint8_t zz;
            mq_ref_grid(wg, group, lo ? lo + k : NULL, hi ? hi + k : NULL, &a, &zz);
            /* finite weights can still span more than FLT_MAX */
            if (!isfinite(a))
                return mq_fail(MQ_ERR_NUMERIC, "quantize: row %d, group %d: the range is too wide for fp32", i, g);
            scale[k] = a;
            zero[k] = zz;
            for (int j = 0; j < group; j++) q[(size_t)i * cols + (size_t)g * group + j] = mq_ref_code(wg[j], a, zz);
        }
    return MQ_OK;
}

mq_status mq_ref_quantize(const float *w, int rows, int cols, int group, uint8_t *q, float *scale,
                          uint8_t *zero) {
    return mq_ref_quantize_clip(w, rows, cols, group, NULL, NULL, q, scale, zero);
}

/* ================================================================ slicing */

int mq_ref_slice(uint8_t q, int r, bool extra) {
    MQ_ASSERT(r >= 1 && r <= 8);
    if (r == 8) return q;
    int d = 8 - r, s = (q + (1 << (d - 1))) >> d, top = (1 << r) - 1;
    return extra || s <= top ? s : top;
}

float mq_ref_dequant_one(uint8_t q, float alpha, uint8_t z, int r, bool extra) {
    return alpha * (float)(mq_ref_slice(q, r, extra) * (1 << (8 - r)) - (int)z);
}

float mq_ref_row_scale(float alpha, int r) {
    MQ_ASSERT(r >= 1 && r <= 8);
    return alpha * (float)(1 << (8 - r)); /* a power of two: exact */
}

float mq_ref_row_bias(float alpha, uint8_t z) {
    return -alpha * (float)z;
}

void mq_ref_dequant(const uint8_t *q, const float *scale, const uint8_t *zero, int rows, int cols, int group,
                    int r, bool extra, float *out) {
    MQ_ASSERT(group > 0 && cols % group == 0);
    int ng = cols / group;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            size_t g = (size_t)i * ng + j / group;
            out[(size_t)i * cols + j] = mq_ref_dequant_one(q[(size_t)i * cols + j], scale[g], zero[g], r, extra);
        }
}

/* ======================================================= extra precision */

int64_t mq_ref_count_overflow(const uint8_t *q, size_t n, int r) {
    if (r >= 8) return 0;
    int64_t c = 0;
    for (size_t i = 0; i < n; i++) c += mq_ref_slice(q[i], r, true) == (1 << r);
    return c;
}

mq_status mq_ref_extra_split(const uint8_t *q, size_t n, int r, uint8_t *plane, uint32_t *over, size_t cap,
                             size_t *n_over) {
    *n_over = 0;
    if (r < 1 || r > 7) return mq_fail(MQ_ERR_ARG, "extra precision at %d bits: width must be 1..7", r);
    if (n > (size_t)UINT32_MAX + 1)
        return mq_fail(MQ_ERR_ARG, "extra precision: %zu weights exceed 32-bit overflow indices", n);
    size_t k = 0;
    int top = (1 << r) - 1;
    for (size_t i = 0; i < n; i++) {
        int s = mq_ref_slice(q[i], r, true);
        plane[i] = (uint8_t)(s > top ? top : s);
        if (s > top) {
            if (over && k < cap) over[k] = (uint32_t)i;
            k++;
        }
    }
    *n_over = k;
    if (over && k > cap)
        return mq_fail(MQ_ERR_ARG, "extra precision at %d bits: %zu overflow weights, room for %zu", r, k, cap);
    return MQ_OK;
}

mq_status mq_ref_extra_join(const uint8_t *plane, size_t n, int r, const uint32_t *over, size_t n_over, int *qr) {
    if (r < 1 || r > 7) return mq_fail(MQ_ERR_ARG, "extra precision at %d bits: width must be 1..7", r);
    int top = (1 << r) - 1;
    for (size_t i = 0; i < n; i++) {
        if (plane[i] > top)
            return mq_fail(MQ_ERR_FORMAT, "extra precision: plane value %d at %zu exceeds %d bits", plane[i], i, r);
        qr[i] = plane[i];
    }
    for (size_t k = 0; k < n_over; k++) {
        if (over[k] >= n || (k > 0 && over[k] <= over[k - 1]))
            return mq_fail(MQ_ERR_FORMAT, "extra precision: overflow index %zu (%u) is out of range or not "
                           "increasing", k, over[k]);
        if (plane[over[k]] != top)
            return mq_fail(MQ_ERR_FORMAT, "extra precision: overflow weight %u has plane value %d, not %d",
                           over[k], plane[over[k]], top);
        qr[over[k]] = top + 1;
    }
    return MQ_OK;
}

double mq_ref_effective_bits(int r, bool extra, int64_t n_over, int64_t numel) {
    return r + (extra && numel > 0 ? (double)n_over / (double)numel : 0.0);
}

double mq_ref_storage_bits(int r, bool extra, int64_t n_over, int64_t numel) {
    return r + (extra && numel > 0 ? 32.0 * (double)n_over / (double)numel : 0.0);
}

/* ============================================================= histograms */

void mq_ref_histogram(const uint8_t *q, size_t n, int64_t hist[256]) {
    memset(hist, 0, 256 * sizeof hist[0]);
    for (size_t i = 0; i < n; i++) hist[q[i]]++;
}

void mq_ref_slice_histogram(const int64_t hist[256], int r, bool extra, int64_t *out) {
    MQ_ASSERT(r >= 1 && r <= 8);
    memset(out, 0, ((size_t)(1 << r) + 1) * sizeof out[0]);
    for (int c = 0; c < 256; c++) out[mq_ref_slice((uint8_t)c, r, extra)] += hist[c];
}

double mq_ref_overflow_share(const int64_t hist[256], int r) {
    int64_t tot = 0, over = 0;
    for (int c = 0; c < 256; c++) {
        tot += hist[c];
        if (r < 8 && mq_ref_slice((uint8_t)c, r, true) == (1 << r)) over += hist[c];
    }
    return tot > 0 ? (double)over / (double)tot : 0.0;
}

/* ====================================================== multi-width codes */

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

/* cost(q) in exactly the order of mq_ref_best_code_table */
static float cost_at(float w, const float *table, const float *lambda, int n, int q) {
    float c = 0.0f;
    for (int k = 0; k < n; k++) {
        float e = w - table[k * 256 + q];
        c += lambda[k] * e * e;
    }
    return c;
}

/* every width with lambda > 0 has t <= w (below) or t >= w (!below) at q */
static bool all_side(float w, const float *table, const float *lambda, int n, int q, bool below) {
    for (int k = 0; k < n; k++) {
        if (!(lambda[k] > 0)) continue;
        float t = table[k * 256 + q];
        if (below ? !(t <= w) : !(t >= w)) return false;
    }
    return true;
}

/*
 * Why _fast equals _table. Every table row t_k(q) is nondecreasing in q
 * (alpha >= 0, slices nondecreasing, fp32 multiplication monotone). Let
 * A = {q : t_k(q) <= w for all k with lambda_k > 0}, a prefix [0, a], and
 * B = {q : t_k(q) >= w for all such k}, a suffix [b, 255]. For q < q' <= a,
 * 0 <= w - t_k(q') <= w - t_k(q) exactly, and fp32 rounding is monotone, so
 * e' <= e, (l*e')*e' <= (l*e)*e and the running sums compare the same way:
 * cost(q) >= cost(q') as computed. Terms with lambda_k = 0 are 0 for all q.
 * So cost is nonincreasing on [0, a] and, symmetrically, nondecreasing on
 * [b, 255]; the minimum value is attained in [lo, hi] = [a or 0, b or 255]
 * (hull of both if a > b). Ties: a scan of [lo, hi] keeps the smallest q;
 * a code below lo can only tie (never beat) cost(lo), and only if the best
 * is lo itself, so we walk down from lo while the cost stays equal. Codes
 * above hi cost at least cost(hi) and come after every candidate.
 */
uint8_t mq_ref_best_code_fast(float w, const float *table, const float *lambda, int n) {
    MQ_ASSERT(n >= 1 && n <= 8);
    for (int k = 0; k < n; k++) MQ_ASSERT(lambda[k] >= 0);
    int lo = 0, hi = 255;
    if (all_side(w, table, lambda, n, 0, true)) { /* last q of the prefix A */
        int l = 0, h = 255;
        while (l < h) {
            int m = (l + h + 1) / 2;
            if (all_side(w, table, lambda, n, m, true)) l = m;
            else h = m - 1;
        }
        lo = l;
    }
    if (all_side(w, table, lambda, n, 255, false)) { /* first q of the suffix B */
        int l = 0, h = 255;
        while (l < h) {
            int m = (l + h) / 2;
            if (all_side(w, table, lambda, n, m, false)) h = m;
            else l = m + 1;
        }
        hi = l;
    }
    if (lo > hi) {
        int t = lo;
        lo = hi;
        hi = t;
    }
    int best = lo;
    float bc = cost_at(w, table, lambda, n, lo);
    for (int q = lo + 1; q <= hi; q++) {
        float c = cost_at(w, table, lambda, n, q);
        if (c < bc) {
            bc = c;
            best = q;
        }
    }
    if (best == lo)
        while (best > 0 && cost_at(w, table, lambda, n, best - 1) == bc) best--;
    return (uint8_t)best;
}

uint8_t mq_ref_best_code(float w, float alpha, uint8_t z, const int *bits, const float *lambda, int n) {
    float table[8 * 256];
    MQ_ASSERT(n >= 1 && n <= 8);
    mq_ref_code_table(alpha, z, bits, n, table);
    return mq_ref_best_code_table(w, table, lambda, n);
}

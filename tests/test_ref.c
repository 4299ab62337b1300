/*
 * test_ref.c — the quantization spec (src/quant/ref.c), exhaustively:
 * every parent code at every width against formulas written another way
 * (integer division in double), extra precision, grids (per channel and
 * every group size, zero and constant ranges), the multi-width code choice
 * against brute force in double, bit accounting.
 */
#include "check.h"
#include "quant/ref.h"

#include <math.h>

static uint32_t rs = 12345;
static float frand(void) {
    rs = rs * 1664525u + 1013904223u;
    return (float)((rs >> 8) & 0xffffff) / 16777216.0f - 0.5f;
}

static void test_slices(void) {
    int bad = 0, bad_x = 0, bad_deq = 0;
    for (int r = 1; r <= 8; r++) {
        int d = 8 - r;
        for (int q = 0; q < 256; q++) {
            /* round half up of q / 2^d, written with floor in double */
            int s = r == 8 ? q : (int)floor((double)q / (1 << d) + 0.5);
            int top = (1 << r) - 1;
            int want = s > top ? top : s;
            bad += mq_ref_slice((uint8_t)q, r, false) != want;
            bad_x += mq_ref_slice((uint8_t)q, r, true) != s;
            for (int z = 0; z < 256; z += 51) {
                float alpha = 0.0123f;
                double w = (double)alpha * (want * (double)(1 << d) - z);
                bad_deq += fabs(mq_ref_dequant_one((uint8_t)q, alpha, (uint8_t)z, r, false) - w) > 1e-6 * (1 + fabs(w));
            }
        }
        /* the slice never leaves the r-bit range; extra overflows only at the top */
        int over = 0;
        for (int q = 0; q < 256; q++) over += mq_ref_slice((uint8_t)q, r, true) == (1 << r);
        CHECK(r == 8 ? over == 0 : over == (1 << (d - 1)), "r=%d: %d codes overflow, want %d", r, over,
              r == 8 ? 0 : 1 << (d - 1));
    }
    CHECK(bad == 0, "%d clamped slices differ from the formula", bad);
    CHECK(bad_x == 0, "%d extra-precision slices differ", bad_x);
    CHECK(bad_deq == 0, "%d dequantized values differ", bad_deq);
    /* nesting facts the format relies on: slicing q_8 to r equals slicing q; and
     * int2 from int4 is NOT in general the same as int2 from int8 (rounding carry) */
    int nest_diff = 0;
    for (int q = 0; q < 256; q++) {
        int q4 = mq_ref_slice((uint8_t)q, 4, false);
        int q2_from4 = q4 >= 0 ? ((q4 + 2) >> 2 > 3 ? 3 : (q4 + 2) >> 2) : 0;
        nest_diff += q2_from4 != mq_ref_slice((uint8_t)q, 2, false);
    }
    CHECK(nest_diff > 0, "double rounding int8->int4->int2 should differ from int8->int2 somewhere");
    printf("slices: all 256 codes x 8 widths checked; int8->int4->int2 differs from int8->int2 on %d codes\n", nest_diff);
}

static void test_grids(void) {
    /* all-zero row: alpha 0, codes z, dequant exactly 0 */
    float zeros[64] = {0}, a;
    uint8_t z;
    mq_ref_grid(zeros, 64, NULL, NULL, &a, &z);
    CHECK(a == 0 && z == 0, "zero row: alpha %g z %d", a, z);
    CHECK(mq_ref_code(0.0f, a, z) == 0 && mq_ref_dequant_one(0, a, z, 4, false) == 0.0f, "zero row codes");
    /* constant positive row: range widened to [0, c], c is exact at code 255 */
    float c[8];
    for (int i = 0; i < 8; i++) c[i] = 0.75f;
    mq_ref_grid(c, 8, NULL, NULL, &a, &z);
    CHECK(z == 0 && fabsf(a * 255 - 0.75f) < 1e-7, "constant row alpha %g z %d", a, z);
    CHECK(mq_ref_code(0.75f, a, z) == 255, "constant row code %d", mq_ref_code(0.75f, a, z));
    /* constant negative row: z = 255 */
    for (int i = 0; i < 8; i++) c[i] = -2.0f;
    mq_ref_grid(c, 8, NULL, NULL, &a, &z);
    CHECK(z == 255 && mq_ref_code(-2.0f, a, z) == 0 && mq_ref_code(0.0f, a, z) == 255, "negative row z %d", z);
    /* zero is always exact: code z dequantizes to 0 at width 8 */
    int bad0 = 0, badq = 0, bad_err = 0;
    for (int t = 0; t < 2000; t++) {
        float w[32];
        float scale = powf(10.0f, 4 * frand());
        for (int i = 0; i < 32; i++) w[i] = frand() * scale + (t % 3 == 0 ? scale * 0.3f : 0);
        mq_ref_grid(w, 32, NULL, NULL, &a, &z);
        bad0 += mq_ref_dequant_one(z, a, z, 8, false) != 0.0f;
        for (int i = 0; i < 32; i++) {
            uint8_t q = mq_ref_code(w[i], a, z);
            /* re-derivation in double */
            double qd = nearbyint((double)(w[i] / a)) + z;
            qd = qd < 0 ? 0 : qd > 255 ? 255 : qd;
            badq += q != (uint8_t)qd;
            /* round-to-nearest error is at most alpha/2 (plus float slack) inside the range */
            bad_err += fabs(mq_ref_dequant_one(q, a, z, 8, false) - w[i]) > 0.5 * a * (1 + 1e-4) + 1e-7 * scale;
        }
    }
    CHECK(bad0 == 0, "%d grids do not represent 0 exactly", bad0);
    CHECK(badq == 0, "%d codes differ from the double re-derivation", badq);
    CHECK(bad_err == 0, "%d codes further than alpha/2 from their weight", bad_err);
    /* clipped ranges: given lo/hi are used (widened to include 0) */
    float lo = -0.5f, hi = 0.25f;
    mq_ref_grid(NULL, 0, &lo, &hi, &a, &z);
    CHECK(fabsf(a - 0.75f / 255) < 1e-9 && z == 170, "clipped grid alpha %g z %d", a, z);
    CHECK(mq_ref_code(10.0f, a, z) == 255 && mq_ref_code(-10.0f, a, z) == 0, "clipping clamps");
}

static void test_matrix(void) {
    enum { R = 5, C = 512 };
    static float w[R * C], out[R * C];
    static uint8_t q[R * C], zero[R * C / 32];
    static float scale[R * C / 32];
    for (int i = 0; i < R * C; i++) w[i] = frand();
    w[3] = 0;
    int groups[] = {C, 32, 64, 128, 256};
    for (int gi = 0; gi < 5; gi++) {
        int g = groups[gi], ng = C / g;
        CHECK(mq_ref_quantize(w, R, C, g, q, scale, zero) == MQ_OK, "%s", mq_last_error());
        int bad = 0;
        for (int r = 0; r < R; r++)
            for (int k = 0; k < ng; k++) {
                float a;
                uint8_t z;
                mq_ref_grid(w + r * C + k * g, g, NULL, NULL, &a, &z);
                bad += a != scale[r * ng + k] || z != zero[r * ng + k];
                for (int j = 0; j < g; j++) bad += q[r * C + k * g + j] != mq_ref_code(w[r * C + k * g + j], a, z);
            }
        CHECK(bad == 0, "group %d: %d mismatches against per-group grids", g, bad);
        for (int bits = 1; bits <= 8; bits++) {
            mq_ref_dequant(q, scale, zero, R, C, g, bits, false, out);
            int bd = 0;
            for (int i = 0; i < R * C; i++)
                bd += out[i] != mq_ref_dequant_one(q[i], scale[(i / C) * ng + (i % C) / g], zero[(i / C) * ng + (i % C) / g], bits, false);
            CHECK(bd == 0, "group %d width %d: dequant mismatches %d", g, bits, bd);
        }
    }
    CHECK(mq_ref_quantize(w, R, C, 100, q, scale, zero) == MQ_ERR_ARG && strstr(mq_last_error(), "group size 100"),
          "ragged group accepted: %s", mq_last_error());
    w[7] = NAN;
    CHECK(mq_ref_quantize(w, R, C, C, q, scale, zero) == MQ_ERR_NUMERIC && strstr(mq_last_error(), "row 0, column 7"),
          "NaN accepted: %s", mq_last_error());
}

static void test_best_code(void) {
    int bits[3] = {8, 4, 2};
    float lam[3][3] = {{1, 1, 1}, {1, 1, 4}, {0, 0, 1}};
    int bad = 0, n = 0, differs_from_rtn = 0;
    for (int t = 0; t < 400; t++) {
        float w[16], a;
        uint8_t z;
        for (int i = 0; i < 16; i++) w[i] = frand();
        mq_ref_grid(w, 16, NULL, NULL, &a, &z);
        for (int li = 0; li < 3; li++)
            for (int i = 0; i < 16; i++) {
                uint8_t got = mq_ref_best_code(w[i], a, z, bits, lam[li], 3);
                /* brute force in double, smallest q on ties */
                double best = INFINITY;
                for (int qq = 0; qq < 256; qq++) {
                    double c = 0;
                    for (int k = 0; k < 3; k++) {
                        double e = (double)w[i] - mq_ref_dequant_one((uint8_t)qq, a, z, bits[k], false);
                        c += lam[li][k] * e * e;
                    }
                    if (c < best) best = c;
                }
                double cg = 0;
                for (int k = 0; k < 3; k++) {
                    double e = (double)w[i] - mq_ref_dequant_one(got, a, z, bits[k], false);
                    cg += lam[li][k] * e * e;
                }
                bad += cg > best * (1 + 1e-5) + 1e-12; /* same cost (float ties may pick another code) */
                differs_from_rtn += got != mq_ref_code(w[i], a, z);
                n++;
            }
    }
    CHECK(bad == 0, "%d of %d multi-width codes cost more than the brute-force optimum", bad, n);
    CHECK(differs_from_rtn > 0, "the multi-width choice never differs from round-to-nearest");
    /* a single width 8 with lambda 1 is round to nearest */
    int one[1] = {8};
    float l1[1] = {1};
    int bad8 = 0;
    for (int t = 0; t < 5000; t++) {
        float w = frand(), a = 1.0f / 255;
        bad8 += mq_ref_best_code(w, a, 128, one, l1, 1) != mq_ref_code(w, a, 128);
    }
    CHECK(bad8 == 0, "width-8 best code differs from rounding %d times", bad8);
    printf("best code: %d cases match brute force; %d differ from round-to-nearest\n", n, differs_from_rtn);
}

static void test_bits(void) {
    uint8_t q[256];
    for (int i = 0; i < 256; i++) q[i] = (uint8_t)i;
    CHECK(mq_ref_count_overflow(q, 256, 2) == 32, "2-bit overflow count %lld", (long long)mq_ref_count_overflow(q, 256, 2));
    CHECK(mq_ref_count_overflow(q, 256, 4) == 8, "4-bit overflow count");
    CHECK(mq_ref_count_overflow(q, 256, 8) == 0, "8-bit overflow count");
    CHECK(fabs(mq_ref_effective_bits(2, true, 5, 100) - 2.05) < 1e-12, "effective bits");
    CHECK(fabs(mq_ref_storage_bits(2, true, 5, 100) - 3.6) < 1e-12, "storage bits");
    CHECK(mq_ref_effective_bits(4, false, 5, 100) == 4.0, "no extra precision, no extra bits");
}

/* native r-bit grids in parent form: slicing returns the native codes exactly */
static void test_native_grids(void) {
    int bad = 0, bad_code = 0;
    for (int r = 1; r <= 7; r++) {
        int d = 8 - r, top = (1 << r) - 1;
        for (int t = 0; t < 300; t++) {
            float w[32], a;
            uint8_t z;
            for (int i = 0; i < 32; i++) w[i] = frand() + (t % 4 == 0 ? 0.4f : 0);
            mq_ref_grid_bits(w, 32, NULL, NULL, r, &a, &z);
            float lo = 0, hi = 0;
            for (int i = 0; i < 32; i++) { lo = w[i] < lo ? w[i] : lo; hi = w[i] > hi ? w[i] : hi; }
            double ar = ((double)hi - lo) / top;
            int zr = (int)nearbyint(-lo / ar);
            zr = zr < 0 ? 0 : zr > top ? top : zr;
            bad += fabs(a * (1 << d) - ar) > 1e-6 * ar || z != (zr << d);
            for (int i = 0; i < 32; i++) {
                uint8_t q = mq_ref_code_bits(w[i], a, z, r);
                double qr = nearbyint(w[i] / ar) + zr;
                qr = qr < 0 ? 0 : qr > top ? top : qr;
                /* the parent code is q_r * 2^d, its r-bit slice is q_r and dequantizes on the native grid */
                bad_code += q != ((int)qr << d) || mq_ref_slice(q, r, false) != (int)qr ||
                            fabs(mq_ref_dequant_one(q, a, z, r, false) - ar * (qr - zr)) > 1e-5;
            }
        }
    }
    CHECK(bad == 0, "%d native grids differ from the direct formula", bad);
    CHECK(bad_code == 0, "%d native codes do not slice back exactly", bad_code);
}

int main(void) {
    test_native_grids();
    test_slices();
    test_grids();
    test_matrix();
    test_best_code();
    test_bits();
    return check_done("test_ref");
}

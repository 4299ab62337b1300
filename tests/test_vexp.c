/*
 * test_vexp.c — core/vexp: mq_vexp against libm's expf over a sweep of
 * float bit patterns (every 97th pattern with |x| up to 104, both signs),
 * the special values, odd lengths (masked tails) and in place; the same
 * checks with the scalar fallback forced. Normal results within 2 ulp,
 * subnormal results within 2^-149 absolute.
 * Covers: src/core/vexp.c.
 */
#include "check.h"
#include "core/vexp.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Distance in ulps between two positive finite floats. */
static int64_t ulps(float a, float b) {
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    int64_t d = (int64_t)ia - (int64_t)ib;
    return d < 0 ? -d : d;
}

static void sweep(const char *what) {
    enum { CAP = 4096 };
    static float in[CAP], out[CAP];
    int64_t worst = 0;
    float worst_x = 0, worst_sub = 0, worst_sub_x = 0;
    size_t count = 0, bad_special = 0;
    size_t n = 0;
    /* bit patterns of x from +0 upward and from -0 upward (negatives) */
    for (int sign = 0; sign < 2; sign++)
        for (uint32_t b = 0; b < 0x42d00000u; b += 97) { /* 0x42d00000 = 104.0f */
            uint32_t u = b | (sign ? 0x80000000u : 0);
            memcpy(&in[n++], &u, 4);
            if (n == CAP || (sign == 1 && b + 97 >= 0x42d00000u)) {
                mq_vexp(out, in, n);
                for (size_t i = 0; i < n; i++) {
                    float want = expf(in[i]), got = out[i];
                    count++;
                    if (isinf(want) || want == 0) {
                        bad_special += !(got == want);
                        continue;
                    }
                    if (want < FLT_MIN) {
                        float e = fabsf(got - want);
                        if (e > worst_sub) worst_sub = e, worst_sub_x = in[i];
                        continue;
                    }
                    int64_t d = ulps(got, want);
                    if (d > worst) worst = d, worst_x = in[i];
                }
                n = 0;
            }
        }
    CHECK(worst <= 2, "%s: %lld ulp from expf at x = %.9g (%zu values)", what, (long long)worst, worst_x, count);
    CHECK(worst_sub <= 0x1p-149f, "%s: subnormal result off by %g at x = %.9g", what, worst_sub, worst_sub_x);
    CHECK(bad_special == 0, "%s: %zu zero/inf results differ from expf", what, bad_special);
    printf("  %s: %zu values, worst %lld ulp (x = %.7g)\n", what, count, (long long)worst, worst_x);
}

static void specials(const char *what) {
    float in[7] = {INFINITY, -INFINITY, NAN, 0.0f, -0.0f, 88.72f, -87.0f}, out[7];
    mq_vexp(out, in, 7);
    CHECK(isinf(out[0]) && out[0] > 0, "%s: exp(inf) = %g", what, out[0]);
    CHECK(out[1] == 0.0f, "%s: exp(-inf) = %g", what, out[1]);
    CHECK(isnan(out[2]), "%s: exp(nan) = %g", what, out[2]);
    CHECK(out[3] == 1.0f && out[4] == 1.0f, "%s: exp(+-0) = %g %g", what, out[3], out[4]);
    CHECK(ulps(out[5], expf(88.72f)) <= 2 && isfinite(out[5]), "%s: exp(88.72) = %g", what, out[5]);
    CHECK(ulps(out[6], expf(-87.0f)) <= 2, "%s: exp(-87) = %g", what, out[6]);
    /* odd lengths, in place: the masked tail must not touch what follows */
    float buf[40];
    for (int len = 0; len <= 33; len++) {
        for (int i = 0; i < 40; i++) buf[i] = i < len ? (float)i * 0.37f - 5.0f : 12345.0f;
        mq_vexp(buf, buf, (size_t)len);
        int bad = 0;
        for (int i = 0; i < 40; i++) {
            if (i < len) bad += ulps(buf[i], expf((float)i * 0.37f - 5.0f)) > 2;
            else bad += buf[i] != 12345.0f;
        }
        CHECK(bad == 0, "%s: length %d in place: %d wrong elements", what, len, bad);
    }
}

int main(void) {
    printf("  vexp: %s path by default\n", mq_vexp_simd() ? "AVX-512" : "scalar");
    sweep("default path");
    specials("default path");
    mq_vexp_force_scalar(true);
    CHECK(!mq_vexp_simd(), "forcing the scalar path");
    sweep("scalar path");
    specials("scalar path");
    mq_vexp_force_scalar(false);
    return check_done("test_vexp");
}

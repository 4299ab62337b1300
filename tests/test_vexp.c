/*
 * test_vexp.c — core/vexp: mq_vexp against libm's expf over a sweep of
 * float bit patterns (every 97th pattern with |x| up to 104, both signs),
 * the special values, odd lengths (masked tails) and in place; the same
 * checks on the AVX2 path (where the CPU has AVX-512 too, forced) and with
 * the scalar fallback forced; AVX2 against AVX-512 bit for bit. Normal results within 2 ulp,
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

/* AVX2 against AVX-512 bit for bit over the same sweep (the AVX2 scaling
 * by two exact factors must round as vscalefps does). */
static void same_bits(void) {
    enum { CAP = 4096 };
    static float in[CAP], a[CAP], b[CAP];
    size_t diff = 0, count = 0, n = 0;
    float first = 0;
    for (int sign = 0; sign < 2; sign++)
        for (uint32_t u = 0; u < 0x42d80000u; u += 89) { /* up to 108: past both clamps */
            uint32_t v = u | (sign ? 0x80000000u : 0);
            memcpy(&in[n++], &v, 4);
            if (n == CAP || u + 89 >= 0x42d80000u) {
                mq_vexp_force(MQ_VEXP_AVX512);
                mq_vexp(a, in, n);
                mq_vexp_force(MQ_VEXP_AVX2);
                mq_vexp(b, in, n);
                for (size_t i = 0; i < n; i++, count++)
                    if (memcmp(&a[i], &b[i], 4) && !(isnan(a[i]) && isnan(b[i]))) {
                        if (!diff) first = in[i];
                        diff++;
                    }
                n = 0;
            }
        }
    mq_vexp_force(-1);
    CHECK(diff == 0, "AVX2 and AVX-512 differ on %zu of %zu values (first at x = %.9g)", diff, count, first);
    printf("  AVX2 = AVX-512 bit for bit on %zu values\n", count);
}

int main(void) {
    int top = mq_vexp_level();
    printf("  vexp: %s path by default\n", mq_vexp_name(top));
    sweep("default path");
    specials("default path");
    if (top == MQ_VEXP_AVX512) { /* where AVX2 is the default, the default path covered it */
        mq_vexp_force(MQ_VEXP_AVX2);
        CHECK(mq_vexp_level() == MQ_VEXP_AVX2, "forcing the AVX2 path");
        sweep("AVX2 path");
        specials("AVX2 path");
        mq_vexp_force(-1);
        same_bits();
    } else
        printf("  (AVX-512 path not available here (CPU or MQ_KERNELS): AVX2 = AVX-512 not compared)\n");
    mq_vexp_force(MQ_VEXP_SCALAR);
    CHECK(mq_vexp_level() == MQ_VEXP_SCALAR, "forcing the scalar path");
    sweep("scalar path");
    specials("scalar path");
    mq_vexp_force(-1);
    CHECK(mq_vexp_level() == top, "lifting the cap restores the %s path", mq_vexp_name(top));
    return check_done("test_vexp");
}

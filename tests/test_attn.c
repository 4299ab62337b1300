/*
 * test_attn.c — nn/attn.h: the one-query attention of decode. The scalar
 * reference against the same formula in double (the spec holds), then the
 * AVX-512 variant against the reference on head sizes that are not
 * multiples of 16 (masked tails), key ranges of 1 to 301 keys starting past
 * 0, cache rows wider than a head (ld > D, as in the KV cache), with and
 * without soft-capping, and scores large enough for the max subtraction to
 * matter. Outputs are NaN-poisoned before each call.
 * Covers: src/nn/attn.c, src/nn/attn_avx512.c, src/nn/attn_avx2.c.
 */
#include "check.h"
#include "nn/attn.h"

#include <math.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float urand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1 << 23)) - 1.0);
}

static void attn_double(const float *q, const float *kc, const float *vc, size_t ld, int D, float scale,
                        float softcap, int j0, int j1, double *out) {
    int nj = j1 - j0;
    double *s = malloc((size_t)nj * sizeof *s), mx = -INFINITY, sum = 0;
    for (int j = 0; j < nj; j++) {
        double dot = 0;
        for (int d = 0; d < D; d++) dot += (double)q[d] * kc[(size_t)(j0 + j) * ld + d];
        dot *= scale;
        if (softcap > 0) dot = tanh(dot / softcap) * softcap;
        s[j] = dot;
        if (dot > mx) mx = dot;
    }
    for (int j = 0; j < nj; j++) sum += s[j] = exp(s[j] - mx);
    for (int d = 0; d < D; d++) {
        double o = 0;
        for (int j = 0; j < nj; j++) o += s[j] / sum * vc[(size_t)(j0 + j) * ld + d];
        out[d] = o;
    }
    free(s);
}

static void one_case(int D, int extra, int j0, int nj, float scale, float softcap, float qmag) {
    size_t ld = (size_t)D + (size_t)extra;
    int j1 = j0 + nj;
    float *q = malloc((size_t)D * sizeof *q), *kc = malloc((size_t)j1 * ld * sizeof *kc);
    float *vc = malloc((size_t)j1 * ld * sizeof *vc), *sc = malloc((size_t)nj * sizeof *sc);
    float *ref = malloc((size_t)D * sizeof *ref), *got = malloc((size_t)D * sizeof *got);
    double *want = malloc((size_t)D * sizeof *want);
    for (int d = 0; d < D; d++) q[d] = qmag * urand();
    for (size_t i = 0; i < (size_t)j1 * ld; i++) kc[i] = urand(), vc[i] = urand();
    attn_double(q, kc, vc, ld, D, scale, softcap, j0, j1, want);
    for (int d = 0; d < D; d++) ref[d] = got[d] = NAN;
    mq_attn_query_ref(q, kc, vc, ld, D, scale, softcap, j0, j1, sc, ref);
    double e_ref = 0, e_simd = 0;
    for (int d = 0; d < D; d++) {
        double e = fabs(ref[d] - want[d]);
        if (!(e <= e_ref)) e_ref = isnan(e) ? INFINITY : e;
    }
    CHECK(e_ref <= 2e-5, "reference vs double: D %d, keys %d..%d, softcap %g: max error %g", D, j0, j1 - 1,
          softcap, e_ref);
    const char *names[] = {"avx512", "avx2"};
    mq_attn_query_fn fns[] = {mq_attn_query_avx512, mq_attn_query_avx2};
    bool runs[] = {__builtin_cpu_supports("avx512f"), __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")};
    for (int v = 0; v < 2; v++) {
        if (!runs[v]) continue;
        e_simd = 0;
        for (int d = 0; d < D; d++) got[d] = NAN;
        fns[v](q, kc, vc, ld, D, scale, softcap, j0, j1, sc, got);
        for (int d = 0; d < D; d++) {
            double e = fabs((double)got[d] - ref[d]);
            if (!(e <= e_simd)) e_simd = isnan(e) ? INFINITY : e;
        }
        CHECK(e_simd <= 2e-5, "%s vs reference: D %d, keys %d..%d, softcap %g: max error %g", names[v], D, j0,
              j1 - 1, softcap, e_simd);
    }
    free(q), free(kc), free(vc), free(sc), free(ref), free(got), free(want);
}

int main(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f")) SKIP("this CPU has no AVX-512F: that variant is not checked");
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        SKIP("this CPU has no AVX2+FMA: that variant is not checked");
    int Ds[] = {1, 7, 16, 17, 48, 64, 80, 128, 130, 256};
    int ranges[][2] = {{0, 1}, {0, 7}, {3, 16}, {5, 31}, {0, 190}, {37, 301}};
    for (size_t a = 0; a < sizeof Ds / sizeof *Ds; a++)
        for (size_t b = 0; b < sizeof ranges / sizeof *ranges; b++) {
            int D = Ds[a];
            float scale = 1.0f / sqrtf((float)D);
            one_case(D, (int)(a % 3) * 5, ranges[b][0], ranges[b][1], scale, 0.0f, 1.0f);
            one_case(D, 3, ranges[b][0], ranges[b][1], scale, 50.0f, 8.0f); /* soft-capped, peaked scores */
            one_case(D, 0, ranges[b][0], ranges[b][1], scale, 0.0f, 30.0f); /* scores of +-hundreds */
        }
    /* the output stops at D: a guard float after the head stays untouched */
    {
        int D = 17;
        float q[17], kc[17 * 5], vc[17 * 5], sc[5], out[18];
        for (int i = 0; i < 17; i++) q[i] = urand();
        for (int i = 0; i < 85; i++) kc[i] = urand(), vc[i] = urand();
        out[17] = 12345.0f;
        mq_attn_query_fn f = mq_attn_query();
        f(q, kc, vc, 17, D, 0.25f, 0.0f, 0, 5, sc, out);
        CHECK(out[17] == 12345.0f, "the selected variant wrote past the head (%g)", out[17]);
    }
    return check_done("test_attn");
}

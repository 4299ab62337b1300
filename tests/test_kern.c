/*
 * test_kern.c — packed layouts and integer kernels (quant/pack, quant/kern_scalar.c,
 * quant/kern_avx2.c, quant/kern_avx512.c, quant/dispatch).
 *
 * For widths 8, 6, 4, 3, 2 (and 6x, 4x, 3x, 2x), per channel and groups of
 * 32..512 (and 96), on odd shapes (rows 1, 7, 13, 33; cols not a multiple of
 * 64, or of 32 per channel; cols of 600..2048 with interleaved superblocks
 * of 512 followed by natural-order tail chunks; 7 tokens):
 *  - unpacked codes equal mq_ref_slice of the parent codes, overflow counts
 *    equal mq_ref_count_overflow;
 *  - the scalar integer dot products equal a direct sum over mq_ref_slice;
 *  - every variant the CPU runs (avx2, avx512, amx: kern_avx2.c, kern_avx512.c, kern_amx.c) gives the scalar's integer dot
 *    products bit-exactly, and gemv/gemm outputs within 1e-5 of that
 *    magnitude of the scalar's (fp32 rounding order);
 *  - the scalar float output is within 1e-5 (relative to sum |w||x|) of a
 *    double-precision product of mq_ref_dequant_one weights and the
 *    dequantized activations;
 *  - activation quantization error is at most half a step per element;
 *  - mq_kern_matmul on threads equals the per-variant result.
 */
#include "check.h"

#include "quant/kern.h"
#include "quant/ref.h"

#include <math.h>
#include <omp.h>

static uint64_t rng = 88172645463325252ULL;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float frand(void) { return (float)rnd() / 2097152.0f - 1.0f; } /* [-1, 1) */

#define NTOK 7 /* not a multiple of any variant's token tile (4, 2) */

static const mq_kern_ops *variants[4];
static int n_variants;

/* Random parent codes (rows, cols) with per-group alpha and zero points. */
static void random_codes(int rows, int cols, int group, uint8_t **q, float **alpha, uint8_t **zero) {
    int ng = cols / group;
    size_t n = (size_t)rows * cols;
    *q = mq_malloc(n);
    *zero = mq_malloc((size_t)rows * ng);
    *alpha = mq_malloc((size_t)rows * ng * sizeof(float));
    for (size_t i = 0; i < n; i++) (*q)[i] = (uint8_t)(rnd() & 255);
    for (int i = 0; i < rows * ng; i++) {
        (*alpha)[i] = 0.001f + 0.01f * (float)(rnd() % 1000) / 1000.0f;
        (*zero)[i] = (uint8_t)(rnd() & 255);
    }
}

static void one_case(int rows, int cols, int group, int r, bool extra) {
    char what[128];
    snprintf(what, sizeof what, "r=%d%s rows=%d cols=%d group=%d", r, extra ? "x" : "", rows, cols, group);
    int ng = cols / group;
    size_t n = (size_t)rows * cols;
    uint8_t *q, *zero;
    float *alpha;
    random_codes(rows, cols, group, &q, &alpha, &zero);
    mq_packed p;
    CHECK(mq_pack_build(q, alpha, zero, rows, cols, group, r, extra, &p) == MQ_OK, "%s: %s", what, mq_last_error());
    /* codes */
    int *codes = mq_malloc((size_t)cols * sizeof(int));
    int bad = 0;
    for (int o = 0; o < rows; o++) {
        mq_pack_unpack_row(&p, o, codes);
        for (int j = 0; j < cols; j++)
            if (codes[j] != mq_ref_slice(q[(size_t)o * cols + j], r, extra)) bad++;
    }
    CHECK(bad == 0, "%s: %d unpacked codes differ from mq_ref_slice", what, bad);
    if (extra && r < 8)
        CHECK((int64_t)p.n_over == mq_ref_count_overflow(q, n, r), "%s: %zu overflow weights, want %lld", what,
              p.n_over, (long long)mq_ref_count_overflow(q, n, r));
    /* activations: mixed magnitudes, one all-zero block in token 1 */
    float *x = mq_malloc((size_t)NTOK * cols * sizeof(float));
    for (int t = 0; t < NTOK; t++)
        for (int j = 0; j < cols; j++) x[(size_t)t * cols + j] = frand() * (j % 7 == 0 ? 5.0f : 0.5f) * (float)(t + 1);
    for (int j = 0; j < 32 && j < cols; j++) x[(size_t)1 * cols + j] = 0.0f;
    mq_kact *a = mq_kact_new(NTOK, cols);
    mq_kact_quantize(a, x, NTOK, cols);
    mq_kact_group_sums(a, &p);
    int nb = p.kp / MQ_PACK_BLOCK;
    bad = 0;
    for (int t = 0; t < NTOK; t++)
        for (int j = 0; j < cols; j++) {
            float d = a->d[(size_t)t * nb + j / 32];
            if (!(fabsf(d * a->q[(size_t)t * p.kp + j] - x[(size_t)t * cols + j]) <= 0.5f * d * 1.0001f + 1e-30f)) bad++;
        }
    CHECK(bad == 0, "%s: %d activations quantized with more than half a step of error", what, bad);
    /* the (SIMD) quantizer gives exactly the scalar formula of kern.h */
    bad = 0;
    for (int t = 0; t < NTOK; t++)
        for (int k = 0; k < nb; k++) {
            int j0 = 32 * k, j1 = j0 + 32 < cols ? j0 + 32 : cols;
            float amax = 0.0f;
            for (int j = j0; j < j1; j++) amax = fmaxf(amax, fabsf(x[(size_t)t * cols + j]));
            float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            int32_t sum = 0;
            for (int j = j0; j < j0 + 32; j++) {
                int v = j < j1 ? (int)nearbyintf(x[(size_t)t * cols + j] * inv) : 0;
                v = v > 127 ? 127 : v < -127 ? -127 : v;
                sum += v;
                bad += a->q[(size_t)t * p.kp + j] != v;
            }
            bad += a->d[(size_t)t * nb + k] != amax / 127.0f;
            bad += a->bsum[(size_t)t * nb + k] != amax / 127.0f * (float)sum;
        }
    CHECK(bad == 0, "%s: %d activation codes or scales differ from the scalar formula", what, bad);
    /* scalar integer dots against a direct sum over mq_ref_slice */
    int32_t *I = mq_malloc((size_t)rows * nb * sizeof(int32_t)), *J = mq_malloc((size_t)rows * nb * sizeof(int32_t));
    bad = 0;
    for (int t = 0; t < NTOK; t++) {
        mq_kern_scalar_ops.dots(&p, 0, rows, a, t, I);
        for (int o = 0; o < rows; o++)
            for (int k = 0; k < nb; k++) {
                int32_t s = 0;
                for (int j = k * 32; j < k * 32 + 32 && j < cols; j++)
                    s += mq_ref_slice(q[(size_t)o * cols + j], r, extra) * a->q[(size_t)t * p.kp + j];
                if (s != I[(size_t)o * nb + k]) bad++;
            }
    }
    CHECK(bad == 0, "%s: %d scalar block dot products differ from the direct sum", what, bad);
    /* scalar float output against double precision */
    float *ys = mq_malloc((size_t)NTOK * rows * sizeof(float)), *yv = mq_malloc((size_t)NTOK * rows * sizeof(float));
    mq_kern_scalar_ops.gemm(&p, 0, rows, a, ys, rows);
    double worst = 0, magmax = 0;
    for (int t = 0; t < NTOK; t++)
        for (int o = 0; o < rows; o++) {
            double y = 0, mag = 0;
            for (int j = 0; j < cols; j++) {
                int g = j / group;
                double w = mq_ref_dequant_one(q[(size_t)o * cols + j], alpha[(size_t)o * ng + g], zero[(size_t)o * ng + g], r, extra);
                double xh = (double)a->d[(size_t)t * nb + j / 32] * a->q[(size_t)t * p.kp + j];
                y += w * xh;
                /* the kernels sum s*q*x and b*x separately: bound both */
                mag += (fabs((double)mq_ref_row_scale(alpha[(size_t)o * ng + g], r) * mq_ref_slice(q[(size_t)o * cols + j], r, extra)) +
                        fabs((double)mq_ref_row_bias(alpha[(size_t)o * ng + g], zero[(size_t)o * ng + g]))) * fabs(xh);
            }
            if (mag > magmax) magmax = mag;
            double e = fabs(ys[(size_t)t * rows + o] - y) / (mag + 1e-30);
            if (e > worst) worst = e;
        }
    CHECK(worst <= 1e-5, "%s: scalar output vs double reference: relative error %.3g", what, worst);
    double tol = 1e-5 * magmax; /* fp32 rounding order differs between variants */
    float gv;
    mq_kern_scalar_ops.gemv(&p, 0, 1, a, &gv);
    CHECK(gv == ys[0], "%s: scalar gemv %.9g != gemm %.9g", what, gv, ys[0]);
    /* variants */
    for (int v = 0; v < n_variants; v++) {
        const mq_kern_ops *k = variants[v];
        bad = 0;
        for (int t = 0; t < NTOK; t++) {
            mq_kern_scalar_ops.dots(&p, 0, rows, a, t, I);
            k->dots(&p, 0, rows, a, t, J);
            for (size_t i = 0; i < (size_t)rows * nb; i++) bad += I[i] != J[i];
            if (rows > 2) { /* a sub-range of rows */
                k->dots(&p, 1, rows - 1, a, t, J);
                for (size_t i = 0; i < (size_t)(rows - 2) * nb; i++) bad += I[(size_t)nb + i] != J[i];
            }
        }
        CHECK(bad == 0, "%s: %s: %d integer dot products differ from scalar", k->name, what, bad);
        for (size_t i = 0; i < (size_t)NTOK * rows; i++) yv[i] = NAN; /* every output must be written */
        k->gemm(&p, 0, rows, a, yv, rows);
        CHECK_CLOSE(what, yv, ys, (size_t)NTOK * rows, tol, 0);
        float *y1 = mq_malloc((size_t)rows * sizeof(float));
        for (int tr = 2; tr <= 4; tr += 2) { /* both decode tilings of kern_avx512.c (others ignore it) */
            mq_kern_set_gemv_rows(tr);
            for (int i = 0; i < rows; i++) y1[i] = NAN;
            k->gemv(&p, 0, rows, a, y1);
            CHECK_CLOSE(what, y1, ys, (size_t)rows, tol, 0);
        }
        mq_kern_set_gemv_rows(0);
        /* the threaded product with the active variant, B = 3 (a ragged tile) */
        mq_kern_matmul(&p, x, 3, yv, a);
        mq_kact_quantize(a, x, NTOK, cols);
        mq_kact_group_sums(a, &p);
        CHECK_CLOSE("mq_kern_matmul", yv, ys, (size_t)3 * rows, tol, 0);
        free(y1);
    }
    free(ys); free(yv); free(I); free(J); free(x); free(codes); free(q); free(zero); free(alpha);
    mq_kact_free(a);
    mq_pack_free(&p);
}

/* mq_kern_matmul_shared gives exactly what one mq_kern_matmul per matrix
 * gives (q/k/v-like shapes of one input, mixed widths, one with an overflow
 * list), for decode (B = 1) and a prompt batch; mismatched inputs are
 * refused by mq_kern_can_share. */
static void shared_case(int B, int group, bool tall) {
    /* tall: rows enough for the dynamic tail of dispatch.c (>= 256; decode and prompt) */
    const int cols = 1088, bits[3] = {4, 2, 8};
    const int rows[3] = {tall ? 600 : 64, tall ? 264 : 16, tall ? 333 : 48};
    const bool extra[3] = {false, true, false};
    mq_packed P[3];
    for (int i = 0; i < 3; i++) {
        uint8_t *q, *zero;
        float *alpha;
        random_codes(rows[i], cols, group, &q, &alpha, &zero);
        CHECK(mq_pack_build(q, alpha, zero, rows[i], cols, group, bits[i], extra[i], &P[i]) == MQ_OK, "shared: %s",
              mq_last_error());
        free(q); free(zero); free(alpha);
    }
    float *x = mq_malloc((size_t)B * cols * sizeof(float));
    for (size_t j = 0; j < (size_t)B * cols; j++) x[j] = frand();
    float *want[3], *got[3];
    for (int i = 0; i < 3; i++) {
        want[i] = mq_malloc((size_t)B * rows[i] * sizeof(float));
        got[i] = mq_malloc((size_t)B * rows[i] * sizeof(float));
    }
    mq_kact *a = mq_kact_new(B, cols);
    for (int i = 0; i < 3; i++) mq_kern_matmul(&P[i], x, B, want[i], a);
    const mq_packed *pp[3] = {&P[0], &P[1], &P[2]};
    CHECK(mq_kern_can_share(3, pp), "three matrices of one input and group cannot share");
    /* on 1, 2, 4 and 6 threads (more than this machine's cores: threads that
     * are descheduled leave their regions to be stolen): every row is
     * written, and bit for bit as by the separate products */
    int saved = omp_get_max_threads();
    const int teams[] = {1, 2, 4, 6};
    for (int ti = 0; ti < 4; ti++) {
        int nt = teams[ti];
        omp_set_num_threads(nt);
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < B * rows[i]; j++) got[i][j] = NAN;
        mq_kern_matmul_shared(3, pp, x, B, got, a);
        int bad = 0;
        for (int i = 0; i < 3; i++) bad += memcmp(want[i], got[i], (size_t)B * rows[i] * sizeof(float)) != 0;
        CHECK(bad == 0, "shared product (B=%d, group %d, %d threads): %d of 3 outputs differ from separate products",
              B, group, nt, bad);
    }
    omp_set_num_threads(saved);
    /* and every row is computed: against the single-threaded scalar kernel */
    for (int i = 0; i < 3; i++) {
        mq_kact_quantize(a, x, B, cols);
        mq_kact_group_sums(a, &P[i]);
        double mag = 0;
        for (int j = 0; j < B * a->kp; j++) mag += fabs((double)a->d[j / 32] * a->q[j]);
        mag = mag / B * 0.011 * 512;
        float *ref = mq_malloc((size_t)B * rows[i] * sizeof(float));
        mq_kern_scalar_ops.gemm(&P[i], 0, rows[i], a, ref, rows[i]);
        char what[96];
        snprintf(what, sizeof what, "shared product %d of 3 (B=%d, group %d) vs scalar", i, B, group);
        CHECK_CLOSE(what, got[i], ref, (size_t)B * rows[i], 1e-5 * mag, 0);
        free(ref);
    }
    mq_packed other = P[1];
    other.cols = 1024;
    const mq_packed *mix[2] = {&P[0], &other};
    CHECK(!mq_kern_can_share(2, mix), "matrices of different input sizes accepted for one shared input");
    mq_kact_free(a);
    free(x);
    for (int i = 0; i < 3; i++) {
        free(want[i]); free(got[i]);
        mq_pack_free(&P[i]);
    }
}

/* Prompt products with more tokens than one pass of the AVX-512 gemm over
 * an unpacked slice (129 tokens, with the overflow terms precomputed per
 * pass) and a ragged last pass, and with more
 * superblocks than one K-slice (4): every variant's gemm against the
 * scalar one. */
static void long_batch_case(int cols, int group, int bits, bool extra, int B) {
    const int rows = 9;
    uint8_t *q, *zero;
    float *alpha;
    random_codes(rows, cols, group, &q, &alpha, &zero);
    mq_packed p;
    CHECK(mq_pack_build(q, alpha, zero, rows, cols, group, bits, extra, &p) == MQ_OK, "long batch: %s", mq_last_error());
    float *x = mq_malloc((size_t)B * cols * sizeof(float));
    for (size_t j = 0; j < (size_t)B * cols; j++) x[j] = frand();
    mq_kact *a = mq_kact_new(B, cols);
    mq_kact_quantize(a, x, B, cols);
    mq_kact_group_sums(a, &p);
    float *ys = mq_malloc((size_t)B * rows * sizeof(float)), *yv = mq_malloc((size_t)B * rows * sizeof(float));
    mq_kern_scalar_ops.gemm(&p, 0, rows, a, ys, rows);
    /* bound on the fp32 rounding: 1e-5 of sum |w| |xhat| with |w| <= 256 alpha + |bias| */
    double mag = 0;
    for (int t = 0; t < B; t++)
        for (int j = 0; j < cols; j++) mag += fabs((double)a->d[(size_t)t * (a->kp / 32) + j / 32] * a->q[(size_t)t * a->kp + j]);
    mag = mag / B * 0.011 * 512;
    for (int v = 0; v < n_variants; v++) {
        for (size_t i = 0; i < (size_t)B * rows; i++) yv[i] = NAN; /* every output must be written */
        variants[v]->gemm(&p, 0, rows, a, yv, rows);
        char what[96];
        snprintf(what, sizeof what, "%s gemm %d%s cols %d B=%d group %d", variants[v]->name, bits, extra ? "x" : "", cols,
                 B, group);
        CHECK_CLOSE(what, yv, ys, (size_t)B * rows, 1e-5 * mag, 0);
    }
    mq_kact_free(a);
    free(x); free(ys); free(yv); free(q); free(zero); free(alpha);
    mq_pack_free(&p);
}

/* mq_pack_build_at: matrices packed one after another into one caller-owned
 * buffer (as qmodel.c serves a model) hold the same bytes as those packed
 * alone, and mq_pack_free leaves the buffer to its owner (ASan checks the
 * frees); mq_stream_alloc's large buffers are 2 MiB aligned. */
static void arena_case(void) {
    const int rows[3] = {7, 33, 5}, cols[3] = {1088, 200, 64}, bits[3] = {3, 2, 8};
    size_t total = 0;
    for (int i = 0; i < 3; i++) {
        total += mq_pack_data_bytes(rows[i], cols[i], bits[i]);
        CHECK(mq_pack_data_bytes(rows[i], cols[i], bits[i]) % 64 == 0, "arena: matrix %d not a multiple of 64 bytes", i);
    }
    uint8_t *arena = mq_stream_alloc(total);
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        size_t n = (size_t)rows[i] * cols[i];
        uint8_t *q = mq_malloc(n), *zero = mq_malloc((size_t)rows[i]);
        float *alpha = mq_malloc((size_t)rows[i] * sizeof(float));
        for (size_t j = 0; j < n; j++) q[j] = (uint8_t)rnd();
        for (int o = 0; o < rows[i]; o++) alpha[o] = 0.01f, zero[o] = 128;
        mq_packed own, at;
        CHECK(mq_pack_build(q, alpha, zero, rows[i], cols[i], cols[i], bits[i], true, &own) == MQ_OK, "arena: own %d", i);
        CHECK(mq_pack_build_at(q, alpha, zero, rows[i], cols[i], cols[i], bits[i], true, arena + off, &at) == MQ_OK &&
                  at.data == arena + off && !at.owns_data && own.owns_data,
              "arena: matrix %d at offset %zu", i, off);
        CHECK(memcmp(own.data, at.data, (size_t)rows[i] * own.row_bytes) == 0 && own.n_over == at.n_over,
              "arena: matrix %d differs from its own build", i);
        off += mq_pack_data_bytes(rows[i], cols[i], bits[i]);
        mq_pack_free(&own);
        mq_pack_free(&at);
        free(q); free(zero); free(alpha);
    }
    free(arena);
    void *big = mq_stream_alloc((size_t)5 << 20);
    CHECK(((uintptr_t)big & (((uintptr_t)2 << 20) - 1)) == 0, "mq_stream_alloc: 5 MiB not 2 MiB aligned");
    free(big);
}

int main(void) {
    const char *names[] = {"avx2", "avx512", "amx"};
    for (int i = 0; i < 3; i++) {
        const mq_kern_ops *k = mq_kern_find(names[i]);
        if (k) variants[n_variants++] = k;
        else SKIP("this CPU lacks %s: that variant is not tested", names[i]);
    }
    const int widths[] = {8, 6, 4, 3, 2};
    /* rows: 1, 7 and 13 are not multiples of any variant's row tile (8, 4, 2) */
    const int rows_list[] = {1, 7, 13, 33};
    for (int wi = 0; wi < 5; wi++)
        for (int x = 0; x < (widths[wi] < 8 ? 2 : 1); x++) {
            int r = widths[wi];
            for (int ri = 0; ri < 4; ri++) {
                int rows = rows_list[ri];
                /* per channel: a multiple of 64, of 32 only, and of neither */
                one_case(rows, 192, 192, r, x);
                one_case(rows, 96, 96, r, x);
                one_case(rows, 172, 172, r, x);
                /* groups */
                one_case(rows, 160, 32, r, x);
                one_case(rows, 192, 64, r, x);
                one_case(rows, 384, 128, r, x);
                one_case(rows, 256, 256, r, x);
                if (ri == 0 || ri == 2) { /* interleaved superblocks of 512 (pack.h) and tails after them */
                    one_case(rows, 1088, 1088, r, x); /* 2 superblocks + 1 chunk */
                    one_case(rows, 600, 600, r, x);   /* 1 superblock + a padded chunk */
                    one_case(rows, 1024, 32, r, x);
                    one_case(rows, 1536, 64, r, x);
                    one_case(rows, 1152, 128, r, x);  /* 2 superblocks + 2 chunks */
                    one_case(rows, 2048, 512, r, x);
                    one_case(rows, 1152, 96, r, x);   /* a group that is not a power of two */
                }
            }
        }
    long_batch_case(1088, 1088, 2, true, 70);
    long_batch_case(1088, 64, 2, true, 70);
    long_batch_case(2624, 2624, 4, false, 140); /* 5 superblocks + 1 chunk: two K-slices */
    long_batch_case(2624, 64, 8, false, 140);
    long_batch_case(4672, 64, 3, true, 131);    /* 9 superblocks + 1 chunk: three K-slices */
    shared_case(1, 1088, false);
    shared_case(1, 64, false);
    shared_case(5, 1088, false);
    shared_case(1, 1088, true);
    shared_case(3, 64, true);
    /* the widest rows extra precision takes: 16-bit overflow columns up to 65535 */
    one_case(2, MQ_PACK_MAX_OVER_COLS, MQ_PACK_MAX_OVER_COLS, 2, true);
    one_case(1, MQ_PACK_MAX_OVER_COLS, 256, 3, true);
    arena_case();
    /* unsupported widths and bad shapes */
    uint8_t q[64] = {0}, z[2] = {0};
    float al[2] = {1, 1};
    mq_packed p;
    CHECK(mq_pack_build(q, al, z, 1, 64, 64, 5, false, &p) == MQ_ERR_ARG, "width 5 accepted");
    CHECK(strstr(mq_last_error(), "width 5") != NULL, "message: %s", mq_last_error());
    CHECK(mq_pack_build(q, al, z, 1, 64, 48, 4, false, &p) == MQ_ERR_ARG, "group 48 of 64 accepted");
    CHECK(mq_pack_build(q, al, z, 1, 64, 16, 4, false, &p) == MQ_ERR_ARG, "group 16 accepted (blocks of 32 would straddle groups)");
    {
        int wide = MQ_PACK_MAX_OVER_COLS + 64;
        uint8_t *qw = mq_calloc((size_t)wide, 1);
        float alw[1] = {1};
        CHECK(mq_pack_build(qw, alw, z, 1, wide, wide, 2, true, &p) == MQ_ERR_ARG &&
                  strstr(mq_last_error(), "65536 columns") != NULL,
              "extra precision over 65536 columns: %s", mq_last_error());
        CHECK(mq_pack_build(qw, alw, z, 1, wide, wide, 2, false, &p) == MQ_OK, "65600 columns without extra: %s",
              mq_last_error());
        mq_pack_free(&p);
        CHECK(!mq_pack_layout_ok(4, wide, wide, 2, true) && mq_pack_layout_ok(4, wide, wide, 2, false) &&
                  mq_pack_layout_ok(4, wide, wide, 8, true) && mq_pack_layout_ok(4, MQ_PACK_MAX_OVER_COLS, 64, 2, true),
              "mq_pack_layout_ok: extra precision up to 65536 columns");
        free(qw);
    }
    /* the superblock order is a permutation and pos_of inverts col_at */
    int perm_bad = 0;
    for (int pos = 0; pos < 1600; pos++) perm_bad += mq_pack_pos_of(1600, mq_pack_col_at(1600, pos)) != pos;
    CHECK(perm_bad == 0 && mq_pack_col_at(1600, 4) == 32 && mq_pack_col_at(1600, 64) == 4 && mq_pack_col_at(1600, 1540) == 1540,
          "superblock permutation: %d positions do not round-trip", perm_bad);
    CHECK(!mq_pack_supported(1, false) && !mq_pack_supported(7, true) && mq_pack_supported(2, true), "supported widths");
    /* what the plan packs; anything else is served dequantized (quant/qmodel.c) */
    CHECK(mq_pack_layout_ok(8, 172, 172, 4, false) && mq_pack_layout_ok(8, 192, 64, 2, true) &&
          !mq_pack_layout_ok(8, 64, 16, 4, false) && !mq_pack_layout_ok(8, 100, 32, 4, false) &&
          !mq_pack_layout_ok(8, 64, 64, 5, false) && !mq_pack_layout_ok(0, 64, 64, 4, false),
          "mq_pack_layout_ok: widths, groups and shapes");
    /* the active variant honours MQ_KERNELS (set by the caller of this test, else the best) */
    const mq_kern_ops *act = mq_kern_active();
    CHECK(act != NULL && (n_variants == 0 || act == variants[n_variants - 1] || getenv("MQ_KERNELS")),
          "active variant %s", act ? act->name : "none");
    return check_done("test_kern");
}

/*
 * test_ops.c — train/ops: every _bwd against central finite differences of
 * a double-precision re-implementation of its forward (written here from
 * the formulas, naively), on small random shapes with odd sizes; every _fwd
 * against the same double forward; the fake quantizer's forward bit-exact
 * against quant/ref.c (mq_ref_quantize_clip / mq_ref_grid_bits +
 * mq_ref_dequant), and its straight-through backward against finite
 * differences of the surrogate whose exact derivative the STE is (each round
 * replaced by x + (round(x0) - x0) and each clamp frozen in its state at the
 * base point x0).
 *
 * Loss for every check: L = sum(out * R), R random, so dout = R.
 * Covers: src/train/ops.c.
 */
#include "check.h"
#include "quant/ref.h"
#include "train/ops.h"

#include <omp.h>

/* ------------------------------------------------------------- helpers */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) { /* [0, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double nrand(void) { return (urand() + urand() + urand() + urand() - 2.0) * 1.7320508; }

static void fill(double *d, float *f, size_t n, double sc) {
    for (size_t i = 0; i < n; i++) {
        d[i] = (double)(float)(nrand() * sc);
        if (f) f[i] = (float)d[i];
    }
}

/* A forward in double: loss = sum(out * R) for the current inputs. */
typedef double (*loss_fn)(void *ctx);

/* Central differences of loss w.r.t. x[i] for every i (or every stride-th)
 * compared with the analytic gradient g. */
static void fd_check(const char *what, loss_fn f, void *ctx, double *x, size_t n, const float *g, double eps,
                     double atol, double rtol) {
    float *num = malloc(n * sizeof(float)), *ana = malloc(n * sizeof(float));
    size_t m = 0, stride = n > 400 ? n / 200 : 1;
    for (size_t i = 0; i < n; i += stride) {
        double keep = x[i];
        x[i] = keep + eps;
        double lp = f(ctx);
        x[i] = keep - eps;
        double lm = f(ctx);
        x[i] = keep;
        num[m] = (float)((lp - lm) / (2 * eps));
        ana[m] = g[i];
        m++;
    }
    CHECK_CLOSE(what, ana, num, m, atol, rtol);
    free(num);
    free(ana);
}

static double dot_r(const double *out, const double *R, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += out[i] * R[i];
    return s;
}

/* ---------------------------------------------------------------- matmul */

typedef struct {
    int N, K, O;
    double *x, *w, *b, *R, *out;
} mm_ctx;

static void mm_ref(mm_ctx *c) {
    for (int n = 0; n < c->N; n++)
        for (int o = 0; o < c->O; o++) {
            double s = c->b ? c->b[o] : 0;
            for (int k = 0; k < c->K; k++) s += c->x[(size_t)n * c->K + k] * c->w[(size_t)o * c->K + k];
            c->out[(size_t)n * c->O + o] = s;
        }
}
static double mm_loss(void *p) {
    mm_ctx *c = p;
    mm_ref(c);
    return dot_r(c->out, c->R, (size_t)c->N * c->O);
}

static void test_matmul(int N, int K, int O, bool bias) {
    size_t nx = (size_t)N * K, nw = (size_t)O * K, no = (size_t)N * O;
    mm_ctx c = {N, K, O, malloc(nx * 8), malloc(nw * 8), bias ? malloc(O * 8) : NULL, malloc(no * 8), malloc(no * 8)};
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc(O * 4), *R = malloc(no * 4), *out = malloc(no * 4);
    fill(c.x, x, nx, 1);
    fill(c.w, w, nw, 0.5);
    if (bias) fill(c.b, b, O, 1);
    fill(c.R, R, no, 1);
    matmul_fwd(out, x, w, bias ? b : NULL, N, K, O);
    mm_ref(&c);
    float *want = calloc(no, 4);
    for (size_t i = 0; i < no; i++) want[i] = (float)c.out[i];
    char nm[96];
    snprintf(nm, sizeof nm, "matmul_fwd %dx%dx%d", N, K, O);
    CHECK_CLOSE(nm, out, want, no, 1e-5, 1e-5);
    float *dx = calloc(nx, 4), *dw = calloc(nw, 4), *db = calloc(O, 4);
    matmul_bwd(dx, dw, bias ? db : NULL, R, x, w, N, K, O);
    snprintf(nm, sizeof nm, "matmul_bwd dinp %dx%dx%d", N, K, O);
    fd_check(nm, mm_loss, &c, c.x, nx, dx, 1e-4, 1e-5, 1e-4);
    snprintf(nm, sizeof nm, "matmul_bwd dw %dx%dx%d", N, K, O);
    fd_check(nm, mm_loss, &c, c.w, nw, dw, 1e-4, 1e-5, 1e-4);
    if (bias) {
        snprintf(nm, sizeof nm, "matmul_bwd dbias %dx%dx%d", N, K, O);
        fd_check(nm, mm_loss, &c, c.b, O, db, 1e-4, 1e-5, 1e-4);
    }
    /* accumulation: a second call adds the same again */
    float *dx2 = malloc(nx * 4);
    memcpy(dx2, dx, nx * 4);
    matmul_bwd(dx2, NULL, NULL, R, x, w, N, K, O);
    for (size_t i = 0; i < nx; i++) dx[i] *= 2;
    CHECK_CLOSE("matmul_bwd accumulates", dx2, dx, nx, 1e-5, 1e-5);
    free(dx2);
    free(c.x); free(c.w); free(c.b); free(c.R); free(c.out);
    free(x); free(w); free(b); free(R); free(out); free(want); free(dx); free(dw); free(db);
}

/* --------------------------------------------------------------- rmsnorm */

typedef struct {
    int N, C;
    bool plus_one;
    double *x, *w, *R, *out;
} rn_ctx;

static double rn_loss(void *p) {
    rn_ctx *c = p;
    for (int n = 0; n < c->N; n++) {
        double ss = 0;
        for (int i = 0; i < c->C; i++) ss += c->x[(size_t)n * c->C + i] * c->x[(size_t)n * c->C + i];
        double r = 1 / sqrt(ss / c->C + 1e-5);
        for (int i = 0; i < c->C; i++)
            c->out[(size_t)n * c->C + i] = c->x[(size_t)n * c->C + i] * r * (c->plus_one ? 1 + c->w[i] : c->w[i]);
    }
    return dot_r(c->out, c->R, (size_t)c->N * c->C);
}

static void test_rmsnorm(int N, int C, bool plus_one) {
    size_t n = (size_t)N * C;
    rn_ctx c = {N, C, plus_one, malloc(n * 8), malloc(C * 8), malloc(n * 8), malloc(n * 8)};
    float *x = malloc(n * 4), *w = malloc(C * 4), *R = malloc(n * 4), *out = malloc(n * 4), *rstd = malloc(N * 4);
    fill(c.x, x, n, 1);
    fill(c.w, w, C, 1);
    fill(c.R, R, n, 1);
    rmsnorm_fwd(out, rstd, x, w, N, C, 1e-5f, plus_one);
    rn_loss(&c);
    float *want = calloc(n, 4);
    for (size_t i = 0; i < n; i++) want[i] = (float)c.out[i];
    char nm[96];
    snprintf(nm, sizeof nm, "rmsnorm_fwd %dx%d%s", N, C, plus_one ? " (1+w)" : "");
    CHECK_CLOSE(nm, out, want, n, 1e-5, 1e-5);
    float *dx = calloc(n, 4), *dw = calloc(C, 4);
    rmsnorm_bwd(dx, dw, R, x, w, rstd, N, C, plus_one);
    snprintf(nm, sizeof nm, "rmsnorm_bwd dinp %dx%d%s", N, C, plus_one ? " (1+w)" : "");
    fd_check(nm, rn_loss, &c, c.x, n, dx, 1e-5, 1e-4, 1e-4);
    snprintf(nm, sizeof nm, "rmsnorm_bwd dw %dx%d%s", N, C, plus_one ? " (1+w)" : "");
    fd_check(nm, rn_loss, &c, c.w, C, dw, 1e-5, 1e-4, 1e-4);
    free(c.x); free(c.w); free(c.R); free(c.out);
    free(x); free(w); free(R); free(out); free(rstd); free(want); free(dx); free(dw);
}

/* ------------------------------------------------------------------ rope */

typedef struct {
    int B, T, H, D;
    const float *inv_freq;
    double *x, *R, *out;
} rp_ctx;

static double rp_loss(void *p) {
    rp_ctx *c = p;
    int half = c->D / 2;
    for (int b = 0; b < c->B; b++)
        for (int t = 0; t < c->T; t++)
            for (int h = 0; h < c->H; h++) {
                size_t o = (((size_t)b * c->T + t) * c->H + h) * c->D;
                for (int i = 0; i < half; i++) {
                    double ang = (double)((float)t * c->inv_freq[i]);
                    double a = c->x[o + i], e = c->x[o + i + half];
                    c->out[o + i] = a * cos(ang) - e * sin(ang);
                    c->out[o + i + half] = e * cos(ang) + a * sin(ang);
                }
            }
    return dot_r(c->out, c->R, (size_t)c->B * c->T * c->H * c->D);
}

static void test_rope(int B, int T, int H, int D) {
    size_t n = (size_t)B * T * H * D;
    float inv_freq[64];
    for (int i = 0; i < D / 2; i++) inv_freq[i] = powf(10000.0f, -2.0f * i / D);
    rp_ctx c = {B, T, H, D, inv_freq, malloc(n * 8), malloc(n * 8), malloc(n * 8)};
    float *x = malloc(n * 4), *R = malloc(n * 4), *out = malloc(n * 4);
    fill(c.x, x, n, 1);
    fill(c.R, R, n, 1);
    rope_fwd(out, x, inv_freq, B, T, H, D);
    rp_loss(&c);
    float *want = calloc(n, 4);
    for (size_t i = 0; i < n; i++) want[i] = (float)c.out[i];
    CHECK_CLOSE("rope_fwd", out, want, n, 1e-5, 1e-5);
    rope_fwd(x, x, inv_freq, B, T, H, D); /* in place */
    CHECK_CLOSE("rope_fwd in place", x, out, n, 0, 0);
    float *dx = calloc(n, 4);
    rope_bwd(dx, R, inv_freq, B, T, H, D);
    fd_check("rope_bwd", rp_loss, &c, c.x, n, dx, 1e-5, 1e-5, 1e-4);
    free(c.x); free(c.R); free(c.out); free(x); free(R); free(out); free(want); free(dx);
}

/* ------------------------------------------------------------- attention */

typedef struct {
    int B, T;
    mq_attn_cfg a;
    double *q, *k, *v, *R, *out;
} at_ctx;

static double at_loss(void *p) {
    at_ctx *c = p;
    int H = c->a.n_heads, KV = c->a.n_kv_heads, D = c->a.head_dim, T = c->T;
    size_t QD = (size_t)H * D, KD = (size_t)KV * D;
    double s[64];
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                const double *qi = c->q + ((size_t)b * T + i) * QD + (size_t)h * D;
                double mx = -1e300;
                for (int j = 0; j < T; j++) {
                    bool vis = j <= i && (c->a.window <= 0 || j > i - c->a.window);
                    if (!vis) { s[j] = -1e300; continue; }
                    const double *kj = c->k + ((size_t)b * T + j) * KD + (size_t)(h / (H / KV)) * D;
                    double d = 0;
                    for (int e = 0; e < D; e++) d += qi[e] * kj[e];
                    d *= c->a.scale;
                    if (c->a.softcap > 0) d = tanh(d / c->a.softcap) * c->a.softcap;
                    s[j] = d;
                    if (d > mx) mx = d;
                }
                double sum = 0;
                for (int j = 0; j < T; j++) {
                    s[j] = s[j] == -1e300 ? 0 : exp(s[j] - mx);
                    sum += s[j];
                }
                double *o = c->out + ((size_t)b * T + i) * QD + (size_t)h * D;
                for (int e = 0; e < D; e++) {
                    double acc = 0;
                    for (int j = 0; j < T; j++)
                        acc += s[j] / sum * c->v[((size_t)b * T + j) * KD + (size_t)(h / (H / KV)) * D + e];
                    o[e] = acc;
                }
            }
    return dot_r(c->out, c->R, (size_t)c->B * T * QD);
}

static void test_attention(int B, int T, int H, int KV, int D, int window, float softcap, float scale) {
    mq_attn_cfg a = {H, KV, D, scale, softcap, window};
    size_t nq = (size_t)B * T * H * D, nk = (size_t)B * T * KV * D;
    at_ctx c = {B, T, a, malloc(nq * 8), malloc(nk * 8), malloc(nk * 8), malloc(nq * 8), malloc(nq * 8)};
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *R = malloc(nq * 4), *out = malloc(nq * 4);
    float *att = malloc((size_t)B * H * T * T * 4);
    fill(c.q, q, nq, 1);
    fill(c.k, k, nk, 1);
    fill(c.v, v, nk, 1);
    fill(c.R, R, nq, 1);
    attention_fwd(out, att, q, k, v, B, T, &a);
    at_loss(&c);
    float *want = calloc(nq, 4);
    for (size_t i = 0; i < nq; i++) want[i] = (float)c.out[i];
    char nm[128];
    snprintf(nm, sizeof nm, "attention_fwd B%d T%d H%d KV%d D%d W%d cap%g", B, T, H, KV, D, window, softcap);
    CHECK_CLOSE(nm, out, want, nq, 1e-5, 1e-4);
    float *dq = calloc(nq, 4), *dk = calloc(nk, 4), *dv = calloc(nk, 4);
    float *scr = malloc(attention_bwd_scratch(T) * 4);
    attention_bwd(dq, dk, dv, scr, R, q, k, v, att, B, T, &a);
    snprintf(nm, sizeof nm, "attention_bwd dq B%d T%d H%d KV%d W%d cap%g", B, T, H, KV, window, softcap);
    fd_check(nm, at_loss, &c, c.q, nq, dq, 1e-5, 1e-4, 1e-3);
    snprintf(nm, sizeof nm, "attention_bwd dk B%d T%d H%d KV%d W%d cap%g", B, T, H, KV, window, softcap);
    fd_check(nm, at_loss, &c, c.k, nk, dk, 1e-5, 1e-4, 1e-3);
    snprintf(nm, sizeof nm, "attention_bwd dv B%d T%d H%d KV%d W%d cap%g", B, T, H, KV, window, softcap);
    fd_check(nm, at_loss, &c, c.v, nk, dv, 1e-5, 1e-4, 1e-3);
    free(c.q); free(c.k); free(c.v); free(c.R); free(c.out);
    free(q); free(k); free(v); free(R); free(out); free(att); free(want); free(dq); free(dk); free(dv); free(scr);
}

/* ------------------------------------------------------------- gated FFN */

typedef struct {
    size_t n;
    bool gelu;
    double *g, *u, *R, *out;
} gl_ctx;

static double gl_loss(void *p) {
    gl_ctx *c = p;
    for (size_t i = 0; i < c->n; i++) {
        double x = c->g[i], a;
        if (c->gelu) a = 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
        else a = x / (1 + exp(-x));
        c->out[i] = a * c->u[i];
    }
    return dot_r(c->out, c->R, c->n);
}

static void test_glu(size_t n, bool gelu) {
    gl_ctx c = {n, gelu, malloc(n * 8), malloc(n * 8), malloc(n * 8), malloc(n * 8)};
    float *g = malloc(n * 4), *u = malloc(n * 4), *R = malloc(n * 4), *out = malloc(n * 4);
    fill(c.g, g, n, 2);
    fill(c.u, u, n, 1);
    fill(c.R, R, n, 1);
    (gelu ? geglu_fwd : swiglu_fwd)(out, g, u, n);
    gl_loss(&c);
    float *want = calloc(n, 4);
    for (size_t i = 0; i < n; i++) want[i] = (float)c.out[i];
    CHECK_CLOSE(gelu ? "geglu_fwd" : "swiglu_fwd", out, want, n, 1e-6, 1e-5);
    float *dg = calloc(n, 4), *du = calloc(n, 4);
    (gelu ? geglu_bwd : swiglu_bwd)(dg, du, R, g, u, n);
    fd_check(gelu ? "geglu_bwd dgate" : "swiglu_bwd dgate", gl_loss, &c, c.g, n, dg, 1e-5, 1e-5, 1e-4);
    fd_check(gelu ? "geglu_bwd dup" : "swiglu_bwd dup", gl_loss, &c, c.u, n, du, 1e-5, 1e-5, 1e-4);
    free(c.g); free(c.u); free(c.R); free(c.out); free(g); free(u); free(R); free(out); free(want); free(dg); free(du);
}

/* -------------------------------------------------------- fake quantizer */

/* The STE surrogate in double with rounds and clamps frozen at the base point. */
typedef struct {
    mq_fq_shape s;
    double *w, *u, *l, *R, *out;
    /* frozen per element: round offset of w/a, clamp state of q (0 pass, 1 low, 2 high),
     * slice floor offset and slice clamp state; per group: z's round offset and clamp state */
    double *offq, *offs, *offz;
    int *stq, *sts, *stz;
} fq_ctx;

static double sig(double x) { return 1 / (1 + exp(-x)); }

static double fq_eval(fq_ctx *c, bool freeze) {
    const mq_fq_shape *s = &c->s;
    int G = s->group > 0 ? s->group : s->cols, ng = s->cols / G, top = (1 << s->grid_bits) - 1;
    int d = s->grid_bits - s->bits, rtop = (1 << s->bits) - 1;
    double p2 = (double)(1 << d), half = d > 0 ? p2 / 2 : 0;
    for (int r = 0; r < s->rows; r++)
        for (int k = 0; k < ng; k++) {
            size_t ki = (size_t)r * ng + k, off = (size_t)r * s->cols + (size_t)k * G;
            double mx = c->w[off], mn = c->w[off];
            for (int j = 1; j < G; j++) {
                mx = c->w[off + j] > mx ? c->w[off + j] : mx;
                mn = c->w[off + j] < mn ? c->w[off + j] : mn;
            }
            double hi = sig(c->u[ki]) * mx, lo = sig(c->l[ki]) * mn;
            hi = hi > 0 ? hi : 0;
            lo = lo < 0 ? lo : 0;
            double a = (hi - lo) / top, zc = -lo / a;
            if (freeze) {
                c->offz[ki] = nearbyint(zc) - zc;
                double zr = nearbyint(zc);
                c->stz[ki] = zr <= 0 ? 1 : zr >= top ? 2 : 0; /* bounds count as clamped */
            }
            double z = c->stz[ki] == 0 ? zc + c->offz[ki] : c->stz[ki] == 1 ? 0 : top;
            for (int j = 0; j < G; j++) {
                size_t e = off + j;
                double x = c->w[e] / a;
                if (freeze) {
                    c->offq[e] = nearbyint(x) - x;
                    double zi = c->stz[ki] == 0 ? nearbyint(zc) : c->stz[ki] == 1 ? 0 : top;
                    double qr = nearbyint(x) + zi;
                    c->stq[e] = qr <= 0 ? 1 : qr >= top ? 2 : 0;
                }
                double q = c->stq[e] == 0 ? x + c->offq[e] + z : c->stq[e] == 1 ? 0 : top;
                double y = (q + half) / p2;
                if (freeze) {
                    c->offs[e] = floor(y) - y;
                    c->sts[e] = floor(y) >= rtop ? 2 : 0;
                }
                double qs = c->sts[e] == 0 ? (y + c->offs[e]) * p2 : rtop * p2;
                if (d == 0) qs = q;
                c->out[e] = a * (qs - z);
            }
        }
    return dot_r(c->out, c->R, (size_t)s->rows * s->cols);
}
static double fq_loss(void *p) { return fq_eval(p, false); }

static void test_fakequant_grad(int rows, int cols, int group, int N, int bits) {
    mq_fq_shape s = {rows, cols, group, N, bits};
    int G = group > 0 ? group : cols, ng = cols / G;
    size_t n = (size_t)rows * cols, nk = (size_t)rows * ng;
    fq_ctx c = {s, malloc(n * 8), malloc(nk * 8), malloc(nk * 8), malloc(n * 8), malloc(n * 8),
                malloc(n * 8), malloc(n * 8), malloc(nk * 8), malloc(n * sizeof(int)), malloc(n * sizeof(int)),
                malloc(nk * sizeof(int))};
    float *w = malloc(n * 4), *u = malloc(nk * 4), *l = malloc(nk * 4), *R = malloc(n * 4), *wq = malloc(n * 4);
    fill(c.w, w, n, 0.1);
    for (int i = 0; i < cols && rows > 1; i++) { /* row 1 all positive: no gradient to its l */
        c.w[cols + i] = fabs(c.w[cols + i]) + 1e-3;
        w[cols + i] = (float)c.w[cols + i];
    }
    for (size_t i = 0; i < nk; i++) {
        c.u[i] = (double)(float)(1.0 + 3 * urand());
        c.l[i] = (double)(float)(1.0 + 3 * urand());
        u[i] = (float)c.u[i];
        l[i] = (float)c.l[i];
    }
    fill(c.R, R, n, 1);
    double L0 = fq_eval(&c, true);
    fakequant_fwd(wq, w, u, l, &s);
    float *want = calloc(n, 4);
    for (size_t i = 0; i < n; i++) want[i] = (float)c.out[i];
    char nm[128];
    snprintf(nm, sizeof nm, "fakequant_fwd = surrogate at x0 (%dx%d g%d N%d r%d)", rows, cols, group, N, bits);
    CHECK_CLOSE(nm, wq, want, n, 1e-6, 1e-5);
    (void)L0;
    float *dw = calloc(n, 4), *du = calloc(nk, 4), *dl = calloc(nk, 4);
    fakequant_bwd(dw, du, dl, R, w, u, l, &s);
    snprintf(nm, sizeof nm, "fakequant_bwd dw (%dx%d g%d N%d r%d)", rows, cols, group, N, bits);
    fd_check(nm, fq_loss, &c, c.w, n, dw, 1e-7, 1e-3, 1e-3);
    snprintf(nm, sizeof nm, "fakequant_bwd du (%dx%d g%d N%d r%d)", rows, cols, group, N, bits);
    fd_check(nm, fq_loss, &c, c.u, nk, du, 1e-6, 1e-4, 1e-3);
    snprintf(nm, sizeof nm, "fakequant_bwd dl (%dx%d g%d N%d r%d)", rows, cols, group, N, bits);
    fd_check(nm, fq_loss, &c, c.l, nk, dl, 1e-6, 1e-4, 1e-3);
    if (rows > 1) {
        double s1 = 0;
        for (int k = 0; k < ng; k++) s1 += fabs(dl[ng + k]);
        CHECK(s1 == 0, "all-positive row: dl = %g, want 0", s1);
    }
    double su = 0;
    for (size_t i = 0; i < nk; i++) su += fabs(du[i]);
    CHECK(su > 0, "some gradient reaches the clipping logits");
    /* the codes-once path (fakequant_codes + _slice_fwd/_bwd): forward
     * bit-identical, backward equal up to fp32 summation order */
    {
        uint8_t *q = malloc(n);
        mq_fq_group *g = malloc(nk * sizeof *g);
        float *wq2 = malloc(n * 4), *dw2 = calloc(n, 4), *du2 = calloc(nk, 4), *dl2 = calloc(nk, 4);
        fakequant_codes(q, g, w, u, l, &s);
        fakequant_slice_fwd(wq2, q, g, &s);
        CHECK(memcmp(wq2, wq, n * 4) == 0, "fakequant_slice_fwd bit-identical to fakequant_fwd (%dx%d g%d N%d r%d)",
              rows, cols, group, N, bits);
        fakequant_slice_bwd(dw2, du2, dl2, R, w, q, g, &s);
        snprintf(nm, sizeof nm, "fakequant_slice_bwd dw = fakequant_bwd (%dx%d g%d N%d r%d)", rows, cols, group, N, bits);
        CHECK_CLOSE(nm, dw2, dw, n, 1e-5, 1e-5);
        snprintf(nm, sizeof nm, "fakequant_slice_bwd du = fakequant_bwd (%dx%d g%d N%d r%d)", rows, cols, group, N, bits);
        CHECK_CLOSE(nm, du2, du, nk, 1e-5, 1e-5);
        snprintf(nm, sizeof nm, "fakequant_slice_bwd dl = fakequant_bwd (%dx%d g%d N%d r%d)", rows, cols, group, N, bits);
        CHECK_CLOSE(nm, dl2, dl, nk, 1e-5, 1e-5);
        snprintf(nm, sizeof nm, "fakequant_slice_bwd dw (%dx%d g%d N%d r%d)", rows, cols, group, N, bits);
        fd_check(nm, fq_loss, &c, c.w, n, dw2, 1e-7, 1e-3, 1e-3);
        free(q); free(g); free(wq2); free(dw2); free(du2); free(dl2);
    }
    free(c.w); free(c.u); free(c.l); free(c.R); free(c.out); free(c.offq); free(c.offs); free(c.offz);
    free(c.stq); free(c.sts); free(c.stz);
    free(w); free(u); free(l); free(R); free(wq); free(want); free(dw); free(du); free(dl);
}

/* fakequant_fwd against the spec: fold the ranges into codes, dequantize. */
static void test_fakequant_ref(int rows, int cols, int group, int N, int bits) {
    mq_fq_shape s = {rows, cols, group, N, bits};
    int G = group > 0 ? group : cols, ng = cols / G;
    size_t n = (size_t)rows * cols, nk = (size_t)rows * ng;
    float *w = malloc(n * 4), *u = malloc(nk * 4), *l = malloc(nk * 4), *wq = malloc(n * 4), *want = malloc(n * 4);
    float *lo = malloc(nk * 4), *hi = malloc(nk * 4), *scale = malloc(nk * 4);
    uint8_t *q = malloc(n), *zero = malloc(nk);
    for (size_t i = 0; i < n; i++) w[i] = (float)(nrand() * 0.05);
    for (int j = 0; j < cols; j++) w[j] = 0.0f; /* an all-zero row: alpha = 0 */
    for (size_t i = 0; i < nk; i++) {
        u[i] = (float)(0.5 + 4 * urand());
        l[i] = (float)(0.5 + 4 * urand());
    }
    fakequant_fwd(wq, w, u, l, &s);
    fakequant_ranges(lo, hi, w, u, l, &s);
    if (N == 8) {
        mq_status st = mq_ref_quantize_clip(w, rows, cols, G, lo, hi, q, scale, zero);
        CHECK(st == MQ_OK, "%s", mq_last_error());
    } else { /* the native r-bit grid of the single-width baselines */
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < ng; k++) {
                size_t ki = (size_t)r * ng + k;
                mq_ref_grid_bits(NULL, 0, lo + ki, hi + ki, N, scale + ki, zero + ki);
                for (int j = 0; j < G; j++) {
                    size_t e = (size_t)r * cols + (size_t)k * G + j;
                    q[e] = mq_ref_code_bits(w[e], scale[ki], zero[ki], N);
                }
            }
    }
    /* slice the parent code at r: for a native N-bit grid (N = r) that is its own code */
    mq_ref_dequant(q, scale, zero, rows, cols, G, bits, false, want);
    char nm[96];
    snprintf(nm, sizeof nm, "fakequant_fwd == ref fold (%dx%d g%d N%d r%d)", rows, cols, group, N, bits);
    CHECK_CLOSE(nm, wq, want, n, 0, 0);
    free(w); free(u); free(l); free(wq); free(want); free(lo); free(hi); free(scale); free(q); free(zero);
}

/* ------------------------------------------------------------------- mse */

static void test_mse(void) {
    float a[7], b[7], da[7] = {0};
    double s = 0;
    for (int i = 0; i < 7; i++) {
        a[i] = (float)nrand();
        b[i] = (float)nrand();
        s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    }
    double m = mse_fwd_bwd(da, a, b, 7, 0.5f);
    CHECK(fabs(m - s / 7) < 1e-12, "mse %g, want %g", m, s / 7);
    float want[7];
    for (int i = 0; i < 7; i++) want[i] = (float)(0.5 * 2 * ((double)a[i] - b[i]) / 7);
    CHECK_CLOSE("mse gradient", da, want, 7, 1e-7, 1e-6);
}

/* A NaN weight must come out as NaN (forward) and poison the gradients
 * (backward), never vanish through an integer conversion. */
static void test_fakequant_nan(void) {
    enum { R = 2, C = 8 };
    float w[R * C], wq[R * C], dw[R * C] = {0}, dwq[R * C], u[R], l[R], du[R] = {0}, dl[R] = {0};
    for (int i = 0; i < R * C; i++) w[i] = 0.1f * (float)(i % 7) - 0.3f, dwq[i] = 1.0f;
    for (int i = 0; i < R; i++) u[i] = l[i] = MQ_LWC_INIT;
    w[C + 3] = NAN; /* row 1, not its first element (the max/min scan starts there) */
    mq_fq_shape s = {R, C, 0, 8, 2};
    fakequant_fwd(wq, w, u, l, &s);
    CHECK(isnan(wq[C + 3]), "NaN weight fake-quantized to %g", wq[C + 3]);
    int finite_row0 = 1;
    for (int j = 0; j < C; j++) finite_row0 &= isfinite(wq[j]);
    CHECK(finite_row0, "a NaN in row 1 changed row 0");
    fakequant_bwd(dw, du, dl, dwq, w, u, l, &s);
    CHECK(isnan(dw[C + 3]) && (isnan(du[1]) || isnan(dl[1])), "NaN weight: dw %g du %g dl %g", dw[C + 3], du[1],
          dl[1]);
}

int main(void) {
    test_matmul(3, 7, 5, true);
    test_matmul(1, 1, 1, false);
    test_matmul(37, 97, 131, true); /* big enough to split over threads */
    test_rmsnorm(5, 13, false);
    test_rmsnorm(3, 8, true);
    test_rope(2, 5, 3, 6);
    test_attention(2, 5, 4, 2, 6, 0, 0, 0.4f);
    test_attention(1, 7, 3, 1, 4, 3, 2.0f, 1.0f);
    test_attention(2, 9, 2, 2, 5, 0, 1.5f, 0.8f);
    test_glu(37, false);
    test_glu(37, true);
    int bits[] = {8, 4, 3, 2};
    for (int i = 0; i < 4; i++) {
        test_fakequant_ref(6, 96, 32, 8, bits[i]);
        test_fakequant_ref(5, 37, 0, 8, bits[i]);
        test_fakequant_ref(5, 37, 0, bits[i], bits[i]);
        test_fakequant_grad(4, 37, 0, 8, bits[i]);
        test_fakequant_grad(3, 64, 32, 8, bits[i]);
        test_fakequant_grad(4, 37, 0, bits[i], bits[i]);
    }
    test_fakequant_nan();
    test_mse();
    return check_done("test_ops");
}

/*
 * test_gptq.c — the GPTQ solver against a direct reference written the way
 * the OBS/OBQ derivation states it (double precision, full inverse Hessian,
 * after each column: W[:, j>i] -= e_i * Hinv[i, j] / Hinv[i, i], then
 * Hinv -= Hinv[:, i] Hinv[i, :] / Hinv[i, i]), which GPTQ's Cholesky and lazy
 * block updates must reproduce; plus the property that GPTQ beats
 * round-to-nearest on the layer output error.
 */
#include "check.h"
#include "train/gptq.h"

#include <math.h>

#define ROWS 12
#define COLS 48
#define N 200

/* a toy 4-bit per-row grid: step s_r, codes 0..15 around a zero point */
typedef struct {
    float step[ROWS], zero[ROWS];
    unsigned char *codes; /* (ROWS, COLS) */
    float deq[ROWS * COLS]; /* dequantized values chosen */
} grid;

static void on_group(void *u, int col, const float *w, int rows, int group, size_t ld) {
    grid *g = u;
    (void)col;
    for (int r = 0; r < rows; r++) {
        float lo = 0, hi = 0;
        for (int j = 0; j < group; j++) {
            float v = w[(size_t)r * ld + j];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        g->step[r] = (hi - lo) / 15.0f;
        g->zero[r] = nearbyintf(-lo / g->step[r]);
    }
}

static float quant(const grid *g, int r, float w, unsigned char *code) {
    float q = nearbyintf(w / g->step[r]) + g->zero[r];
    q = q < 0 ? 0 : q > 15 ? 15 : q;
    *code = (unsigned char)q;
    return g->step[r] * (q - g->zero[r]);
}

static void on_column(void *u, int col, const float *w, size_t ld, int rows, float *resid) {
    grid *g = u;
    for (int r = 0; r < rows; r++) {
        float v = w[(size_t)r * ld];
        g->deq[r * COLS + col] = quant(g, r, v, &g->codes[r * COLS + col]);
        resid[r] = v - g->deq[r * COLS + col];
    }
}

static double frand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return ((*s >> 8) & 0xffff) / 65536.0 - 0.5;
}

/* invert a symmetric positive definite matrix (Gauss-Jordan, double) */
static void invert(double *a, int n) {
    double *b = calloc((size_t)n * n, sizeof(double));
    for (int i = 0; i < n; i++) b[i * n + i] = 1;
    for (int c = 0; c < n; c++) {
        double p = a[c * n + c];
        for (int j = 0; j < n; j++) { a[c * n + j] /= p; b[c * n + j] /= p; }
        for (int r = 0; r < n; r++) {
            if (r == c) continue;
            double f = a[r * n + c];
            for (int j = 0; j < n; j++) { a[r * n + j] -= f * a[c * n + j]; b[r * n + j] -= f * b[c * n + j]; }
        }
    }
    memcpy(a, b, sizeof(double) * n * n);
    free(b);
}

static double output_error(const float *X, const float *W, const float *Q) {
    double e = 0;
    for (int n = 0; n < N; n++)
        for (int r = 0; r < ROWS; r++) {
            double d = 0;
            for (int c = 0; c < COLS; c++) d += X[n * COLS + c] * ((double)W[r * COLS + c] - Q[r * COLS + c]);
            e += d * d;
        }
    return e;
}

int main(void) {
    unsigned seed = 42;
    float *X = malloc(sizeof(float) * N * COLS), *W0 = malloc(sizeof(float) * ROWS * COLS);
    /* correlated inputs: x = A z with a random mixing matrix, plus one dead column */
    float A[COLS][8];
    for (int c = 0; c < COLS; c++)
        for (int k = 0; k < 8; k++) A[c][k] = (float)frand(&seed);
    for (int n = 0; n < N; n++) {
        float z[8];
        for (int k = 0; k < 8; k++) z[k] = (float)frand(&seed);
        for (int c = 0; c < COLS; c++) {
            double v = 0.3 * frand(&seed);
            for (int k = 0; k < 8; k++) v += A[c][k] * z[k];
            X[n * COLS + c] = c == 7 ? 0.0f : (float)v;
        }
    }
    for (int i = 0; i < ROWS * COLS; i++) W0[i] = (float)frand(&seed);

    for (int gsize = COLS; gsize >= 16; gsize /= 3) {
        /* --- GPTQ through the solver */
        mq_hessian H;
        mq_hessian_init(&H, COLS);
        mq_hessian_add(&H, X, 77);
        mq_hessian_add(&H, X + 77 * COLS, N - 77);
        float *W = malloc(sizeof(float) * ROWS * COLS);
        memcpy(W, W0, sizeof(float) * ROWS * COLS);
        static grid g;
        g.codes = calloc(ROWS * COLS, 1);
        mq_gptq_opts o = {.group = gsize, .block = 16, .damp = 0.01f, .on_group = on_group,
                          .on_column = on_column, .user = &g};
        CHECK(mq_gptq_run(W, ROWS, COLS, &H, &o) == MQ_OK, "gptq: %s", mq_last_error());

        /* --- the direct reference */
        double *h = calloc(COLS * COLS, sizeof(double));
        for (int n = 0; n < N; n++)
            for (int i = 0; i < COLS; i++)
                for (int j = 0; j < COLS; j++) h[i * COLS + j] += 2.0 * X[n * COLS + i] * X[n * COLS + j] / N;
        float *Wr = malloc(sizeof(float) * ROWS * COLS);
        memcpy(Wr, W0, sizeof(float) * ROWS * COLS);
        double md = 0;
        for (int i = 0; i < COLS; i++) {
            if (h[i * COLS + i] == 0) {
                h[i * COLS + i] = 1;
                for (int r = 0; r < ROWS; r++) Wr[r * COLS + i] = 0;
            }
            md += h[i * COLS + i] / COLS;
        }
        for (int i = 0; i < COLS; i++) h[i * COLS + i] += 0.01 * md;
        invert(h, COLS);
        static grid gr;
        gr.codes = calloc(ROWS * COLS, 1);
        int mismatched = 0;
        for (int i = 0; i < COLS; i++) {
            if (i % gsize == 0) on_group(&gr, i, Wr + i, ROWS, gsize, COLS);
            double d = h[i * COLS + i];
            for (int r = 0; r < ROWS; r++) {
                float w = Wr[r * COLS + i];
                unsigned char code;
                float e = w - quant(&gr, r, w, &code);
                gr.codes[r * COLS + i] = code;
                for (int j = i + 1; j < COLS; j++) Wr[r * COLS + j] -= (float)(e * h[i * COLS + j] / d);
            }
            double *row = malloc(sizeof(double) * COLS);
            memcpy(row, h + i * COLS, sizeof(double) * COLS);
            for (int a = 0; a < COLS; a++)
                for (int b = 0; b < COLS; b++) h[a * COLS + b] -= row[a] * row[b] / d;
            free(row);
        }
        for (int i = 0; i < ROWS * COLS; i++) mismatched += g.codes[i] != gr.codes[i];
        CHECK(mismatched <= ROWS * COLS / 100, "group %d: %d of %d codes differ from the direct reference",
              gsize, mismatched, ROWS * COLS);
        /* --- GPTQ beats round-to-nearest on ||X (W - Q)^T|| */
        float *Qr = malloc(sizeof(float) * ROWS * COLS), *Wc = malloc(sizeof(float) * ROWS * COLS);
        grid *rtn = calloc(1, sizeof(grid));
        rtn->codes = calloc(ROWS * COLS, 1);
        memcpy(Wc, W0, sizeof(float) * ROWS * COLS);
        for (int r = 0; r < ROWS; r++) Wc[r * COLS + 7] = 0; /* the dead column is irrelevant */
        for (int i = 0; i < COLS; i++) {
            if (i % gsize == 0) on_group(rtn, i, Wc + i, ROWS, gsize, COLS);
            for (int r = 0; r < ROWS; r++) {
                unsigned char code;
                Qr[r * COLS + i] = quant(rtn, r, Wc[r * COLS + i], &code);
            }
        }
        const float *Qg = g.deq;
        double eg = output_error(X, Wc, Qg), er = output_error(X, Wc, Qr);
        CHECK(eg < er, "group %d: GPTQ output error %g not below RTN's %g", gsize, eg, er);
        printf("group %2d: output error GPTQ %.4g vs RTN %.4g (%.1f%%), %d codes differ from the direct reference\n",
               gsize, eg, er, 100 * eg / er, mismatched);
        free(Qr); free(Wc); free(rtn->codes); free(rtn);
        free(Wr); free(gr.codes); free(h); free(g.codes); free(W);
        mq_hessian_free(&H);
    }
    /* errors */
    mq_hessian E;
    mq_hessian_init(&E, COLS);
    float w1[COLS] = {0};
    static grid g;
    g.codes = calloc(ROWS * COLS, 1);
    mq_gptq_opts o = {.group = 10, .block = 16, .damp = 0.01f, .on_column = on_column, .user = &g};
    CHECK(mq_gptq_run(w1, 1, COLS, &E, &o) == MQ_ERR_ARG, "empty Hessian accepted");
    mq_hessian_add(&E, X, N);
    CHECK(mq_gptq_run(w1, 1, COLS, &E, &o) == MQ_ERR_ARG && strstr(mq_last_error(), "group"),
          "bad group accepted: %s", mq_last_error());
    mq_hessian_free(&E);
    free(g.codes);
    free(X);
    free(W0);
    return check_done("test_gptq");
}

/*
 * test_qat.c — tests of the QAT training code: every backward of
 * train/ops_lm.c against central finite differences, the LR schedule and
 * clipping; the whole-model gradient of train/qat.c on a tiny random llama
 * (directional derivatives and per-element checks on sampled entries); the
 * PyTorch golden (tests/golden/qat_tiny*, scripts/golden_qat.py): loss and
 * every gradient at step 0 and the losses of the first 10 steps; resume
 * bit-exactness of the training state.
 * Covers src/train/ops_lm.c, src/train/qat.c.
 */
#include "check.h"
#include "train/ops_lm.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

static uint64_t rng_state = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static void fill(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] = s * frand();
}

/* ---------------------------------------------------- ops_lm: KL, xent */

typedef struct {
    int N, V;
    float *logits, *logp, *tlogp;
    int32_t *targets;
    int which; /* 0 = KL, 1 = xent */
} lossctx;

static double loss_of(lossctx *c) {
    mq_log_softmax_fwd(c->logp, c->logits, c->N, c->V);
    return c->which == 0 ? mq_kl_fwd(c->tlogp, c->logp, c->N, c->V)
                         : mq_xent_fwd(c->logp, c->targets, c->N, c->V);
}

static void test_kl_xent(void) {
    int N = 5, V = 37;
    size_t n = (size_t)N * V;
    lossctx c = {.N = N, .V = V, .logits = mq_malloc(n * 4), .logp = mq_malloc(n * 4),
                 .tlogp = mq_malloc(n * 4), .targets = mq_malloc(N * 4)};
    float *g = mq_malloc(n * 4), *fd = mq_malloc(n * 4), *tl = mq_malloc(n * 4);
    fill(c.logits, n, 3.0f);
    fill(tl, n, 3.0f);
    mq_log_softmax_fwd(c.tlogp, tl, N, V);
    for (int i = 0; i < N; i++) c.targets[i] = i == 2 ? -1 : (i * 7) % V;
    /* log-softmax rows are normalised, and stable at huge logits */
    float big[3] = {1000.0f, 999.0f, -1000.0f}, lb[3];
    mq_log_softmax_fwd(lb, big, 1, 3);
    CHECK(fabsf(lb[0] - (-0.3132617f)) < 1e-5f && fabsf(lb[1] - (-1.3132617f)) < 1e-5f && isfinite(lb[2]),
          "log-softmax of large logits: %g %g %g", lb[0], lb[1], lb[2]);
    /* KL of a distribution with itself is 0, and >= 0 otherwise */
    CHECK(fabs(mq_kl_fwd(c.tlogp, c.tlogp, N, V)) < 1e-7, "KL(p||p) = %g", mq_kl_fwd(c.tlogp, c.tlogp, N, V));
    for (c.which = 0; c.which < 2; c.which++) {
        double l0 = loss_of(&c);
        CHECK(l0 > 0, "loss %d positive: %g", c.which, l0);
        memset(g, 0, n * 4);
        float scale = 0.7f;
        if (c.which == 0) mq_kl_bwd(g, c.tlogp, c.logp, N, V, scale);
        else mq_xent_bwd(g, c.logp, c.targets, N, V, scale);
        const float h = 1e-2f;
        for (size_t i = 0; i < n; i++) {
            float x = c.logits[i];
            c.logits[i] = x + h;
            double lp = loss_of(&c);
            c.logits[i] = x - h;
            double lm = loss_of(&c);
            c.logits[i] = x;
            fd[i] = (float)(scale * (lp - lm) / (2.0 * h));
        }
        CHECK_CLOSE(c.which == 0 ? "kl_bwd vs finite differences" : "xent_bwd vs finite differences", g, fd, n,
                    2e-5, 2e-3);
        /* accumulation: a second call adds the same again */
        loss_of(&c);
        if (c.which == 0) mq_kl_bwd(g, c.tlogp, c.logp, N, V, scale);
        else mq_xent_bwd(g, c.logp, c.targets, N, V, scale);
        for (size_t i = 0; i < n; i++) fd[i] *= 2;
        CHECK_CLOSE("bwd accumulates", g, fd, n, 4e-5, 2e-3);
    }
    /* ignored targets: a row with target -1 gets no gradient */
    memset(g, 0, n * 4);
    mq_xent_bwd(g, c.logp, c.targets, N, V, 1.0f);
    double s = 0;
    for (int v = 0; v < V; v++) s += fabs(g[2 * V + v]);
    CHECK(s == 0, "ignored row has gradient %g", s);
    free(c.logits); free(c.logp); free(c.tlogp); free(c.targets); free(g); free(fd); free(tl);
}

/* ------------------------------------------------ ops_lm: head, embed */

static void test_head_embed(void) {
    int N = 6, C = 9, V = 21;
    float *x = mq_malloc(N * C * 4), *w = mq_malloc(V * C * 4), *lg = mq_malloc(N * V * 4);
    float *dl = mq_malloc(N * V * 4), *dx = mq_calloc(N * C, 4), *dw = mq_calloc(V * C, 4);
    fill(x, N * C, 1.0f);
    fill(w, V * C, 1.0f);
    fill(dl, N * V, 1.0f);
    mq_head_fwd(lg, x, w, N, C, V);
    double worst = 0;
    for (int n = 0; n < N; n++)
        for (int v = 0; v < V; v++) {
            double s = 0;
            for (int i = 0; i < C; i++) s += (double)x[n * C + i] * w[v * C + i];
            worst = fmax(worst, fabs(s - lg[n * V + v]));
        }
    CHECK(worst < 1e-5, "head_fwd vs naive: %g", worst);
    /* the loss L = sum dl * logits is linear: its gradient is exact */
    mq_head_bwd(dx, dw, dl, x, w, N, C, V);
    float *ex = mq_calloc(N * C, 4), *ew = mq_calloc(V * C, 4);
    for (int n = 0; n < N; n++)
        for (int v = 0; v < V; v++)
            for (int i = 0; i < C; i++) {
                ex[n * C + i] += dl[n * V + v] * w[v * C + i];
                ew[v * C + i] += dl[n * V + v] * x[n * C + i];
            }
    CHECK_CLOSE("head_bwd dx", dx, ex, (size_t)N * C, 1e-5, 1e-5);
    CHECK_CLOSE("head_bwd dw", dw, ew, (size_t)V * C, 1e-5, 1e-5);
    /* dw NULL (frozen head) still gives dx, accumulated */
    mq_head_bwd(dx, NULL, dl, x, w, N, C, V);
    for (int i = 0; i < N * C; i++) ex[i] *= 2;
    CHECK_CLOSE("head_bwd accumulates dx", dx, ex, (size_t)N * C, 2e-5, 1e-5);
    /* embedding: repeated tokens add up */
    int32_t tok[6] = {3, 0, 3, 20, 5, 3};
    float *e = mq_malloc(N * C * 4), *de = mq_calloc(V * C, 4);
    mq_embed_fwd(e, tok, w, N, C, V, 2.0f);
    CHECK(e[2 * C + 4] == 2.0f * w[3 * C + 4] && e[3 * C] == 2.0f * w[20 * C], "embed_fwd rows");
    mq_embed_bwd(de, x, tok, N, C, V, 2.0f);
    float want = 2.0f * x[0 * C + 1] + 2.0f * x[2 * C + 1] + 2.0f * x[5 * C + 1];
    CHECK(fabsf(de[3 * C + 1] - want) < 1e-6f && de[1 * C] == 0.0f, "embed_bwd sums repeated tokens: %g vs %g",
          de[3 * C + 1], want);
    free(x); free(w); free(lg); free(dl); free(dx); free(dw); free(ex); free(ew); free(e); free(de);
}

/* ------------------------------------------- schedule, norm, clipping */

static void test_schedule(void) {
    float lr = 1e-3f;
    CHECK(fabsf(mq_lr_at(0, 10, 100, lr, 0.1f) - 1e-4f) < 1e-9f, "warmup start %g", mq_lr_at(0, 10, 100, lr, 0.1f));
    CHECK(fabsf(mq_lr_at(9, 10, 100, lr, 0.1f) - lr) < 1e-9f, "warmup end");
    CHECK(fabsf(mq_lr_at(10, 10, 100, lr, 0.1f) - lr) < 1e-9f, "cosine start");
    CHECK(fabsf(mq_lr_at(99, 10, 100, lr, 0.1f) - 1e-4f) < 1e-9f, "cosine end %g", mq_lr_at(99, 10, 100, lr, 0.1f));
    float mid = mq_lr_at(10 + 89 / 2, 10, 100, lr, 0.0f);
    CHECK(fabsf(mid - 0.5f * lr) < 0.02f * lr, "cosine half-way %g", mid);
    int mono = 1;
    for (int s = 11; s < 100; s++) mono &= mq_lr_at(s, 10, 100, lr, 0.1f) <= mq_lr_at(s - 1, 10, 100, lr, 0.1f);
    CHECK(mono, "cosine decreases");
    CHECK(mq_lr_at(0, 0, 1, lr, 0.1f) == lr, "one step, no warmup");
    float g[5] = {3, 4, 0, 0, 12};
    CHECK(fabs(mq_grad_norm(g, 5) - 13.0) < 1e-12, "grad norm %g", mq_grad_norm(g, 5));
    CHECK(fabsf(mq_clip_factor(13.0, 1.0f) - 1.0f / 13) < 1e-7f, "clip factor");
    CHECK(mq_clip_factor(0.5, 1.0f) == 1.0f && mq_clip_factor(13.0, 0.0f) == 1.0f, "no clipping");
}

int main(void) {
    test_kl_xent();
    test_head_embed();
    test_schedule();
    return check_done("test_qat");
}

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
#include "nn/model.h"
#include "quant/ref.h"
#include "train/ops.h"
#include "train/ops_lm.h"
#include "train/qat.h"

#include <math.h>
#include <omp.h>
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

/* ------------------------------------------------ whole-model gradient */

#define TINY "tests/golden/models/llama"

static mq_qat *tiny_trainer(const mq_model *m, const char *scope, int B, int T, bool no_quant, int co) {
    mq_qat_opts o;
    mq_qat_defaults(&o);
    o.scope = scope;
    o.batch = B, o.seq_len = T, o.no_quant = no_quant;
    if (co) {
        o.n_co = 1, o.co_from[0] = 8, o.co_to[0] = 2, o.co_weight[0] = 0.5f;
    }
    o.lambda[2] = 2.0f;
    mq_qat *t = NULL;
    mq_status st = mq_qat_new(m, &o, &t);
    CHECK(st == MQ_OK, "mq_qat_new: %s", mq_last_error());
    return t;
}

static void tiny_tokens(int32_t *tok, int n, int V) {
    for (int i = 0; i < n; i++) tok[i] = (int32_t)((i * 37 + 11) % V);
}

/* The teacher pass of qat.c equals the inference forward (nn/forward.c). */
static void test_teacher_forward(const mq_model *m) {
    int B = 2, T = 9, V = m->cfg.vocab_size;
    mq_qat *t = tiny_trainer(m, "all", B, T, true, 0);
    if (!t) return;
    int32_t tok[18];
    tiny_tokens(tok, B * T, V);
    double loss;
    CHECK(mq_qat_loss(t, tok, false, 1.0f, &loss, NULL) == MQ_OK, "loss: %s", mq_last_error());
    /* unperturbed student without quantization = teacher: KL exactly 0 */
    CHECK(loss == 0.0, "no-quant student at the teacher's weights: KL %g", loss);
    mq_state *s = mq_state_new(m, T, T);
    float *lg = mq_malloc((size_t)T * V * 4);
    for (int b = 0; b < B; b++) {
        mq_forward(m, s, tok + b * T, T, 0, lg, true);
        mq_log_softmax_fwd(lg, lg, T, V);
        CHECK_CLOSE("teacher log-probs vs mq_forward", mq_qat_teacher_logp(t) + (size_t)b * T * V, lg,
                    (size_t)T * V, 1e-5, 1e-5);
    }
    free(lg);
    mq_state_free(s);
    mq_qat_free(t);
}

/* Directional derivative and sampled per-element central differences of the
 * distillation loss (no quantization: the function is smooth) with respect to
 * every trained tensor, over the whole model (scope all: attention too). */
static void test_model_gradient(const mq_model *m) {
    int B = 2, T = 7, V = m->cfg.vocab_size;
    mq_qat *t = tiny_trainer(m, "all", B, T, true, 1);
    if (!t) return;
    int32_t tok[14];
    tiny_tokens(tok, B * T, V);
    size_t n = mq_qat_n_params(t);
    float *p = mq_qat_params(t), *g = mq_qat_grads(t);
    float *p0 = mq_malloc(n * 4), *dir = mq_malloc(n * 4);
    /* move the student away from the teacher so the loss is not at its minimum */
    for (int i = 0; i < mq_qat_n_tensors(t); i++) {
        size_t off, sz;
        const char *nm = mq_qat_tensor(t, i, &off, &sz);
        if (strstr(nm, ".weight"))
            for (size_t j = 0; j < sz; j++) p[off + j] *= 1.0f + 0.3f * frand();
    }
    memcpy(p0, p, n * 4);
    mq_qat_zero_grads(t);
    double l0, ps[8];
    CHECK(mq_qat_loss(t, tok, true, 1.0f, &l0, ps) == MQ_OK, "loss: %s", mq_last_error());
    CHECK(l0 > 1e-3 && ps[0] > 0 && ps[2] > 0, "perturbed student has a loss: %g", l0);
    /* directional derivative, double-checked at two step sizes */
    double gd = 0;
    for (size_t i = 0; i < n; i++) {
        dir[i] = frand();
        gd += (double)g[i] * dir[i];
    }
    /* Richardson extrapolation of central differences at h and h/2 (error O(h^4)) */
    double fdh[2];
    for (int pass = 0; pass < 2; pass++) {
        double h = pass ? 5e-4 : 1e-3, lp, lm;
        for (size_t i = 0; i < n; i++) p[i] = p0[i] + (float)(h * dir[i]);
        mq_qat_loss(t, tok, false, 1.0f, &lp, NULL);
        for (size_t i = 0; i < n; i++) p[i] = p0[i] - (float)(h * dir[i]);
        mq_qat_loss(t, tok, false, 1.0f, &lm, NULL);
        fdh[pass] = (lp - lm) / (2 * h);
    }
    double rich = (4 * fdh[1] - fdh[0]) / 3;
    CHECK(fabs(rich - gd) <= 2e-3 * fabs(gd), "directional derivative: fd %.9g (h: %.9g, h/2: %.9g) vs grad %.9g",
          rich, fdh[0], fdh[1], gd);
    memcpy(p, p0, n * 4);
    /* per element: the largest-gradient entry of every weight tensor, and one more */
    for (int i = 0; i < mq_qat_n_tensors(t); i++) {
        size_t off, sz;
        const char *nm = mq_qat_tensor(t, i, &off, &sz);
        if (!strstr(nm, ".weight")) continue;
        size_t best = off;
        for (size_t j = off; j < off + sz; j++) best = fabsf(g[j]) > fabsf(g[best]) ? j : best;
        size_t pick[2] = {best, off + (sz * 7) / 13};
        for (int k = 0; k < 2; k++) {
            size_t j = pick[k];
            double h = 1e-3, lp, lm;
            p[j] = p0[j] + (float)h;
            mq_qat_loss(t, tok, false, 1.0f, &lp, NULL);
            p[j] = p0[j] - (float)h;
            mq_qat_loss(t, tok, false, 1.0f, &lm, NULL);
            p[j] = p0[j];
            float fd = (float)((lp - lm) / (2 * h)), an = g[j];
            char what[160];
            snprintf(what, sizeof what, "d loss / d %s[%zu]", nm, j - off);
            CHECK_CLOSE(what, &an, &fd, 1, 2e-5, 2e-2);
        }
    }
    /* the LWC logits get no gradient without quantization */
    double lwc = 0;
    for (int i = 0; i < mq_qat_n_tensors(t); i++) {
        size_t off, sz;
        if (strstr(mq_qat_tensor(t, i, &off, &sz), ".lwc_"))
            for (size_t j = off; j < off + sz; j++) lwc += fabs(g[j]);
    }
    CHECK(lwc == 0, "lwc gradient without quantization: %g", lwc);
    free(p0);
    free(dir);
    mq_qat_free(t);
}

/* With quantization: gradients reach W and both LWC logits of every linear,
 * the loss is larger at 2 bits than at 8, and folding the trained ranges into
 * parent codes (mq_qat_finish) dequantizes to exactly what the fake quantizer
 * produced at every width. */
static void test_quant_and_fold(void) {
    mq_model *m = NULL;
    if (mq_model_load(TINY, NULL, &m)) {
        CHECK(0, "load %s: %s", TINY, mq_last_error());
        return;
    }
    int B = 2, T = 8, V = m->cfg.vocab_size;
    mq_qat *t = tiny_trainer(m, "ffn", B, T, false, 1);
    if (!t) {
        mq_model_free(m);
        return;
    }
    int32_t tok[16];
    tiny_tokens(tok, B * T, V);
    double l, ps[8];
    mq_qat_zero_grads(t);
    CHECK(mq_qat_loss(t, tok, true, 1.0f, &l, ps) == MQ_OK, "loss: %s", mq_last_error());
    CHECK(ps[2] > ps[1] && ps[1] > ps[0] && ps[0] > 0, "KL by width: 8 %g, 4 %g, 2 %g", ps[0], ps[1], ps[2]);
    float *g = mq_qat_grads(t), *p = mq_qat_params(t);
    for (int i = 0; i < mq_qat_n_tensors(t); i++) {
        size_t off, sz;
        const char *nm = mq_qat_tensor(t, i, &off, &sz);
        double s = 0;
        for (size_t j = off; j < off + sz; j++) s += fabs(g[j]);
        CHECK(s > 0 && isfinite(s), "gradient of %s: %g", nm, s);
    }
    /* a few optimizer steps move the clipping logits */
    for (int k = 0; k < 3; k++) {
        mq_qat_zero_grads(t);
        mq_qat_loss(t, tok, true, 1.0f, &l, NULL);
        CHECK(mq_qat_apply(t, NULL) == MQ_OK, "apply: %s", mq_last_error());
    }
    CHECK(mq_qat_step(t) == 3, "step counter %lld", (long long)mq_qat_step(t));
    int nt = mq_qat_n_tensors(t);
    float **fq = mq_malloc((size_t)nt * sizeof *fq);
    int widths[3] = {8, 4, 2};
    mq_qlinear *q = NULL;
    int nq = 0;
    /* fake-quantized weights at each width, before folding */
    float *want = NULL;
    size_t total = 0;
    for (int i = 0; i < nt; i += 3) {
        size_t sz;
        mq_qat_tensor(t, i, NULL, &sz);
        total += sz;
    }
    want = mq_malloc(total * 3 * 4);
    size_t at = 0;
    for (int wi = 0; wi < 3; wi++)
        for (int i = 0; i < nt; i += 3) {
            size_t ow, ou, ol, sz;
            const char *nm = mq_qat_tensor(t, i, &ow, &sz);
            mq_qat_tensor(t, i + 1, &ou, NULL);
            mq_qat_tensor(t, i + 2, &ol, NULL);
            int cols = strstr(nm, "down_proj") ? m->cfg.hidden_dim : m->cfg.dim;
            mq_fq_shape s = {.rows = (int)(sz / cols), .cols = cols, .group = 0, .grid_bits = 8, .bits = widths[wi]};
            fakequant_fwd(want + at, p + ow, p + ou, p + ol, &s);
            at += sz;
        }
    free(fq);
    CHECK(mq_qat_finish(t, m, &q, &nq) == MQ_OK, "finish: %s", mq_last_error());
    CHECK(nq == nt / 3, "%d linears folded", nq);
    float *got = mq_malloc(total * 3 * 4);
    at = 0;
    for (int wi = 0; wi < 3; wi++)
        for (int i = 0; i < nq; i++) {
            mq_ref_dequant(q[i].q, q[i].scale, q[i].zero, q[i].rows, q[i].cols, q[i].group, widths[wi], false, got + at);
            at += (size_t)q[i].rows * q[i].cols;
        }
    int same = memcmp(got, want, total * 3 * 4) == 0;
    CHECK(same, "folded codes dequantize bit-exactly to the fake quantizer's weights at 8, 4 and 2 bits");
    /* the model's scoped weights now hold the int8 dequantization */
    int r, c;
    float *w0 = mq_linear_weight(m, 0, MQ_LIN_UP, &r, &c);
    CHECK(memcmp(w0, got + (size_t)1 * r * c, (size_t)r * c * 4) == 0 || q[1].kind != MQ_LIN_UP,
          "model weight replaced by its int8 dequantization");
    free(got);
    free(want);
    mq_qlinears_free(q, nq);
    mq_qat_free(t);
    mq_model_free(m);
}

/* NaN/Inf: the forward names the layer, the optimizer step names the tensor. */
static void test_nonfinite(mq_model *m) {
    mq_qat *t = tiny_trainer(m, "ffn", 1, 6, false, 0);
    if (!t) return;
    int32_t tok[6];
    tiny_tokens(tok, 6, m->cfg.vocab_size);
    size_t off, sz;
    int k = -1;
    for (int i = 0; i < mq_qat_n_tensors(t); i++)
        if (!strcmp(mq_qat_tensor(t, i, &off, &sz), "model.layers.1.mlp.up_proj.weight")) k = i;
    CHECK(k >= 0, "tensor model.layers.1.mlp.up_proj.weight in the layout");
    if (k >= 0) {
        mq_qat_tensor(t, k, &off, &sz);
        float keep = mq_qat_params(t)[off + 5];
        mq_qat_params(t)[off + 5] = NAN;
        double l;
        mq_status st = mq_qat_loss(t, tok, true, 1.0f, &l, NULL);
        CHECK(st == MQ_ERR_NUMERIC && strstr(mq_last_error(), "model.layers.1.mlp.up_proj.weight (layer 1"),
              "NaN weight: %s", mq_last_error());
        mq_qat_params(t)[off + 5] = keep;
        /* a NaN in a frozen tensor shows up in the activations: named with its layer */
        float *g2 = m->layers[1].ffn_norm, keep2 = g2[3];
        g2[3] = NAN;
        st = mq_qat_loss(t, tok, true, 1.0f, &l, NULL);
        g2[3] = keep2;
        CHECK(st == MQ_ERR_NUMERIC && strstr(mq_last_error(), "block output of layer 1"),
              "NaN norm weight: %s", mq_last_error());
        mq_qat_params(t)[off + 5] = keep;
        mq_qat_zero_grads(t);
        mq_qat_grads(t)[off + 7] = INFINITY;
        st = mq_qat_apply(t, NULL);
        CHECK(st == MQ_ERR_NUMERIC && strstr(mq_last_error(), "model.layers.1.mlp.up_proj.weight (layer 1"),
              "Inf gradient: %s", mq_last_error());
    }
    mq_qat_free(t);
}

/* Bad options are refused with a message naming them. */
static void test_bad_options(const mq_model *m) {
    mq_qat_opts o;
    mq_qat *t = NULL;
    struct { void (*set)(mq_qat_opts *); const char *want; } cases[] = {
        {NULL, NULL},
    };
    (void)cases;
    mq_qat_defaults(&o);
    o.n_co = 1, o.co_from[0] = 2, o.co_to[0] = 8, o.co_weight[0] = 1;
    CHECK(mq_qat_new(m, &o, &t) == MQ_ERR_ARG && strstr(mq_last_error(), "wider"), "co-distill 2:8: %s",
          mq_last_error());
    mq_qat_defaults(&o);
    o.n_co = 1, o.co_from[0] = 6, o.co_to[0] = 2, o.co_weight[0] = 1;
    CHECK(mq_qat_new(m, &o, &t) == MQ_ERR_ARG && strstr(mq_last_error(), "in --train-bits"), "co-distill 6:2: %s",
          mq_last_error());
    mq_qat_defaults(&o);
    o.train_bits[1] = 8;
    CHECK(mq_qat_new(m, &o, &t) == MQ_ERR_ARG && strstr(mq_last_error(), "twice"), "8,8,2: %s", mq_last_error());
    mq_qat_defaults(&o);
    o.seq_len = 100000;
    CHECK(mq_qat_new(m, &o, &t) == MQ_ERR_ARG && strstr(mq_last_error(), "--seq-len"), "seq-len: %s",
          mq_last_error());
    mq_qat_defaults(&o);
    o.group = 48;
    CHECK(mq_qat_new(m, &o, &t) == MQ_ERR_ARG && strstr(mq_last_error(), "--group-size"), "group: %s",
          mq_last_error());
    mq_qat_defaults(&o);
    o.data_path = "/nonexistent/data.txt";
    CHECK(mq_qat_new(m, &o, &t) != MQ_OK && t == NULL, "missing data: %s", mq_last_error());
}

/* ------------------------------------------------------ PyTorch golden */

static int json_floats(const cJSON *a, float *out, int cap) {
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (n < cap) out[n] = (float)e->valuedouble;
        n++;
    }
    return n;
}

static void test_golden(void) {
    const char *dir = "tests/golden/qat_tiny";
    cJSON *j = check_read_json("tests/golden/qat_tiny/golden.json");
    mq_model *m = NULL;
    if (!j || mq_model_load(dir, NULL, &m)) {
        CHECK(0, "golden %s missing or unreadable (python3 scripts/golden_qat.py): %s", dir, mq_last_error());
        cJSON_Delete(j);
        return;
    }
    int B = cJSON_GetObjectItem(j, "B")->valueint, T = cJSON_GetObjectItem(j, "T")->valueint;
    int steps = cJSON_GetObjectItem(j, "steps")->valueint;
    mq_qat_opts o;
    mq_qat_defaults(&o);
    o.scope = "all", o.group = 0, o.batch = B, o.seq_len = T;
    o.n_train = json_floats(cJSON_GetObjectItem(j, "bits"), o.lambda, 8);
    for (int i = 0; i < o.n_train; i++) o.train_bits[i] = (int)o.lambda[i];
    json_floats(cJSON_GetObjectItem(j, "lambda"), o.lambda, 8);
    float co[3];
    json_floats(cJSON_GetObjectItem(j, "co_distill"), co, 3);
    o.n_co = 1, o.co_from[0] = (int)co[0], o.co_to[0] = (int)co[1], o.co_weight[0] = co[2];
    o.lr = (float)cJSON_GetObjectItem(j, "lr")->valuedouble;
    o.lr_clip = (float)cJSON_GetObjectItem(j, "lr_clip")->valuedouble;
    o.weight_decay = (float)cJSON_GetObjectItem(j, "weight_decay")->valuedouble;
    o.min_lr_frac = (float)cJSON_GetObjectItem(j, "min_lr_frac")->valuedouble;
    o.warmup = cJSON_GetObjectItem(j, "warmup")->valueint;
    o.clip_norm = (float)cJSON_GetObjectItem(j, "clip")->valuedouble;
    o.tokens = (int64_t)steps * B * T;
    mq_qat *t = NULL;
    CHECK(mq_qat_new(m, &o, &t) == MQ_OK && mq_qat_total_steps(t) == steps, "golden trainer: %s", mq_last_error());
    if (!t) goto out;
    const cJSON *toks = cJSON_GetObjectItem(j, "tokens"), *grads = cJSON_GetObjectItem(j, "grad0");
    float want_loss[64], got_loss[64];
    json_floats(cJSON_GetObjectItem(j, "losses"), want_loss, 64);
    int32_t *tok = mq_malloc((size_t)B * T * sizeof(int32_t));
    float *buf = mq_malloc((size_t)B * T * sizeof(float));
    for (int s = 0; s < steps && s < 64; s++) {
        json_floats(cJSON_GetArrayItem(toks, s), buf, B * T);
        for (int i = 0; i < B * T; i++) tok[i] = (int32_t)buf[i];
        mq_qat_zero_grads(t);
        double l, ps[8];
        CHECK(mq_qat_loss(t, tok, true, 1.0f, &l, ps) == MQ_OK, "golden step %d: %s", s, mq_last_error());
        got_loss[s] = (float)l;
        if (s == 0) {
            float kl0[3];
            json_floats(cJSON_GetObjectItem(j, "kl0"), kl0, 3);
            float gk[3] = {(float)ps[0], (float)ps[1], (float)ps[2]};
            CHECK_CLOSE("golden: KL of each slice at step 0", gk, kl0, 3, 1e-6, 1e-4);
            int seen = 0;
            for (int i = 0; i < mq_qat_n_tensors(t); i++) {
                size_t off, sz;
                const char *nm = mq_qat_tensor(t, i, &off, &sz);
                const cJSON *g = cJSON_GetObjectItem(grads, nm);
                if (!g) {
                    CHECK(0, "golden has no gradient of %s", nm);
                    continue;
                }
                float *want = mq_malloc(sz * sizeof(float));
                int n = json_floats(g, want, (int)sz);
                char what[160];
                snprintf(what, sizeof what, "golden: gradient of %s at step 0", nm);
                CHECK(n == (int)sz, "%s: %d values, want %zu", what, n, sz);
                /* atol relative to the tensor scale (measured: all within 1e-5 here; margin for other BLAS kernels) */
                double mx = 0;
                for (size_t k = 0; k < sz; k++) mx = fmax(mx, fabs(want[k]));
                CHECK_CLOSE(what, mq_qat_grads(t) + off, want, sz, 1e-4 * mx + 1e-8, 1e-4);
                free(want);
                seen++;
            }
            CHECK(seen == cJSON_GetArraySize(grads), "golden gradients: %d of %d tensors compared", seen,
                  cJSON_GetArraySize(grads));
        }
        CHECK(mq_qat_apply(t, NULL) == MQ_OK, "golden apply %d: %s", s, mq_last_error());
    }
    CHECK_CLOSE("golden: losses of the first steps", got_loss, want_loss, (size_t)steps, 1e-6, 1e-4);
    free(tok);
    free(buf);
    mq_qat_free(t);
out:
    mq_model_free(m);
    cJSON_Delete(j);
}

int main(void) {
    /* tiny sizes: one thread (a parallel region costs more than the work on a shared machine) */
    omp_set_num_threads(1);
    test_kl_xent();
    test_head_embed();
    test_schedule();
    mq_model *m = NULL;
    if (mq_model_load(TINY, NULL, &m) == MQ_OK) {
        test_teacher_forward(m);
        test_model_gradient(m);
        test_bad_options(m);
        test_nonfinite(m);
        mq_model_free(m);
    } else {
        CHECK(0, "load %s: %s", TINY, mq_last_error());
    }
    test_quant_and_fold();
    test_golden();
    return check_done("test_qat");
}

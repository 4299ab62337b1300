/*
 * test_omniquant.c — train/omniquant.c and train/optim.c:
 *  - one block's loss, gradient of every LWC/LET parameter and the
 *    parameters after 3 AdamW steps against the PyTorch golden
 *    (scripts/golden_omniquant.py -> tests/golden/omniquant.json) for two
 *    cases: FFN scope per channel with lambda (1,1,2); every linear in
 *    groups of 32 with LET and co-distillation 8:2 (the LET initialisation
 *    is checked too);
 *  - folding: the parent codes written by mq_omni_block_fold dequantize, at
 *    every trained width, to exactly what the fake quantizer trained with,
 *    and the model's weights become the widest width's dequantization;
 *  - training lowers the loss of a block (more steps);
 *  - AdamW's first step against its closed form;
 *  - option errors.
 * Tolerances |a-b| <= atol + rtol*|b|, the worst element printed.
 */
#include "check.h"
#include "nn/model.h"
#include "quant/ref.h"
#include "train/omniquant.h"
#include "train/ops.h"
#include "train/optim.h"

#define GOLDEN "tests/golden/omniquant.json"
#define MODEL "tests/golden/models/llama"

static float *json_floats(const cJSON *o, const char *key, size_t *n) {
    const cJSON *a = cJSON_GetObjectItem(o, key);
    *n = (size_t)cJSON_GetArraySize(a);
    float *v = malloc((*n ? *n : 1) * sizeof(float));
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) v[i++] = (float)e->valuedouble;
    return v;
}

static int json_ints(const cJSON *o, const char *key, int *v, int cap) {
    const cJSON *a = cJSON_GetObjectItem(o, key), *e;
    int n = 0;
    cJSON_ArrayForEach(e, a) if (n < cap) v[n++] = e->valueint;
    return n;
}

static void opts_of(const cJSON *c, mq_quant_opts *o, mq_omni_opts *oo, float lam[8]) {
    mq_omni_defaults(oo);
    memset(o, 0, sizeof *o);
    o->method = "omniquant";
    o->scope = cJSON_GetObjectItem(c, "scope")->valuestring;
    o->group = cJSON_GetObjectItem(c, "group")->valueint;
    o->n_train = json_ints(c, "bits", o->train_bits, 8);
    size_t nl;
    float *l = json_floats(c, "lambda", &nl);
    for (size_t i = 0; i < nl && i < 8; i++) o->lambda[i] = lam[i] = l[i];
    free(l);
    oo->let = cJSON_IsTrue(cJSON_GetObjectItem(c, "let"));
    int cd[2];
    if (json_ints(c, "co_distill", cd, 2) == 2) {
        oo->cd_hi = cd[0];
        oo->cd_lo = cd[1];
    }
    o->omni = oo;
}

static void test_golden_case(mq_model *m, const cJSON *c, const char *name) {
    mq_quant_opts o;
    mq_omni_opts oo;
    float lam[8];
    opts_of(c, &o, &oo, lam);
    int layer = cJSON_GetObjectItem(c, "layer")->valueint, T = cJSON_GetObjectItem(c, "T")->valueint;
    size_t nx, ny, np0, ng0, np3;
    float *x = json_floats(c, "x", &nx), *y = json_floats(c, "y", &ny);
    float *p0 = json_floats(c, "params0", &np0), *g0 = json_floats(c, "grad0", &ng0);
    float *p3 = json_floats(c, "params3", &np3);
    CHECK(nx == (size_t)T * m->cfg.dim && ny == nx, "%s: x/y sizes %zu %zu", name, nx, ny);
    mq_omni_block *b = mq_omni_block_new(m, layer, &o, T);
    size_t np;
    float *p = mq_omni_block_params(b, &np);
    CHECK(np == np0 && np == ng0 && np == np3, "%s: %zu parameters, golden %zu", name, np, np0);
    if (np != np0) goto out;
    mq_omni_block_let_init(b, x, 1);
    char what[128];
    snprintf(what, sizeof what, "%s: initial parameters (LWC 4.0, LET init)", name);
    CHECK_CLOSE(what, p, p0, np, 1e-6, 1e-5);
    memcpy(p, p0, np * sizeof(float)); /* compare the steps from identical starts */
    double L = mq_omni_block_loss_grad(b, x, y, NULL);
    double L0 = cJSON_GetObjectItem(c, "loss0")->valuedouble;
    CHECK(fabs(L - L0) <= 1e-6 + 1e-4 * fabs(L0), "%s: loss %.9g, golden %.9g", name, L, L0);
    snprintf(what, sizeof what, "%s: gradient of the LWC/LET parameters", name);
    /* gradients are ~1e-3..1e-1; atol covers fp32 accumulation order */
    CHECK_CLOSE(what, mq_omni_block_grads(b), g0, np, 2e-6, 2e-3);
    mq_omni_block_step(b);
    for (int s = 1; s < 3; s++) {
        mq_omni_block_loss_grad(b, x, y, NULL);
        mq_omni_block_step(b);
    }
    snprintf(what, sizeof what, "%s: parameters after 3 AdamW steps", name);
    CHECK_CLOSE(what, p, p3, np, 1e-5, 1e-5);
    double L3 = mq_omni_block_loss_grad(b, x, y, NULL), G3 = cJSON_GetObjectItem(c, "loss3")->valuedouble;
    CHECK(fabs(L3 - G3) <= 1e-6 + 1e-4 * fabs(G3), "%s: loss after 3 steps %.9g, golden %.9g", name, L3, G3);
out:
    mq_omni_block_free(b);
    free(x); free(y); free(p0); free(g0); free(p3);
}

/* Fold after some training: codes dequantize to what the fake quantizer
 * produced at every trained width; the model holds the widest width. */
static void test_fold_and_descent(const char *scope, int group, bool let) {
    mq_model *m = NULL;
    if (mq_model_load(MODEL, NULL, &m)) {
        CHECK(0, "%s", mq_last_error());
        return;
    }
    /* int2 kept in R (folded and checked) but weighted 0: on this random toy block
     * int2's STE loss is too rough to fall reliably within a few steps, while
     * int8/int4's does (checked below) */
    mq_quant_opts o = {.method = "omniquant", .scope = scope, .group = group, .n_train = 3,
                       .train_bits = {8, 4, 2}, .lambda = {1, 1, 0}};
    mq_omni_opts oo;
    mq_omni_defaults(&oo);
    oo.let = let;
    o.omni = &oo;
    int T = 16, C = m->cfg.dim;
    float *x = malloc((size_t)T * C * 4), *y = malloc((size_t)T * C * 4);
    uint64_t r = 7;
    for (int i = 0; i < T * C; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(r >> 11) / 9007199254740992.0 * 2 - 1);
    }
    /* target: the fp block */
    mq_state *s = mq_state_new(m, T, T);
    memcpy(y, x, (size_t)T * C * 4);
    mq_forward_block(m, s, 0, y, T, 0);
    mq_omni_block *b = mq_omni_block_new(m, 0, &o, T);
    mq_omni_block_let_init(b, x, 1);
    double first = mq_omni_block_loss_grad(b, x, y, NULL), last = first;
    for (int it = 0; it < 30; it++) {
        mq_omni_block_step(b);
        last = mq_omni_block_loss_grad(b, x, y, NULL);
    }
    CHECK(last < first * 0.98, "%s%s: 30 steps lower the loss: %g -> %g", scope, let ? " LET" : "", first, last);
    /* what the fake quantizer computes at each width, with the final parameters */
    size_t np;
    float *p = mq_omni_block_params(b, &np);
    int nl = mq_omni_block_nlin(b);
    mq_qlinear q[MQ_LIN_COUNT];
    float *fq[MQ_LIN_COUNT][3];
    int kinds[MQ_LIN_COUNT], nk = 0;
    for (int k = 0; k < MQ_LIN_COUNT; k++)
        if (mq_scope_has(scope, (mq_lin_kind)k)) kinds[nk++] = k;
    CHECK(nk == nl, "linears %d vs %d", nk, nl);
    size_t off = 0;
    const mq_layer *L = &m->layers[0];
    float *s_ffn = let ? p + np - C : NULL, *s_att = let && !strcmp(scope, "all") ? p + np - 2 * C : NULL;
    int bits[3] = {8, 4, 2};
    for (int i = 0; i < nl; i++) {
        int rows, cols;
        const float *w = mq_linear_weight(m, 0, (mq_lin_kind)kinds[i], &rows, &cols);
        int G = group ? group : cols, ngr = cols / G;
        float *wl = malloc((size_t)rows * cols * 4);
        const float *sc = kinds[i] <= MQ_LIN_V ? s_att : (kinds[i] == MQ_LIN_GATE || kinds[i] == MQ_LIN_UP) ? s_ffn : NULL;
        for (int a = 0; a < rows; a++)
            for (int j = 0; j < cols; j++) wl[(size_t)a * cols + j] = w[(size_t)a * cols + j] * (sc ? sc[j] : 1.0f);
        for (int k = 0; k < 3; k++) {
            mq_fq_shape sh = {rows, cols, G, 8, bits[k]};
            fq[i][k] = malloc((size_t)rows * cols * 4);
            fakequant_fwd(fq[i][k], wl, p + off, p + off + (size_t)rows * ngr, &sh);
        }
        off += 2 * (size_t)rows * ngr;
        free(wl);
    }
    float norm_before = L->ffn_norm[0];
    mq_status st = mq_omni_block_fold(b, m, q);
    CHECK(st == MQ_OK, "fold: %s", mq_last_error());
    if (let) {
        float want = m->cfg.norm_plus_one ? (1 + norm_before) / s_ffn[0] - 1 : norm_before / s_ffn[0];
        CHECK(fabsf(L->ffn_norm[0] - want) <= 1e-6f * fabsf(want), "LET folded into the norm: %g, want %g",
              L->ffn_norm[0], want);
    }
    for (int i = 0; i < nl && st == MQ_OK; i++) {
        int rows = q[i].rows, cols = q[i].cols;
        float *dq = malloc((size_t)rows * cols * 4);
        for (int k = 0; k < 3; k++) {
            mq_ref_dequant(q[i].q, q[i].scale, q[i].zero, rows, cols, q[i].group, bits[k], false, dq);
            char what[96];
            snprintf(what, sizeof what, "%s linear %d: folded codes at int%d == fake quantizer", scope, i, bits[k]);
            CHECK_CLOSE(what, dq, fq[i][k], (size_t)rows * cols, 0, 0);
        }
        int rr, cc;
        const float *w = mq_linear_weight(m, 0, q[i].kind, &rr, &cc);
        CHECK_CLOSE("model weight = int8 dequantization", w, fq[i][0], (size_t)rows * cols, 0, 0);
        free(dq);
    }
    for (int i = 0; i < nl; i++)
        for (int k = 0; k < 3; k++) free(fq[i][k]);
    for (int i = 0; i < nl && st == MQ_OK; i++) {
        free(q[i].q); free(q[i].scale); free(q[i].zero);
    }
    mq_omni_block_free(b);
    mq_state_free(s);
    free(x);
    free(y);
    mq_model_free(m);
}

static void test_adamw(void) {
    mq_adamw o;
    mq_adamw_init(&o, 3);
    float p[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.1f, -3.0f, 0.0f};
    mq_adamw_cfg c = mq_adamw_default(0.01f, 0.1f);
    o.t = 1;
    mq_adamw_update(&o, 0, 3, p, g, &c);
    /* step 1: m/(1-b1) = g, sqrt(v/(1-b2)) = |g|: p = p (1 - lr wd) - lr g / (|g| + eps) */
    float want[3] = {1.0f * 0.999f - 0.01f, -2.0f * 0.999f + 0.01f, 0.5f * 0.999f};
    CHECK_CLOSE("adamw first step", p, want, 3, 1e-6, 1e-6);
    mq_adamw_free(&o);
}

static void test_bad_opts(mq_model *m) {
    mq_quant_opts o = {.method = "omniquant", .scope = "ffn", .n_train = 3, .train_bits = {8, 4, 2},
                       .lambda = {1, 1, 1}, .calib_path = "/nonexistent", .calib_samples = 1, .calib_len = 8};
    mq_omni_opts oo;
    mq_omni_defaults(&oo);
    o.omni = &oo;
    oo.cd_hi = 2;
    oo.cd_lo = 8;
    mq_qlinear *q;
    int n;
    CHECK(mq_quantize(m, &o, &q, &n) == MQ_ERR_ARG, "co-distill 2:8 rejected");
    CHECK(strstr(mq_last_error(), "co-distill") != NULL, "message names the option: %s", mq_last_error());
    oo.cd_hi = 0;
    oo.cd_lo = 0;
    oo.epochs = -1;
    CHECK(mq_quantize(m, &o, &q, &n) == MQ_ERR_ARG, "negative epochs rejected");
}

int main(void) {
    test_adamw();
    cJSON *g = check_read_json(GOLDEN);
    mq_model *m = NULL;
    if (!g) {
        CHECK(0, "cannot read %s (python3 scripts/golden_omniquant.py writes it)", GOLDEN);
    } else if (mq_model_load(MODEL, NULL, &m)) {
        CHECK(0, "%s", mq_last_error());
    } else {
        test_golden_case(m, cJSON_GetObjectItem(g, "ffn"), "ffn");
        test_golden_case(m, cJSON_GetObjectItem(g, "all"), "all+LET+cd");
        test_bad_opts(m);
    }
    cJSON_Delete(g);
    mq_model_free(m);
    test_fold_and_descent("ffn", 0, false);
    test_fold_and_descent("all", 32, true);
    return check_done("test_omniquant");
}

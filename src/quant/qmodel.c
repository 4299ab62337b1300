/*
 * qmodel.c — applying bit plans to a checkpoint-loaded model (see qmodel.h).
 * A served model (m->serve_half) keeps no fp32 copy of a linear that has a
 * packed layout at its width: the buffer is freed when the plan packs it and
 * allocated again when a later plan needs the dequantized fp32 form.
 */
#include "quant/qmodel.h"

#include "nn/load_internal.h"
#include "quant/half.h"
#include "quant/kern.h"
#include "quant/ref.h"

#include <omp.h>

#include <string.h>

bool mq_qstore_has(const struct mq_qstore *s, int layer, mq_lin_kind kind) {
    for (int i = 0; s && i < s->n; i++)
        if (s->q[i].layer == layer && s->q[i].kind == kind) return true;
    return false;
}

void mq_qstore_free(struct mq_qstore *s) {
    if (!s) return;
    for (int i = 0; s->packed && i < s->n; i++) mq_pack_free(&s->packed[i]);
    free(s->packed);
    free(s->arena);
    mq_pack_free(&s->head_pk);
    mq_qlinears_free(s->q, s->n);
    mq_plan_free(&s->plan);
    free(s->head_fp);
    free(s);
}

/* head:8 of a served model whose head (or tied embedding table) is 16-bit:
 * the int8 codes of its rows widened one at a time, packed; no fp32 head. */
static mq_status head_int8_half(mq_model *m, struct mq_qstore *s) {
    const mq_half *h = m->head_half;
    size_t V = (size_t)h->rows, C = (size_t)h->cols;
    int T = omp_get_max_threads();
    uint8_t *q = mq_malloc(V * C), *zs = mq_malloc(V);
    float *as = mq_malloc(V * sizeof(float)), *rowbuf = mq_malloc((size_t)T * C * sizeof(float));
#pragma omp parallel num_threads(T)
    {
        float *row = rowbuf + (size_t)omp_get_thread_num() * C;
#pragma omp for
        for (size_t r = 0; r < V; r++) {
            mq_half_row(h, (int)r, row);
            mq_ref_grid(row, (int)C, NULL, NULL, &as[r], &zs[r]);
            for (size_t j = 0; j < C; j++) q[r * C + j] = mq_ref_code(row[j], as[r], zs[r]);
        }
    }
    mq_status st = mq_pack_build(q, as, zs, (int)V, (int)C, (int)C, 8, false, &s->head_pk);
    if (st == MQ_OK) m->head_packed = &s->head_pk;
    free(q); free(zs); free(as); free(rowbuf);
    return st;
}

/* int8 round-to-nearest of the head, per row (as llama.cpp serves its output
 * tensor quantized), from the unquantized values so plans can be switched:
 * untied heads are dequantized in place (the original kept in head_fp), tied
 * ones into head_fp (tok_emb is the original). With kernels, also packed. */
static mq_status head_int8(mq_model *m, struct mq_qstore *s, bool on, bool kernels) {
    size_t V = (size_t)m->cfg.vocab_size, C = (size_t)m->cfg.dim;
    bool tied = m->cfg.tied_embeddings;
    mq_pack_free(&s->head_pk);
    m->head_packed = NULL;
    if (m->head_half) return on && kernels ? head_int8_half(m, s) : MQ_OK;
    if (!on) {
        if (tied) m->lm_head = m->tok_emb;
        else if (s->head_fp) memcpy(m->lm_head, s->head_fp, V * C * sizeof(float));
        return MQ_OK;
    }
    if (!s->head_fp) {
        s->head_fp = mq_malloc(V * C * sizeof(float));
        if (!tied) memcpy(s->head_fp, m->lm_head, V * C * sizeof(float));
    }
    const float *orig = tied ? m->tok_emb : s->head_fp;
    float *dst = tied ? s->head_fp : m->lm_head;
    m->lm_head = dst;
    uint8_t *q = kernels ? mq_malloc(V * C) : NULL, *zs = mq_malloc(V);
    float *as = mq_malloc(V * sizeof(float));
#pragma omp parallel for
    for (size_t r = 0; r < V; r++) {
        const float *src = orig + r * C;
        mq_ref_grid(src, (int)C, NULL, NULL, &as[r], &zs[r]);
        for (size_t j = 0; j < C; j++) {
            uint8_t c = mq_ref_code(src[j], as[r], zs[r]);
            if (q) q[r * C + j] = c;
            dst[r * C + j] = mq_ref_dequant_one(c, as[r], zs[r], 8, false);
        }
    }
    mq_status st = MQ_OK;
    if (q) {
        st = mq_pack_build(q, as, zs, (int)V, (int)C, (int)C, 8, false, &s->head_pk);
        if (st == MQ_OK) m->head_packed = &s->head_pk;
    }
    free(q); free(zs); free(as);
    return st;
}

mq_status mq_model_apply_plan(mq_model *m, const mq_plan *p) {
    struct mq_qstore *s = m->quant;
    if (!s) return mq_fail(MQ_ERR_ARG, "%s: not a matquant checkpoint; bit plans apply to checkpoints", m->source);
    if (p->n_layers != m->cfg.n_layers)
        return mq_fail(MQ_ERR_ARG, "bit plan for %d layers applied to a model with %d", p->n_layers, m->cfg.n_layers);
    bool kernels = !mq_kern_float_forced();
    /* a served model: fp32 only for the linears the plan does not pack */
    for (int i = 0; m->serve_half && i < s->n; i++) {
        const mq_qlinear *q = &s->q[i];
        float **slot = mq_layer_weight_slot(&m->layers[q->layer], q->kind);
        bool packs = kernels && mq_pack_layout_ok(q->rows, q->cols, q->group, p->bits[q->layer], p->extra[q->layer]);
        if (packs && *slot) {
            mq_model_release(m, *slot);
            *slot = NULL;
        } else if (!packs && !*slot) {
            *slot = mq_model_alloc(m, (size_t)q->rows * (size_t)q->cols);
        }
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < s->n; i++) {
        const mq_qlinear *q = &s->q[i];
        int rows, cols;
        float *w = mq_linear_weight(m, q->layer, q->kind, &rows, &cols);
        if (w)
            mq_ref_dequant(q->q, q->scale, q->zero, q->rows, q->cols, q->group, p->bits[q->layer],
                           p->extra[q->layer], w);
    }
    if (!s->packed) s->packed = mq_calloc((size_t)s->n, sizeof *s->packed);
    for (int i = 0; i < s->n; i++) {
        mq_pack_free(&s->packed[i]);
        m->layers[s->q[i].layer].packed[s->q[i].kind] = NULL;
    }
    free(s->arena);
    s->arena = NULL;
    /* linears without a packed layout (a width or group the kernels do not
     * take) are served from their dequantized fp32 weights above; the code
     * planes of the others go, in checkpoint order, into one arena whose
     * 2 MiB pages are huge pages where the kernel allows (mq_stream_alloc):
     * a decode streams all of it once per token */
    size_t total = 0;
    for (int i = 0; kernels && i < s->n; i++) {
        const mq_qlinear *q = &s->q[i];
        if (mq_pack_layout_ok(q->rows, q->cols, q->group, p->bits[q->layer], p->extra[q->layer]))
            total += mq_pack_data_bytes(q->rows, q->cols, p->bits[q->layer]);
    }
    if (total) s->arena = mq_stream_alloc(total);
    mq_status st = MQ_OK;
    size_t off = 0;
    for (int i = 0; kernels && st == MQ_OK && i < s->n; i++) {
        const mq_qlinear *q = &s->q[i];
        int r = p->bits[q->layer];
        bool x = p->extra[q->layer];
        if (!mq_pack_layout_ok(q->rows, q->cols, q->group, r, x)) continue;
        st = mq_pack_build_at(q->q, q->scale, q->zero, q->rows, q->cols, q->group, r, x, s->arena + off,
                              &s->packed[i]);
        off += mq_pack_data_bytes(q->rows, q->cols, r);
        if (st == MQ_OK) m->layers[q->layer].packed[q->kind] = &s->packed[i];
    }
    if (st == MQ_OK) st = head_int8(m, s, p->head_bits == 8, kernels);
    if (st != MQ_OK) return st;
    mq_plan_free(&s->plan);
    s->plan = *p;
    s->plan.bits = mq_malloc((size_t)p->n_layers);
    s->plan.extra = mq_malloc((size_t)p->n_layers * sizeof(bool));
    memcpy(s->plan.bits, p->bits, (size_t)p->n_layers);
    memcpy(s->plan.extra, p->extra, (size_t)p->n_layers * sizeof(bool));
    return MQ_OK;
}

void mq_model_plan_bits(const mq_model *m, const mq_plan *p, double *eff, double *storage) {
    const struct mq_qstore *s = m->quant;
    double e = 0, st = 0, n = 0;
    for (int i = 0; s && i < s->n; i++) {
        const mq_qlinear *q = &s->q[i];
        int64_t numel = (int64_t)q->rows * q->cols, over = 0;
        int r = p->bits[q->layer];
        bool x = p->extra[q->layer];
        if (x) over = mq_ref_count_overflow(q->q, (size_t)numel, r);
        e += mq_ref_effective_bits(r, x, over, numel) * (double)numel;
        st += mq_ref_storage_bits(r, x, over, numel) * (double)numel;
        n += (double)numel;
    }
    *eff = n > 0 ? e / n : 0;
    *storage = n > 0 ? st / n : 0;
}

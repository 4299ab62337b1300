/*
 * qmodel.h — a model loaded from a matquant checkpoint: its parent codes
 * stay in memory and a bit plan decides the weights the forward pass uses:
 * each quantized linear is dequantized to fp32 at its layer's width and, at
 * widths with a packed layout (8, 6, 4, 3, 2, with or without extra
 * precision), also packed for the integer kernels (quant/kern.h), which the
 * forward pass then uses instead. MQ_KERNELS=float skips packing (the fp32
 * accuracy reference). Switching plans re-dequantizes and re-packs; nothing
 * is re-read.
 *
 * Not here: the kernels and layouts themselves (quant/pack, quant/kern_*).
 */
#ifndef MQ_QMODEL_H
#define MQ_QMODEL_H

#include "io/checkpoint.h"
#include "quant/pack.h"
#include "quant/plan.h"

struct mq_qstore {
    mq_qlinear *q;
    int n;
    mq_qmeta meta;
    mq_plan plan;          /* the plan currently applied */
    float *head_fp;        /* (V, C) untied: copy of the unquantized head once head:8 was applied;
                              tied: the int8-dequantized head (tok_emb stays unquantized) */
    mq_packed *packed;     /* (n) q[i] packed at the applied width; .data NULL if not packed */
    uint8_t *arena;        /* the code planes of all packed[i], one huge-page buffer (mq_stream_alloc) */
    mq_packed head_pk;     /* the int8 head while head:8 is served by the kernels */
};

/* Dequantize every quantized linear of m at plan p's width for its layer
 * (and the head at int8 when p asks; with tied embeddings the head gets its
 * own buffer, the embedding table is unchanged) and, unless
 * MQ_KERNELS=float, attach packed layouts for the kernels to m->layers[].packed
 * and m->head_packed (widths without a layout stay fp32). */
mq_status mq_model_apply_plan(mq_model *m, const mq_plan *p);
/* Bits per quantized weight under plan p: the paper's effective bits and the
 * true storage bits (extra-precision indices counted). */
void mq_model_plan_bits(const mq_model *m, const mq_plan *p, double *eff, double *storage);
void mq_qstore_free(struct mq_qstore *s);
/* Is (layer, kind) stored quantized? */
bool mq_qstore_has(const struct mq_qstore *s, int layer, mq_lin_kind kind);

#endif

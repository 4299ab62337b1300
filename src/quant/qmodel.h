/*
 * qmodel.h — a model loaded from a matquant checkpoint: its parent codes
 * stay in memory and a bit plan decides the fp32 weights the forward pass
 * uses (each quantized linear dequantized at its layer's width). Switching
 * plans re-dequantizes; nothing is re-read.
 *
 * Not here: fast packed kernels (they build their layouts from the same codes).
 */
#ifndef MQ_QMODEL_H
#define MQ_QMODEL_H

#include "io/checkpoint.h"
#include "quant/plan.h"

struct mq_qstore {
    mq_qlinear *q;
    int n;
    mq_qmeta meta;
    mq_plan plan;          /* the plan currently applied */
    float *head_fp;        /* (V, C) copy of the unquantized head while head:8 is applied, else NULL */
};

/* Dequantize every quantized linear of m at plan p's width for its layer
 * (and the head at int8 when p asks). */
mq_status mq_model_apply_plan(mq_model *m, const mq_plan *p);
/* Bits per quantized weight under plan p: the paper's effective bits and the
 * true storage bits (extra-precision indices counted). */
void mq_model_plan_bits(const mq_model *m, const mq_plan *p, double *eff, double *storage);
void mq_qstore_free(struct mq_qstore *s);
/* Is (layer, kind) stored quantized? */
bool mq_qstore_has(const struct mq_qstore *s, int layer, mq_lin_kind kind);

#endif

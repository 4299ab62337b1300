/*
 * optim.h — AdamW (Loshchilov & Hutter, 2019) over flat fp32 arrays, with
 * bias correction and decoupled weight decay, exactly as torch.optim.AdamW
 * computes it (so that goldens from PyTorch match):
 *   p *= 1 - lr * wd
 *   m  = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2
 *   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * Several parameter groups with their own learning rates share one moment
 * slab: call mq_adamw_update on each range with its config.
 *
 * Not here: schedules and gradient clipping (train/ops_lm.h), the
 * parameters' meaning (the methods).
 */
#ifndef MQ_OPTIM_H
#define MQ_OPTIM_H

#include "core/core.h"

typedef struct {
    float lr;
    float beta1, beta2; /* 0.9, 0.999 */
    float eps;          /* 1e-8 */
    float weight_decay; /* decoupled; 0 for OmniQuant */
} mq_adamw_cfg;

/* torch's defaults with the given lr and weight decay. */
mq_adamw_cfg mq_adamw_default(float lr, float weight_decay);

typedef struct {
    size_t n;
    float *m, *v; /* (n) first and second moments, zero at start */
    int64_t t;    /* steps taken */
} mq_adamw;

/* Moments for n parameters (zeroed), t = 0. mq_adamw_free releases them. */
void mq_adamw_init(mq_adamw *o, size_t n);
void mq_adamw_free(mq_adamw *o);
/* Zero the moments and the step count (a new block's parameters). */
void mq_adamw_reset(mq_adamw *o);

/* One AdamW update of p[off .. off+n) with gradient g (n) at step t >= 1
 * (the caller increments o->t once per step, before updating its groups). */
void mq_adamw_update(mq_adamw *o, size_t off, size_t n, float *p, const float *g, const mq_adamw_cfg *c);

#endif

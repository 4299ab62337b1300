/*
 * optim.c — AdamW over flat fp32 arrays (see optim.h). The update follows
 * torch.optim.AdamW's single-tensor path operation by operation (bias
 * corrections in double like Python floats, the rest in fp32), element by
 * element over OpenMP threads for large tensors.
 *
 * Not here: parameter layout, schedules.
 */
#include "train/optim.h"

#include <math.h>
#include <string.h>

mq_adamw_cfg mq_adamw_default(float lr, float weight_decay) {
    return (mq_adamw_cfg){.lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = weight_decay};
}

void mq_adamw_init(mq_adamw *o, size_t n) {
    o->n = n;
    o->m = mq_calloc(n ? n : 1, sizeof(float));
    o->v = mq_calloc(n ? n : 1, sizeof(float));
    o->t = 0;
}

void mq_adamw_free(mq_adamw *o) {
    free(o->m);
    free(o->v);
    memset(o, 0, sizeof *o);
}

void mq_adamw_reset(mq_adamw *o) {
    memset(o->m, 0, o->n * sizeof(float));
    memset(o->v, 0, o->n * sizeof(float));
    o->t = 0;
}

void mq_adamw_update(mq_adamw *o, size_t off, size_t n, float *p, const float *g, const mq_adamw_cfg *c) {
    MQ_ASSERT(o->t >= 1 && off + n <= o->n);
    double bc1 = 1.0 - pow((double)c->beta1, (double)o->t);
    double bc2 = 1.0 - pow((double)c->beta2, (double)o->t);
    float step = (float)(c->lr / bc1), bc2s = (float)sqrt(bc2);
    float decay = 1.0f - c->lr * c->weight_decay;
    float *m = o->m + off, *v = o->v + off;
    /* element-wise: the same result whatever the thread count */
#pragma omp parallel for if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        if (c->weight_decay != 0) p[i] *= decay;
        m[i] = c->beta1 * m[i] + (1.0f - c->beta1) * g[i];
        v[i] = c->beta2 * v[i] + (1.0f - c->beta2) * g[i] * g[i];
        float denom = sqrtf(v[i]) / bc2s + c->eps;
        p[i] -= step * m[i] / denom;
    }
}

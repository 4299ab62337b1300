/*
 * plan.h — bit plans: which width each transformer block's quantized
 * linears are served at, from one checkpoint (Mix'n'Match).
 *
 * Grammar (docs/format.md):
 *   uniform     "8" | "6" | "4" | "3" | "2" | "2x"   (x: extra precision)
 *   per layer   "0-5:2,6-23:4,24-29:2x"  ranges inclusive, every layer
 *               exactly once; an entry "head:8" also serves the output head
 *               at int8 (default: the head stays in its source precision)
 *   JSON file   "plan.json": {"default": 4, "layers": {"0-5": 2, "6": "2x"},
 *               "head": 8}   (a layer not listed takes "default")
 * A list of plans (for `eval --bits`): plans separated by ';', or, when no
 * plan in it uses ':', by ',' ("8,6,4,3,2,2x" is six uniform plans).
 */
#ifndef MQ_PLAN_H
#define MQ_PLAN_H

#include "core/core.h"

typedef struct {
    int n_layers;
    uint8_t *bits;    /* (n_layers) width 1..8 */
    bool *extra;      /* (n_layers) extra precision */
    int head_bits;    /* 0 = head unquantized, else 8 */
    char text[256];   /* canonical form, for tables */
} mq_plan;

/* Parse one plan for a model with n_layers blocks. */
mq_status mq_plan_parse(const char *s, int n_layers, mq_plan *out);
/* Parse a list of plans; *plans is malloc'ed (mq_plans_free). */
mq_status mq_plan_list_parse(const char *s, int n_layers, mq_plan **plans, int *n);
void mq_plan_free(mq_plan *p);
void mq_plans_free(mq_plan *p, int n);
/* A uniform plan at width r (extra: "rx"). */
void mq_plan_uniform(int n_layers, int r, bool extra, mq_plan *out);

#endif

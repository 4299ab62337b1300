/*
 * plan.h — bit plans: the width each transformer block's quantized linears
 * are served at, from one checkpoint (Mix'n'Match), plus the plan's
 * effective and storage bits.
 *
 * Grammar (docs/format.md §4 is normative):
 *   width      "1".."8" | "1x".."7x"          (x: extra precision; "2x")
 *   uniform    width                          "4", "2x"
 *   per layer  entry ("," entry)*             any plan containing ':'
 *     entry    RANGE ":" width                "0-5:2", "6:2x"  (inclusive)
 *            | "head:8"                       also serve the output head at int8
 *            | width                          default for layers not listed
 *     every layer gets exactly one width: overlaps, gaps (without a default),
 *     reversed ranges and layers past the model are errors naming them.
 *   JSON file  a path ending in ".json":
 *     {"default": 4, "layers": {"0-5": 2, "6": "2x"}, "head": 8}
 *     widths as numbers or strings; "head" 8 or 0 (unquantized, the default);
 *     unknown keys are errors.
 *   list       (eval --bits) plans separated by ';'; when the string has
 *              neither ';' nor ':', ',' separates plans ("8,6,4,3,2,2x" is
 *              six uniform plans). Empty items are skipped.
 *
 * Not here: applying a plan to a model (quant/qmodel), searching plans.
 */
#ifndef MQ_PLAN_H
#define MQ_PLAN_H

#include "core/core.h"

typedef struct {
    int n_layers;
    uint8_t *bits;    /* (n_layers) width 1..8 */
    bool *extra;      /* (n_layers) extra precision */
    int head_bits;    /* 0 = head unquantized, else 8 */
    char text[256];   /* canonical form (mq_plan_format), "..."-terminated if longer */
} mq_plan;

/* Parse one plan (string or .json path) for a model with n_layers blocks.
 * On success *out owns bits/extra (mq_plan_free). On error *out holds
 * nothing to free and the message quotes the plan and names the entry,
 * layer or key at fault (MQ_ERR_ARG for strings, MQ_ERR_FORMAT/IO for files). */
mq_status mq_plan_parse(const char *s, int n_layers, mq_plan *out);
/* Parse a list of plans; *plans is malloc'ed (mq_plans_free), *n >= 1. */
mq_status mq_plan_list_parse(const char *s, int n_layers, mq_plan **plans, int *n);
void mq_plan_free(mq_plan *p);
void mq_plans_free(mq_plan *p, int n);
/* A uniform plan at width r (extra: "rx"); asserts 1 <= r <= 8. */
void mq_plan_uniform(int n_layers, int r, bool extra, mq_plan *out);

/* The canonical string of p into buf (cap bytes, always NUL-terminated if
 * cap > 0); returns the full length (as snprintf). Uniform plans print as
 * "4" / "2x", others as maximal runs "0-5:2,6-23:4,24:2x"; ",head:8" is
 * appended when the head is quantized. mq_plan_parse(format(p)) == p. */
size_t mq_plan_format(const mq_plan *p, char *buf, size_t cap);

/* One quantized tensor for bit accounting. */
typedef struct {
    int layer;          /* block index 0..n_layers-1, or -1 for the output head */
    int64_t numel;
    int64_t n_over[8];  /* [r], r = 1..7: weights whose unclamped r-bit slice is
                           2^r (mq_ref_count_overflow); only read for "rx" */
} mq_plan_tensor;

/* Effective bits = sum(numel * bits) / sum(numel) over the tensors the plan
 * quantizes (blocks always; the head only when head_bits = 8, at 8 bits),
 * with "rx" counted as mq_ref_effective_bits; *storage likewise with
 * mq_ref_storage_bits (32-bit index per overflow weight). No tensors: 0.
 * Errors (MQ_ERR_ARG): a layer outside the plan, a negative numel or an
 * overflow count larger than numel. */
mq_status mq_plan_bits(const mq_plan *p, const mq_plan_tensor *t, int n, double *eff, double *storage);

#endif

/*
 * quantize.h — the post-training quantization pipeline shared by the
 * learning-free methods: `minmax` (plain MinMax int8 parent) and `gptq`
 * (MatGPTQ: GPTQ whose rounding picks, per weight, the parent code that
 * minimises sum_r lambda_r (w - w_r(q))^2 over the trained widths R).
 *
 * gptq runs block by block on calibration sequences: the block's inputs come
 * from the already quantized blocks before it (dequantized at the widest
 * trained width, MatGPTQ's "8-bit slice feeds the next block"); Hessians of
 * q/k/v, o, gate/up come from one pass over the block, down_proj's from a
 * second pass after gate/up are quantized.
 *
 * Not here: learned methods (omniquant.c, qat.c), the file format
 * (io/checkpoint.c), the spec of codes and slices (quant/ref.c).
 */
#ifndef MQ_QUANTIZE_H
#define MQ_QUANTIZE_H

#include "io/checkpoint.h"

typedef struct {
    const char *method;       /* "minmax" | "gptq" | "omniquant" */
    int n_train;              /* |R| */
    int train_bits[8];        /* R, e.g. {8, 4, 2} */
    float lambda[8];          /* lambda_r */
    bool parent_grid;         /* single width: keep the int8 parent grid (single-precision MatQuant)
                                 instead of the native r-bit grid (the plain baseline) */
    const char *scope;        /* "ffn" | "all" */
    int group;                /* 0 = per output channel, else 32/64/128/256 */
    const char *calib_path;   /* jsonl or text */
    int calib_samples, calib_len;
    uint64_t seed;
    float damp;               /* GPTQ dampening, relative (0.01) */
    int block;                /* GPTQ lazy-update block (128) */
    const struct mq_omni_opts *omni; /* method "omniquant": its options (train/omniquant.h) */
    /* progress lines (per block); may be NULL */
    void (*progress)(void *user, const char *line);
    void *user;
} mq_quant_opts;

/* The grid width used: the native r-bit grid for a single trained width r
 * (unless parent_grid), else the int8 parent grid. */
int mq_quant_grid_bits(const mq_quant_opts *o);
/* Quantize the linears in scope of m. m's fp32 weights of those linears are
 * replaced by their dequantization at the widest trained width (the model
 * stays usable). *out (mq_qlinears_free) receives one entry per linear. */
mq_status mq_quantize(mq_model *m, const mq_quant_opts *o, mq_qlinear **out, int *n);

#endif

/*
 * omniquant.h — MatQuant on OmniQuant (Nair et al. 2025 §4.1; Shao et al.,
 * ICLR 2024): post-training quantization block by block. Weights are
 * frozen; per quantized linear and per output channel (or group) the
 * clipping logits u, l of LWC are learned (hi' = sigmoid(u) max, lo' =
 * sigmoid(l) min, init 4.0), and with `let` per-channel LET scales s between
 * each norm and the projections reading it (norm weight / s, columns of the
 * projections * s). The loss of one calibration sequence is
 *   sum_{r in R} lambda_r * MSE(target, block output with every quantized
 *   weight fake-quantized at slice r)
 *   [+ w_cd * MSE(stop_grad(output at slice hi), output at slice lo)]
 * (co-distillation hi:lo; the higher slice's output is a constant target, so
 * the low slice learns from it and the high slice is not pulled towards the
 * low one), straight-through through every round (train/ops.h). AdamW with
 * weight decay 0, one sequence per step, sequences in order, `epochs` passes.
 * Then the learned ranges are folded into parent codes with the spec's own
 * quantizer (mq_ref_quantize_clip, or the native r-bit grid for a single
 * width without --parent-grid) and the model's weights replaced by their
 * dequantization at the widest trained width.
 *
 * Data flow (OmniQuant's): the inputs of block i are the calibration
 * activations after the already quantized blocks 0..i-1 (at the widest
 * width); the targets are the unquantized model's outputs of block i on its
 * own unquantized trajectory.
 *
 * Resume: after each block its codes (and LET-folded norms) are written
 * atomically to state_dir/block_NNN.bin with a fingerprint of the options;
 * with `resume`, finished blocks are read back (both trajectories are
 * recomputed by forward passes) and training continues at the first missing
 * block.
 *
 * Not here: the CLI (tools/cmd_quantize.c), the ops (train/ops.c), the
 * checkpoint format (io/checkpoint.c).
 */
#ifndef MQ_OMNIQUANT_H
#define MQ_OMNIQUANT_H

#include "train/quantize.h"

typedef struct mq_omni_opts {
    int epochs;             /* passes over the calibration sequences per block (OmniQuant: 20) */
    float lr_lwc;           /* AdamW lr of the clipping logits (1e-2) */
    float lr_let;           /* AdamW lr of the LET scales (5e-3) */
    bool let;               /* learn LET scales */
    int cd_hi, cd_lo;       /* co-distillation: slice cd_lo's output learns slice cd_hi's; 0 = off */
    float cd_weight;        /* weight of that term (1) */
    const char *state_dir;  /* per-block state for --resume (OUT.partial); NULL: none written */
    bool resume;            /* continue from the blocks found in state_dir */
} mq_omni_opts;

/* The defaults above (co-distillation off, no state dir). */
void mq_omni_defaults(mq_omni_opts *oo);

/* Quantize the linears in o->scope of m with MatQuant-OmniQuant (o->omni
 * holds the options above; o->train_bits/lambda/group/parent_grid/calib_*
 * as for gptq). As mq_quantize: m's quantized weights are replaced by their
 * dequantization at the widest trained width, *out gets one mq_qlinear per
 * linear (layer-major, kind order). Errors: bad options (MQ_ERR_ARG naming
 * the option), calibration data, a NaN loss (MQ_ERR_NUMERIC naming the
 * block and epoch), state files that do not match (MQ_ERR_FORMAT naming
 * the file). */
mq_status mq_omniquant(mq_model *m, const mq_quant_opts *o, mq_qlinear **out, int *n);

/* Remove state_dir and its block files (after the checkpoint is written). */
void mq_omni_state_remove(const char *state_dir);

/* ---- one block's trainer, exposed for tests and goldens ----
 * Parameters, one flat array: for every quantized linear of the block in
 * kind order (q, k, v, o, gate, up, down as in scope) u (rows, G) then
 * l (rows, G); then with LET s_attn (C) when attention is in scope, and
 * s_ffn (C). Gradients have the same layout. */
typedef struct mq_omni_block mq_omni_block;

/* A trainer for block `layer` of m on sequences of T tokens (positions
 * 0..T-1). let_init (optional, NULL: 1) gives the LET scales' initial
 * values in parameter order. The trainer reads m's weights of the block,
 * which must stay unchanged until mq_omni_block_fold. */
mq_omni_block *mq_omni_block_new(const mq_model *m, int layer, const mq_quant_opts *o, int T);
void mq_omni_block_free(mq_omni_block *b);
/* Flat parameters (writable) and gradients, *n their count. */
float *mq_omni_block_params(mq_omni_block *b, size_t *n);
const float *mq_omni_block_grads(const mq_omni_block *b);
/* Zero the gradients, run the loss on one sequence x (T, C) against
 * target (T, C) and accumulate its gradient. Returns the total loss;
 * per_width (optional) gets the MSE of every trained width in R order. */
double mq_omni_block_loss_grad(mq_omni_block *b, const float *x, const float *target, double *per_width);
/* One AdamW step (weight decay 0) with the current gradients. */
void mq_omni_block_step(mq_omni_block *b);
/* Initialise the LET scales from activation statistics: s = sqrt(act_max) /
 * sqrt(w_max) per channel, act_max over the n sequences xs (n, T, C). */
void mq_omni_block_let_init(mq_omni_block *b, const float *xs, int n);
/* Fold: write the learned codes into q (n_q entries, kind order, storage
 * allocated here) and update m's block (weights := dequantized at the
 * widest width; with LET the norms take 1/s). */
mq_status mq_omni_block_fold(mq_omni_block *b, mq_model *m, mq_qlinear *q);
/* Number of quantized linears of the block. */
int mq_omni_block_nlin(const mq_omni_block *b);
/* Matrix-product work of the last loss_grad call: FLOPs and milliseconds. */
void mq_omni_block_matmul_stats(const mq_omni_block *b, double *flops, double *ms);

#endif

/*
 * qat.h — MatQuant on quantization-aware training (DESIGN.md §5, issue 5):
 * end-to-end training of the int8 parent by distillation from the
 * unquantized model.
 *
 * What is learned: the fp32 latent weights of every linear in scope and their
 * LWC clipping logits (one pair per row and group), through the fake
 * quantizer of train/ops.h with straight-through estimators. Everything else
 * (embeddings, norms, head, linears out of scope) stays frozen at the source
 * values, so the checkpoint's unquantized tensors are the source's and the
 * teacher is exactly the source model.
 *
 * Loss of one micro-batch (N = batch * seq_len positions, every position
 * scored):
 *   L = sum_r lambda_r * KL(p_teacher || p_r)  +  sum_c w_c * KL(sg(p_from_c) || p_to_c)
 * p_r the student's softmax with every scoped weight fake-quantized at slice
 * r of the parent grid; sg = stop-gradient: a co-distillation term
 * (--co-distill 8:2) pulls slice 2 towards slice 8's current distribution but
 * sends no gradient into slice 8's forward pass (so int8 is not dragged
 * towards int2; the paper's [8, 4, 2, 8->2] reading).
 * KL is the mean over positions (torch kl_div batchmean with log targets).
 *
 * A step = `accum` micro-batches whose gradients add up (each term scaled by
 * 1/accum), then global-norm clipping, AdamW (train/optim.h) at the
 * warmup + cosine learning rate. Memory is planned once in mq_qat_new: one
 * slab for parameters, one for gradients, one per AdamW moment, one
 * activation arena; a step allocates nothing.
 *
 * Training state (step, parameters, moments) is written atomically every
 * save_every steps; a resumed run continues bit-exactly (the data of step s
 * is a pure function of (seed, s), and the thread count must be the same).
 *
 * Not here: the ops (train/ops.h, train/ops_lm.h), the optimizer
 * (train/optim.h), the file format (io/checkpoint.c).
 * Families: llama, mistral and qwen2 without sliding windows or soft-caps
 * (gemma2 is rejected as unsupported).
 */
#ifndef MQ_QAT_H
#define MQ_QAT_H

#include "io/checkpoint.h"

#define MQ_QAT_MAX_CO 8

typedef struct {
    int n_train;              /* |R| */
    int train_bits[8];        /* R */
    float lambda[8];          /* lambda_r */
    int n_co;                 /* co-distillation terms */
    int co_from[MQ_QAT_MAX_CO], co_to[MQ_QAT_MAX_CO]; /* widths, both in R, from > to */
    float co_weight[MQ_QAT_MAX_CO];
    bool parent_grid;         /* single width: train on the int8 parent grid, not the native r-bit one */
    const char *scope;        /* "ffn" | "all" */
    int group;                /* 0 = per output channel, else 32..256 */
    const char *data_path;    /* training text (jsonl or plain); NULL: none (mq_qat_loss on given tokens only) */
    int64_t tokens;           /* token budget: steps = tokens / (batch * seq_len * accum), >= 1 */
    int seq_len, batch, accum;
    float lr;                 /* peak LR of the weights */
    float lr_clip;            /* peak LR of the clipping logits */
    float min_lr_frac;        /* cosine floor, fraction of the peak */
    float weight_decay;       /* AdamW, decoupled, weights only */
    float clip_norm;          /* global gradient norm limit, 0 = none */
    int warmup;               /* warmup steps */
    uint64_t seed;            /* data sampling */
    const char *state_path;   /* training-state file, or NULL: no saving and no resume */
    int save_every;           /* steps between state saves (0 = only at the end) */
    bool resume;              /* continue from state_path (error if absent or mismatched) */
    int64_t stop_after;       /* >0: stop after this many steps in this run (MQ_ERR_ARG-free early
                                 stop for tests; mq_qat_train returns MQ_OK and *done = false) */
    bool no_quant;            /* tests: the student uses its latent weights unquantized */
    int log_every;            /* progress line every N steps (0 = 10) */
    void (*progress)(void *user, const char *line);
    void *user;
} mq_qat_opts;

/* Defaults: R = {8,4,2}, lambdas 1, ffn scope, 2^20 tokens of 8 x 256, lr 1e-4 (weights) and 1e-2
 * (LWC logits), cosine to 10%, 20 warmup steps, clip 1.0, no decay, save every 100 steps. */
void mq_qat_defaults(mq_qat_opts *o);
/* The model-independent option checks (widths, lambdas, co-distillation
 * terms, scope, group, sizes, rates); MQ_ERR_ARG naming the option. */
mq_status mq_qat_check_opts(const mq_qat_opts *o);
/* Parse "--co-distill FROM:TO[:WEIGHT][,...]" (weight default 1) into o. */
mq_status mq_qat_parse_co(const char *s, mq_qat_opts *o);

typedef struct mq_qat mq_qat;

/* Plan the training of model m (not copied: m must outlive the trainer and
 * its weights are read as the teacher's; they are not modified until
 * mq_qat_finish). Validates options and the model family; loads and
 * tokenizes the data when data_path is set (m->tok is needed then) and
 * draws every micro-batch of the run. Errors name the option or file. */
mq_status mq_qat_new(const mq_model *m, const mq_qat_opts *o, mq_qat **out);
void mq_qat_free(mq_qat *t);

/* Run the remaining steps (from the resumed step, if any). *done is true
 * when every step has run. Errors: MQ_ERR_NUMERIC on NaN/Inf (the message
 * names the tensor and layer), I/O errors of the state file. */
mq_status mq_qat_train(mq_qat *t, bool *done);

/* Loss of one micro-batch given its tokens (batch, seq_len) at the current
 * parameters, and with grads non-zero the gradients ADDED into the gradient
 * slab (scaled by `scale`). per_slice[k] receives the k-th width's KL
 * (may be NULL). For tests and for the golden comparison. */
mq_status mq_qat_loss(mq_qat *t, const int32_t *tokens, bool grads, float scale, double *loss, double *per_slice);

/* Parameter and gradient slabs (n floats each) and their layout: tensor i
 * occupies [off[i], off[i] + size[i]); names are HF-style
 * ("model.layers.0.mlp.up_proj.weight", "....lwc_upper", "....lwc_lower"). */
size_t mq_qat_n_params(const mq_qat *t);
float *mq_qat_params(mq_qat *t);
float *mq_qat_grads(mq_qat *t);
int mq_qat_n_tensors(const mq_qat *t);
const char *mq_qat_tensor(const mq_qat *t, int i, size_t *off, size_t *size);
void mq_qat_zero_grads(mq_qat *t);
/* One optimizer step at the schedule's learning rate from the gradient slab
 * (clipped); increments the step counter. Returns the gradient norm before
 * clipping in *gnorm. */
mq_status mq_qat_apply(mq_qat *t, double *gnorm);
int64_t mq_qat_step(const mq_qat *t);
int64_t mq_qat_total_steps(const mq_qat *t);
/* The tokens (batch, seq_len) of micro-batch `micro` of step `step`. */
const int32_t *mq_qat_batch(const mq_qat *t, int64_t step, int micro);
/* Mean loss of the last completed step (sum over its micro-batches). */
double mq_qat_last_loss(const mq_qat *t);
/* The teacher's log-probabilities (batch * seq_len, V) of the last mq_qat_loss. */
const float *mq_qat_teacher_logp(const mq_qat *t);

/* Fold the learned weights and clipping ranges into parent codes
 * (mq_ref_quantize_clip on the int8 grid, or the native r-bit grid for a
 * single width), write them into *out (n linears, mq_qlinears_free), and
 * replace m's scoped fp32 weights by their dequantization at the widest
 * trained width. */
mq_status mq_qat_finish(mq_qat *t, mq_model *m, mq_qlinear **out, int *n);

/* The whole of `quantize --method qat`: mq_qat_new, mq_qat_train and, when
 * every step has run, mq_qat_finish (then the training state file is
 * removed). *done is false, with nothing in *out, when stop_after ended the
 * run early (the state is saved for --resume). */
mq_status mq_qat_quantize(mq_model *m, const mq_qat_opts *o, mq_qlinear **out, int *n, bool *done);

#endif

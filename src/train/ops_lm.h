/*
 * ops_lm.h — the language-model ends of a training step, each a _fwd/_bwd
 * pair written by hand: token embedding, the LM head, a numerically stable
 * log-softmax, KL distillation from a target distribution (the teacher's or
 * another slice's logits, stop-gradient on the target), next-token
 * cross-entropy; and the step-level helpers: global gradient norm, clipping
 * factor, warmup + cosine learning rate. fp32 tensors, double accumulation in
 * every reduction over the vocabulary or over a whole gradient.
 *
 * Losses are means over the N rows (tokens); a _bwd takes the loss weight
 * `scale` (lambda_r / accumulation steps) and ADDS scale * dloss/dx into its
 * gradient, so several terms and micro-batches accumulate in place.
 *
 * Not here: the transformer blocks (train/ops.h), the model-level step
 * (train/qat.c). Derivations: docs/derivations/kl_head.md.
 * References: torch.nn.functional.log_softmax / kl_div(log_target=True,
 * reduction="batchmean") / cross_entropy; Loshchilov & Hutter (SGDR) for the
 * cosine schedule.
 */
#ifndef MQ_OPS_LM_H
#define MQ_OPS_LM_H

#include "core/core.h"

/* out(N, C) = scale * emb[tokens[n]] (emb (V, C)); token ids must be in
 * 0..V-1 (the caller validates data; asserted). */
void mq_embed_fwd(float *out, const int32_t *tokens, const float *emb, int N, int C, int V, float scale);
/* demb[tokens[n]] += scale * dout[n] for every row n (demb (V, C)). Rows
 * with repeated tokens add up; serial in n so the sum order is fixed. */
void mq_embed_bwd(float *demb, const float *dout, const int32_t *tokens, int N, int C, int V, float scale);

/* logits(N, V) = x(N, C) @ w(V, C)^T (OpenBLAS, output columns split over
 * OpenMP threads as in nn/forward.c). */
void mq_head_fwd(float *logits, const float *x, const float *w, int N, int C, int V);
/* dx(N, C) += dlogits(N, V) @ w; dw(V, C) += dlogits^T @ x unless dw is NULL
 * (a frozen head). */
void mq_head_bwd(float *dx, float *dw, const float *dlogits, const float *x, const float *w, int N, int C,
                 int V);

/* logp(N, V) = logits - logsumexp(logits) per row, max-shifted, the sum of
 * exponentials in double. logp may alias logits. */
void mq_log_softmax_fwd(float *logp, const float *logits, int N, int V);

/* Mean over rows of KL(p_t || p_s) = sum_v p_t (log p_t - log p_s), from
 * log-probabilities logp_t (target, treated as a constant) and logp_s
 * (student), both (N, V). Terms with p_t = 0 contribute 0. */
double mq_kl_fwd(const float *logp_t, const float *logp_s, int N, int V);
/* dlogits_s(N, V) += scale / N * (p_s - p_t): the gradient of
 * scale * mq_kl_fwd with respect to the student's logits (through its
 * log-softmax); nothing flows to the target. */
void mq_kl_bwd(float *dlogits, const float *logp_t, const float *logp_s, int N, int V, float scale);

/* Mean over rows of -logp[n][targets[n]]; rows with target < 0 are ignored
 * (and the mean is over the others; 0 if none). */
double mq_xent_fwd(const float *logp, const int32_t *targets, int N, int V);
/* dlogits += scale / N' * (softmax - onehot(target)) over the N' rows with a
 * target >= 0. */
void mq_xent_bwd(float *dlogits, const float *logp, const int32_t *targets, int N, int V, float scale);

/* sqrt(sum g^2) over g[0..n), accumulated in double in a fixed order that
 * does not depend on the thread count (64 fixed pieces, OpenMP over them). */
double mq_grad_norm(const float *g, size_t n);
/* The factor that brings a gradient of norm `norm` to at most max_norm:
 * min(1, max_norm / norm); 1 when max_norm <= 0 (no clipping) or norm is 0. */
float mq_clip_factor(double norm, float max_norm);
/* Learning rate at 0-based step `step` of `total`: linear warmup from
 * lr/warmup to lr over the first `warmup` steps, then cosine decay from lr to
 * lr * min_frac at the last step. total >= 1, 0 <= warmup. */
float mq_lr_at(int64_t step, int64_t warmup, int64_t total, float lr, float min_frac);

#endif

/*
 * ppl.h — perplexity the way llama.cpp's llama-perplexity computes it, and
 * (optionally) the KL divergence and top-1 agreement of a model against a
 * base model on the same scored positions.
 *
 * Protocol: the whole text is tokenized without BOS and cut into consecutive
 * chunks of ctx tokens (n_chunks = n_tokens / ctx, remainder dropped); the
 * first token of each chunk is replaced by BOS when the model uses one; each
 * chunk is evaluated from scratch and the tokens of its second half are
 * scored: logits at position j predict token j+1 for j = ctx/2 .. ctx-2
 * (ctx - 1 - ctx/2 tokens per chunk). ppl = exp(mean NLL); its standard error
 * is ppl * sqrt(var(NLL) / (N - 1)), as llama-perplexity prints it.
 */
#ifndef MQ_PPL_H
#define MQ_PPL_H

#include "nn/model.h"

typedef struct {
    double ppl, ppl_se;   /* perplexity and its standard error */
    double nll;           /* mean negative log-likelihood (nats) */
    double kl, kl_se;     /* mean KL(base || model) per scored token (0 without base) */
    double top1;          /* fraction of scored positions where argmaxes agree */
    int64_t tokens;       /* scored tokens */
    int chunks;
} mq_ppl_result;

/* The base model of a KL comparison. Its logits at the scored positions are
 * cached on the first call (when they fit in max_cache_bytes) and reused by
 * later calls on the same tokens, so evaluating several bit plans runs the
 * base model once. */
typedef struct {
    const mq_model *model;
    size_t max_cache_bytes;  /* 0: no cache */
    float *cache;            /* (chunks, ctx - 1 - ctx/2, V) once filled */
    int cached_chunks, cached_ctx;
} mq_ppl_base;
void mq_ppl_base_free(mq_ppl_base *b);

/* Called after each chunk with (chunks done, total, running ppl). */
typedef void (*mq_ppl_progress)(int done, int total, double ppl, void *user);

/* tokens: the whole text without BOS. max_chunks <= 0 means all. bos < 0
 * means the model has none (the chunk's first token is kept). base may be
 * NULL. Errors: fewer than ctx tokens, ctx < 4, non-finite result. */
mq_status mq_perplexity(const mq_model *m, mq_ppl_base *base, const int32_t *tokens, size_t n,
                        int ctx, int max_chunks, int32_t bos, mq_ppl_progress progress,
                        void *user, mq_ppl_result *out);

/* log softmax of logits[0..V) at index `tok` (double accumulation). */
double mq_log_softmax_at(const float *logits, int V, int tok);

#endif

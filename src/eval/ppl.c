/*
 * ppl.c — perplexity (llama-perplexity protocol, see ppl.h), KL divergence
 * and top-1 agreement against a base model.
 *
 * Not here: tokenization of the file (the caller's), zero-shot tasks.
 */
#include "eval/ppl.h"

#include <math.h>
#include <string.h>

double mq_log_softmax_at(const float *logits, int V, int tok) {
    float mx = logits[0];
    for (int i = 1; i < V; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0.0;
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
    return (double)logits[tok] - mx - log(sum);
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* KL(p || q) with p = softmax(a) (base) and q = softmax(b) (model). */
static double kl_div(const float *a, const float *b, int V) {
    float ma = a[0], mb = b[0];
    for (int i = 1; i < V; i++) {
        if (a[i] > ma) ma = a[i];
        if (b[i] > mb) mb = b[i];
    }
    double sa = 0, sb = 0;
    for (int i = 0; i < V; i++) {
        sa += exp((double)a[i] - ma);
        sb += exp((double)b[i] - mb);
    }
    double lza = ma + log(sa), lzb = mb + log(sb), kl = 0;
    for (int i = 0; i < V; i++) {
        double la = a[i] - lza, lb = b[i] - lzb;
        kl += exp(la) * (la - lb);
    }
    return kl > 0 ? kl : 0;
}

mq_status mq_perplexity(const mq_model *m, const mq_model *base, const int32_t *tokens, size_t n,
                        int ctx, int max_chunks, int32_t bos, mq_ppl_progress progress,
                        void *user, mq_ppl_result *out) {
    memset(out, 0, sizeof *out);
    if (ctx < 4) return mq_fail(MQ_ERR_ARG, "perplexity: context %d is too small (at least 4)", ctx);
    if (n < (size_t)ctx)
        return mq_fail(MQ_ERR_ARG, "perplexity: the text has %zu tokens, fewer than one chunk "
                       "of %d; use a smaller --ctx", n, ctx);
    if (base && base->cfg.vocab_size != m->cfg.vocab_size)
        return mq_fail(MQ_ERR_ARG, "perplexity: base model vocabulary %d differs from %d",
                       base->cfg.vocab_size, m->cfg.vocab_size);
    int n_chunks = (int)(n / (size_t)ctx);
    if (max_chunks > 0 && max_chunks < n_chunks) n_chunks = max_chunks;
    int V = m->cfg.vocab_size, first = ctx / 2;
    mq_state *s = mq_state_new(m, ctx, ctx);
    mq_state *sb = base ? mq_state_new(base, ctx, ctx) : NULL;
    float *logits = mq_aligned_alloc((size_t)ctx * V * sizeof(float));
    float *blogits = base ? mq_aligned_alloc((size_t)ctx * V * sizeof(float)) : NULL;
    int32_t *chunk = mq_malloc((size_t)ctx * sizeof(int32_t));
    double nll = 0, nll2 = 0, kl = 0, kl2 = 0;
    int64_t count = 0, agree = 0;
    mq_status st = MQ_OK;
    for (int c = 0; c < n_chunks && st == MQ_OK; c++) {
        memcpy(chunk, tokens + (size_t)c * ctx, (size_t)ctx * sizeof(int32_t));
        if (bos >= 0) chunk[0] = bos;
        st = mq_forward(m, s, chunk, ctx, 0, logits, true);
        if (st == MQ_OK && base) st = mq_forward(base, sb, chunk, ctx, 0, blogits, true);
        if (st) break;
        for (int j = first; j < ctx - 1; j++) {
            const float *lg = logits + (size_t)j * V;
            double v = -mq_log_softmax_at(lg, V, chunk[j + 1]);
            nll += v;
            nll2 += v * v;
            if (base) {
                const float *bl = blogits + (size_t)j * V;
                double k = kl_div(bl, lg, V);
                kl += k;
                kl2 += k * k;
                agree += argmax(bl, V) == argmax(lg, V);
            }
            count++;
        }
        if (progress) progress(c + 1, n_chunks, exp(nll / count), user);
    }
    if (st == MQ_OK) {
        double mean = nll / count, var = nll2 / count - mean * mean;
        out->nll = mean;
        out->ppl = exp(mean);
        out->ppl_se = var > 0 && count > 1 ? out->ppl * sqrt(var / (count - 1)) : 0;
        if (base) {
            double km = kl / count, kv = kl2 / count - km * km;
            out->kl = km;
            out->kl_se = kv > 0 && count > 1 ? sqrt(kv / (count - 1)) : 0;
            out->top1 = (double)agree / count;
        }
        out->tokens = count;
        out->chunks = n_chunks;
        if (!isfinite(out->ppl))
            st = mq_fail(MQ_ERR_NUMERIC, "perplexity: the result is not finite (NaN/Inf logits?)");
    }
    free(chunk);
    free(logits);
    free(blogits);
    mq_state_free(s);
    mq_state_free(sb);
    return st;
}

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

void mq_ppl_base_free(mq_ppl_base *b) {
    free(b->cache);
    b->cache = NULL;
    b->cached_chunks = 0;
}

/* logits of the scored rows first..ctx-2 of a chunk (R = ctx - 1 - first rows) */
static mq_status scored_logits(const mq_model *m, mq_state *s, const int32_t *chunk, int ctx, int first, float *out) {
    mq_status st = mq_forward(m, s, chunk, ctx, 0, NULL, true);
    if (st) return st;
    mq_logits(m, s, mq_state_residual(s) + (size_t)first * m->cfg.dim, ctx - 1 - first, out);
    return MQ_OK;
}

mq_status mq_perplexity(const mq_model *m, mq_ppl_base *base, const int32_t *tokens, size_t n,
                        int ctx, int max_chunks, int32_t bos, mq_ppl_progress progress,
                        void *user, mq_ppl_result *out) {
    memset(out, 0, sizeof *out);
    if (ctx < 4) return mq_fail(MQ_ERR_ARG, "perplexity: context %d is too small (at least 4)", ctx);
    if (n < (size_t)ctx)
        return mq_fail(MQ_ERR_ARG, "perplexity: the text has %zu tokens, fewer than one chunk "
                       "of %d; use a smaller --ctx", n, ctx);
    const mq_model *bm = base ? base->model : NULL;
    if (bm && bm->cfg.vocab_size != m->cfg.vocab_size)
        return mq_fail(MQ_ERR_ARG, "perplexity: base model vocabulary %d differs from %d",
                       bm->cfg.vocab_size, m->cfg.vocab_size);
    int n_chunks = (int)(n / (size_t)ctx);
    if (max_chunks > 0 && max_chunks < n_chunks) n_chunks = max_chunks;
    int V = m->cfg.vocab_size, first = ctx / 2, R = ctx - 1 - first;
    size_t per_chunk = (size_t)R * V;
    /* the base cache: reuse when it covers these chunks, else (re)fill if it fits */
    bool use_cache = bm && base->cache && base->cached_ctx == ctx && base->cached_chunks >= n_chunks;
    bool fill_cache = bm && !use_cache && (size_t)n_chunks * per_chunk * sizeof(float) <= base->max_cache_bytes;
    if (fill_cache) {
        mq_ppl_base_free(base);
        base->cache = mq_malloc((size_t)n_chunks * per_chunk * sizeof(float));
    }
    mq_state *s = mq_state_new(m, ctx, ctx);
    mq_state *sb = bm && !use_cache ? mq_state_new(bm, ctx, ctx) : NULL;
    float *logits = mq_aligned_alloc(per_chunk * sizeof(float));
    float *blogits = bm && !use_cache && !fill_cache ? mq_aligned_alloc(per_chunk * sizeof(float)) : NULL;
    int32_t *chunk = mq_malloc((size_t)ctx * sizeof(int32_t));
    double nll = 0, nll2 = 0, kl = 0, kl2 = 0;
    int64_t count = 0, agree = 0;
    mq_status st = MQ_OK;
    for (int c = 0; c < n_chunks && st == MQ_OK; c++) {
        memcpy(chunk, tokens + (size_t)c * ctx, (size_t)ctx * sizeof(int32_t));
        if (bos >= 0) chunk[0] = bos;
        st = scored_logits(m, s, chunk, ctx, first, logits);
        const float *bl_chunk = NULL;
        if (st == MQ_OK && bm) {
            if (use_cache) {
                bl_chunk = base->cache + (size_t)c * per_chunk;
            } else {
                float *dst = fill_cache ? base->cache + (size_t)c * per_chunk : blogits;
                st = scored_logits(bm, sb, chunk, ctx, first, dst);
                bl_chunk = dst;
            }
        }
        if (st) break;
        for (int j = first; j < ctx - 1; j++) {
            const float *lg = logits + (size_t)(j - first) * V;
            double v = -mq_log_softmax_at(lg, V, chunk[j + 1]);
            nll += v;
            nll2 += v * v;
            if (bm) {
                const float *bl = bl_chunk + (size_t)(j - first) * V;
                double k = kl_div(bl, lg, V);
                kl += k;
                kl2 += k * k;
                agree += argmax(bl, V) == argmax(lg, V);
            }
            count++;
        }
        if (progress) progress(c + 1, n_chunks, exp(nll / count), user);
    }
    if (fill_cache && st == MQ_OK) {
        base->cached_chunks = n_chunks;
        base->cached_ctx = ctx;
    } else if (fill_cache) {
        mq_ppl_base_free(base);
    }
    if (st == MQ_OK) {
        double mean = nll / count, var = nll2 / count - mean * mean;
        out->nll = mean;
        out->ppl = exp(mean);
        out->ppl_se = var > 0 && count > 1 ? out->ppl * sqrt(var / (count - 1)) : 0;
        if (bm) {
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

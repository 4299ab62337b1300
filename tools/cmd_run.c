/*
 * cmd_run.c — `matquant run`: generate text from a prompt, streamed to
 * stdout, with prompt and generation speed on stderr at the end.
 * Sampling: greedy at --temp 0, else temperature + nucleus (top-p).
 */
#include "cli.h"
#include "common.h"
#include "core/threads.h"

#include <math.h>
#include <string.h>

/* xorshift64* — small, seedable, reproducible across platforms */
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}
static float rng_f32(uint64_t *s) { return (float)(rng_next(s) >> 40) / 16777216.0f; }

typedef struct {
    float p;
    int id;
} prob_id;

static int cmp_prob_desc(const void *a, const void *b) {
    float x = ((const prob_id *)a)->p, y = ((const prob_id *)b)->p;
    return (x < y) - (x > y);
}

/* Sample from logits (modified in place). probs: scratch of V entries. */
static int sample(float *logits, int V, float temp, float top_p, prob_id *probs, uint64_t *rng) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (temp <= 0) return best;
    double sum = 0;
    for (int i = 0; i < V; i++) {
        probs[i].id = i;
        probs[i].p = expf((logits[i] - logits[best]) / temp);
        sum += probs[i].p;
    }
    for (int i = 0; i < V; i++) probs[i].p = (float)(probs[i].p / sum);
    int n = V;
    if (top_p > 0 && top_p < 1) {
        qsort(probs, (size_t)V, sizeof *probs, cmp_prob_desc);
        double cum = 0;
        for (n = 0; n < V;) {
            cum += probs[n++].p;
            if (cum >= top_p) break;
        }
        sum = cum;
    } else {
        sum = 1.0;
    }
    float r = rng_f32(rng) * (float)sum, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += probs[i].p;
        if (r < acc) return probs[i].id;
    }
    return probs[n - 1].id;
}

int cmd_run(int argc, char **argv) {
    const char *tokenizer = NULL, *prompt = "", *bits = NULL;
    int n_new = 256, seed = 0, threads = 0, ctx = 0;
    float temp = 0.8f, top_p = 0.9f;
    bool show_ids = false;
    cli_opt opts[] = {
        {"tokenizer", 0, OPT_STR, &tokenizer, "tokenizer.json or llama2.c tokenizer.bin (default: the model's own)"},
        {"bits", 'b', OPT_STR, &bits, "bit plan of a matquant checkpoint, e.g. 4, 2x, \"0-5:2,6-29:4\" (default 8)"},
        {"prompt", 'p', OPT_STR, &prompt, "prompt text (default: empty, i.e. BOS only)"},
        {"n-predict", 'n', OPT_INT, &n_new, "tokens to generate (default 256)"},
        {"temp", 0, OPT_FLOAT, &temp, "sampling temperature; 0 = greedy (default 0.8)"},
        {"top-p", 0, OPT_FLOAT, &top_p, "nucleus sampling threshold (default 0.9; 1 = off)"},
        {"seed", 0, OPT_INT, &seed, "random seed (default 0)"},
        {"threads", 't', OPT_INT, &threads, "threads (default: all processors)"},
        {"ctx", 'c', OPT_INT, &ctx, "context size (default: the model's, at most 4096)"},
        {"ids", 0, OPT_FLAG, &show_ids, "also print the prompt and generated token ids on stderr"},
        {0},
    };
    char *pos[1];
    int npos;
    int rc = cli_parse("run", "MODEL [options]", "Generate text from a prompt, streamed to stdout.",
                       opts, argc, argv, pos, 1, &npos);
    if (rc >= 0) return rc;
    if (npos != 1) {
        cli_error("run", "expected one MODEL argument (see matquant run --help)");
        return 2;
    }
    if (n_new < 0 || temp < 0 || !(top_p > 0 && top_p <= 1) || threads < 0 || ctx < 0) {
        cli_error("run", "-n, --temp, --threads and --ctx must be >= 0 and --top-p in (0, 1]");
        return 2;
    }
    mq_set_threads(threads);
    mq_model *m = tool_load_model("run", pos[0], tokenizer, bits, true);
    if (!m) return 1;
    int32_t *ids = NULL;
    size_t n_prompt = 0;
    if (mq_tokenizer_encode(m->tok, prompt, strlen(prompt), true, &ids, &n_prompt)) {
        cli_error("run", "%s", mq_last_error());
        mq_model_free(m);
        return 1;
    }
    bool bos = mq_tokenizer_add_bos(m->tok) && m->cfg.bos_id >= 0;
    if (bos || n_prompt == 0) {
        if (m->cfg.bos_id < 0) {
            cli_error("run", "the prompt is empty and the model has no BOS token to start from");
            free(ids);
            mq_model_free(m);
            return 1;
        }
        ids = mq_realloc(ids, (n_prompt + 1) * sizeof *ids);
        memmove(ids + 1, ids, n_prompt * sizeof *ids);
        ids[0] = m->cfg.bos_id;
        n_prompt++;
    }
    if (ctx == 0) ctx = m->cfg.max_seq < 4096 ? m->cfg.max_seq : 4096;
    if ((int64_t)n_prompt + n_new > ctx) {
        if ((int64_t)n_prompt >= ctx) {
            cli_error("run", "the prompt has %zu tokens, more than the context of %d", n_prompt, ctx);
            free(ids);
            mq_model_free(m);
            return 1;
        }
        n_new = ctx - (int)n_prompt;
    }
    int V = m->cfg.vocab_size;
    mq_state *s = mq_state_new(m, ctx, (int)n_prompt);
    float *logits = mq_malloc((size_t)V * sizeof(float));
    prob_id *probs = mq_malloc((size_t)V * sizeof *probs);
    int32_t *gen = mq_malloc(((size_t)n_new + 1) * sizeof *gen);
    uint64_t rng = (uint64_t)seed * 0x9E3779B97F4A7C15ULL + 0x1234567ULL;
    mq_utf8_stream us = {0};
    char piece[512], outb[1024];
    /* echo the prompt text as the model sees it */
    int32_t prev = -1;
    for (size_t i = 0; i < n_prompt; i++) {
        if (!(i == 0 && bos)) {
            size_t k = mq_tokenizer_decode_token(m->tok, prev, ids[i], piece, sizeof piece);
            fwrite(outb, 1, mq_utf8_feed(&us, piece, k, outb, sizeof outb), stdout);
        }
        prev = ids[i];
    }
    double t0 = mq_now_ms();
    mq_status st = mq_forward(m, s, ids, (int)n_prompt, 0, logits, false);
    double t1 = mq_now_ms();
    int n_gen = 0, n_fwd = 0;
    int pos_ = (int)n_prompt;
    while (st == MQ_OK && n_gen < n_new) {
        int next = sample(logits, V, temp, top_p, probs, &rng);
        if (next == m->cfg.eos_id || (next == m->cfg.bos_id && m->cfg.bos_id >= 0)) break;
        gen[n_gen++] = next;
        size_t k = mq_tokenizer_decode_token(m->tok, prev, next, piece, sizeof piece);
        fwrite(outb, 1, mq_utf8_feed(&us, piece, k, outb, sizeof outb), stdout);
        fflush(stdout);
        prev = next;
        if (n_gen == n_new) break;
        st = mq_forward(m, s, &gen[n_gen - 1], 1, pos_++, logits, false);
        n_fwd++;
    }
    double t2 = mq_now_ms();
    fwrite(outb, 1, mq_utf8_flush(&us, outb, sizeof outb), stdout);
    printf("\n");
    fflush(stdout); /* the text before the statistics on stderr */
    int ret = 0;
    if (st != MQ_OK) {
        cli_error("run", "%s", mq_last_error());
        ret = 1;
    } else {
        if (show_ids) {
            fprintf(stderr, "prompt ids:");
            for (size_t i = 0; i < n_prompt; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\ngenerated ids:");
            for (int i = 0; i < n_gen; i++) fprintf(stderr, " %d", gen[i]);
            fprintf(stderr, "\n");
        }
        fprintf(stderr, "prompt: %zu tokens, %.1f tok/s | generated: %d tokens, %.1f tok/s\n",
                n_prompt, n_prompt / ((t1 - t0) / 1e3 + 1e-12), n_gen,
                n_fwd > 0 ? n_fwd / ((t2 - t1) / 1e3 + 1e-12) : 0.0);
    }
    free(gen);
    free(probs);
    free(logits);
    free(ids);
    mq_state_free(s);
    mq_model_free(m);
    return ret;
}

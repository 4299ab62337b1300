/*
 * cmd_eval.c — `matquant eval`: perplexity of a model on a text file with
 * the llama-perplexity protocol (src/eval/ppl.h), as a line for people and
 * optionally one JSON line for scripts. Progress per chunk on stderr.
 */
#include "cli.h"
#include "common.h"
#include "core/threads.h"
#include "eval/ppl.h"

#include <string.h>

static void show_progress(int done, int total, double ppl, void *user) {
    double t0 = *(double *)user, el = (mq_now_ms() - t0) / 1e3;
    fprintf(stderr, "\r[%d/%d] ppl %.4f  %.1fs elapsed, ~%.0fs left   ", done, total, ppl, el,
            el / done * (total - done));
    if (done == total) fprintf(stderr, "\n");
}

int cmd_eval(int argc, char **argv) {
    const char *tokenizer = NULL, *ppl_file = NULL;
    int ctx = 512, chunks = 0, threads = 0;
    bool json = false, quiet = false;
    cli_opt opts[] = {
        {"ppl", 0, OPT_STR, &ppl_file, "text file for perplexity (required)"},
        {"ctx", 'c', OPT_INT, &ctx, "tokens per chunk (default 512)"},
        {"chunks", 0, OPT_INT, &chunks, "evaluate at most N chunks (default: all)"},
        {"tokenizer", 0, OPT_STR, &tokenizer, "tokenizer.json or llama2.c tokenizer.bin (default: the model's own)"},
        {"threads", 't', OPT_INT, &threads, "threads (default: all processors)"},
        {"json", 0, OPT_FLAG, &json, "also print one JSON line {ppl, ppl_se, tokens, chunks, ...}"},
        {"quiet", 'q', OPT_FLAG, &quiet, "no progress on stderr"},
        {0},
    };
    char *pos[1];
    int npos;
    int rc = cli_parse("eval", "MODEL --ppl FILE [options]",
                       "Perplexity as llama-perplexity computes it: the file is tokenized without BOS,\n"
                       "cut into chunks of --ctx tokens whose first token becomes BOS, and the second\n"
                       "half of each chunk is scored.",
                       opts, argc, argv, pos, 1, &npos);
    if (rc >= 0) return rc;
    if (npos != 1) {
        cli_error("eval", "expected one MODEL argument (see matquant eval --help)");
        return 2;
    }
    if (!ppl_file) {
        cli_error("eval", "nothing to evaluate: give --ppl FILE");
        return 2;
    }
    if (ctx < 4 || chunks < 0 || threads < 0) {
        cli_error("eval", "--ctx must be >= 4, --chunks and --threads >= 0");
        return 2;
    }
    mq_set_threads(threads);
    mq_model *m = tool_load_model("eval", pos[0], tokenizer, true);
    if (!m) return 1;
    if (ctx > m->cfg.max_seq)
        fprintf(stderr, "matquant eval: warning: --ctx %d exceeds the model's %d positions\n", ctx,
                m->cfg.max_seq);
    char *text = NULL;
    size_t len = 0;
    int32_t *ids = NULL;
    size_t n = 0;
    int ret = 1;
    if (mq_read_file(ppl_file, &text, &len) ||
        mq_tokenizer_encode(m->tok, text, len, false, &ids, &n)) {
        cli_error("eval", "%s", mq_last_error());
        goto done;
    }
    int32_t bos = mq_tokenizer_add_bos(m->tok) ? m->cfg.bos_id : -1;
    if (n < (size_t)ctx) {
        cli_error("eval", "%s: %zu tokens, fewer than one chunk of %d; use a smaller --ctx", ppl_file, n, ctx);
        goto done;
    }
    if (!quiet)
        fprintf(stderr, "%s: %zu tokens, %zu chunks of %d%s\n", ppl_file, n, n / (size_t)ctx, ctx,
                bos >= 0 ? " (first token of each chunk set to BOS)" : "");
    mq_ppl_result r;
    double t0 = mq_now_ms();
    if (mq_perplexity(m, NULL, ids, n, ctx, chunks, bos, quiet ? NULL : show_progress, &t0, &r)) {
        cli_error("eval", "%s", mq_last_error());
        goto done;
    }
    double secs = (mq_now_ms() - t0) / 1e3;
    printf("ppl = %.4f +/- %.5f  (%lld tokens scored in %d chunks of %d, %.1f s, %.0f tok/s)\n",
           r.ppl, r.ppl_se, (long long)r.tokens, r.chunks, ctx, secs, r.chunks * ctx / secs);
    if (json)
        printf("{\"model\":\"%s\",\"file\":\"%s\",\"ppl\":%.6f,\"ppl_se\":%.6f,\"nll\":%.6f,"
               "\"tokens\":%lld,\"chunks\":%d,\"ctx\":%d,\"seconds\":%.2f}\n",
               pos[0], ppl_file, r.ppl, r.ppl_se, r.nll, (long long)r.tokens, r.chunks, ctx, secs);
    ret = 0;
done:
    free(text);
    free(ids);
    mq_model_free(m);
    return ret;
}

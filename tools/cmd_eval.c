/*
 * cmd_eval.c — `matquant eval`: perplexity with the llama-perplexity
 * protocol (src/eval/ppl.h) and, for a matquant checkpoint, one row per bit
 * plan (--bits 8,6,4,3,2,2x) with effective and storage bits, KL divergence
 * and top-1 agreement against the unquantized source model. A table for
 * people on stdout, and with --json one JSON line per row for scripts.
 * Progress per chunk on stderr.
 */
#include "cli.h"
#include "common.h"
#include "core/threads.h"
#include "eval/ppl.h"
#include "quant/qmodel.h"

#include <string.h>

static void show_progress(int done, int total, double ppl, void *user) {
    double t0 = *(double *)user, el = (mq_now_ms() - t0) / 1e3;
    fprintf(stderr, "\r[%d/%d] ppl %.4f  %.1fs elapsed, ~%.0fs left   ", done, total, ppl, el,
            el / done * (total - done));
    if (done == total) fprintf(stderr, "\n");
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        if ((unsigned char)*s >= 0x20) putchar(*s);
    }
    putchar('"');
}

int cmd_eval(int argc, char **argv) {
    const char *tokenizer = NULL, *ppl_file = NULL, *bits = NULL, *base_path = NULL;
    int ctx = 512, chunks = 0, threads = 0;
    bool json = false, quiet = false, no_base = false;
    cli_opt opts[] = {
        {"ppl", 0, OPT_STR, &ppl_file, "text file for perplexity (required)"},
        {"bits", 'b', OPT_STR, &bits, "bit plans of a checkpoint, e.g. 8,6,4,3,2,2x or \"0-5:2,6-29:4\" (default 8)"},
        {"base", 0, OPT_STR, &base_path, "unquantized model for KL/top-1 (default: the checkpoint's source)"},
        {"no-base", 0, OPT_FLAG, &no_base, "skip KL/top-1 against the unquantized model"},
        {"ctx", 'c', OPT_INT, &ctx, "tokens per chunk (default 512)"},
        {"chunks", 0, OPT_INT, &chunks, "evaluate at most N chunks (default: all)"},
        {"tokenizer", 0, OPT_STR, &tokenizer, "tokenizer.json or llama2.c tokenizer.bin (default: the model's own)"},
        {"threads", 't', OPT_INT, &threads, "threads (default: all processors)"},
        {"json", 0, OPT_FLAG, &json, "also print one JSON line per row {bits, eff_bits, ppl, ppl_se, kl, top1, ...}"},
        {"quiet", 'q', OPT_FLAG, &quiet, "no progress on stderr"},
        {0},
    };
    char *pos[1];
    int npos;
    int rc = cli_parse("eval", "MODEL --ppl FILE [--bits PLANS] [options]",
                       "Perplexity as llama-perplexity computes it: the file is tokenized without BOS,\n"
                       "cut into chunks of --ctx tokens whose first token becomes BOS, and the second\n"
                       "half of each chunk is scored. For a matquant checkpoint, one row per bit plan\n"
                       "with KL divergence and top-1 agreement against the unquantized source.",
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
    mq_model *m = tool_load_model("eval", pos[0], tokenizer, NULL, true);
    if (!m) return 1;
    mq_model *base = NULL;
    mq_ppl_base bcache = {0};
    mq_plan *plans = NULL;
    int n_plans = 0, ret = 1;
    char *text = NULL;
    int32_t *ids = NULL;
    size_t len = 0, n = 0;
    if (bits && !m->quant) {
        cli_error("eval", "%s: --bits applies to matquant checkpoints (this model is not one)", pos[0]);
        goto done;
    }
    if (m->quant) {
        if (mq_plan_list_parse(bits ? bits : "8", m->cfg.n_layers, &plans, &n_plans)) {
            cli_error("eval", "%s", mq_last_error());
            ret = 2;
            goto done;
        }
        const char *src = base_path ? base_path : m->quant->meta.source;
        if (!no_base && src[0]) {
            mq_load_opts bo = {0};
            if (mq_model_load(src, &bo, &base)) {
                cli_error("eval", "unquantized model for KL: %s (use --base PATH or --no-base)", mq_last_error());
                goto done;
            }
            if (base->cfg.vocab_size != m->cfg.vocab_size) {
                cli_error("eval", "%s: vocabulary %d differs from the checkpoint's %d", src, base->cfg.vocab_size,
                          m->cfg.vocab_size);
                goto done;
            }
        }
    } else if (base_path) {
        if (mq_model_load(base_path, NULL, &base)) {
            cli_error("eval", "%s", mq_last_error());
            goto done;
        }
    }
    if (mq_read_file(ppl_file, &text, &len) || mq_tokenizer_encode(m->tok, text, len, false, &ids, &n)) {
        cli_error("eval", "%s", mq_last_error());
        goto done;
    }
    if (n < (size_t)ctx) {
        cli_error("eval", "%s: %zu tokens, fewer than one chunk of %d; use a smaller --ctx", ppl_file, n, ctx);
        goto done;
    }
    int32_t bos = mq_tokenizer_add_bos(m->tok) ? m->cfg.bos_id : -1;
    if (!quiet)
        fprintf(stderr, "%s: %zu tokens, %zu chunks of %d%s\n", ppl_file, n, n / (size_t)ctx, ctx,
                bos >= 0 ? " (first token of each chunk set to BOS)" : "");
    int rows = n_plans ? n_plans : 1;
    /* the base model's logits are computed once and reused for every plan (up to 4 GB) */
    bcache.model = base;
    bcache.max_cache_bytes = rows > 1 ? (size_t)4 << 30 : 0;
    if (m->quant)
        printf("%-22s %8s %8s %20s %10s %8s\n", "bits", "eff_bits", "storage", "ppl", "KL", "top1");
    for (int i = 0; i < rows; i++) {
        double eff = 32, stor = 32;
        if (m->quant) {
            if (mq_model_apply_plan(m, &plans[i])) {
                cli_error("eval", "%s", mq_last_error());
                goto done;
            }
            mq_model_plan_bits(m, &plans[i], &eff, &stor);
            if (!quiet) fprintf(stderr, "plan %s:\n", plans[i].text);
        }
        mq_ppl_result r;
        double t0 = mq_now_ms();
        if (mq_perplexity(m, base ? &bcache : NULL, ids, n, ctx, chunks, bos, quiet ? NULL : show_progress, &t0, &r)) {
            cli_error("eval", "%s", mq_last_error());
            goto done;
        }
        double secs = (mq_now_ms() - t0) / 1e3;
        const char *label = m->quant ? plans[i].text : "fp32";
        if (m->quant) {
            char pp[40];
            snprintf(pp, sizeof pp, "%.4f +/- %.4f", r.ppl, r.ppl_se);
            if (base) printf("%-22s %8.3f %8.3f %20s %10.5f %7.2f%%\n", label, eff, stor, pp, r.kl, 100 * r.top1);
            else printf("%-22s %8.3f %8.3f %20s %10s %8s\n", label, eff, stor, pp, "-", "-");
        } else {
            printf("ppl = %.4f +/- %.5f  (%lld tokens scored in %d chunks of %d, %.1f s, %.0f tok/s)\n", r.ppl,
                   r.ppl_se, (long long)r.tokens, r.chunks, ctx, secs, r.chunks * ctx / secs);
        }
        fflush(stdout);
        if (json) {
            printf("{\"model\":");
            json_str(pos[0]);
            printf(",\"file\":");
            json_str(ppl_file);
            printf(",\"bits\":");
            json_str(label);
            printf(",\"eff_bits\":%.4f,\"storage_bits\":%.4f,\"ppl\":%.6f,\"ppl_se\":%.6f,\"nll\":%.6f", eff, stor,
                   r.ppl, r.ppl_se, r.nll);
            if (base) printf(",\"kl\":%.6f,\"kl_se\":%.6f,\"top1\":%.6f", r.kl, r.kl_se, r.top1);
            printf(",\"tokens\":%lld,\"chunks\":%d,\"ctx\":%d,\"seconds\":%.2f}\n", (long long)r.tokens, r.chunks, ctx,
                   secs);
            fflush(stdout);
        }
    }
    ret = 0;
done:
    mq_ppl_base_free(&bcache);
    free(text);
    free(ids);
    mq_plans_free(plans, n_plans);
    mq_model_free(base);
    mq_model_free(m);
    return ret;
}

/*
 * cmd_eval.c — `matquant eval`: perplexity with the llama-perplexity
 * protocol (src/eval/ppl.h) and, for a matquant checkpoint, one row per bit
 * plan (--bits 8,6,4,3,2,2x) with effective and storage bits, KL divergence
 * and top-1 agreement against the unquantized source model; with --tasks,
 * zero-shot accuracies scored like lm-evaluation-harness (src/eval/tasks.h),
 * one column per task. A table for people on stdout, and with --json one
 * JSON line per row for scripts. Progress on stderr.
 */
#include "cli.h"
#include "common.h"
#include "core/threads.h"
#include "eval/ppl.h"
#include "eval/tasks.h"
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

#define MAX_TASKS 16

/* Splits the --tasks list into names[] (in place); usage error text on failure. */
static bool parse_tasks(char *list, char **names, int *n) {
    *n = 0;
    for (char *t = strtok(list, ","); t; t = strtok(NULL, ",")) {
        if (!mq_task_known(t)) {
            cli_error("eval", "unknown task \"%s\" in --tasks (known: %s)", t, mq_task_names());
            return false;
        }
        if (*n == MAX_TASKS) {
            cli_error("eval", "--tasks: at most %d tasks", MAX_TASKS);
            return false;
        }
        names[(*n)++] = t;
    }
    if (*n == 0) {
        cli_error("eval", "--tasks: empty list (known: %s)", mq_task_names());
        return false;
    }
    return true;
}

static int task_col_width(const char *name) {
    int w = (int)strlen(name) + 1;
    return w < 9 ? 9 : w;
}

static void print_task_header(char **names, int n) {
    for (int t = 0; t < n; t++) printf(" %*s", task_col_width(names[t]), names[t]);
}

static void print_task_cells(const mq_task_result *r, int n) {
    for (int t = 0; t < n; t++) printf(" %*.4f", task_col_width(r[t].task), mq_task_primary(&r[t]));
}

static void json_tasks(const mq_task_result *r, int n) {
    for (int t = 0; t < n; t++) {
        const char *k = r[t].task;
        printf(",\"%s\":%.6f,\"%s_acc_se\":%.6f", k, r[t].acc, k, r[t].acc_se);
        if (r[t].has_acc_norm)
            printf(",\"%s_acc_norm\":%.6f,\"%s_acc_norm_se\":%.6f", k, r[t].acc_norm, k, r[t].acc_norm_se);
        if (r[t].has_ppl) printf(",\"%s_ppl\":%.6f", k, r[t].ppl);
        printf(",\"%s_n\":%d", k, r[t].n);
    }
}

/* Runs every task on the current plan; results in r[0..n). */
static bool run_tasks(const mq_model *m, char **names, int n, const char *data, int limit, bool quiet,
                      mq_task_result *r) {
    for (int t = 0; t < n; t++) {
        if (mq_task_eval(m, names[t], data, limit, &r[t])) {
            cli_error("eval", "%s", mq_last_error());
            return false;
        }
        if (!quiet) {
            fprintf(stderr, "%s: %d items, acc %.4f +/- %.4f", names[t], r[t].n, r[t].acc, r[t].acc_se);
            if (r[t].has_acc_norm) fprintf(stderr, ", acc_norm %.4f +/- %.4f", r[t].acc_norm, r[t].acc_norm_se);
            if (r[t].has_ppl) fprintf(stderr, ", ppl %.4f", r[t].ppl);
            fprintf(stderr, " (%.1f s)\n", r[t].seconds);
        }
    }
    return true;
}

int cmd_eval(int argc, char **argv) {
    const char *tokenizer = NULL, *ppl_file = NULL, *bits = NULL, *base_path = NULL;
    const char *tasks_opt = NULL, *data = NULL;
    int ctx = 512, chunks = 0, threads = 0, limit = 0;
    bool json = false, quiet = false, no_base = false;
    cli_opt opts[] = {
        {"ppl", 0, OPT_STR, &ppl_file, "text file for perplexity (this or --tasks is required)"},
        {"tasks", 0, OPT_STR, &tasks_opt, "zero-shot tasks, comma-separated: arc_easy,arc_challenge,hellaswag,piqa,boolq,winogrande,lambada"},
        {"limit", 0, OPT_INT, &limit, "score the first N items of each task (default: all)"},
        {"data", 0, OPT_STR, &data, "task data directory (default: $MQ_SHARED_DATA or ../shared/data)"},
        {"bits", 'b', OPT_STR, &bits, "bit plans of a checkpoint, e.g. 8,6,4,3,2,2x or \"0-5:2,6-29:4\" (default 8)"},
        {"base", 0, OPT_STR, &base_path, "unquantized model for KL/top-1 (default: the checkpoint's source)"},
        {"no-base", 0, OPT_FLAG, &no_base, "skip KL/top-1 against the unquantized model"},
        {"ctx", 'c', OPT_INT, &ctx, "tokens per chunk (default 512)"},
        {"chunks", 0, OPT_INT, &chunks, "evaluate at most N chunks (default: all)"},
        {"tokenizer", 0, OPT_STR, &tokenizer, "tokenizer.json or llama2.c tokenizer.bin (default: the model's own)"},
        {"threads", 't', OPT_INT, &threads, "threads (default: all processors)"},
        {"json", 0, OPT_FLAG, &json, "also print one JSON line per row {bits, eff_bits, ppl, ppl_se, kl, top1, <task>: acc, <task>_acc_norm, ...}"},
        {"quiet", 'q', OPT_FLAG, &quiet, "no progress on stderr"},
        {0},
    };
    char *pos[1];
    int npos;
    int rc = cli_parse("eval", "MODEL (--ppl FILE | --tasks LIST) [--bits PLANS] [options]",
                       "Perplexity as llama-perplexity computes it: the file is tokenized without BOS,\n"
                       "cut into chunks of --ctx tokens whose first token becomes BOS, and the second\n"
                       "half of each chunk is scored. For a matquant checkpoint, one row per bit plan\n"
                       "with KL divergence and top-1 agreement against the unquantized source.\n"
                       "--tasks: zero-shot accuracy scored like lm-evaluation-harness (loglikelihood of\n"
                       "each choice; BOS first when the tokenizer adds one); the table shows acc_norm\n"
                       "for arc_easy, arc_challenge, hellaswag and piqa, acc for boolq, winogrande and\n"
                       "lambada (last-word greedy accuracy; its perplexity is in the JSON).",
                       opts, argc, argv, pos, 1, &npos);
    if (rc >= 0) return rc;
    if (npos != 1) {
        cli_error("eval", "expected one MODEL argument (see matquant eval --help)");
        return 2;
    }
    if (!ppl_file && !tasks_opt) {
        cli_error("eval", "nothing to evaluate: give --ppl FILE and/or --tasks LIST");
        return 2;
    }
    if (ctx < 4 || chunks < 0 || threads < 0 || limit < 0) {
        cli_error("eval", "--ctx must be >= 4, --chunks, --limit and --threads >= 0");
        return 2;
    }
    char task_buf[512], *task_names[MAX_TASKS];
    int n_tasks = 0;
    if (tasks_opt) {
        snprintf(task_buf, sizeof task_buf, "%s", tasks_opt);
        if (!parse_tasks(task_buf, task_names, &n_tasks)) return 2;
    }
    if (!data) data = getenv("MQ_SHARED_DATA");
    if (!data) data = "../shared/data";
    mq_task_result tres[MAX_TASKS];
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
        if (!no_base && src[0] && ppl_file) {
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
    } else if (base_path && ppl_file) {
        if (mq_model_load(base_path, NULL, &base)) {
            cli_error("eval", "%s", mq_last_error());
            goto done;
        }
    }
    if (ppl_file && (mq_read_file(ppl_file, &text, &len) || mq_tokenizer_encode(m->tok, text, len, false, &ids, &n))) {
        cli_error("eval", "%s", mq_last_error());
        goto done;
    }
    if (ppl_file && n < (size_t)ctx) {
        cli_error("eval", "%s: %zu tokens, fewer than one chunk of %d; use a smaller --ctx", ppl_file, n, ctx);
        goto done;
    }
    int32_t bos = mq_tokenizer_add_bos(m->tok) ? m->cfg.bos_id : -1;
    if (!quiet && ppl_file)
        fprintf(stderr, "%s: %zu tokens, %zu chunks of %d%s\n", ppl_file, n, n / (size_t)ctx, ctx,
                bos >= 0 ? " (first token of each chunk set to BOS)" : "");
    int rows = n_plans ? n_plans : 1;
    /* the base model's logits are computed once and reused for every plan (up to 4 GB) */
    bcache.model = base;
    bcache.max_cache_bytes = rows > 1 ? (size_t)4 << 30 : 0;
    if (m->quant) {
        printf("%-22s %8s %8s", "bits", "eff_bits", "storage");
        if (ppl_file) printf(" %20s %10s %8s", "ppl", "KL", "top1");
        print_task_header(task_names, n_tasks);
        printf("\n");
    }
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
        mq_ppl_result r = {0};
        double t0 = mq_now_ms();
        if (ppl_file &&
            mq_perplexity(m, base ? &bcache : NULL, ids, n, ctx, chunks, bos, quiet ? NULL : show_progress, &t0, &r)) {
            cli_error("eval", "%s", mq_last_error());
            goto done;
        }
        double secs = (mq_now_ms() - t0) / 1e3;
        if (n_tasks && !run_tasks(m, task_names, n_tasks, data, limit, quiet, tres)) goto done;
        const char *label = m->quant ? plans[i].text : "fp32";
        if (m->quant) {
            printf("%-22s %8.3f %8.3f", label, eff, stor);
            if (ppl_file) {
                char pp[40];
                snprintf(pp, sizeof pp, "%.4f +/- %.4f", r.ppl, r.ppl_se);
                if (base) printf(" %20s %10.5f %7.2f%%", pp, r.kl, 100 * r.top1);
                else printf(" %20s %10s %8s", pp, "-", "-");
            }
            print_task_cells(tres, n_tasks);
            printf("\n");
        } else {
            if (ppl_file)
                printf("ppl = %.4f +/- %.5f  (%lld tokens scored in %d chunks of %d, %.1f s, %.0f tok/s)\n", r.ppl,
                       r.ppl_se, (long long)r.tokens, r.chunks, ctx, secs, r.chunks * ctx / secs);
            if (n_tasks) {
                printf("%-22s", "model");
                print_task_header(task_names, n_tasks);
                printf("\n%-22s", label);
                print_task_cells(tres, n_tasks);
                printf("\n");
            }
        }
        fflush(stdout);
        if (json) {
            printf("{\"model\":");
            json_str(pos[0]);
            printf(",\"bits\":");
            json_str(label);
            printf(",\"eff_bits\":%.4f,\"storage_bits\":%.4f", eff, stor);
            if (ppl_file) {
                printf(",\"file\":");
                json_str(ppl_file);
                printf(",\"ppl\":%.6f,\"ppl_se\":%.6f,\"nll\":%.6f", r.ppl, r.ppl_se, r.nll);
                if (base) printf(",\"kl\":%.6f,\"kl_se\":%.6f,\"top1\":%.6f", r.kl, r.kl_se, r.top1);
                printf(",\"tokens\":%lld,\"chunks\":%d,\"ctx\":%d,\"seconds\":%.2f", (long long)r.tokens,
                       r.chunks, ctx, secs);
            }
            if (n_tasks) {
                printf(",\"limit\":%d", limit);
                json_tasks(tres, n_tasks);
            }
            printf("}\n");
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

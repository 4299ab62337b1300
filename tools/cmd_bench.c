/*
 * cmd_bench.c — `matquant bench`: prompt-processing and generation speed
 * per bit plan, with the weight bytes one generated token reads and the
 * memory bandwidth that implies.
 *
 * Per plan and repetition: one forward of -p prompt tokens (a single batch,
 * the matrix-matrix kernels), then -n single-token forwards (decode, the
 * matrix-vector kernels) continuing from the prompt; token ids are a fixed
 * pseudo-random sequence (speed does not depend on the text). Figures are
 * the median over --reps, after one untimed warm-up of the plan.
 * bytes_per_token counts the weights of one decode step: every linear in its
 * served form (packed planes, scales, biases and overflow lists, 16-bit
 * F16/BF16, or fp32), the head, one embedding row and the norms; it leaves
 * out the KV cache and
 * activations, so the implied bandwidth (bytes_per_token * tg_tps) is a
 * lower bound of what the machine moved.
 *
 * Not here: the machine's own peak figures (bench/membw.c, bench/run.sh).
 */
#include "cli.h"
#include "common.h"
#include "core/threads.h"
#include "io/checkpoint.h"
#include "quant/half.h"
#include "quant/kern.h"
#include "quant/qmodel.h"

#include <string.h>

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_dbl);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Weight bytes a decode step reads under the currently applied plan. */
static double weight_bytes(const mq_model *m) {
    const mq_config *c = &m->cfg;
    double b = 0, C = c->dim;
    for (int l = 0; l < c->n_layers; l++) {
        const mq_layer *L = &m->layers[l];
        for (int k = 0; k < MQ_LIN_COUNT; k++) {
            if (L->packed[k]) {
                b += (double)mq_pack_bytes(L->packed[k]);
            } else if (L->half[k]) {
                b += (double)mq_half_bytes(L->half[k]);
            } else {
                int rows, cols;
                mq_linear_weight(m, l, (mq_lin_kind)k, &rows, &cols);
                b += 4.0 * rows * cols;
            }
        }
        b += 4.0 * C * (2 + (L->post_attn_norm ? 1 : 0) + (L->post_ffn_norm ? 1 : 0));
    }
    b += m->head_packed ? (double)mq_pack_bytes(m->head_packed)
       : m->head_half ? (double)mq_half_bytes(m->head_half) : 4.0 * c->vocab_size * C;
    b += (m->tok_half ? 2.0 : 4.0) * C + 4.0 * C; /* one embedding row and the final norm */
    return b;
}

typedef struct {
    double pp_tps, tg_tps;
} speed;

/* One timed repetition: prompt of p tokens at position 0, then n decode steps. */
static mq_status one_rep(const mq_model *m, mq_state *s, const int32_t *ids, int p, int n, float *logits,
                         speed *out) {
    double t0 = mq_now_ms();
    mq_status st = mq_forward(m, s, ids, p, 0, logits, false);
    double t1 = mq_now_ms();
    for (int i = 0; st == MQ_OK && i < n; i++) st = mq_forward(m, s, &ids[p + i], 1, p + i, logits, false);
    double t2 = mq_now_ms();
    out->pp_tps = p / ((t1 - t0) / 1e3 + 1e-12);
    out->tg_tps = n / ((t2 - t1) / 1e3 + 1e-12);
    return st;
}

int cmd_bench(int argc, char **argv) {
    const char *bits = NULL;
    int p = 128, n = 64, threads = 0, reps = 3;
    bool json = false;
    cli_opt opts[] = {
        {"bits", 'b', OPT_STR, &bits, "bit plans of a checkpoint, e.g. \"8,4,2x\" or \"8;0-5:2,6-29:4\" (default 8,6,4,3,2,2x)"},
        {"prompt", 'p', OPT_INT, &p, "prompt tokens, processed as one batch (default 128)"},
        {"n-gen", 'n', OPT_INT, &n, "generated tokens, one forward each (default 64)"},
        {"threads", 't', OPT_INT, &threads, "threads (default: all processors)"},
        {"reps", 'r', OPT_INT, &reps, "repetitions; the median is reported (default 3)"},
        {"json", 0, OPT_FLAG, &json, "also print one JSON line per plan {bits, eff_bits, kernels, threads, p, n, pp_tps, tg_tps, bytes_per_token, gbps, resident_bytes, resident_f32_bytes}"},
        {0},
    };
    char *pos[1];
    int npos;
    int rc = cli_parse("bench", "MODEL [options]",
                       "Prompt and generation tokens/s per bit plan (median of --reps), the weight bytes\n"
                       "one generated token reads and the bandwidth that implies (weights only: the KV\n"
                       "cache is not counted). Kernels: MQ_KERNELS=scalar|avx2|avx512|amx forces a variant,\n"
                       "MQ_KERNELS=float serves the linears as dequantized fp32 (OpenBLAS).",
                       opts, argc, argv, pos, 1, &npos);
    if (rc >= 0) return rc;
    if (npos != 1) {
        cli_error("bench", "expected one MODEL argument (see matquant bench --help)");
        return 2;
    }
    if (p < 1 || n < 1 || reps < 1 || threads < 0) {
        cli_error("bench", "-p, -n and --reps must be >= 1 and --threads >= 0 (got %d, %d, %d, %d)", p, n, reps,
                  threads);
        return 2;
    }
    mq_set_threads(threads);
    mq_model *m = tool_load_model("bench", pos[0], NULL, NULL, false);
    if (!m) return 1;
    int ret = 1;
    mq_plan *plans = NULL;
    int n_plans = 0;
    mq_state *s = NULL;
    float *logits = NULL;
    int32_t *ids = NULL;
    if (m->quant) {
        if (mq_plan_list_parse(bits ? bits : "8,6,4,3,2,2x", m->cfg.n_layers, &plans, &n_plans)) {
            cli_error("bench", "%s", mq_last_error());
            ret = 2; /* a bad --bits is a usage error, as in eval */
            goto done;
        }
    } else if (bits) {
        cli_error("bench", "%s: --bits applies to matquant checkpoints; quantize this model first (matquant quantize)",
                  pos[0]);
        goto done;
    }
    if ((int64_t)p + n > m->cfg.max_seq) {
        cli_error("bench", "-p %d plus -n %d exceeds the model's context of %d tokens", p, n, m->cfg.max_seq);
        goto done;
    }
    s = mq_state_new(m, p + n, p);
    logits = mq_malloc((size_t)m->cfg.vocab_size * sizeof(float));
    ids = mq_malloc((size_t)(p + n) * sizeof *ids);
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < p + n; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)m->cfg.vocab_size);
    }
    const char *kern = mq_kern_float_forced() ? "float" : mq_kern_active()->name;
    printf("%s: %d threads, kernels %s, prompt %d, generate %d, median of %d\n", pos[0], mq_get_threads(),
           m->quant ? kern : "float (not a checkpoint)", p, n, reps);
    mq_weight_bytes wb0;
    mq_model_weight_bytes(m, &wb0);
    printf("resident weights after load: %.2f MB = fp32 %.2f + 16-bit %.2f + packed %.2f + parent codes %.2f\n",
           (double)(wb0.f32 + wb0.half + wb0.packed + wb0.codes) / 1e6, (double)wb0.f32 / 1e6,
           (double)wb0.half / 1e6, (double)wb0.packed / 1e6, (double)wb0.codes / 1e6);
    printf("%-22s %8s %12s %10s %10s %8s\n", "bits", "eff_bits", "MB/token", "pp tok/s", "tg tok/s", "GB/s");
    double *pp = mq_malloc((size_t)reps * sizeof(double)), *tg = mq_malloc((size_t)reps * sizeof(double));
    for (int i = 0; i < (n_plans ? n_plans : 1); i++) {
        double eff = 32, stor = 32;
        const char *label = "fp32";
        if (m->quant) {
            if (mq_model_apply_plan(m, &plans[i])) {
                cli_error("bench", "%s", mq_last_error());
                goto free_reps;
            }
            mq_model_plan_bits(m, &plans[i], &eff, &stor);
            label = plans[i].text;
        }
        speed sp;
        /* warm-up: page in the plan's layouts, spin up the threads */
        if (one_rep(m, s, ids, p < 16 ? p : 16, n < 4 ? n : 4, logits, &sp)) {
            cli_error("bench", "%s", mq_last_error());
            goto free_reps;
        }
        for (int r = 0; r < reps; r++) {
            if (one_rep(m, s, ids, p, n, logits, &sp)) {
                cli_error("bench", "%s", mq_last_error());
                goto free_reps;
            }
            pp[r] = sp.pp_tps;
            tg[r] = sp.tg_tps;
        }
        mq_weight_bytes wb;
        mq_model_weight_bytes(m, &wb);
        double ppm = median(pp, reps), tgm = median(tg, reps), bpt = weight_bytes(m);
        double gbps = bpt * tgm / 1e9;
        printf("%-22s %8.3f %12.2f %10.1f %10.2f %8.2f\n", label, eff, bpt / 1e6, ppm, tgm, gbps);
        if (json)
            printf("{\"bits\":\"%s\",\"eff_bits\":%.4f,\"kernels\":\"%s\",\"threads\":%d,\"p\":%d,\"n\":%d,"
                   "\"pp_tps\":%.3f,\"tg_tps\":%.3f,\"bytes_per_token\":%.0f,\"gbps\":%.3f,"
                   "\"resident_bytes\":%zu,\"resident_f32_bytes\":%zu}\n",
                   label, eff, m->quant ? kern : "float", mq_get_threads(), p, n, ppm, tgm, bpt, gbps,
                   wb.f32 + wb.half + wb.packed + wb.codes, wb.f32);
        fflush(stdout);
    }
    ret = 0;
free_reps:
    free(pp);
    free(tg);
done:
    free(ids);
    free(logits);
    mq_state_free(s);
    mq_plans_free(plans, n_plans);
    mq_model_free(m);
    return ret;
}

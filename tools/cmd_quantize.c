/*
 * cmd_quantize.c — `matquant quantize SRC -o OUT --method minmax|gptq`:
 * learn one int8 parent code per weight for the widths in --train-bits and
 * write a matquant checkpoint directory (atomically). Progress per block on
 * stderr; the source model is only read.
 */
#include "cli.h"
#include "common.h"
#include "core/threads.h"
#include "io/checkpoint.h"
#include "train/quantize.h"

#include <string.h>

/* "8,4,2" -> ints; returns count or -1 */
static int parse_ints(const char *s, int *v, int cap) {
    int n = 0;
    while (*s) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || n == cap) return -1;
        v[n++] = (int)x;
        if (*end == ',') end++;
        else if (*end) return -1;
        s = end;
    }
    return n;
}

static int parse_floats(const char *s, float *v, int cap) {
    int n = 0;
    while (*s) {
        char *end;
        float x = strtof(s, &end);
        if (end == s || n == cap) return -1;
        v[n++] = x;
        if (*end == ',') end++;
        else if (*end) return -1;
        s = end;
    }
    return n;
}

static void progress(void *user, const char *line) {
    (void)user;
    fprintf(stderr, "quantize: %s\n", line);
}

int cmd_quantize(int argc, char **argv) {
    const char *out = NULL, *method = "gptq", *train = "8,4,2", *lambda = NULL, *scope = "ffn";
    const char *calib = NULL, *tokenizer = NULL;
    int group = 0, samples = 128, len = 512, seed = 0, threads = 0;
    float damp = 0.01f;
    bool parent_grid = false;
    cli_opt opts[] = {
        {"output", 'o', OPT_STR, &out, "checkpoint directory to write (required)"},
        {"method", 0, OPT_STR, &method, "minmax | gptq (default gptq)"},
        {"train-bits", 0, OPT_STR, &train, "widths R trained together (default 8,4,2)"},
        {"lambda", 0, OPT_STR, &lambda, "weights lambda_r, one per width (default all 1)"},
        {"parent-grid", 0, OPT_FLAG, &parent_grid, "with one --train-bits width: keep the int8 parent grid (single-precision MatQuant) instead of the native r-bit grid"},
        {"scope", 0, OPT_STR, &scope, "ffn (gate, up, down) | all (attention too) (default ffn)"},
        {"group-size", 0, OPT_INT, &group, "0 = per output channel, or 32/64/128/256 (default 0)"},
        {"calib", 0, OPT_STR, &calib, "calibration text, .jsonl with \"text\" or plain (default ../shared/data/c4/...)"},
        {"calib-samples", 0, OPT_INT, &samples, "calibration sequences (default 128)"},
        {"calib-len", 0, OPT_INT, &len, "tokens per sequence (default 512)"},
        {"damp", 0, OPT_FLOAT, &damp, "GPTQ dampening, fraction of mean diag(H) (default 0.01)"},
        {"seed", 0, OPT_INT, &seed, "sampling seed (default 0)"},
        {"tokenizer", 0, OPT_STR, &tokenizer, "tokenizer for llama2.c sources"},
        {"threads", 't', OPT_INT, &threads, "threads (default: all processors)"},
        {0},
    };
    char *pos[1];
    int npos;
    int rc = cli_parse("quantize", "SRC -o OUT [options]",
                       "Quantize SRC (HF directory, GGUF or llama2.c .bin) into a matquant checkpoint:\n"
                       "one int8 parent code per weight whose slices to every width in --train-bits\n"
                       "are good (MatGPTQ with --method gptq; plain MinMax with --method minmax).",
                       opts, argc, argv, pos, 1, &npos);
    if (rc >= 0) return rc;
    if (npos != 1 || !out) {
        cli_error("quantize", "expected SRC and -o OUT (see matquant quantize --help)");
        return 2;
    }
    mq_quant_opts o = {.method = method, .scope = scope, .group = group, .calib_samples = samples,
                       .calib_len = len, .seed = (uint64_t)seed, .damp = damp, .block = 128,
                       .progress = progress, .parent_grid = parent_grid};
    if (strcmp(method, "minmax") && strcmp(method, "gptq")) {
        cli_error("quantize", "--method must be minmax or gptq, got '%s'", method);
        return 2;
    }
    if (strcmp(scope, "ffn") && strcmp(scope, "all")) {
        cli_error("quantize", "--scope must be ffn or all, got '%s'", scope);
        return 2;
    }
    if (group != 0 && group != 32 && group != 64 && group != 128 && group != 256) {
        cli_error("quantize", "--group-size must be 0 (per channel), 32, 64, 128 or 256, got %d", group);
        return 2;
    }
    o.n_train = parse_ints(train, o.train_bits, 8);
    if (o.n_train < 1) {
        cli_error("quantize", "--train-bits must be a list like 8,4,2, got '%s'", train);
        return 2;
    }
    for (int i = 0; i < o.n_train; i++) {
        if (o.train_bits[i] < 1 || o.train_bits[i] > 8) {
            cli_error("quantize", "--train-bits: width %d is outside 1..8", o.train_bits[i]);
            return 2;
        }
        o.lambda[i] = 1.0f;
    }
    if (lambda && parse_floats(lambda, o.lambda, 8) != o.n_train) {
        cli_error("quantize", "--lambda needs %d numbers (one per trained width), got '%s'", o.n_train, lambda);
        return 2;
    }
    for (int i = 0; i < o.n_train; i++)
        if (!(o.lambda[i] >= 0)) {
            cli_error("quantize", "--lambda values must be >= 0");
            return 2;
        }
    if (samples < 1 || len < 2 || threads < 0 || !(damp > 0)) {
        cli_error("quantize", "--calib-samples >= 1, --calib-len >= 2, --damp > 0 and --threads >= 0");
        return 2;
    }
    static char default_calib[1024];
    if (!calib) {
        const char *d = getenv("MQ_SHARED_DATA");
        snprintf(default_calib, sizeof default_calib, "%s/c4/c4-validation.00000-of-00008.head1025.jsonl",
                 d ? d : "../shared/data");
        calib = default_calib;
    }
    o.calib_path = calib;
    if (mq_checkpoint_can_write(out)) { /* before any long work */
        cli_error("quantize", "%s", mq_last_error());
        return 1;
    }
    mq_set_threads(threads);
    mq_model *m = tool_load_model("quantize", pos[0], tokenizer, NULL, !strcmp(method, "gptq"));
    if (!m) return 1;
    mq_qmeta meta = {.format_version = 1, .parent_bits = 8, .group_size = group, .n_train = o.n_train,
                     .grid_bits = mq_quant_grid_bits(&o)};
    snprintf(meta.scope, sizeof meta.scope, "%s", scope);
    snprintf(meta.method, sizeof meta.method, "%s", method);
    snprintf(meta.source, sizeof meta.source, "%s", pos[0]);
    memcpy(meta.train_bits, o.train_bits, sizeof meta.train_bits);
    memcpy(meta.lambda, o.lambda, sizeof meta.lambda);
    if (!strcmp(method, "gptq"))
        snprintf(meta.calibration, sizeof meta.calibration, "%s: %d x %d tokens, seed %d, damp %g",
                 calib, samples, len, seed, damp);
    else
        snprintf(meta.calibration, sizeof meta.calibration, "none");
    mq_qlinear *q = NULL;
    int n = 0, ret = 1;
    double t0 = mq_now_ms();
    if (mq_quantize(m, &o, &q, &n) != MQ_OK || mq_checkpoint_write(out, m, q, n, &meta) != MQ_OK) {
        cli_error("quantize", "%s", mq_last_error());
    } else {
        fprintf(stderr, "quantize: wrote %s (%d linears, method %s, R = {%s}, %.1fs)\n", out, n, method,
                train, (mq_now_ms() - t0) / 1e3);
        ret = 0;
    }
    mq_qlinears_free(q, n);
    mq_model_free(m);
    return ret;
}

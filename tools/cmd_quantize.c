/*
 * cmd_quantize.c — `matquant quantize SRC -o OUT --method minmax|gptq|qat`:
 * learn one int8 parent code per weight for the widths in --train-bits and
 * write a matquant checkpoint directory (atomically). Progress per block on
 * stderr; the source model is only read.
 */
#include "cli.h"
#include "common.h"
#include "core/threads.h"
#include "io/checkpoint.h"
#include "train/quantize.h"
#include "train/omniquant.h"
#include "train/qat.h"

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
    mq_qat_opts qo;
    mq_qat_defaults(&qo);
    const char *qat_data = NULL, *qat_co = NULL;
    int qat_tokens = (int)qo.tokens, qat_max = 0;
    mq_omni_opts oq; /* --method omniquant */
    mq_omni_defaults(&oq);
    cli_opt opts[] = {
        {"output", 'o', OPT_STR, &out, "checkpoint directory to write (required)"},
        {"method", 0, OPT_STR, &method, "minmax | gptq | omniquant | qat (default gptq)"},
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
        /* --method qat (train/qat.h) */
        {"data", 0, OPT_STR, &qat_data, "qat: training text, .jsonl or plain (default: the --calib default)"},
        {"tokens", 0, OPT_INT, &qat_tokens, "qat: training token budget (default 1048576)"},
        {"seq-len", 0, OPT_INT, &qo.seq_len, "qat: tokens per training sequence (default 256)"},
        {"batch", 0, OPT_INT, &qo.batch, "qat: sequences per micro-batch (default 8)"},
        {"accum", 0, OPT_INT, &qo.accum, "qat: micro-batches accumulated per step (default 1)"},
        {"lr", 0, OPT_FLOAT, &qo.lr, "qat: peak learning rate of the weights (default 1e-4)"},
        {"lr-clip", 0, OPT_FLOAT, &qo.lr_clip, "qat: peak learning rate of the LWC clipping logits (default 1e-2)"},
        {"warmup", 0, OPT_INT, &qo.warmup, "qat: linear warmup steps before the cosine decay (default 20)"},
        {"clip", 0, OPT_FLOAT, &qo.clip_norm, "qat: global gradient-norm limit, 0 = none (default 1)"},
        {"weight-decay", 0, OPT_FLOAT, &qo.weight_decay, "qat: AdamW decoupled weight decay (default 0)"},
        {"co-distill", 0, OPT_STR, &qat_co, "qat, omniquant: FROM:TO[:W],... slice TO also learns from slice FROM (stop-gradient), e.g. 8:2 (omniquant: one pair)"},
        {"save-every", 0, OPT_INT, &qo.save_every, "qat: steps between training-state saves to OUT.qat-state (default 100)"},
        {"resume", 0, OPT_FLAG, &qo.resume, "qat: continue from OUT.qat-state (bit-exact with the same options and threads); omniquant: from the finished blocks in OUT.partial/"},
        {"max-steps", 0, OPT_INT, &qat_max, "qat: stop after N steps of this run, keeping the state for --resume (default 0: all)"},
        /* --method omniquant (train/omniquant.h); --co-distill and --resume above serve it too */
        {"epochs", 0, OPT_INT, &oq.epochs, "omniquant: passes over the calibration sequences per block (default 20)"},
        {"lr-lwc", 0, OPT_FLOAT, &oq.lr_lwc, "omniquant: AdamW lr of the LWC clipping logits (default 1e-2)"},
        {"let", 0, OPT_FLAG, &oq.let, "omniquant: also learn LET scales between each norm and the projections reading it"},
        {"lr-let", 0, OPT_FLOAT, &oq.lr_let, "omniquant: AdamW lr of the LET scales (default 5e-3)"},
        {0},
    };
    char *pos[1];
    int npos;
    int rc = cli_parse("quantize", "SRC -o OUT [options]",
                       "Quantize SRC (HF directory, GGUF or llama2.c .bin) into a matquant checkpoint:\n"
                       "one int8 parent code per weight whose slices to every width in --train-bits\n"
                       "are good (MatGPTQ with --method gptq; plain MinMax with --method minmax;\n"
                       "end-to-end distillation training with --method qat).",
                       opts, argc, argv, pos, 1, &npos);
    if (rc >= 0) return rc;
    if (npos != 1 || !out) {
        cli_error("quantize", "expected SRC and -o OUT (see matquant quantize --help)");
        return 2;
    }
    mq_quant_opts o = {.method = method, .scope = scope, .group = group, .calib_samples = samples,
                       .calib_len = len, .seed = (uint64_t)seed, .damp = damp, .block = 128,
                       .progress = progress, .parent_grid = parent_grid};
    if (strcmp(method, "minmax") && strcmp(method, "gptq") && strcmp(method, "qat") && strcmp(method, "omniquant")) {
        cli_error("quantize", "--method must be minmax or gptq or omniquant (post-training) or qat (training), got '%s'", method);
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
    bool qat = !strcmp(method, "qat");
    static char qat_state[1100];
    if (qat) { /* the QAT options, checked before any work */
        memcpy(qo.train_bits, o.train_bits, sizeof qo.train_bits);
        memcpy(qo.lambda, o.lambda, sizeof qo.lambda);
        snprintf(qat_state, sizeof qat_state, "%s.qat-state", out);
        qo.n_train = o.n_train, qo.parent_grid = parent_grid, qo.scope = scope, qo.group = group;
        qo.data_path = qat_data ? qat_data : calib, qo.tokens = qat_tokens, qo.seed = (uint64_t)seed;
        qo.state_path = qat_state, qo.stop_after = qat_max, qo.progress = progress;
        if ((qat_co && mq_qat_parse_co(qat_co, &qo)) || mq_qat_check_opts(&qo) || qat_max < 0) {
            cli_error("quantize", "%s", qat_max < 0 ? "--max-steps must be >= 0" : mq_last_error());
            return 2;
        }
    }
    bool omni = !strcmp(method, "omniquant");
    static char omni_state[1100];
    if (omni) { /* the OmniQuant options, checked before any work */
        snprintf(omni_state, sizeof omni_state, "%s.partial", out);
        oq.state_dir = omni_state;
        oq.resume = qo.resume;
        int used = 0;
        bool cd_ok = !qat_co || sscanf(qat_co, "%d:%d%n", &oq.cd_hi, &oq.cd_lo, &used) == 2;
        if (qat_co && cd_ok && qat_co[used] == ':') {
            char *end;
            oq.cd_weight = strtof(qat_co + used + 1, &end);
            cd_ok = *end == 0 && end != qat_co + used + 1;
        } else if (qat_co && cd_ok) {
            cd_ok = qat_co[used] == 0;
        }
        if (!cd_ok) {
            cli_error("quantize", "--co-distill for omniquant is one pair HI:LO[:W], e.g. 8:2, got '%s'", qat_co);
            return 2;
        }
        if (oq.epochs < 0 || !(oq.lr_lwc >= 0) || !(oq.lr_let >= 0) || !(oq.cd_weight >= 0) ||
            (qat_co && (oq.cd_hi > 8 || oq.cd_lo < 1 || oq.cd_lo >= oq.cd_hi))) {
            cli_error("quantize", "omniquant needs --epochs >= 0, --lr-lwc and --lr-let >= 0, and --co-distill "
                      "HI:LO[:W] with 8 >= HI > LO >= 1, W >= 0");
            return 2;
        }
        o.omni = &oq;
    }
    if (mq_checkpoint_can_write(out)) { /* before any long work */
        cli_error("quantize", "%s", mq_last_error());
        return 1;
    }
    mq_set_threads(threads);
    mq_model *m = tool_load_model("quantize", pos[0], tokenizer, NULL, strcmp(method, "minmax") != 0);
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
    else if (omni)
        snprintf(meta.calibration, sizeof meta.calibration, "%s: %d x %d tokens, seed %d, %d epochs, lr-lwc %g%s%s%s",
                 calib, samples, len, seed, oq.epochs, oq.lr_lwc, oq.let ? ", LET" : "",
                 qat_co ? ", co-distill " : "", qat_co ? qat_co : "");
    else if (qat)
        snprintf(meta.calibration, sizeof meta.calibration, "%s: %d tokens, %d x %d per micro-batch, seed %d, "
                 "lr %g, lr-clip %g, co-distill %s", qo.data_path, qat_tokens, qo.batch, qo.seq_len, seed, qo.lr,
                 qo.lr_clip, qat_co ? qat_co : "none");
    else
        snprintf(meta.calibration, sizeof meta.calibration, "none");
    mq_qlinear *q = NULL;
    int n = 0, ret = 1;
    double t0 = mq_now_ms();
    bool done = true;
    mq_status qst = qat ? mq_qat_quantize(m, &qo, &q, &n, &done) : mq_quantize(m, &o, &q, &n);
    if (qst == MQ_OK && !done) { /* --max-steps: the state is saved, no checkpoint yet */
        mq_model_free(m);
        return 0;
    }
    if (qst != MQ_OK || mq_checkpoint_write(out, m, q, n, &meta) != MQ_OK) {
        cli_error("quantize", "%s", mq_last_error());
    } else {
        fprintf(stderr, "quantize: wrote %s (%d linears, method %s, R = {%s}, %.1fs)\n", out, n, method,
                train, (mq_now_ms() - t0) / 1e3);
        if (omni) mq_omni_state_remove(omni_state); /* the checkpoint holds everything now */
        ret = 0;
    }
    mq_qlinears_free(q, n);
    mq_model_free(m);
    return ret;
}

/*
 * test_tasks.c — zero-shot task scoring (src/eval/tasks.h) on the real
 * stories260K model: every task on its first 20 items gives metrics in
 * [0,1] and the same numbers twice; the scorer's loglik (KV cache shared
 * across choices, lm-eval's context/continuation split, left truncation)
 * equals a direct sum of log-softmax over one plain forward; the prompt
 * texts are the ones lm-eval builds (checked through the gold index of a
 * one-item file); bad files, a missing file and an unknown task give clear
 * errors.
 */
#include "check.h"
#include "eval/ppl.h"
#include "eval/tasks.h"
#include "nn/model.h"

static const char *TASKS[] = {"arc_easy", "arc_challenge", "hellaswag", "piqa", "boolq", "winogrande", "lambada"};

/* loglik the plain way: encode, split like lm-eval, one forward from scratch */
static double manual_loglik(const mq_model *m, const char *ctx, const char *cont, bool *greedy) {
    size_t lc = strlen(ctx), keep = lc;
    while (keep > 0 && (ctx[keep - 1] == ' ' || ctx[keep - 1] == '\n')) keep--;
    char *whole = malloc(lc + strlen(cont) + 1);
    strcpy(whole, ctx);
    strcat(whole, cont);
    int32_t *c_ids, *w_ids;
    size_t nc, nw;
    MQ_ASSERT(mq_tokenizer_encode(m->tok, ctx, keep, false, &c_ids, &nc) == MQ_OK);
    MQ_ASSERT(mq_tokenizer_encode(m->tok, whole, strlen(whole), false, &w_ids, &nw) == MQ_OK);
    size_t T = 1 + nw, k = 0;
    int32_t *seq = malloc(T * sizeof(int32_t));
    seq[k++] = m->cfg.bos_id;
    for (size_t i = 0; i < nc; i++) seq[k++] = c_ids[i];
    for (size_t i = nc; i < nw; i++) seq[k++] = w_ids[i];
    size_t n_cont = nw - nc, maxlen = (size_t)m->cfg.max_seq;
    size_t drop = T > maxlen + 1 ? T - maxlen - 1 : 0;
    int n_in = (int)(T - 1 - drop), V = m->cfg.vocab_size;
    float *logits = malloc((size_t)n_in * V * sizeof(float));
    mq_state *s = mq_state_new(m, n_in, n_in);
    MQ_ASSERT(mq_forward(m, s, seq + drop, n_in, 0, logits, true) == MQ_OK);
    double ll = 0;
    *greedy = true;
    for (size_t j = T - n_cont; j < T; j++) {
        const float *lg = logits + (j - 1 - drop) * V;
        ll += mq_log_softmax_at(lg, V, seq[j]);
        int best = 0;
        for (int v = 1; v < V; v++)
            if (lg[v] > lg[best]) best = v;
        if (best != seq[j]) *greedy = false;
    }
    mq_state_free(s);
    free(logits);
    free(seq);
    free(c_ids);
    free(w_ids);
    free(whole);
    return ll;
}

static void test_loglik(const mq_model *m) {
    char *longctx = malloc(8192);
    longctx[0] = 0;
    for (int i = 0; i < 40; i++) strcat(longctx, "Tim and his dog went to the park to play. ");
    int32_t *ids;
    size_t n;
    MQ_ASSERT(mq_tokenizer_encode(m->tok, longctx, strlen(longctx), false, &ids, &n) == MQ_OK);
    free(ids);
    CHECK(n > (size_t)m->cfg.max_seq, "the long context (%zu tokens) must exceed max_seq %d", n, m->cfg.max_seq);
    struct { const char *ctx, *cont; } req[] = {
        {"Question: What does a cat like to eat?\nAnswer:", " fish"},
        {"Question: What does a cat like to eat?\nAnswer:", " a big red ball in the sun"},
        {"Once upon a time, there was a little girl named ", "Lily."},   /* trailing space moves */
        {"The sun was hot.\n", "\nThey went home."},                     /* trailing newline moves */
        {longctx, " The dog was happy."},                               /* cut to max_seq + 1 */
        {longctx, " Tim ran."},
    };
    mq_scorer *sc = mq_scorer_new(m);
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++) {
        double ll;
        bool g, gm;
        int nt = 0;
        mq_status st = mq_scorer_loglik(sc, req[i].ctx, req[i].cont, &ll, &g, &nt);
        CHECK(st == MQ_OK, "request %zu: %s", i, mq_last_error());
        if (st) continue;
        double want = manual_loglik(m, req[i].ctx, req[i].cont, &gm);
        CHECK(fabs(ll - want) <= 1e-5 + 1e-6 * fabs(want), "request %zu: scorer loglik %.8f, manual forward %.8f", i, ll, want);
        CHECK(g == gm, "request %zu: greedy %d vs %d", i, g, gm);
        CHECK(nt > 0 && ll < 0, "request %zu: %d tokens, loglik %g", i, nt, ll);
    }
    mq_scorer_free(sc);
    free(longctx);
}

static void test_all_tasks(const mq_model *m, const char *data) {
    for (size_t t = 0; t < sizeof TASKS / sizeof TASKS[0]; t++) {
        mq_task_result a, b;
        mq_status st = mq_task_eval(m, TASKS[t], data, 20, &a);
        CHECK(st == MQ_OK, "%s: %s", TASKS[t], mq_last_error());
        if (st) continue;
        CHECK(a.n == 20 && strcmp(a.task, TASKS[t]) == 0, "%s: n=%d task=%s", TASKS[t], a.n, a.task);
        CHECK(a.acc >= 0 && a.acc <= 1 && a.acc_se >= 0, "%s: acc %g se %g", TASKS[t], a.acc, a.acc_se);
        if (a.has_acc_norm) CHECK(a.acc_norm >= 0 && a.acc_norm <= 1, "%s: acc_norm %g", TASKS[t], a.acc_norm);
        if (a.has_ppl) CHECK(isfinite(a.ppl) && a.ppl > 1, "%s: ppl %g", TASKS[t], a.ppl);
        st = mq_task_eval(m, TASKS[t], data, 20, &b);
        CHECK(st == MQ_OK && a.acc == b.acc && a.acc_norm == b.acc_norm && a.ppl == b.ppl,
              "%s: second run differs (%g/%g vs %g/%g)", TASKS[t], a.acc, a.acc_norm, b.acc, b.acc_norm);
        printf("  %-14s acc %.3f acc_norm %.3f%s\n", TASKS[t], a.acc, a.acc_norm, a.has_acc_norm ? "" : " (n/a)");
    }
    bool arc = mq_task_known("arc_easy"), none = mq_task_known("arc");
    CHECK(arc && !none, "mq_task_known");
}

/* ---- small data directories in /tmp ---- */

static char tmpdir[64];

static void write_file(const char *rel, const char *text) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    char *slash = strrchr(path, '/');
    *slash = 0;
    mkdir(path, 0755);
    *slash = '/';
    FILE *f = fopen(path, "w");
    MQ_ASSERT(f != NULL);
    fputs(text, f);
    fclose(f);
}

/* index of the largest of n values (first on ties) */
static int argmax_d(const double *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* One-item files whose gold is the argmax of the manual logliks of the
 * prompts lm-eval builds: acc must be 1, and 0 with another gold. */
static void test_prompts(const mq_model *m) {
    bool g;
    char line[1024];
    mq_task_result r;
    /* ARC: "Question: {q}\nAnswer:" + " {choice}" */
    const char *ch[4] = {"a fish", "the sky", "tall trees", "milk"};
    double ll[4];
    for (int i = 0; i < 4; i++) {
        char cont[64];
        snprintf(cont, sizeof cont, " %s", ch[i]);
        ll[i] = manual_loglik(m, "Question: What does the cat eat?\nAnswer:", cont, &g);
    }
    int best = argmax_d(ll, 4);
    for (int wrong = 0; wrong < 2; wrong++) {
        int gold = wrong ? (best + 1) % 4 : best;
        snprintf(line, sizeof line,
                 "{\"query\": \"Question: What does the cat eat?\", \"choices\": [\"%s\", \"%s\", \"%s\", \"%s\"], "
                 "\"gold\": %d}\n", ch[0], ch[1], ch[2], ch[3], gold);
        write_file("arc/arc_easy_test.llmfoundry.jsonl", line);
        mq_status st = mq_task_eval(m, "arc_easy", tmpdir, 0, &r);
        CHECK(st == MQ_OK && r.n == 1 && r.acc == (wrong ? 0 : 1), "arc prompt (gold %d): %s acc %g", gold,
              st ? mq_last_error() : "", r.acc);
    }
    /* BoolQ: "{passage}\nQuestion: {question}?\nAnswer:" + " no"/" yes" */
    const char *bctx = "Lily has a red ball.\nQuestion: is the ball red?\nAnswer:";
    double bl[2] = {manual_loglik(m, bctx, " no", &g), manual_loglik(m, bctx, " yes", &g)};
    snprintf(line, sizeof line,
             "{\"query\": \"Passage: Lily has a red ball.\\nQuestion: is the ball red?\", \"choices\": [\"no\", \"yes\"], "
             "\"gold\": %d}\n", argmax_d(bl, 2));
    write_file("boolq/boolq_dev.llmfoundry.jsonl", line);
    mq_status st = mq_task_eval(m, "boolq", tmpdir, 0, &r);
    CHECK(st == MQ_OK && r.acc == 1, "boolq prompt: %s acc %g", st ? mq_last_error() : "", r.acc);
    /* WinoGrande: the shared continuation " {rest}" after each context */
    double wl[2] = {manual_loglik(m, "Tim gave the ball to Sam because Tim", " was kind.", &g),
                    manual_loglik(m, "Tim gave the ball to Sam because Sam", " was kind.", &g)};
    snprintf(line, sizeof line,
             "{\"context_options\": [\"Tim gave the ball to Sam because Tim\", \"Tim gave the ball to Sam because Sam\"], "
             "\"continuation\": \"was kind.\", \"gold\": %d}\n", argmax_d(wl, 2));
    write_file("winogrande/winogrande_dev.llmfoundry.jsonl", line);
    st = mq_task_eval(m, "winogrande", tmpdir, 0, &r);
    CHECK(st == MQ_OK && r.acc == 1, "winogrande prompt: %s acc %g", st ? mq_last_error() : "", r.acc);
}

static void test_errors(const mq_model *m) {
    mq_task_result r;
    /* malformed JSON on line 2 */
    write_file("arc/arc_challenge_test.llmfoundry.jsonl",
               "{\"query\": \"Question: Why?\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n{\"query\": oops}\n");
    mq_status st = mq_task_eval(m, "arc_challenge", tmpdir, 0, &r);
    CHECK(st == MQ_ERR_FORMAT && strstr(mq_last_error(), "arc_challenge_test.llmfoundry.jsonl:2:"),
          "malformed line: status %d, %s", st, mq_last_error());
    /* --limit 1 stops before the bad line */
    st = mq_task_eval(m, "arc_challenge", tmpdir, 1, &r);
    CHECK(st == MQ_OK && r.n == 1, "limit 1 before a bad line: %s", mq_last_error());
    /* gold out of range */
    write_file("arc/arc_challenge_test.llmfoundry.jsonl",
               "{\"query\": \"Question: Why?\", \"choices\": [\"a\", \"b\"], \"gold\": 2}\n");
    st = mq_task_eval(m, "arc_challenge", tmpdir, 0, &r);
    CHECK(st == MQ_ERR_FORMAT && strstr(mq_last_error(), ":1:") && strstr(mq_last_error(), "gold"),
          "gold out of range: %s", mq_last_error());
    /* HellaSwag: bad gold label, truncated item */
    write_file("hellaswag/hellaswag_val_full.txt", "Ctx: a man\n7\na\nb\nc\nd\n");
    st = mq_task_eval(m, "hellaswag", tmpdir, 0, &r);
    CHECK(st == MQ_ERR_FORMAT && strstr(mq_last_error(), "hellaswag_val_full.txt:2:"), "hellaswag gold: %s",
          mq_last_error());
    write_file("hellaswag/hellaswag_val_full.txt", "Ctx: a man\n1\na\nb\n");
    st = mq_task_eval(m, "hellaswag", tmpdir, 0, &r);
    CHECK(st == MQ_ERR_FORMAT && strstr(mq_last_error(), "truncated"), "hellaswag truncated: %s", mq_last_error());
    /* PIQA: fewer labels than items */
    write_file("piqa/valid.jsonl", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n"
                                   "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n");
    write_file("piqa/valid-labels.lst", "0\n");
    st = mq_task_eval(m, "piqa", tmpdir, 0, &r);
    CHECK(st == MQ_ERR_FORMAT && strstr(mq_last_error(), "valid-labels.lst"), "piqa labels: %s", mq_last_error());
    /* missing file */
    st = mq_task_eval(m, "lambada", tmpdir, 0, &r);
    CHECK(st == MQ_ERR_IO && strstr(mq_last_error(), "lambada_openai_test.llmfoundry.jsonl"), "missing file: %s",
          mq_last_error());
    /* unknown task */
    st = mq_task_eval(m, "mmlu", tmpdir, 0, &r);
    CHECK(st == MQ_ERR_ARG && strstr(mq_last_error(), "mmlu") && strstr(mq_last_error(), "arc_easy") &&
              strstr(mq_last_error(), "lambada"),
          "unknown task: %s", mq_last_error());
}

int main(void) {
    const char *data = check_shared_data();
    if (!data) return check_done("test_tasks");
    mq_model *m = NULL;
    mq_load_opts o = {.tokenizer_path = check_path(data, "stories260K/tok512.bin")};
    mq_status st = mq_model_load(check_path(data, "stories260K/stories260K.bin"), &o, &m);
    CHECK(st == MQ_OK && m->tok, "load stories260K: %s", mq_last_error());
    if (st) return check_done("test_tasks");
    CHECK(mq_tokenizer_add_bos(m->tok) && m->cfg.bos_id >= 0, "stories260K expects BOS");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mq_test_tasks_XXXXXX");
    MQ_ASSERT(mkdtemp(tmpdir) != NULL);
    test_loglik(m);
    test_prompts(m);
    test_errors(m);
    test_all_tasks(m, data);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) SKIP("could not remove %s", tmpdir);
    mq_model_free(m);
    return check_done("test_tasks");
}

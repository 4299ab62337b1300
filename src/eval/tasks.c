/*
 * tasks.c — zero-shot tasks scored like lm-evaluation-harness (see tasks.h
 * for the protocol and the prompt formats).
 *
 * Layout: the scorer (one request -> loglik, with the context's KV cache
 * reused across the choices of an item), then the readers that turn each
 * data file into items (contexts, continuations, gold), then the metrics.
 *
 * Not here: batching several requests into one forward; lm-eval's
 * per-request reordering (it changes nothing in the results).
 */
#include "eval/tasks.h"

#include "eval/ppl.h"

#include <cJSON.h>
#include <math.h>
#include <string.h>

#define MAX_CHOICES 8

/* ============================================================ scorer */

struct mq_scorer {
    const mq_model *m;
    mq_state *st;
    int cap;              /* positions the state holds */
    int max_len;          /* model context: sequences are cut to max_len + 1 tokens */
    int32_t prefix_tok;   /* BOS when the tokenizer adds it, else -1 */
    int32_t *ctx_cache;   /* context tokens whose KV the state holds now */
    int n_ctx_cache;
    float *last_logits;   /* (V) logits after the cached context */
    float *logits;        /* (cap_logits, V) */
    int cap_logits;
    char *ctx_text;       /* text of the last encoded context and its tokens */
    int32_t *ctx_ids;
    size_t n_ctx_ids;
};

mq_scorer *mq_scorer_new(const mq_model *m) {
    mq_scorer *s = mq_calloc(1, sizeof *s);
    s->m = m;
    s->max_len = m->cfg.max_seq > 0 ? m->cfg.max_seq : 2048;
    s->prefix_tok = m->tok && mq_tokenizer_add_bos(m->tok) ? m->cfg.bos_id : -1;
    s->last_logits = mq_malloc((size_t)m->cfg.vocab_size * sizeof(float));
    return s;
}

void mq_scorer_free(mq_scorer *s) {
    if (!s) return;
    mq_state_free(s->st);
    free(s->ctx_cache);
    free(s->last_logits);
    free(s->logits);
    free(s->ctx_text);
    free(s->ctx_ids);
    free(s);
}

/* Python's str.isspace() on ASCII (what rstrip() removes). */
static bool is_py_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static int argmax_f(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* encode(ctx) with a one-entry cache: the choices of an item share it. */
static mq_status encode_context(mq_scorer *s, const char *ctx, size_t len) {
    if (s->ctx_text && strlen(s->ctx_text) == len && memcmp(s->ctx_text, ctx, len) == 0) return MQ_OK;
    free(s->ctx_text);
    free(s->ctx_ids);
    s->ctx_text = NULL;
    s->ctx_ids = NULL;
    mq_status st = mq_tokenizer_encode(s->m->tok, ctx, len, false, &s->ctx_ids, &s->n_ctx_ids);
    if (st) return st;
    s->ctx_text = mq_malloc(len + 1);
    memcpy(s->ctx_text, ctx, len);
    s->ctx_text[len] = 0;
    return MQ_OK;
}

/* Make sure the state holds `need` positions (rounded up; drops the cache). */
static void ensure_state(mq_scorer *s, int need) {
    if (s->st && s->cap >= need) return;
    int cap = 256;
    while (cap < need) cap *= 2;
    if (cap > s->max_len) cap = s->max_len;
    mq_state_free(s->st);
    s->st = mq_state_new(s->m, cap, cap < 512 ? cap : 512);
    s->cap = cap;
    s->n_ctx_cache = 0;
}

mq_status mq_scorer_loglik(mq_scorer *s, const char *context, const char *continuation, double *loglik,
                           bool *greedy, int *n_tokens) {
    const mq_model *m = s->m;
    int V = m->cfg.vocab_size;
    if (!m->tok) return mq_fail(MQ_ERR_ARG, "task scoring: the model has no tokenizer");
    /* lm-eval moves the context's trailing whitespace into the continuation */
    size_t lc = strlen(context), lk = strlen(continuation);
    size_t keep = lc;
    while (keep > 0 && is_py_space((unsigned char)context[keep - 1])) keep--;
    char *whole = mq_malloc(lc + lk + 1);
    memcpy(whole, context, lc);
    memcpy(whole + lc, continuation, lk + 1);
    int32_t *w_ids = NULL, *seq = NULL;
    size_t n_w = 0;
    mq_status st = encode_context(s, context, keep);
    if (!st) st = mq_tokenizer_encode(m->tok, whole, lc + lk, false, &w_ids, &n_w);
    if (st) goto out;
    if (n_w <= s->n_ctx_ids) {
        st = mq_fail(MQ_ERR_ARG, "task scoring: the continuation \"%.40s\" adds no tokens to its context",
                     continuation);
        goto out;
    }
    /* sequence = [prefix] + encode(context) + whole[len(ctx):] */
    size_t n_cont = n_w - s->n_ctx_ids;
    size_t n_pre = s->n_ctx_ids;
    int32_t first = -1;
    if (s->prefix_tok >= 0) first = s->prefix_tok;
    else if (n_pre == 0) first = m->cfg.bos_id >= 0 ? m->cfg.bos_id : m->cfg.eos_id;
    if (n_pre == 0 && first < 0) {
        st = mq_fail(MQ_ERR_ARG, "task scoring: empty context and the model has no BOS/EOS token");
        goto out;
    }
    size_t T = (first >= 0) + n_pre + n_cont;
    seq = mq_malloc(T * sizeof(int32_t));
    size_t k = 0;
    if (first >= 0) seq[k++] = first;
    memcpy(seq + k, s->ctx_ids, n_pre * sizeof(int32_t));
    memcpy(seq + k + n_pre, w_ids + n_pre, n_cont * sizeof(int32_t));
    /* cut from the left to max_len + 1 tokens (the last one is only predicted) */
    size_t drop = T > (size_t)s->max_len + 1 ? T - ((size_t)s->max_len + 1) : 0;
    if (drop >= T - n_cont) {
        st = mq_fail(MQ_ERR_ARG, "task scoring: continuation of %zu tokens does not fit the model's context of %d",
                     n_cont, s->max_len);
        goto out;
    }
    size_t Lp = T - n_cont - drop;
    const int32_t *pre = seq + drop, *cont = seq + T - n_cont;
    ensure_state(s, (int)(Lp + n_cont - 1));
    /* the context's forward is shared by every choice with the same tokens */
    if (!(s->n_ctx_cache == (int)Lp && memcmp(s->ctx_cache, pre, Lp * sizeof(int32_t)) == 0)) {
        s->n_ctx_cache = 0;
        st = mq_forward(m, s->st, pre, (int)Lp, 0, s->last_logits, false);
        if (st) goto out;
        s->ctx_cache = mq_realloc(s->ctx_cache, Lp * sizeof(int32_t));
        memcpy(s->ctx_cache, pre, Lp * sizeof(int32_t));
        s->n_ctx_cache = (int)Lp;
    }
    int R = (int)n_cont - 1;
    if (R > 0) {
        if (R > s->cap_logits) {
            free(s->logits);
            s->logits = mq_aligned_alloc((size_t)R * V * sizeof(float));
            s->cap_logits = R;
        }
        st = mq_forward(m, s->st, cont, R, (int)Lp, s->logits, true);
        if (st) goto out;
    }
    double ll = 0;
    bool gr = true;
    for (int j = 0; j <= R; j++) {
        const float *lg = j == 0 ? s->last_logits : s->logits + (size_t)(j - 1) * V;
        ll += mq_log_softmax_at(lg, V, cont[j]);
        if (argmax_f(lg, V) != cont[j]) gr = false;
    }
    if (!isfinite(ll)) {
        st = mq_fail(MQ_ERR_NUMERIC, "task scoring: non-finite log-likelihood");
        goto out;
    }
    *loglik = ll;
    if (greedy) *greedy = gr;
    if (n_tokens) *n_tokens = (int)n_cont;
out:
    free(whole);
    free(w_ids);
    free(seq);
    return st;
}

/* ============================================================ items */

typedef struct {
    int n;                        /* choices */
    char *ctx[MAX_CHOICES];       /* one per choice (shared pointers allowed) */
    char *cont[MAX_CHOICES];
    double len[MAX_CHOICES];      /* choice length for acc_norm (code points) */
    int gold;
} task_item;

typedef struct {
    task_item *items;
    int n, cap;
} item_list;

static void items_free(item_list *l) {
    for (int i = 0; i < l->n; i++) {
        task_item *it = &l->items[i];
        for (int c = 0; c < it->n; c++) {
            if (c == 0 || it->ctx[c] != it->ctx[c - 1]) free(it->ctx[c]);
            if (c == 0 || it->cont[c] != it->cont[c - 1]) free(it->cont[c]);
        }
    }
    free(l->items);
    memset(l, 0, sizeof *l);
}

static task_item *items_add(item_list *l) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->items = mq_realloc(l->items, (size_t)l->cap * sizeof(task_item));
    }
    task_item *it = &l->items[l->n++];
    memset(it, 0, sizeof *it);
    return it;
}

static double utf8_chars(const char *s) {
    double n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

/* a + b as a new string */
static char *cat2(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *r = mq_malloc(la + lb + 1);
    memcpy(r, a, la);
    memcpy(r + la, b, lb + 1);
    return r;
}

/* A shared context with " {choice}" continuations. */
static void set_choices(task_item *it, char *ctx, const char *const *choices, int n) {
    it->n = n;
    for (int c = 0; c < n; c++) {
        it->ctx[c] = ctx;
        it->cont[c] = cat2(" ", choices[c]);
        it->len[c] = utf8_chars(choices[c]);
    }
}

/* Iterates the lines of a file read whole; tracks the line number. */
typedef struct {
    char *text, *p, *end;
    int line;
    const char *path;
} line_reader;

static mq_status lines_open(line_reader *r, const char *path) {
    size_t len;
    memset(r, 0, sizeof *r);
    r->path = path;
    if (mq_read_file(path, &r->text, &len)) return mq_fail(MQ_ERR_IO, "%s: cannot read the task file", path);
    r->p = r->text;
    r->end = r->text + len;
    return MQ_OK;
}

/* Next line (NUL-terminated in place, without \r\n), or NULL at the end. */
static char *lines_next(line_reader *r) {
    if (r->p >= r->end) return NULL;
    char *s = r->p, *nl = memchr(s, '\n', (size_t)(r->end - s));
    char *e = nl ? nl : r->end;
    r->p = nl ? nl + 1 : r->end;
    if (e > s && e[-1] == '\r') e--;
    *e = 0;
    r->line++;
    return s;
}

static const char *json_string(const cJSON *o, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

/* A JSON line's object, or an error naming file:line. */
static mq_status parse_json_line(line_reader *r, const char *line, cJSON **out) {
    *out = cJSON_Parse(line);
    if (!*out || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return mq_fail(MQ_ERR_FORMAT, "%s:%d: not a JSON object", r->path, r->line);
    }
    return MQ_OK;
}

/* "gold" as an index below n. */
static mq_status json_gold(line_reader *r, const cJSON *o, int n, int *gold) {
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(o, "gold");
    if (!cJSON_IsNumber(g) || g->valuedouble != (int)g->valuedouble || g->valueint < 0 || g->valueint >= n)
        return mq_fail(MQ_ERR_FORMAT, "%s:%d: \"gold\" must be an integer index below %d", r->path, r->line, n);
    *gold = g->valueint;
    return MQ_OK;
}

/* "choices": 2..MAX_CHOICES strings. */
static mq_status json_choices(line_reader *r, const cJSON *o, const char **out, int *n) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "choices");
    int k = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0;
    if (k < 2 || k > MAX_CHOICES)
        return mq_fail(MQ_ERR_FORMAT, "%s:%d: \"choices\" must be an array of 2 to %d strings", r->path, r->line,
                       MAX_CHOICES);
    for (int i = 0; i < k; i++) {
        const cJSON *x = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsString(x))
            return mq_fail(MQ_ERR_FORMAT, "%s:%d: choice %d is not a string", r->path, r->line, i);
        out[i] = x->valuestring;
    }
    *n = k;
    return MQ_OK;
}

typedef enum { T_ARC, T_HELLASWAG, T_PIQA, T_BOOLQ, T_WINOGRANDE, T_LAMBADA } task_kind;

/* ARC and BoolQ (llm-foundry multiple choice) */
static mq_status read_mc_jsonl(const char *path, task_kind kind, int limit, item_list *l) {
    line_reader r;
    mq_status st = lines_open(&r, path);
    char *line;
    while (!st && (limit <= 0 || l->n < limit) && (line = lines_next(&r))) {
        if (!line[0]) continue;
        cJSON *o;
        if ((st = parse_json_line(&r, line, &o))) break;
        const char *choices[MAX_CHOICES];
        int nc = 0, gold = 0;
        const char *q = json_string(o, "query");
        if (!q) st = mq_fail(MQ_ERR_FORMAT, "%s:%d: missing string \"query\"", path, r.line);
        if (!st) st = json_choices(&r, o, choices, &nc);
        if (!st) st = json_gold(&r, o, nc, &gold);
        if (!st) {
            char *ctx;
            if (kind == T_ARC) {
                /* lm-eval: "Question: {question}\nAnswer:"; the query already has the prefix */
                bool has = strncmp(q, "Question: ", 10) == 0;
                char *t = cat2(has ? "" : "Question: ", q);
                ctx = cat2(t, "\nAnswer:");
                free(t);
            } else {
                /* lm-eval: "{passage}\nQuestion: {question}?\nAnswer:"; the query is
                 * "Passage: {passage}\nQuestion: {question}?" */
                if (strncmp(q, "Passage: ", 9) != 0) {
                    st = mq_fail(MQ_ERR_FORMAT, "%s:%d: a BoolQ query must start with \"Passage: \"", path, r.line);
                    cJSON_Delete(o);
                    break;
                }
                ctx = cat2(q + 9, "\nAnswer:");
            }
            task_item *it = items_add(l);
            set_choices(it, ctx, choices, nc);
            it->gold = gold;
        }
        cJSON_Delete(o);
    }
    free(r.text);
    return st;
}

static mq_status read_hellaswag(const char *path, int limit, item_list *l) {
    line_reader r;
    mq_status st = lines_open(&r, path);
    char *ctx;
    while (!st && (limit <= 0 || l->n < limit) && (ctx = lines_next(&r))) {
        if (!ctx[0] && r.p >= r.end) break; /* trailing newline */
        int start = r.line;
        char *gl = lines_next(&r);
        const char *endings[4];
        for (int i = 0; i < 4; i++) endings[i] = lines_next(&r);
        if (!endings[3]) {
            st = mq_fail(MQ_ERR_FORMAT, "%s:%d: item truncated (6 lines per item: context, gold, 4 endings)",
                         path, start);
            break;
        }
        if (!(gl[0] >= '0' && gl[0] <= '3' && gl[1] == 0)) {
            st = mq_fail(MQ_ERR_FORMAT, "%s:%d: gold label must be 0..3, got \"%.20s\"", path, start + 1, gl);
            break;
        }
        task_item *it = items_add(l);
        set_choices(it, mq_strdup(ctx), endings, 4);
        it->gold = gl[0] - '0';
    }
    free(r.text);
    return st;
}

static mq_status read_piqa(const char *path, const char *labels, int limit, item_list *l) {
    line_reader r, rl;
    mq_status st = lines_open(&r, path);
    if (st) return st;
    if ((st = lines_open(&rl, labels))) {
        free(r.text);
        return st;
    }
    char *line;
    while (!st && (limit <= 0 || l->n < limit) && (line = lines_next(&r))) {
        if (!line[0]) continue;
        char *lab = lines_next(&rl);
        if (!lab) {
            st = mq_fail(MQ_ERR_FORMAT, "%s: fewer labels than items in %s (item at line %d)", labels, path, r.line);
            break;
        }
        if (!((lab[0] == '0' || lab[0] == '1') && lab[1] == 0)) {
            st = mq_fail(MQ_ERR_FORMAT, "%s:%d: label must be 0 or 1", labels, rl.line);
            break;
        }
        cJSON *o;
        if ((st = parse_json_line(&r, line, &o))) break;
        const char *goal = json_string(o, "goal");
        const char *sols[2] = {json_string(o, "sol1"), json_string(o, "sol2")};
        if (!goal || !sols[0] || !sols[1]) {
            st = mq_fail(MQ_ERR_FORMAT, "%s:%d: expected strings \"goal\", \"sol1\", \"sol2\"", path, r.line);
        } else {
            char *t = cat2("Question: ", goal);
            task_item *it = items_add(l);
            set_choices(it, cat2(t, "\nAnswer:"), sols, 2);
            free(t);
            it->gold = lab[0] - '0';
        }
        cJSON_Delete(o);
    }
    free(r.text);
    free(rl.text);
    return st;
}

/* WinoGrande: two contexts, one continuation (lm-eval: " " + rest.strip()). */
static mq_status read_winogrande(const char *path, int limit, item_list *l) {
    line_reader r;
    mq_status st = lines_open(&r, path);
    char *line;
    while (!st && (limit <= 0 || l->n < limit) && (line = lines_next(&r))) {
        if (!line[0]) continue;
        cJSON *o;
        if ((st = parse_json_line(&r, line, &o))) break;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "context_options");
        const char *cont = json_string(o, "continuation");
        int gold = 0;
        if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 2 || !cJSON_IsString(cJSON_GetArrayItem(a, 0)) ||
            !cJSON_IsString(cJSON_GetArrayItem(a, 1)) || !cont) {
            st = mq_fail(MQ_ERR_FORMAT, "%s:%d: expected \"context_options\" (2 strings) and \"continuation\"",
                         path, r.line);
        } else if (!(st = json_gold(&r, o, 2, &gold))) {
            while (is_py_space((unsigned char)*cont)) cont++;
            size_t n = strlen(cont);
            while (n > 0 && is_py_space((unsigned char)cont[n - 1])) n--;
            char *c = mq_malloc(n + 2);
            c[0] = ' ';
            memcpy(c + 1, cont, n);
            c[n + 1] = 0;
            task_item *it = items_add(l);
            it->n = 2;
            for (int i = 0; i < 2; i++) {
                it->ctx[i] = mq_strdup(cJSON_GetArrayItem(a, i)->valuestring);
                it->cont[i] = c;
                it->len[i] = utf8_chars(it->ctx[i]);
            }
            it->gold = gold;
        }
        cJSON_Delete(o);
    }
    free(r.text);
    return st;
}

/* LAMBADA: lm-eval splits the text at its last ' '; the llm-foundry file
 * holds the two sides of that split. */
static mq_status read_lambada(const char *path, int limit, item_list *l) {
    line_reader r;
    mq_status st = lines_open(&r, path);
    char *line;
    while (!st && (limit <= 0 || l->n < limit) && (line = lines_next(&r))) {
        if (!line[0]) continue;
        cJSON *o;
        if ((st = parse_json_line(&r, line, &o))) break;
        const char *ctx = json_string(o, "context"), *cont = json_string(o, "continuation");
        if (!ctx || !cont || !cont[0]) {
            st = mq_fail(MQ_ERR_FORMAT, "%s:%d: expected strings \"context\" and \"continuation\" (non-empty)",
                         path, r.line);
        } else {
            task_item *it = items_add(l);
            it->n = 1;
            it->ctx[0] = mq_strdup(ctx);
            it->cont[0] = cat2(" ", cont);
            it->len[0] = utf8_chars(cont);
        }
        cJSON_Delete(o);
    }
    free(r.text);
    return st;
}

/* ============================================================ tasks */

typedef struct {
    const char *name;
    task_kind kind;
    const char *file, *file2;
    bool acc_norm; /* reported by lm-eval */
} task_def;

static const task_def TASKS[] = {
    {"arc_easy", T_ARC, "arc/arc_easy_test.llmfoundry.jsonl", NULL, true},
    {"arc_challenge", T_ARC, "arc/arc_challenge_test.llmfoundry.jsonl", NULL, true},
    {"hellaswag", T_HELLASWAG, "hellaswag/hellaswag_val_full.txt", NULL, true},
    {"piqa", T_PIQA, "piqa/valid.jsonl", "piqa/valid-labels.lst", true},
    {"boolq", T_BOOLQ, "boolq/boolq_dev.llmfoundry.jsonl", NULL, false},
    {"winogrande", T_WINOGRANDE, "winogrande/winogrande_dev.llmfoundry.jsonl", NULL, false},
    {"lambada", T_LAMBADA, "lambada/lambada_openai_test.llmfoundry.jsonl", NULL, false},
};
#define N_TASKS ((int)(sizeof TASKS / sizeof TASKS[0]))

const char *mq_task_names(void) {
    return "arc_easy,arc_challenge,hellaswag,piqa,boolq,winogrande,lambada";
}

static const task_def *find_task(const char *name) {
    for (int i = 0; i < N_TASKS; i++)
        if (strcmp(TASKS[i].name, name) == 0) return &TASKS[i];
    return NULL;
}

bool mq_task_known(const char *name) { return find_task(name) != NULL; }

static double std_err(double p, int n) { return n > 1 ? sqrt(p * (1 - p) / (n - 1)) : 0; }

static mq_status read_items(const task_def *t, const char *data_dir, int limit, item_list *l) {
    char path[4096], path2[4096];
    snprintf(path, sizeof path, "%s/%s", data_dir, t->file);
    if (t->file2) snprintf(path2, sizeof path2, "%s/%s", data_dir, t->file2);
    switch (t->kind) {
    case T_ARC:
    case T_BOOLQ: return read_mc_jsonl(path, t->kind, limit, l);
    case T_HELLASWAG: return read_hellaswag(path, limit, l);
    case T_PIQA: return read_piqa(path, path2, limit, l);
    case T_WINOGRANDE: return read_winogrande(path, limit, l);
    case T_LAMBADA: return read_lambada(path, limit, l);
    }
    return mq_fail(MQ_ERR_ARG, "task %s: no reader", t->name);
}

mq_status mq_task_eval(const mq_model *m, const char *task, const char *data_dir, int limit,
                       mq_task_result *out) {
    memset(out, 0, sizeof *out);
    const task_def *t = find_task(task);
    if (!t) return mq_fail(MQ_ERR_ARG, "unknown task \"%s\" (known: %s)", task, mq_task_names());
    if (!m->tok) return mq_fail(MQ_ERR_ARG, "task %s: the model has no tokenizer", task);
    double t0 = mq_now_ms();
    item_list l = {0};
    mq_status st = read_items(t, data_dir, limit, &l);
    if (!st && l.n == 0) st = mq_fail(MQ_ERR_FORMAT, "%s/%s: no items", data_dir, t->file);
    if (st) {
        items_free(&l);
        return st;
    }
    mq_scorer *sc = mq_scorer_new(m);
    double acc = 0, acc_norm = 0, ll_sum = 0;
    for (int i = 0; i < l.n && !st; i++) {
        task_item *it = &l.items[i];
        double ll[MAX_CHOICES];
        bool greedy = false;
        for (int c = 0; c < it->n && !st; c++) {
            st = mq_scorer_loglik(sc, it->ctx[c], it->cont[c], &ll[c], &greedy, NULL);
            if (st) mq_error_prefix("task %s, item %d", task, i);
        }
        if (st) break;
        if (t->kind == T_LAMBADA) {
            acc += greedy;
            ll_sum += ll[0];
            continue;
        }
        int best = 0, best_n = 0;
        for (int c = 1; c < it->n; c++) {
            if (ll[c] > ll[best]) best = c;
            if (ll[c] / it->len[c] > ll[best_n] / it->len[best_n]) best_n = c;
        }
        acc += best == it->gold;
        acc_norm += best_n == it->gold;
    }
    mq_scorer_free(sc);
    if (!st) {
        snprintf(out->task, sizeof out->task, "%s", task);
        out->n = l.n;
        out->acc = acc / l.n;
        out->acc_se = std_err(out->acc, l.n);
        out->has_acc_norm = t->acc_norm;
        if (t->acc_norm) {
            out->acc_norm = acc_norm / l.n;
            out->acc_norm_se = std_err(out->acc_norm, l.n);
        }
        if (t->kind == T_LAMBADA) {
            out->has_ppl = true;
            out->ppl = exp(-ll_sum / l.n);
        }
        out->seconds = (mq_now_ms() - t0) / 1e3;
    }
    items_free(&l);
    return st;
}

/*
 * calib.c — calibration sequences (see calib.h).
 * Not here: what is done with them (gptq.c, omniquant.c, qat.c).
 */
#include "train/calib.h"

#include <cJSON.h>
#include <string.h>

typedef struct {
    int32_t *ids;
    size_t n;
} doc;

static uint64_t rng_next(uint64_t *s) {
    /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Split the file into documents: JSON lines' "text", or the whole text. */
static mq_status read_docs(const char *path, const mq_tokenizer *tok, doc **docs, int *ndocs) {
    char *text;
    size_t len;
    mq_status st = mq_read_file(path, &text, &len);
    if (st) return st;
    *docs = NULL;
    *ndocs = 0;
    int cap = 0;
    bool jsonl = mq_has_suffix(path, ".jsonl") || mq_has_suffix(path, ".json");
    size_t pos = 0;
    int line_no = 0;
    while (pos < len && st == MQ_OK) {
        const char *s = text + pos;
        size_t n;
        if (jsonl) {
            const char *nl = memchr(s, '\n', len - pos);
            n = nl ? (size_t)(nl - s) : len - pos;
            pos += n + 1;
            line_no++;
        } else {
            n = len;
            pos = len;
        }
        const char *body = s;
        size_t blen = n;
        cJSON *j = NULL;
        if (jsonl) {
            if (n == 0 || (n == 1 && s[0] == '\r')) continue;
            j = cJSON_ParseWithLength(s, n);
            const cJSON *t = j ? cJSON_GetObjectItemCaseSensitive(j, "text") : NULL;
            if (!cJSON_IsString(t)) {
                st = mq_fail(MQ_ERR_FORMAT, "%s: line %d is not a JSON object with a string \"text\"",
                             path, line_no);
                cJSON_Delete(j);
                break;
            }
            body = t->valuestring;
            blen = strlen(body);
        }
        int32_t *ids = NULL;
        size_t nids = 0;
        st = mq_tokenizer_encode(tok, body, blen, false, &ids, &nids);
        cJSON_Delete(j);
        if (st) break;
        if (*ndocs == cap) *docs = mq_realloc(*docs, (size_t)(cap = cap ? 2 * cap : 256) * sizeof(doc));
        (*docs)[(*ndocs)++] = (doc){ids, nids};
    }
    free(text);
    if (st == MQ_OK && *ndocs == 0) st = mq_fail(MQ_ERR_FORMAT, "%s: no text found", path);
    if (st) {
        for (int i = 0; i < *ndocs; i++) free((*docs)[i].ids);
        free(*docs);
        *docs = NULL;
    }
    return st;
}

mq_status mq_calib_load(const char *path, const mq_tokenizer *tok, int n, int len, uint64_t seed,
                        int32_t bos, mq_calib *out) {
    memset(out, 0, sizeof *out);
    if (n <= 0 || len < 2) return mq_fail(MQ_ERR_ARG, "calibration: need samples > 0 and length >= 2");
    doc *docs;
    int nd;
    mq_status st = read_docs(path, tok, &docs, &nd);
    if (st) return st;
    size_t total = 0;
    int n_long = 0;
    for (int i = 0; i < nd; i++) {
        total += docs[i].n;
        n_long += docs[i].n > (size_t)len;
    }
    out->n = n;
    out->len = len;
    out->tokens = mq_malloc((size_t)n * len * sizeof(int32_t));
    uint64_t rng = seed;
    if (n_long > 0) {
        for (int s = 0; s < n; s++) {
            const doc *d;
            do d = &docs[rng_next(&rng) % (uint64_t)nd];
            while (d->n <= (size_t)len);
            size_t start = rng_next(&rng) % (d->n - (size_t)len);
            memcpy(out->tokens + (size_t)s * len, d->ids + start, (size_t)len * sizeof(int32_t));
        }
    } else if (total >= (size_t)len) {
        /* join everything, then random windows */
        int32_t *all = mq_malloc(total * sizeof(int32_t));
        size_t k = 0;
        for (int i = 0; i < nd; i++) {
            memcpy(all + k, docs[i].ids, docs[i].n * sizeof(int32_t));
            k += docs[i].n;
        }
        for (int s = 0; s < n; s++) {
            size_t start = total == (size_t)len ? 0 : rng_next(&rng) % (total - (size_t)len);
            memcpy(out->tokens + (size_t)s * len, all + start, (size_t)len * sizeof(int32_t));
        }
        free(all);
    } else {
        st = mq_fail(MQ_ERR_ARG, "%s: only %zu tokens, fewer than one calibration sequence of %d",
                     path, total, len);
    }
    if (st == MQ_OK && bos >= 0)
        for (int s = 0; s < n; s++) out->tokens[(size_t)s * len] = bos;
    for (int i = 0; i < nd; i++) free(docs[i].ids);
    free(docs);
    if (st) mq_calib_free(out);
    return st;
}

void mq_calib_free(mq_calib *c) {
    free(c->tokens);
    memset(c, 0, sizeof *c);
}

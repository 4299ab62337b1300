/*
 * tok_save_spm.c — writing a score-ranked vocabulary (llama2.c tokenizer.bin,
 * GGUF "llama" / SentencePiece) as a Hugging Face tokenizer.json, laid out
 * like Llama 2's: normalizer Prepend("▁") + Replace(" ", "▁"), BPE model with
 * byte_fallback, <unk>/<s>/</s> as special added tokens, and a
 * Replace/ByteFallback/Fuse/Strip decoder.
 *
 * The merges are derived from the scores: every split of a piece p into two
 * pieces a + b that are both in the vocabulary becomes the merge (a, b), and
 * merges are ranked by p's score (best first). Rank-ordered BPE over that list
 * merges exactly the adjacent pairs score-ordered BPE would, in the same
 * order (ties between different pieces of equal score aside), which is how
 * Llama 2's own tokenizer.json was made from its sentencepiece model.
 *
 * Not here: the rank-ordered (HF/GGUF gpt2) writer (tok_load.c).
 * References: HF tokenizers tokenizer.json schema; transformers'
 * SentencePieceExtractor (merges from a sentencepiece vocabulary).
 */
#include "text/tok_internal.h"

#include <cJSON.h>
#include <string.h>

typedef struct {
    float score;
    int32_t piece, a, b;
} scored_merge;

static int cmp_merge(const void *x, const void *y) {
    const scored_merge *m = x, *n = y;
    if (m->score != n->score) return m->score > n->score ? -1 : 1;
    if (m->piece != n->piece) return m->piece < n->piece ? -1 : 1;
    return (m->a > n->a) - (m->a < n->a);
}

static bool is_byte_token(const mq_tokenizer *t, int32_t id) {
    const char *p = t->piece[id];
    return t->piece_len[id] == 6 && !strncmp(p, "<0x", 3) && p[5] == '>';
}

/* The piece as tokenizer.json spells it (malloc'ed): llama2.c's pieces use
 * " " where sentencepiece has "▁", and its BOS/EOS are "\n<s>\n"-style. */
static char *json_piece(const mq_tokenizer *t, int32_t id) {
    if (t->kind == TOK_LLAMA2C && id < 3) {
        static const char *names[3] = {"<unk>", "<s>", "</s>"};
        return mq_strdup(names[id]);
    }
    const char *p = t->piece[id];
    size_t n = t->piece_len[id], k = 0;
    char *s = mq_malloc(3 * n + 1);
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ' ' && t->kind == TOK_LLAMA2C) {
            memcpy(s + k, "\xe2\x96\x81", 3);
            k += 3;
        } else {
            s[k++] = p[i];
        }
    }
    s[k] = 0;
    return s;
}

static size_t utf8_step(unsigned char c) {
    return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
}

static cJSON *str_item(cJSON *parent, const char *type) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    if (parent) cJSON_AddItemToArray(parent, o);
    return o;
}

mq_status tok_save_json_scored(const mq_tokenizer *t, const char *path) {
    if (!t->score) return mq_fail(MQ_ERR_ARG, "%s: the vocabulary has no scores", path);
    int n = t->n_vocab;
    char **js = mq_malloc((size_t)n * sizeof *js);
    for (int32_t i = 0; i < n; i++) js[i] = json_piece(t, i);

    /* merges from every two-piece split of every scored piece */
    size_t nm = 0, cap = 1024;
    scored_merge *ms = mq_malloc(cap * sizeof *ms);
    for (int32_t id = 0; id < n; id++) {
        if (t->special[id] || is_byte_token(t, id) || tok_lookup(t, t->piece[id], t->piece_len[id]) != id) continue;
        const char *p = t->piece[id];
        size_t len = t->piece_len[id];
        for (size_t k = utf8_step((unsigned char)p[0]); k < len; k += utf8_step((unsigned char)p[k])) {
            int32_t a = tok_lookup(t, p, k), b = tok_lookup(t, p + k, len - k);
            if (a < 0 || b < 0 || t->special[a] || t->special[b]) continue;
            if (nm == cap) ms = mq_realloc(ms, (cap *= 2) * sizeof *ms);
            ms[nm++] = (scored_merge){t->score[id], id, a, b};
        }
    }
    qsort(ms, nm, sizeof *ms, cmp_merge);

    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "version", "1.0");
    cJSON_AddNullToObject(j, "truncation");
    cJSON_AddNullToObject(j, "padding");
    cJSON *added = cJSON_AddArrayToObject(j, "added_tokens");
    for (int32_t i = 0; i < n; i++) {
        if (!t->special[i]) continue;
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", i);
        cJSON_AddStringToObject(a, "content", js[i]);
        cJSON_AddBoolToObject(a, "single_word", 0);
        cJSON_AddBoolToObject(a, "lstrip", 0);
        cJSON_AddBoolToObject(a, "rstrip", 0);
        cJSON_AddBoolToObject(a, "normalized", 0);
        cJSON_AddBoolToObject(a, "special", 1);
        cJSON_AddItemToArray(added, a);
    }
    /* the same added non-special (user-defined) tokens the GGUF declared */
    for (int k = 0; k < t->n_added; k++) {
        const added_tok *at = &t->added[k];
        if (at->special || at->id < 0 || at->id >= n) continue;
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", at->id);
        cJSON_AddStringToObject(a, "content", js[at->id]);
        cJSON_AddBoolToObject(a, "single_word", 0);
        cJSON_AddBoolToObject(a, "lstrip", at->lstrip);
        cJSON_AddBoolToObject(a, "rstrip", at->rstrip);
        cJSON_AddBoolToObject(a, "normalized", 0);
        cJSON_AddBoolToObject(a, "special", 0);
        cJSON_AddItemToArray(added, a);
    }

    cJSON *norm = str_item(NULL, "Sequence");
    cJSON *ns = cJSON_AddArrayToObject(norm, "normalizers");
    if (t->kind == TOK_LLAMA2C || t->space_prefix != SPACE_NONE)
        cJSON_AddStringToObject(str_item(ns, "Prepend"), "prepend", "\xe2\x96\x81");
    cJSON *rep = str_item(ns, "Replace");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(rep, "pattern"), "String", " ");
    cJSON_AddStringToObject(rep, "content", "\xe2\x96\x81");
    cJSON_AddItemToObject(j, "normalizer", norm);
    cJSON_AddNullToObject(j, "pre_tokenizer");

    if (t->add_bos && t->bos_id >= 0) {
        const char *bos = js[t->bos_id];
        cJSON *pp = cJSON_AddObjectToObject(j, "post_processor");
        cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
        cJSON *single = cJSON_AddArrayToObject(pp, "single");
        cJSON *st = cJSON_CreateObject(), *sq = cJSON_CreateObject();
        cJSON *sti = cJSON_AddObjectToObject(st, "SpecialToken");
        cJSON_AddStringToObject(sti, "id", bos);
        cJSON_AddNumberToObject(sti, "type_id", 0);
        cJSON *sqi = cJSON_AddObjectToObject(sq, "Sequence");
        cJSON_AddStringToObject(sqi, "id", "A");
        cJSON_AddNumberToObject(sqi, "type_id", 0);
        cJSON_AddItemToArray(single, st);
        cJSON_AddItemToArray(single, sq);
        cJSON *pair = cJSON_AddArrayToObject(pp, "pair");
        cJSON_AddItemToArray(pair, cJSON_Duplicate(st, 1));
        cJSON_AddItemToArray(pair, cJSON_Duplicate(sq, 1));
        cJSON *sp = cJSON_AddObjectToObject(pp, "special_tokens");
        cJSON *b = cJSON_AddObjectToObject(sp, bos);
        cJSON_AddStringToObject(b, "id", bos);
        cJSON_AddItemToArray(cJSON_AddArrayToObject(b, "ids"), cJSON_CreateNumber(t->bos_id));
        cJSON_AddItemToArray(cJSON_AddArrayToObject(b, "tokens"), cJSON_CreateString(bos));
    } else {
        cJSON_AddNullToObject(j, "post_processor");
    }

    cJSON *dec = str_item(NULL, "Sequence");
    cJSON *ds = cJSON_AddArrayToObject(dec, "decoders");
    cJSON *dr = str_item(ds, "Replace");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(dr, "pattern"), "String", "\xe2\x96\x81");
    cJSON_AddStringToObject(dr, "content", " ");
    str_item(ds, "ByteFallback");
    str_item(ds, "Fuse");
    cJSON *strip = str_item(ds, "Strip");
    cJSON_AddStringToObject(strip, "content", " ");
    cJSON_AddNumberToObject(strip, "start", 1);
    cJSON_AddNumberToObject(strip, "stop", 0);
    cJSON_AddItemToObject(j, "decoder", dec);

    cJSON *model = cJSON_AddObjectToObject(j, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    if (t->unk_id >= 0) cJSON_AddStringToObject(model, "unk_token", js[t->unk_id]);
    else cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", 1);
    cJSON_AddBoolToObject(model, "byte_fallback", t->byte_id[0] >= 0);
    cJSON_AddBoolToObject(model, "ignore_merges", 0);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int32_t i = 0; i < n; i++) {
        /* duplicates keep their first id (the one lookups return) */
        if (!(t->kind == TOK_LLAMA2C && i < 3) && tok_lookup(t, t->piece[i], t->piece_len[i]) != i) continue;
        cJSON_AddItemToObject(vocab, js[i], cJSON_CreateNumber(i));
    }
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    for (size_t i = 0; i < nm; i++) {
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateString(js[ms[i].a]));
        cJSON_AddItemToArray(pair, cJSON_CreateString(js[ms[i].b]));
        cJSON_AddItemToArray(merges, pair);
    }
    free(ms);
    for (int32_t i = 0; i < n; i++) free(js[i]);
    free(js);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return mq_fail(MQ_ERR_NOMEM, "%s: cannot serialise tokenizer.json", path);
    mq_status st = mq_write_file_atomic(path, s, strlen(s));
    free(s);
    return st;
}

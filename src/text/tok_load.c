/*
 * tok_load.c — building tokenizers from llama2.c tokenizer.bin, GGUF
 * vocabularies and HF tokenizer.json, and writing tokenizer.json back.
 *
 * Not supported (clear errors): Unigram and WordPiece models, ByteLevel with
 * add_prefix_space, Split behaviours other than Isolated. The NFC normalizer
 * (Qwen2) is accepted as the identity: text already in NFC, as nearly all
 * text is, encodes exactly.
 * References: HF tokenizers' tokenizer.json schema; GGUF tokenizer.ggml.*
 * keys and llama.cpp's pre-tokenizer regexes per tokenizer.ggml.pre.
 */
#include "text/tok_internal.h"

#include <cJSON.h>
#include <string.h>

/* ============================================================ llama2.c */

mq_status mq_tokenizer_load_llama2c(const char *path, int vocab_size, mq_tokenizer **out) {
    *out = NULL;
    if (vocab_size <= 0 || vocab_size > (1 << 24))
        return mq_fail(MQ_ERR_ARG, "%s: vocabulary size %d is out of range", path, vocab_size);
    mq_map m;
    mq_status st = mq_map_file(path, &m);
    if (st) return st;
    const uint8_t *p = m.data, *end = m.data + m.size;
    if (m.size < 4) {
        mq_unmap(&m);
        return mq_fail(MQ_ERR_FORMAT, "%s: truncated llama2.c tokenizer (%zu bytes)", path, m.size);
    }
    p += 4; /* max_token_length */
    mq_tokenizer *t = tok_new(TOK_LLAMA2C, vocab_size);
    t->score = mq_calloc((size_t)vocab_size, sizeof(float));
    t->by_score = true;
    for (int i = 0; i < vocab_size; i++) {
        int32_t len;
        if (end - p < 8) {
            st = mq_fail(MQ_ERR_FORMAT, "%s: truncated at token %d of %d", path, i, vocab_size);
            break;
        }
        memcpy(&t->score[i], p, 4);
        memcpy(&len, p + 4, 4);
        p += 8;
        if (len < 0 || len > 4096 || end - p < len) {
            st = mq_fail(MQ_ERR_FORMAT, "%s: token %d has a bad length %d", path, i, len);
            break;
        }
        tok_set_piece(t, i, (const char *)p, (size_t)len);
        p += len;
    }
    mq_unmap(&m);
    if (st) {
        mq_tokenizer_free(t);
        return st;
    }
    tok_finish_vocab(t);
    t->unk_id = 0;
    t->bos_id = vocab_size > 1 ? 1 : -1;
    t->eos_id = vocab_size > 2 ? 2 : -1;
    t->add_bos = true;
    for (int i = 0; i < 3 && i < vocab_size; i++) t->special[i] = true;
    *out = t;
    return MQ_OK;
}

/* ================================================================ GGUF */

static const char *REGEX_LLAMA3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *REGEX_QWEN2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static mq_status gguf_pre(mq_tokenizer *t, const char *pre, const char *path) {
    if (!pre || !strcmp(pre, "default") || !strcmp(pre, "gpt-2") || !strcmp(pre, "gpt2")) {
        t->bytelevel_regex = true;
        return MQ_OK;
    }
    if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3") || !strcmp(pre, "llama-v3") || !strcmp(pre, "smaug-bpe")) {
        t->ignore_merges = true;
        return tok_add_regex(t, REGEX_LLAMA3, path);
    }
    if (!strcmp(pre, "qwen2")) return tok_add_regex(t, REGEX_QWEN2, path);
    if (!strcmp(pre, "smollm") || !strcmp(pre, "starcoder") || !strcmp(pre, "refact")) {
        mq_status st = tok_add_regex(t, "\\p{N}", path);
        t->bytelevel_regex = true;
        return st;
    }
    return mq_fail(MQ_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre \"%s\" is not supported (default, gpt2, "
                   "llama-bpe, qwen2, smollm, starcoder)", path, pre);
}

mq_status mq_tokenizer_load_gguf(const mq_gguf *g, mq_tokenizer **out) {
    *out = NULL;
    const char *path = mq_gguf_path(g), *s;
    size_t sl;
    if (!mq_gguf_get_str(g, "tokenizer.ggml.model", &s, &sl))
        return mq_fail(MQ_ERR_FORMAT, "%s: no tokenizer.ggml.model", path);
    char model[32];
    snprintf(model, sizeof model, "%.*s", (int)(sl < 31 ? sl : 31), s);
    bool bpe = !strcmp(model, "gpt2"), spm = !strcmp(model, "llama");
    if (!bpe && !spm)
        return mq_fail(MQ_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model \"%s\" is not supported (gpt2, llama)",
                       path, model);
    uint32_t et;
    uint64_t n;
    if (!mq_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n) || et != MQ_GGUF_STRING || n == 0 || n > (1u << 24))
        return mq_fail(MQ_ERR_FORMAT, "%s: tokenizer.ggml.tokens missing or not a string array", path);
    mq_tokenizer *t = tok_new(bpe ? TOK_BYTELEVEL : TOK_SPM, (int)n);
    mq_status st = MQ_OK;
    for (uint64_t i = 0; i < n; i++) {
        mq_gguf_arr_str(g, "tokenizer.ggml.tokens", i, &s, &sl);
        tok_set_piece(t, (int32_t)i, s, sl);
    }
    tok_finish_vocab(t);
    uint64_t ntt = 0;
    bool have_types = mq_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &ntt) && ntt == n;
    for (uint64_t i = 0; i < n && have_types; i++) {
        int64_t ty = 1;
        mq_gguf_arr_i64(g, "tokenizer.ggml.token_type", i, &ty);
        /* llama.cpp matches UNKNOWN (2) and CONTROL (3) tokens as special, USER_DEFINED (4) always */
        if (ty == 2 || ty == 3) tok_add_added(t, t->piece[i], t->piece_len[i], (int32_t)i, true, false, false);
        else if (ty == 4) tok_add_added(t, t->piece[i], t->piece_len[i], (int32_t)i, false, false, false);
    }
    tok_sort_added(t);
    uint32_t v;
    if (mq_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &v) && v < n) t->bos_id = (int32_t)v;
    if (mq_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &v) && v < n) t->eos_id = (int32_t)v;
    if (mq_gguf_get_u32(g, "tokenizer.ggml.unknown_token_id", &v) && v < n) t->unk_id = (int32_t)v;
    if (t->bos_id >= 0) t->special[t->bos_id] = true;
    if (t->eos_id >= 0) t->special[t->eos_id] = true;
    bool b;
    t->add_bos = mq_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) ? b : spm;
    if (bpe) {
        tok_init_bytelevel(t);
        char pre[64] = "";
        if (mq_gguf_get_str(g, "tokenizer.ggml.pre", &s, &sl)) snprintf(pre, sizeof pre, "%.*s", (int)(sl < 63 ? sl : 63), s);
        t->pre_name = mq_strdup(pre);
        st = gguf_pre(t, pre[0] ? pre : NULL, path);
        uint64_t nm = 0;
        if (st == MQ_OK && (!mq_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &nm) || et != MQ_GGUF_STRING))
            st = mq_fail(MQ_ERR_FORMAT, "%s: tokenizer.ggml.merges missing or not a string array", path);
        for (uint64_t i = 0; i < nm && st == MQ_OK; i++) {
            mq_gguf_arr_str(g, "tokenizer.ggml.merges", i, &s, &sl);
            const char *sp = memchr(s, ' ', sl);
            int32_t a = sp ? tok_lookup(t, s, (size_t)(sp - s)) : -1;
            int32_t c = sp ? tok_lookup(t, sp + 1, sl - (size_t)(sp - s) - 1) : -1;
            char buf[512];
            size_t la = sp ? (size_t)(sp - s) : 0, lc = sp ? sl - la - 1 : 0;
            if (a < 0 || c < 0 || la + lc > sizeof buf) {
                st = mq_fail(MQ_ERR_FORMAT, "%s: merge %llu \"%.*s\" names a token not in the vocabulary", path,
                             (unsigned long long)i, (int)(sl > 40 ? 40 : sl), s);
                break;
            }
            memcpy(buf, s, la);
            memcpy(buf + la, sp + 1, lc);
            int32_t r = tok_lookup(t, buf, la + lc);
            if (r >= 0) tok_add_merge(t, a, c, (int32_t)i, r);
        }
    } else {
        t->by_score = true;
        t->score = mq_calloc(n, sizeof(float));
        for (uint64_t i = 0; i < n; i++) mq_gguf_arr_f32(g, "tokenizer.ggml.scores", i, &t->score[i]);
        t->replace_space = true;
        /* llama.cpp prefixes a space to the text and again after every special token */
        t->space_prefix = (mq_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b) ? b : true) ? SPACE_ALWAYS : SPACE_NONE;
    }
    if (st) {
        mq_tokenizer_free(t);
        return st;
    }
    *out = t;
    return MQ_OK;
}

/* ====================================================== tokenizer.json */

static const cJSON *jget(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }
static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *x = jget(o, k);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

/* one pre-tokenizer (not a Sequence) */
static mq_status pre_one(mq_tokenizer *t, const cJSON *p, const char *path, bool *bytelevel) {
    const char *type = jstr(p, "type");
    if (!type) return mq_fail(MQ_ERR_FORMAT, "%s: pre_tokenizer without \"type\"", path);
    if (!strcmp(type, "Split")) {
        const cJSON *pat = jget(p, "pattern");
        const char *re = jstr(pat, "Regex"), *lit = jstr(pat, "String");
        const char *beh = jstr(p, "behavior");
        if (cJSON_IsTrue(jget(p, "invert")) || (beh && strcmp(beh, "Isolated")))
            return mq_fail(MQ_ERR_UNSUPPORTED, "%s: Split pre-tokenizer with behavior \"%s\"%s is not supported "
                           "(Isolated only)", path, beh ? beh : "?", cJSON_IsTrue(jget(p, "invert")) ? " inverted" : "");
        if (re) return tok_add_regex(t, re, path);
        if (lit) {
            /* a literal: quote it for PCRE2 */
            char *q = mq_malloc(strlen(lit) + 5);
            sprintf(q, "\\Q%s\\E", lit);
            mq_status st = tok_add_regex(t, q, path);
            free(q);
            return st;
        }
        return mq_fail(MQ_ERR_FORMAT, "%s: Split pre-tokenizer without a pattern", path);
    }
    if (!strcmp(type, "ByteLevel")) {
        if (cJSON_IsTrue(jget(p, "add_prefix_space")))
            return mq_fail(MQ_ERR_UNSUPPORTED, "%s: ByteLevel with add_prefix_space is not supported", path);
        const cJSON *ur = jget(p, "use_regex");
        t->bytelevel_regex = !cJSON_IsBool(ur) || cJSON_IsTrue(ur);
        *bytelevel = true;
        return MQ_OK;
    }
    if (!strcmp(type, "Digits"))
        return tok_add_regex(t, cJSON_IsTrue(jget(p, "individual_digits")) ? "\\p{N}" : "\\p{N}+", path);
    if (!strcmp(type, "Metaspace")) {
        const char *rep = jstr(p, "replacement");
        if (rep && strcmp(rep, "\xe2\x96\x81"))
            return mq_fail(MQ_ERR_UNSUPPORTED, "%s: Metaspace replacement other than U+2581", path);
        const char *scheme = jstr(p, "prepend_scheme");
        const cJSON *aps = jget(p, "add_prefix_space");
        t->replace_space = true;
        t->metaspace = true;
        t->space_prefix = scheme ? (!strcmp(scheme, "always") ? SPACE_ALWAYS : !strcmp(scheme, "first") ? SPACE_FIRST : SPACE_NONE)
                                 : (!cJSON_IsBool(aps) || cJSON_IsTrue(aps)) ? SPACE_ALWAYS : SPACE_NONE;
        const cJSON *sp = jget(p, "split");
        t->split_metaspace = !cJSON_IsBool(sp) || cJSON_IsTrue(sp);
        return MQ_OK;
    }
    return mq_fail(MQ_ERR_UNSUPPORTED, "%s: pre_tokenizer type \"%s\" is not supported", path, type);
}

static mq_status normalizer_one(mq_tokenizer *t, const cJSON *n, const char *path) {
    const char *type = jstr(n, "type");
    if (!type) return mq_fail(MQ_ERR_FORMAT, "%s: normalizer without \"type\"", path);
    if (!strcmp(type, "Prepend")) {
        const char *pp = jstr(n, "prepend");
        if (!pp || strcmp(pp, "\xe2\x96\x81"))
            return mq_fail(MQ_ERR_UNSUPPORTED, "%s: Prepend normalizer other than \"\xe2\x96\x81\"", path);
        t->space_prefix = SPACE_ALWAYS;
        return MQ_OK;
    }
    if (!strcmp(type, "Replace")) {
        const char *from = jstr(jget(n, "pattern"), "String"), *to = jstr(n, "content");
        if (!from || !to || strcmp(from, " ") || strcmp(to, "\xe2\x96\x81"))
            return mq_fail(MQ_ERR_UNSUPPORTED, "%s: Replace normalizer other than \" \" -> \"\xe2\x96\x81\"", path);
        t->replace_space = true;
        return MQ_OK;
    }
    if (!strcmp(type, "NFC")) return MQ_OK; /* identity on NFC text, see the file comment */
    return mq_fail(MQ_ERR_UNSUPPORTED, "%s: normalizer type \"%s\" is not supported", path, type);
}

static int32_t token_id_of(const mq_tokenizer *t, const cJSON *tok) {
    const char *s = cJSON_IsString(tok) ? tok->valuestring : jstr(tok, "content");
    return s ? tok_lookup(t, s, strlen(s)) : -1;
}

mq_status mq_tokenizer_load_json(const char *path, mq_tokenizer **out) {
    *out = NULL;
    char *text;
    size_t len;
    mq_status st = mq_read_file(path, &text, &len);
    if (st) return st;
    const char *err = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &err, false);
    long err_off = err ? (long)(err - text) : -1;
    free(text);
    if (!j) return mq_fail(MQ_ERR_FORMAT, "%s: invalid JSON near byte %ld", path, err_off);
    const cJSON *model = jget(j, "model");
    const char *mtype = model ? jstr(model, "type") : NULL;
    if (!cJSON_IsObject(model)) st = mq_fail(MQ_ERR_FORMAT, "%s: no \"model\" object", path);
    else if (mtype && strcmp(mtype, "BPE"))
        st = mq_fail(MQ_ERR_UNSUPPORTED, "%s: model type \"%s\" is not supported (BPE only)", path, mtype);
    const cJSON *vocab = model ? jget(model, "vocab") : NULL;
    if (!st && !cJSON_IsObject(vocab)) st = mq_fail(MQ_ERR_FORMAT, "%s: model.vocab is not an object", path);
    if (st) {
        cJSON_Delete(j);
        return st;
    }
    /* vocabulary size: the largest id among vocab and added tokens */
    int64_t max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= (1 << 24)) {
            st = mq_fail(MQ_ERR_FORMAT, "%s: vocab entry \"%.40s\" has a bad id", path, e->string);
            break;
        }
        if (e->valueint > max_id) max_id = e->valueint;
    }
    const cJSON *added = jget(j, "added_tokens");
    cJSON_ArrayForEach(e, added) {
        const cJSON *id = jget(e, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= (1 << 24) || !jstr(e, "content")) {
            st = mq_fail(MQ_ERR_FORMAT, "%s: an added_tokens entry needs an id and content", path);
            break;
        }
        if (id->valueint > max_id) max_id = id->valueint;
    }
    if (!st && max_id < 0) st = mq_fail(MQ_ERR_FORMAT, "%s: empty vocabulary", path);
    if (st) {
        cJSON_Delete(j);
        return st;
    }
    mq_tokenizer *t = tok_new(TOK_SPM, (int)max_id + 1);
    cJSON_ArrayForEach(e, vocab) tok_set_piece(t, e->valueint, e->string, strlen(e->string));
    cJSON_ArrayForEach(e, added) {
        const char *c = jstr(e, "content");
        int32_t id = jget(e, "id")->valueint;
        if (!t->piece[id]) tok_set_piece(t, id, c, strlen(c));
    }
    tok_finish_vocab(t);
    cJSON_ArrayForEach(e, added) {
        const char *c = jstr(e, "content");
        tok_add_added(t, c, strlen(c), jget(e, "id")->valueint, cJSON_IsTrue(jget(e, "special")),
                      cJSON_IsTrue(jget(e, "lstrip")), cJSON_IsTrue(jget(e, "rstrip")));
    }
    tok_sort_added(t);
    /* normalizer and pre-tokenizer decide the flavour */
    bool bytelevel = false;
    const cJSON *norm = jget(j, "normalizer"), *pre = jget(j, "pre_tokenizer");
    if (cJSON_IsObject(norm)) {
        const char *nt = jstr(norm, "type");
        if (nt && !strcmp(nt, "Sequence")) {
            cJSON_ArrayForEach(e, jget(norm, "normalizers")) if (!st) st = normalizer_one(t, e, path);
        } else {
            st = normalizer_one(t, norm, path);
        }
    }
    if (!st && cJSON_IsObject(pre)) {
        const char *pt = jstr(pre, "type");
        if (pt && !strcmp(pt, "Sequence")) {
            cJSON_ArrayForEach(e, jget(pre, "pretokenizers")) if (!st) st = pre_one(t, e, path, &bytelevel);
        } else {
            st = pre_one(t, pre, path, &bytelevel);
        }
    }
    const cJSON *dec = jget(j, "decoder");
    if (!bytelevel && cJSON_IsObject(dec) && jstr(dec, "type") && !strcmp(jstr(dec, "type"), "ByteLevel")) bytelevel = true;
    if (bytelevel) {
        t->kind = TOK_BYTELEVEL;
        snprintf(t->kind_name, sizeof t->kind_name, "bpe-bytelevel");
        tok_init_bytelevel(t);
    } else if (t->n_regex && !st) {
        st = mq_fail(MQ_ERR_UNSUPPORTED, "%s: regex pre-tokenization without ByteLevel is not supported", path);
    }
    t->ignore_merges = cJSON_IsTrue(jget(model, "ignore_merges"));
    t->fuse_unk = cJSON_IsTrue(jget(model, "fuse_unk"));
    const char *unk = jstr(model, "unk_token");
    if (unk) t->unk_id = tok_lookup(t, unk, strlen(unk));
    if (!cJSON_IsTrue(jget(model, "byte_fallback")))
        for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    /* merges: "a b" strings or [a, b] pairs, rank = position */
    int rank = 0;
    cJSON_ArrayForEach(e, jget(model, "merges")) {
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (sp) {
                a = e->valuestring;
                la = (size_t)(sp - a);
                b = sp + 1;
                lb = strlen(b);
            }
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring;
            b = cJSON_GetArrayItem(e, 1)->valuestring;
            la = strlen(a);
            lb = strlen(b);
        }
        int32_t ia = a ? tok_lookup(t, a, la) : -1, ib = b ? tok_lookup(t, b, lb) : -1;
        char buf[1024];
        if (ia < 0 || ib < 0 || la + lb > sizeof buf) {
            st = mq_fail(MQ_ERR_FORMAT, "%s: merge %d names a token that is not in the vocabulary", path, rank);
            break;
        }
        memcpy(buf, a, la);
        memcpy(buf + la, b, lb);
        int32_t r = tok_lookup(t, buf, la + lb);
        if (r < 0) {
            st = mq_fail(MQ_ERR_FORMAT, "%s: merge %d produces \"%.*s\", which is not in the vocabulary", path,
                         rank, (int)(la + lb > 40 ? 40 : la + lb), buf);
            break;
        }
        tok_add_merge(t, ia, ib, rank++, r);
    }
    /* BOS: the post-processor's template, else tokenizer_config.json */
    const cJSON *pp = jget(j, "post_processor");
    if (cJSON_IsObject(pp)) {
        const cJSON *tp = pp;
        if (jstr(pp, "type") && !strcmp(jstr(pp, "type"), "Sequence"))
            cJSON_ArrayForEach(tp, jget(pp, "processors")) if (jstr(tp, "type") && !strcmp(jstr(tp, "type"), "TemplateProcessing")) break;
        const cJSON *single = tp ? jget(tp, "single") : NULL;
        const cJSON *first = cJSON_IsArray(single) ? cJSON_GetArrayItem(single, 0) : NULL;
        const cJSON *stok = first ? jget(first, "SpecialToken") : NULL;
        if (stok && jstr(stok, "id")) {
            t->bos_id = tok_lookup(t, jstr(stok, "id"), strlen(jstr(stok, "id")));
            t->add_bos = t->bos_id >= 0;
        }
    }
    cJSON_Delete(j);
    /* tokenizer_config.json beside the file */
    char *dir = mq_strdup(path), *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0;
    else dir[0] = 0;
    char *cfgp = mq_path_join(dir[0] ? dir : ".", "tokenizer_config.json");
    free(dir);
    char *ctext;
    if (!st && mq_file_exists(cfgp) && mq_read_file(cfgp, &ctext, &len) == MQ_OK) {
        cJSON *c = cJSON_ParseWithLength(ctext, len);
        free(ctext);
        if (c) {
            int32_t id;
            if ((id = token_id_of(t, jget(c, "bos_token"))) >= 0) t->bos_id = id;
            if ((id = token_id_of(t, jget(c, "eos_token"))) >= 0) t->eos_id = id;
            const cJSON *ab = jget(c, "add_bos_token");
            if (cJSON_IsBool(ab)) t->add_bos = cJSON_IsTrue(ab);
            cJSON_Delete(c);
        }
    }
    free(cfgp);
    if (t->eos_id < 0) {
        static const char *eos_names[] = {"</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>"};
        for (size_t i = 0; i < 4 && t->eos_id < 0; i++) t->eos_id = tok_lookup(t, eos_names[i], strlen(eos_names[i]));
    }
    if (t->bos_id >= 0) t->special[t->bos_id] = true;
    if (t->eos_id >= 0) t->special[t->eos_id] = true;
    if (st) {
        mq_tokenizer_free(t);
        return st;
    }
    *out = t;
    return MQ_OK;
}

/* =============================================== writing tokenizer.json */

mq_status mq_tokenizer_save_json(const mq_tokenizer *t, const char *path) {
    if (t->kind == TOK_LLAMA2C || t->by_score) return tok_save_json_scored(t, path); /* tok_save_spm.c */
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "version", "1.0");
    cJSON *added = cJSON_AddArrayToObject(j, "added_tokens");
    for (int i = 0; i < t->n_added; i++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", t->added[i].id);
        cJSON_AddStringToObject(a, "content", t->added[i].text);
        cJSON_AddBoolToObject(a, "single_word", 0);
        cJSON_AddBoolToObject(a, "lstrip", t->added[i].lstrip);
        cJSON_AddBoolToObject(a, "rstrip", t->added[i].rstrip);
        cJSON_AddBoolToObject(a, "normalized", 0);
        cJSON_AddBoolToObject(a, "special", t->added[i].special);
        cJSON_AddItemToArray(added, a);
    }
    if (t->kind == TOK_SPM && t->metaspace) {
        cJSON_AddNullToObject(j, "normalizer");
        cJSON *ms = cJSON_AddObjectToObject(j, "pre_tokenizer");
        cJSON_AddStringToObject(ms, "type", "Metaspace");
        cJSON_AddStringToObject(ms, "replacement", "\xe2\x96\x81");
        cJSON_AddStringToObject(ms, "prepend_scheme", t->space_prefix == SPACE_ALWAYS ? "always"
                                : t->space_prefix == SPACE_FIRST ? "first" : "never");
        cJSON_AddBoolToObject(ms, "split", t->split_metaspace);
    } else if (t->kind == TOK_SPM) {
        cJSON *nseq = cJSON_CreateObject();
        cJSON_AddStringToObject(nseq, "type", "Sequence");
        cJSON *ns = cJSON_AddArrayToObject(nseq, "normalizers");
        if (t->space_prefix != SPACE_NONE) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "type", "Prepend");
            cJSON_AddStringToObject(p, "prepend", "\xe2\x96\x81");
            cJSON_AddItemToArray(ns, p);
        }
        if (t->replace_space) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "type", "Replace");
            cJSON_AddStringToObject(cJSON_AddObjectToObject(r, "pattern"), "String", " ");
            cJSON_AddStringToObject(r, "content", "\xe2\x96\x81");
            cJSON_AddItemToArray(ns, r);
        }
        cJSON_AddItemToObject(j, "normalizer", nseq);
        cJSON_AddNullToObject(j, "pre_tokenizer");
    } else {
        cJSON_AddNullToObject(j, "normalizer");
        cJSON *pseq = cJSON_CreateObject();
        cJSON_AddStringToObject(pseq, "type", "Sequence");
        cJSON *ps = cJSON_AddArrayToObject(pseq, "pretokenizers");
        for (int i = 0; i < t->n_regex; i++) {
            cJSON *s = cJSON_CreateObject();
            cJSON_AddStringToObject(s, "type", "Split");
            cJSON_AddStringToObject(cJSON_AddObjectToObject(s, "pattern"), "Regex", t->regex_src[i]);
            cJSON_AddStringToObject(s, "behavior", "Isolated");
            cJSON_AddBoolToObject(s, "invert", 0);
            cJSON_AddItemToArray(ps, s);
        }
        cJSON *bl = cJSON_CreateObject();
        cJSON_AddStringToObject(bl, "type", "ByteLevel");
        cJSON_AddBoolToObject(bl, "add_prefix_space", 0);
        cJSON_AddBoolToObject(bl, "trim_offsets", 1);
        cJSON_AddBoolToObject(bl, "use_regex", t->bytelevel_regex);
        cJSON_AddItemToArray(ps, bl);
        cJSON_AddItemToObject(j, "pre_tokenizer", pseq);
    }
    if (t->add_bos && t->bos_id >= 0) {
        cJSON *pp = cJSON_AddObjectToObject(j, "post_processor");
        cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
        cJSON *single = cJSON_AddArrayToObject(pp, "single");
        cJSON *st = cJSON_CreateObject(), *sq = cJSON_CreateObject();
        cJSON *sti = cJSON_AddObjectToObject(st, "SpecialToken");
        cJSON_AddStringToObject(sti, "id", t->piece[t->bos_id]);
        cJSON_AddNumberToObject(sti, "type_id", 0);
        cJSON *sqi = cJSON_AddObjectToObject(sq, "Sequence");
        cJSON_AddStringToObject(sqi, "id", "A");
        cJSON_AddNumberToObject(sqi, "type_id", 0);
        cJSON_AddItemToArray(single, st);
        cJSON_AddItemToArray(single, sq);
        cJSON *sp = cJSON_AddObjectToObject(pp, "special_tokens");
        cJSON *b = cJSON_AddObjectToObject(sp, t->piece[t->bos_id]);
        cJSON_AddStringToObject(b, "id", t->piece[t->bos_id]);
        cJSON *ids = cJSON_AddArrayToObject(b, "ids");
        cJSON_AddItemToArray(ids, cJSON_CreateNumber(t->bos_id));
        cJSON *tokens = cJSON_AddArrayToObject(b, "tokens");
        cJSON_AddItemToArray(tokens, cJSON_CreateString(t->piece[t->bos_id]));
    } else {
        cJSON_AddNullToObject(j, "post_processor");
    }
    cJSON *dec = cJSON_AddObjectToObject(j, "decoder");
    cJSON_AddStringToObject(dec, "type", t->kind == TOK_BYTELEVEL ? "ByteLevel" : "ByteFallback");
    cJSON *model = cJSON_AddObjectToObject(j, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddBoolToObject(model, "byte_fallback", t->byte_id[0] >= 0 && t->kind == TOK_SPM);
    cJSON_AddBoolToObject(model, "ignore_merges", t->ignore_merges);
    cJSON_AddBoolToObject(model, "fuse_unk", t->fuse_unk);
    if (t->unk_id >= 0) cJSON_AddStringToObject(model, "unk_token", t->piece[t->unk_id]);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int i = 0; i < t->n_vocab; i++)
        if (!cJSON_GetObjectItemCaseSensitive(vocab, t->piece[i]))
            cJSON_AddItemToObject(vocab, t->piece[i], cJSON_CreateNumber(i));
    /* merges in rank order */
    int nm = (int)t->merges.count;
    char **ms = mq_calloc((size_t)nm + 1, sizeof(char *));
    for (uint32_t i = 0; i < t->merges.cap; i++) {
        if (!t->merges.keys[i]) continue;
        uint64_t key = t->merges.keys[i] - 1;
        int32_t a = (int32_t)(key >> 32), b = (int32_t)(key & 0xffffffffu), r = t->merges.rank[i];
        if (r < 0 || r >= nm || ms[r]) continue;
        size_t la = t->piece_len[a], lb = t->piece_len[b];
        ms[r] = mq_malloc(la + lb + 2);
        memcpy(ms[r], t->piece[a], la);
        ms[r][la] = ' ';
        memcpy(ms[r] + la + 1, t->piece[b], lb);
        ms[r][la + lb + 1] = 0;
    }
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    for (int r = 0; r < nm; r++)
        if (ms[r]) {
            cJSON_AddItemToArray(merges, cJSON_CreateString(ms[r]));
            free(ms[r]);
        }
    free(ms);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    mq_status st = mq_write_file_atomic(path, s, strlen(s));
    free(s);
    return st;
}

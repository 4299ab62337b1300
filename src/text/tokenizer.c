/*
 * tokenizer.c — encoding and decoding (see tokenizer.h, tok_internal.h).
 *
 * Encoding: added/special tokens are cut out of the text first; each
 * remaining segment is normalised (SentencePiece: spaces to "▁", prefix) or
 * pre-split by the vocabulary's regexes (byte-level: PCRE2, matches and the
 * gaps between them isolated, then bytes mapped to GPT-2's printable
 * characters); each word starts as one symbol per character (unknown
 * characters fall back to <0xNN> byte tokens) and adjacent symbols are merged
 * best pair first — lowest merge rank, or highest merged-piece score — with
 * a heap, so long unsplit SentencePiece inputs stay O(n log n).
 * References: HF tokenizers (BPE model, pre-tokenizers, normalizers),
 * sentencepiece BPE, llama2.c run.c encode(), llama.cpp llm_tokenizer_spm.
 */
#include "text/tok_internal.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

const char *const TOK_GPT2_REGEX =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ================================================================ maps */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

int32_t tok_lookup(const mq_tokenizer *t, const char *s, size_t len) {
    if (!t->vocab.cap) return -1;
    uint32_t mask = t->vocab.cap - 1, i = (uint32_t)hash_bytes(s, len) & mask;
    for (;; i = (i + 1) & mask) {
        uint64_t k = t->vocab.keys[i];
        if (!k) return -1;
        int32_t id = (int32_t)(k - 1);
        if (t->piece_len[id] == len && !memcmp(t->piece[id], s, len)) return id;
    }
}

static void pair_insert(pairmap *m, uint64_t key, int32_t rank, int32_t result) {
    uint32_t mask = m->cap - 1, i = (uint32_t)hash_u64(key) & mask;
    while (m->keys[i] && m->keys[i] != key) i = (i + 1) & mask;
    if (m->keys[i] == key && m->rank[i] <= rank) return; /* keep the first (best) rank */
    m->keys[i] = key;
    m->rank[i] = rank;
    m->result[i] = result;
}

void tok_add_merge(mq_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t result) {
    pairmap *m = &t->merges;
    if ((uint64_t)m->count * 2 + 2 >= m->cap) {
        /* grow: rehash into twice the room (load factor <= 1/2) */
        uint32_t ncap = m->cap ? m->cap * 2 : 1024;
        pairmap n = {mq_calloc(ncap, sizeof(uint64_t)), mq_malloc(ncap * sizeof(int32_t)),
                     mq_malloc(ncap * sizeof(int32_t)), ncap, m->count};
        for (uint32_t i = 0; i < m->cap; i++)
            if (m->keys[i]) pair_insert(&n, m->keys[i], m->rank[i], m->result[i]);
        free(m->keys);
        free(m->rank);
        free(m->result);
        *m = n;
    }
    pair_insert(m, (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1, rank, result);
    m->count++;
}

static bool pair_lookup(const mq_tokenizer *t, int32_t a, int32_t b, float *prio, int32_t *result) {
    if (t->by_score) {
        char buf[512];
        size_t la = t->piece_len[a], lb = t->piece_len[b];
        if (la + lb > sizeof buf) return false;
        memcpy(buf, t->piece[a], la);
        memcpy(buf + la, t->piece[b], lb);
        int32_t id = tok_lookup(t, buf, la + lb);
        if (id < 0) return false;
        *prio = -t->score[id];
        *result = id;
        return true;
    }
    const pairmap *m = &t->merges;
    if (!m->cap) return false;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t mask = m->cap - 1, i = (uint32_t)hash_u64(key) & mask;
    for (;; i = (i + 1) & mask) {
        if (!m->keys[i]) return false;
        if (m->keys[i] == key) {
            *prio = (float)m->rank[i];
            *result = m->result[i];
            return true;
        }
    }
}

/* ====================================================== construction */

mq_tokenizer *tok_new(int kind, int n_vocab) {
    mq_tokenizer *t = mq_calloc(1, sizeof *t);
    t->kind = kind;
    t->n_vocab = n_vocab;
    t->piece = mq_calloc((size_t)n_vocab, sizeof(char *));
    t->piece_len = mq_calloc((size_t)n_vocab, sizeof(uint32_t));
    t->special = mq_calloc((size_t)n_vocab, sizeof(bool));
    t->unk_id = t->bos_id = t->eos_id = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    snprintf(t->kind_name, sizeof t->kind_name, "%s",
             kind == TOK_BYTELEVEL ? "bpe-bytelevel" : kind == TOK_SPM ? "bpe-spm" : "llama2c");
    return t;
}

bool tok_set_piece(mq_tokenizer *t, int32_t id, const char *s, size_t len) {
    free(t->piece[id]);
    t->piece[id] = mq_malloc(len + 1);
    if (len) memcpy(t->piece[id], s, len);
    t->piece[id][len] = 0;
    t->piece_len[id] = (uint32_t)len;
    return true;
}

void tok_finish_vocab(mq_tokenizer *t) {
    uint32_t cap = 16;
    while (cap < (uint32_t)t->n_vocab * 2u) cap *= 2;
    free(t->vocab.keys);
    t->vocab.keys = mq_calloc(cap, sizeof(uint64_t));
    t->vocab.cap = cap;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!t->piece[id]) tok_set_piece(t, id, "", 0);
        if (tok_lookup(t, t->piece[id], t->piece_len[id]) >= 0) continue; /* first id wins */
        uint32_t i = (uint32_t)hash_bytes(t->piece[id], t->piece_len[id]) & (cap - 1);
        while (t->vocab.keys[i]) i = (i + 1) & (cap - 1);
        t->vocab.keys[i] = (uint64_t)id + 1;
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = tok_lookup(t, name, 6);
    }
}

void tok_add_added(mq_tokenizer *t, const char *s, size_t len, int32_t id, bool special, bool lstrip,
                   bool rstrip) {
    if (len == 0) return;
    t->added = mq_realloc(t->added, (size_t)(t->n_added + 1) * sizeof *t->added);
    added_tok *a = &t->added[t->n_added++];
    a->text = mq_malloc(len + 1);
    memcpy(a->text, s, len);
    a->text[len] = 0;
    a->len = len;
    a->id = id;
    a->special = special;
    a->lstrip = lstrip;
    a->rstrip = rstrip;
    if (special && id >= 0 && id < t->n_vocab) t->special[id] = true;
}

static int cmp_added(const void *x, const void *y) {
    const added_tok *a = x, *b = y;
    return (a->len < b->len) - (a->len > b->len);
}

void tok_sort_added(mq_tokenizer *t) {
    if (t->n_added > 1) qsort(t->added, (size_t)t->n_added, sizeof *t->added, cmp_added); /* never qsort(NULL) */
}

mq_status tok_add_regex(mq_tokenizer *t, const char *pattern, const char *src) {
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err,
                                   &off, NULL);
    if (!re) {
        char msg[256];
        pcre2_get_error_message(err, (PCRE2_UCHAR *)msg, sizeof msg);
        return mq_fail(MQ_ERR_FORMAT, "%s: pre-tokenizer regex does not compile at offset %zu: %s", src,
                       (size_t)off, msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* best effort */
    t->regex = mq_realloc(t->regex, (size_t)(t->n_regex + 1) * sizeof *t->regex);
    t->regex_src = mq_realloc(t->regex_src, (size_t)(t->n_regex + 1) * sizeof *t->regex_src);
    t->regex[t->n_regex] = re;
    t->regex_src[t->n_regex++] = mq_strdup(pattern);
    return MQ_OK;
}

void tok_init_bytelevel(mq_tokenizer *t) {
    /* GPT-2: printable bytes map to themselves, the others to 256 + k */
    int k = 0;
    for (int i = 0; i < 512; i++) t->char_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        t->byte_char[b] = keep ? (uint32_t)b : (uint32_t)(256 + k++);
        t->char_byte[t->byte_char[b]] = (int16_t)b;
    }
}

void mq_tokenizer_free(mq_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_vocab; i++) free(t->piece[i]);
    free(t->piece);
    free(t->piece_len);
    free(t->score);
    free(t->special);
    free(t->vocab.keys);
    free(t->merges.keys);
    free(t->merges.rank);
    free(t->merges.result);
    for (int i = 0; i < t->n_regex; i++) {
        pcre2_code_free(t->regex[i]);
        free(t->regex_src[i]);
    }
    free(t->regex);
    free(t->regex_src);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].text);
    free(t->added);
    free(t->pre_name);
    free(t);
}

/* ============================================================ encoding */

typedef struct {
    int32_t *v;
    size_t n, cap;
} ivec;

static void ipush(ivec *a, int32_t x) {
    if (a->n == a->cap) a->v = mq_realloc(a->v, (a->cap = a->cap ? 2 * a->cap : 256) * sizeof(int32_t));
    a->v[a->n++] = x;
}

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void sput(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 256;
        b->s = mq_realloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
}

static size_t utf8_len(unsigned char c) {
    return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

typedef struct {
    float prio;
    int32_t left, right;  /* symbol indices */
    int32_t lid, rid;     /* their ids when pushed (stale check) */
} cand;

typedef struct {
    cand *v;
    size_t n, cap;
} heap;

static bool cand_less(const cand *a, const cand *b) {
    return a->prio < b->prio || (a->prio == b->prio && a->left < b->left);
}

static void heap_push(heap *h, cand c) {
    if (h->n == h->cap) h->v = mq_realloc(h->v, (h->cap = h->cap ? 2 * h->cap : 64) * sizeof(cand));
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &h->v[p])) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = c;
}

static cand heap_pop(heap *h) {
    cand top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *mv = &last;
        if (l < h->n && cand_less(&h->v[l], mv)) { m = l; mv = &h->v[l]; }
        if (r < h->n && cand_less(&h->v[r], mv)) { m = r; }
        if (m == i) break;
        h->v[i] = h->v[m];
        i = m;
    }
    if (h->n) h->v[i] = last;
    return top;
}

typedef struct {
    int32_t *id, *prev, *next;
    size_t cap;
    heap h;
} bpe_work;

static void try_pair(const mq_tokenizer *t, bpe_work *w, int32_t a, int32_t b) {
    if (a < 0 || b < 0) return;
    float prio;
    int32_t res;
    if (pair_lookup(t, w->id[a], w->id[b], &prio, &res))
        heap_push(&w->h, (cand){prio, a, b, w->id[a], w->id[b]});
}

/* BPE over one word (bytes s[0..n), already normalised / byte-mapped). */
static void bpe_word(const mq_tokenizer *t, bpe_work *w, const char *s, size_t n, ivec *out) {
    if (n == 0) return;
    if (n + 1 > w->cap) {
        w->cap = (n + 1) * 2;
        w->id = mq_realloc(w->id, w->cap * sizeof(int32_t));
        w->prev = mq_realloc(w->prev, w->cap * sizeof(int32_t));
        w->next = mq_realloc(w->next, w->cap * sizeof(int32_t));
    }
    /* ignore_merges: a word that is itself a token stays whole */
    int32_t whole = t->ignore_merges ? tok_lookup(t, s, n) : -1;
    if (whole >= 0) {
        ipush(out, whole);
        return;
    }
    int32_t ns = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len((unsigned char)s[i]);
        if (i + l > n) l = n - i;
        int32_t id = tok_lookup(t, s + i, l);
        if (id >= 0) {
            w->id[ns++] = id;
        } else if (t->byte_id[(unsigned char)s[i]] >= 0) {
            for (size_t k = 0; k < l; k++) {
                if ((size_t)ns + 1 > w->cap) break;
                w->id[ns++] = t->byte_id[(unsigned char)s[i + k]];
            }
        } else if (t->unk_id >= 0) {
            if (!(t->fuse_unk && ns > 0 && w->id[ns - 1] == t->unk_id)) w->id[ns++] = t->unk_id;
        }
        i += l;
    }
    for (int32_t i = 0; i < ns; i++) {
        w->prev[i] = i - 1;
        w->next[i] = i + 1 < ns ? i + 1 : -1;
    }
    w->h.n = 0;
    for (int32_t i = 0; i + 1 < ns; i++) try_pair(t, w, i, i + 1);
    while (w->h.n) {
        cand c = heap_pop(&w->h);
        if (w->id[c.left] != c.lid || w->id[c.right] != c.rid || w->next[c.left] != c.right) continue;
        float prio;
        int32_t res;
        pair_lookup(t, c.lid, c.rid, &prio, &res);
        w->id[c.left] = res;
        w->id[c.right] = -1; /* dead */
        int32_t nx = w->next[c.right];
        w->next[c.left] = nx;
        if (nx >= 0) w->prev[nx] = c.left;
        w->next[c.right] = -2;
        try_pair(t, w, w->prev[c.left], c.left);
        try_pair(t, w, c.left, nx);
    }
    for (int32_t i = 0; i >= 0 && ns > 0; i = w->next[i]) ipush(out, w->id[i]);
}

/* byte-level: map bytes to GPT-2 characters, then BPE */
static void bytelevel_word(const mq_tokenizer *t, bpe_work *w, sbuf *tmp, const char *s, size_t n, ivec *out) {
    tmp->n = 0;
    for (size_t i = 0; i < n; i++) {
        char u[4];
        size_t k = put_utf8(u, t->byte_char[(unsigned char)s[i]]);
        sput(tmp, u, k);
    }
    bpe_word(t, w, tmp->s, tmp->n, out);
}

typedef struct {
    const mq_tokenizer *t;
    bpe_work *w;
    sbuf *tmp;
    ivec *out;
    pcre2_match_data *md;
    pcre2_code *gpt2;
} split_ctx;

/* Apply regex `level` (isolated): matches and gaps both continue down. */
static void split_level(split_ctx *x, const char *s, size_t n, int level) {
    if (n == 0) return;
    int nre = x->t->n_regex + (x->gpt2 ? 1 : 0);
    if (level == nre) {
        bytelevel_word(x->t, x->w, x->tmp, s, n, x->out);
        return;
    }
    pcre2_code *re = level < x->t->n_regex ? x->t->regex[level] : x->gpt2;
    size_t pos = 0, last = 0;
    while (pos <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, x->md, NULL);
        if (rc < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(x->md);
        size_t b = ov[0], e = ov[1];
        if (e == b) { /* empty match: step one character */
            pos = b + (b < n ? utf8_len((unsigned char)s[b]) : 1);
            continue;
        }
        if (b > last) split_level(x, s + last, b - last, level + 1);
        split_level(x, s + b, e - b, level + 1);
        last = pos = e;
    }
    if (last < n) split_level(x, s + last, n - last, level + 1);
}

static const char SPACE_MARK[] = "\xe2\x96\x81"; /* U+2581 ▁ */

/* Encode one segment of plain text (no added tokens inside). */
static void encode_segment(const mq_tokenizer *t, const char *s, size_t n, bool first, split_ctx *x) {
    if (t->kind == TOK_BYTELEVEL) {
        split_level(x, s, n, 0);
        return;
    }
    if (n == 0) return;
    /* SentencePiece-style: normalise into tmp, then one word (or Metaspace words) */
    sbuf norm = {0};
    if (t->kind == TOK_LLAMA2C) {
        sput(&norm, " ", 1); /* llama2.c's dummy prefix */
        sput(&norm, s, n);
    } else {
        bool starts_space = n > 0 && s[0] == ' ' && t->replace_space;
        bool pre = t->space_prefix == SPACE_ALWAYS || (t->space_prefix == SPACE_FIRST && first);
        if (pre && !(t->split_metaspace && starts_space)) sput(&norm, SPACE_MARK, 3);
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ' && t->replace_space) sput(&norm, SPACE_MARK, 3);
            else sput(&norm, s + i, 1);
        }
    }
    if (t->split_metaspace) {
        size_t start = 0;
        for (size_t i = 3; i + 3 <= norm.n; i++)
            if (!memcmp(norm.s + i, SPACE_MARK, 3)) {
                bpe_word(t, x->w, norm.s + start, i - start, x->out);
                start = i;
            }
        bpe_word(t, x->w, norm.s + start, norm.n - start, x->out);
    } else {
        bpe_word(t, x->w, norm.s, norm.n, x->out);
    }
    free(norm.s);
}

/* GPT-2's regex, compiled once per process and shared (read-only) */
static pcre2_code *gpt2_re;
static pthread_once_t gpt2_once = PTHREAD_ONCE_INIT;
static void compile_gpt2(void) {
    int err;
    PCRE2_SIZE off;
    gpt2_re = pcre2_compile((PCRE2_SPTR)TOK_GPT2_REGEX, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    MQ_ASSERT(gpt2_re);
    pcre2_jit_compile(gpt2_re, PCRE2_JIT_COMPLETE);
}

/* Offset of the first byte that is not part of valid UTF-8 (RFC 3629: no
 * overlongs, no surrogates, <= U+10FFFF), or SIZE_MAX. PCRE2 in UTF mode
 * requires valid input. */
static size_t utf8_invalid_at(const char *text, size_t len) {
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!n || i + n > len || (n == 2 && c < 0xC2) || (n == 4 && c > 0xF4)) return i;
        for (size_t k = 1; k < n; k++)
            if ((s[i + k] & 0xC0) != 0x80) return i;
        if (n == 3 && ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0))) return i;
        if (n == 4 && ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] >= 0x90))) return i;
        i += n;
    }
    return SIZE_MAX;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

mq_status mq_tokenizer_encode(const mq_tokenizer *t, const char *text, size_t len, bool parse_special,
                              int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    if (t->kind == TOK_BYTELEVEL) {
        size_t bad = utf8_invalid_at(text, len);
        if (bad != SIZE_MAX) return mq_fail(MQ_ERR_FORMAT, "text is not valid UTF-8 (at byte %zu)", bad);
    }
    ivec out = {0};
    bpe_work w = {0};
    sbuf tmp = {0};
    split_ctx x = {t, &w, &tmp, &out, pcre2_match_data_create(4, NULL), NULL};
    if (t->kind == TOK_BYTELEVEL && t->bytelevel_regex) {
        pthread_once(&gpt2_once, compile_gpt2);
        x.gpt2 = gpt2_re;
    }
    bool first_byte[256] = {0};
    for (int i = 0; i < t->n_added; i++) first_byte[(unsigned char)t->added[i].text[0]] = true;
    size_t seg = 0, i = 0;
    bool first = true;
    while (i < len) {
        const added_tok *hit = NULL;
        if (first_byte[(unsigned char)text[i]])
            for (int k = 0; k < t->n_added; k++) {
                const added_tok *a = &t->added[k];
                if ((!a->special || parse_special) && a->len <= len - i && !memcmp(text + i, a->text, a->len)) {
                    hit = a;
                    break;
                }
            }
        if (!hit) {
            i++;
            continue;
        }
        size_t end = i;
        if (hit->lstrip)
            while (end > seg && is_ws(text[end - 1])) end--;
        encode_segment(t, text + seg, end - seg, first, &x);
        first = false;
        ipush(&out, hit->id);
        i += hit->len;
        if (hit->rstrip)
            while (i < len && is_ws(text[i])) i++;
        seg = i;
    }
    encode_segment(t, text + seg, len - seg, first, &x);
    pcre2_match_data_free(x.md);
    free(w.id);
    free(w.prev);
    free(w.next);
    free(w.h.v);
    free(tmp.s);
    *ids = out.v ? out.v : mq_malloc(sizeof(int32_t));
    *n = out.n;
    return MQ_OK;
}

/* ============================================================ decoding */

static bool is_added_raw(const mq_tokenizer *t, int32_t id) {
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) return true;
    return false;
}

size_t mq_tokenizer_decode_token(const mq_tokenizer *t, int32_t prev_id, int32_t id, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab || cap == 0) return 0;
    const char *p = t->piece[id];
    size_t n = t->piece_len[id], k = 0;
    if (t->special[id] || (t->kind == TOK_BYTELEVEL && is_added_raw(t, id))) {
        n = n < cap ? n : cap;
        memcpy(buf, p, n);
        return n;
    }
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] == id) {
            buf[0] = (char)b;
            return 1;
        }
    if (t->kind == TOK_BYTELEVEL) {
        for (size_t i = 0; i < n && k < cap;) {
            unsigned char c = (unsigned char)p[i];
            uint32_t cp;
            size_t l = utf8_len(c);
            if (l == 1) cp = c;
            else if (l == 2 && i + 1 < n) cp = ((c & 0x1Fu) << 6) | (p[i + 1] & 0x3Fu);
            else if (l == 3 && i + 2 < n) cp = ((c & 0x0Fu) << 12) | ((p[i + 1] & 0x3Fu) << 6) | (p[i + 2] & 0x3Fu);
            else cp = 0xFFFF;
            if (cp < 512 && t->char_byte[cp] >= 0) buf[k++] = (char)t->char_byte[cp];
            i += l;
        }
        return k;
    }
    bool strip = prev_id < 0 || prev_id == t->bos_id;
    size_t i = 0;
    if (t->kind == TOK_LLAMA2C) {
        if (strip && n && p[0] == ' ') i = 1;
        for (; i < n && k < cap; i++) buf[k++] = p[i];
        return k;
    }
    for (; i < n && k < cap;) {
        if (n - i >= 3 && !memcmp(p + i, SPACE_MARK, 3)) {
            if (!(strip && k == 0 && i == 0)) buf[k++] = ' ';
            i += 3;
        } else {
            buf[k++] = p[i++];
        }
    }
    return k;
}

char *mq_tokenizer_decode(const mq_tokenizer *t, const int32_t *ids, size_t n) {
    sbuf b = {0};
    char piece[1024];
    for (size_t i = 0; i < n; i++) {
        size_t k = mq_tokenizer_decode_token(t, i ? ids[i - 1] : -1, ids[i], piece, sizeof piece);
        sput(&b, piece, k);
    }
    sput(&b, "", 0);
    b.s[b.n] = 0;
    return b.s;
}

int mq_tokenizer_vocab_size(const mq_tokenizer *t) { return t->n_vocab; }
int32_t mq_tokenizer_bos(const mq_tokenizer *t) { return t->bos_id; }
int32_t mq_tokenizer_eos(const mq_tokenizer *t) { return t->eos_id; }
bool mq_tokenizer_add_bos(const mq_tokenizer *t) { return t->add_bos && t->bos_id >= 0; }
const char *mq_tokenizer_kind(const mq_tokenizer *t) { return t->kind_name; }
const char *mq_tokenizer_piece(const mq_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->piece[id] : NULL;
}
bool mq_tokenizer_is_special(const mq_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->special[id];
}

/* ========================================================= UTF-8 stream */

static size_t seq_len(unsigned char c) {
    return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
}

static size_t emit(char *out, size_t k, size_t cap, const void *p, size_t n) {
    if (k + n > cap) return k;
    memcpy(out + k, p, n);
    return k + n;
}

size_t mq_utf8_feed(mq_utf8_stream *s, const char *bytes, size_t n, char *out, size_t cap) {
    size_t k = 0;
    static const char repl[] = "\xef\xbf\xbd";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)bytes[i];
        if (s->npending) {
            if ((c & 0xC0) == 0x80) {
                s->pending[s->npending++] = c;
                if ((size_t)s->npending == seq_len(s->pending[0])) {
                    k = emit(out, k, cap, s->pending, (size_t)s->npending);
                    s->npending = 0;
                }
                continue;
            }
            k = emit(out, k, cap, repl, 3); /* broken sequence */
            s->npending = 0;
        }
        size_t l = seq_len(c);
        if (l == 1) k = emit(out, k, cap, &c, 1);
        else if (l == 0) k = emit(out, k, cap, repl, 3);
        else s->pending[s->npending++] = c;
    }
    return k;
}

size_t mq_utf8_flush(mq_utf8_stream *s, char *out, size_t cap) {
    size_t k = 0;
    if (s->npending) k = emit(out, 0, cap, "\xef\xbf\xbd", 3);
    s->npending = 0;
    return k;
}

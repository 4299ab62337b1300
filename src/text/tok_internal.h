/*
 * tok_internal.h — the tokenizer's internal representation, shared by the
 * encoder (tokenizer.c) and the loaders (tok_load.c).
 *
 * One model covers the three families: merges are ranked either by a merge
 * list (HF BPE, GGUF gpt2: lower rank first) or by the score of the merged
 * piece (SentencePiece GGUF, llama2.c: higher score first). Ties go to the
 * leftmost pair, as every reference implementation does.
 */
#ifndef MQ_TOK_INTERNAL_H
#define MQ_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "text/tokenizer.h"

enum { TOK_BYTELEVEL = 0, TOK_SPM, TOK_LLAMA2C };
enum { SPACE_NONE = 0, SPACE_FIRST, SPACE_ALWAYS }; /* prepend "▁" to the first / every segment */

typedef struct {
    uint64_t *keys;   /* hash table: for strings, key = id + 1 (0 = empty) */
    uint32_t cap;     /* power of two */
} strmap;

typedef struct {
    uint64_t *keys;   /* (a << 32 | b) + 1, 0 = empty */
    int32_t *rank;
    int32_t *result;
    uint32_t cap, count;
} pairmap;

typedef struct {
    char *text;
    size_t len;
    int32_t id;
    bool special;
    bool lstrip, rstrip;
} added_tok;

struct mq_tokenizer {
    int kind;
    int n_vocab;
    char **piece;          /* (n_vocab) NUL-terminated (may contain NUL? no: rejected) */
    uint32_t *piece_len;
    float *score;          /* (n_vocab) or NULL: merge priority by score */
    bool *special;         /* (n_vocab) control / special added tokens */
    strmap vocab;
    pairmap merges;        /* rank-ordered merges, or empty when by score */
    bool by_score;
    bool ignore_merges;    /* a word that is itself a token is not split (Llama 3) */
    int32_t byte_id[256];  /* <0xNN> tokens or -1 */
    int32_t unk_id, bos_id, eos_id;
    bool add_bos;
    bool fuse_unk;
    /* SentencePiece-style normalisation */
    int space_prefix;      /* SPACE_* */
    bool replace_space;    /* " " -> "▁" */
    bool split_metaspace;  /* Metaspace split: words start at each "▁" */
    bool metaspace;        /* the space handling came from a Metaspace pre-tokenizer */
    /* byte-level pre-tokenisation: regexes applied in sequence (isolated) */
    pcre2_code **regex;
    char **regex_src;
    int n_regex;
    bool bytelevel_regex;  /* ByteLevel(use_regex=true): GPT-2's regex after the others */
    uint32_t byte_char[256]; /* byte -> code point of the GPT-2 byte map */
    int16_t char_byte[512];  /* code point (< 512) -> byte, -1 if none */
    /* added tokens, longest first */
    added_tok *added;
    int n_added;
    char kind_name[16];
    char *pre_name;        /* GGUF tokenizer.ggml.pre, for save_json */
};

/* ---- construction helpers (tokenizer.c) */
mq_tokenizer *tok_new(int kind, int n_vocab);
/* Set piece i (copied). Returns false if the piece is already present. */
bool tok_set_piece(mq_tokenizer *t, int32_t id, const char *s, size_t len);
/* Build the vocab hash and byte-fallback table once all pieces are set. */
void tok_finish_vocab(mq_tokenizer *t);
int32_t tok_lookup(const mq_tokenizer *t, const char *s, size_t len);
/* Add a ranked merge a + b -> result. */
void tok_add_merge(mq_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t result);
void tok_add_added(mq_tokenizer *t, const char *s, size_t len, int32_t id, bool special, bool lstrip,
                   bool rstrip);
void tok_sort_added(mq_tokenizer *t);
mq_status tok_add_regex(mq_tokenizer *t, const char *pattern, const char *src);
void tok_init_bytelevel(mq_tokenizer *t);
/* tokenizer.json for score-ranked vocabularies (tok_save_spm.c) */
mq_status tok_save_json_scored(const mq_tokenizer *t, const char *path);
/* GPT-2's pre-tokenizer regex (ByteLevel use_regex) */
extern const char *const TOK_GPT2_REGEX;

#endif

/*
 * tokenizer.h — text <-> token ids, agreeing exactly with the reference
 * tokenizers users already have:
 *   - Hugging Face tokenizer.json with model.type "BPE":
 *       byte-level (GPT-2, Llama 3, SmolLM, Qwen2): pre_tokenizer Split with
 *       the file's regex (run through PCRE2 as written) + ByteLevel mapping;
 *       SentencePiece-style (Llama 2, Mistral, Gemma): normalizer
 *       Prepend("▁")/Replace(" ", "▁") or Metaspace pre-tokenizer, merges by
 *       rank, byte_fallback to <0xNN>;
 *     added_tokens matched in the text first (special or not);
 *   - GGUF vocabularies (tokenizer.ggml.model "gpt2" or "llama");
 *   - llama2.c tokenizer.bin (score-ordered merges, dummy leading space,
 *     byte fallback to ids 3..258).
 *
 * encode never adds BOS/EOS: callers ask mq_tokenizer_add_bos() and prepend
 * mq_tokenizer_bos() themselves (llama-perplexity, for instance, does not).
 *
 * Not here: chat templates; unigram (T5-style) models.
 */
#ifndef MQ_TOKENIZER_H
#define MQ_TOKENIZER_H

#include "core/core.h"
#include "io/gguf.h"

typedef struct mq_tokenizer mq_tokenizer;

/* tokenizer.json (path to the file). tokenizer_config.json beside it, if
 * present, supplies add_bos_token / bos_token / eos_token. */
mq_status mq_tokenizer_load_json(const char *path, mq_tokenizer **out);
/* llama2.c tokenizer.bin; vocab_size from the model header. */
mq_status mq_tokenizer_load_llama2c(const char *path, int vocab_size, mq_tokenizer **out);
/* The vocabulary embedded in a GGUF file (tokenizer.ggml.*). */
mq_status mq_tokenizer_load_gguf(const mq_gguf *g, mq_tokenizer **out);
void mq_tokenizer_free(mq_tokenizer *t);
/* Write the tokenizer as a Hugging Face tokenizer.json that
 * mq_tokenizer_load_json (and the `tokenizers` library) reads back to the
 * same encoding: used to give checkpoints made from GGUF or llama2.c sources
 * an ordinary tokenizer.json. Atomic write. */
mq_status mq_tokenizer_save_json(const mq_tokenizer *t, const char *path);

/* Encode len bytes of UTF-8 text. parse_special: match added/special tokens
 * in the text (as HF's encode does); otherwise treat their text as plain.
 * *ids is malloc'ed (caller frees), *n its length. Never adds BOS. */
mq_status mq_tokenizer_encode(const mq_tokenizer *t, const char *text, size_t len,
                              bool parse_special, int32_t **ids, size_t *n);

/* Bytes of one token as it appears in decoded text. For SentencePiece-style
 * vocabularies "▁" becomes a space and <0xNN> the byte NN; for byte-level
 * ones the GPT-2 byte mapping is undone. prev_id is the preceding token (-1
 * at the start): a leading space is dropped after BOS (or at the start) for
 * SentencePiece-style vocabularies, as sentencepiece's decode does.
 * Special tokens decode to their text. Writes at most cap bytes into buf and
 * returns the number of bytes (may be an incomplete UTF-8 sequence: see
 * mq_utf8_stream). */
size_t mq_tokenizer_decode_token(const mq_tokenizer *t, int32_t prev_id, int32_t id,
                                 char *buf, size_t cap);
/* Decode a whole sequence into a malloc'ed NUL-terminated string. */
char *mq_tokenizer_decode(const mq_tokenizer *t, const int32_t *ids, size_t n);

int mq_tokenizer_vocab_size(const mq_tokenizer *t);
int32_t mq_tokenizer_bos(const mq_tokenizer *t);   /* -1 if none */
int32_t mq_tokenizer_eos(const mq_tokenizer *t);   /* -1 if none */
bool mq_tokenizer_add_bos(const mq_tokenizer *t);  /* does the model expect BOS first? */
/* The token's raw vocabulary string (NUL-terminated), or NULL if out of range. */
const char *mq_tokenizer_piece(const mq_tokenizer *t, int32_t id);
/* Is id a special/control token (BOS, EOS, <|...|> added specials)? */
bool mq_tokenizer_is_special(const mq_tokenizer *t, int32_t id);
/* "bpe-bytelevel", "bpe-spm", "llama2c" */
const char *mq_tokenizer_kind(const mq_tokenizer *t);

/* Streaming UTF-8: feed the bytes of successive tokens; complete UTF-8
 * sequences come out, an incomplete tail is held until the next feed (and
 * flushed, invalid bytes as U+FFFD, by mq_utf8_flush). */
typedef struct {
    unsigned char pending[8];
    int npending;
} mq_utf8_stream;
/* Appends what is complete to out (cap bytes at most), returns bytes written. */
size_t mq_utf8_feed(mq_utf8_stream *s, const char *bytes, size_t n, char *out, size_t cap);
size_t mq_utf8_flush(mq_utf8_stream *s, char *out, size_t cap);

#endif

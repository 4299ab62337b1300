/*
 * calib.h — calibration and training token sequences drawn from a text
 * corpus: a .jsonl file with a "text" field per line (C4, WikiText rows) or
 * plain text.
 *
 * Sampling follows GPTQ's C4 loader: for each sample pick a random document
 * with more than `len` tokens and a random window of `len` tokens in it;
 * when no document is long enough, windows are cut from all documents
 * joined with "\n\n". Each sequence starts with BOS when bos >= 0 (its first
 * token replaced), as the perplexity chunks do. Deterministic for a seed.
 */
#ifndef MQ_CALIB_H
#define MQ_CALIB_H

#include "text/tokenizer.h"

typedef struct {
    int n, len;
    int32_t *tokens; /* (n, len) */
} mq_calib;

mq_status mq_calib_load(const char *path, const mq_tokenizer *tok, int n, int len, uint64_t seed,
                        int32_t bos, mq_calib *out);
void mq_calib_free(mq_calib *c);

#endif

/*
 * load_internal.h — what the model loaders (load_hf.c, load_gguf.c,
 * load_llama2c.c) share with model.c: buffer ownership, tensor conversion
 * with shape and NaN checks, config validation.
 */
#ifndef MQ_LOAD_INTERNAL_H
#define MQ_LOAD_INTERNAL_H

#include "nn/model.h"

/* A new zeroed fp32 buffer of n floats owned by m (freed by mq_model_free). */
float *mq_model_alloc(mq_model *m, size_t n);
/* Allocate the per-layer array and every fp32 weight buffer for cfg (all
 * pointers set; optional ones — biases, gemma2 norms, untied head — only
 * when cfg asks for them). */
void mq_model_alloc_weights(mq_model *m);
/* Check a config read from a file: positive sizes, heads dividing, sane
 * bounds. Message names `src`. Also computes m->inv_freq. */
mq_status mq_config_validate(mq_model *m, const char *src);
/* Reject NaN/Inf in a loaded weight, naming the tensor. */
mq_status mq_check_finite(const float *x, size_t n, const char *src, const char *tensor);
/* Compute RoPE inverse frequencies (D/2) for cfg into out (llama3 scaling
 * applied when configured). */
void mq_rope_inv_freq(const mq_config *cfg, float *out);

/* Reorder the rows of a q or k projection (heads*D, cols) in place from the
 * adjacent-pair RoPE layout (llama.cpp GGUF, llama2.c) to rotate-half (HF):
 * within each head, row 2*i + j moves to j*D/2 + i. */
void mq_rope_rows_to_half(float *w, int heads, int D, int64_t cols);
/* The same permutation on rows of any element size (row = bytes per row). */
void mq_rope_rows_to_half_bytes(void *w, int heads, int D, size_t row);
/* Index of the first Inf/NaN among n F16/BF16 values, or -1. */
int64_t mq_find_nonfinite16(const uint16_t *v, mq_dtype dt, size_t n);

mq_status mq_load_hf(const char *dir, mq_model *m);
mq_status mq_load_gguf(const char *path, mq_model *m);
mq_status mq_load_llama2c(const char *path, mq_model *m);

#endif

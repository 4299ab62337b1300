/*
 * model.h — decoder-only transformer models in fp32: configuration, weights,
 * loading from the sources users have, and the forward pass with a KV cache.
 *
 * Families: llama (Llama 2/3, TinyLlama, SmolLM, llama2.c), mistral, qwen2
 * (q/k/v biases), gemma2 (GeGLU, (1+w) RMSNorm, pre- and post-norms,
 * embedding scaling, attention and final logit soft-capping, alternating
 * sliding-window attention).
 * Sources: a Hugging Face directory (config.json + safetensors, F32/F16/BF16,
 * sharded or not), a GGUF file (F32/F16/BF16 and quantized types dequantized
 * on load; llama.cpp's permuted Q/K rows undone), a llama2.c .bin checkpoint.
 *
 * All weights are held as fp32 row-major [out][in] matrices in HF layout
 * (RoPE as rotate-half over each head; other layouts are converted on load),
 * except when a model is loaded to be served (mq_load_opts.serve, kernels
 * on): then its unquantized linears and embedding table whose source dtype
 * is F16/BF16 are kept only in that 16-bit form (quant/half.h; the fp32
 * pointer is NULL) and the quantized linears only in their packed layouts.
 * Every loaded tensor records its source dtype (mq_model_src_dtype).
 *
 * Not here: quantized weights and kernels (src/quant), training (src/train).
 */
#ifndef MQ_MODEL_H
#define MQ_MODEL_H

#include "core/core.h"
#include "text/tokenizer.h"

typedef enum { MQ_ARCH_LLAMA = 0, MQ_ARCH_MISTRAL, MQ_ARCH_QWEN2, MQ_ARCH_GEMMA2 } mq_arch;
typedef enum { MQ_ACT_SILU = 0, MQ_ACT_GELU_TANH } mq_act;

typedef struct {
    mq_arch arch;
    int dim;            /* hidden size C */
    int hidden_dim;     /* FFN intermediate size */
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;       /* D (n_heads*D need not equal dim: gemma2) */
    int vocab_size;
    int max_seq;        /* max_position_embeddings */
    float norm_eps;
    float rope_theta;
    /* llama3-style rope scaling (rope_scaling.rope_type == "llama3"); factor 0 = off */
    float rope_scale_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_orig_max_pos;
    bool tied_embeddings;
    bool qkv_bias;          /* qwen2 */
    mq_act act;
    /* gemma2 */
    bool norm_plus_one;     /* RMSNorm weight used as (1 + w) */
    bool post_norms;        /* post-attention and post-FFN norms */
    bool embed_scale;       /* multiply embeddings by sqrt(dim) */
    float attn_softcap;     /* 0 = off */
    float final_softcap;    /* 0 = off */
    float query_scale;      /* scores scaled by query_scale (default 1/sqrt(D)) */
    int sliding_window;     /* 0 = none; applied to even layers for gemma2, all for mistral */
    bool sliding_even_only; /* gemma2: only layers 0,2,4,... use the window */
    int bos_id, eos_id;     /* -1 if unknown */
} mq_config;

typedef struct {
    float *attn_norm;      /* (C) */
    float *wq;             /* (H*D, C) */
    float *wk;             /* (KV*D, C) */
    float *wv;             /* (KV*D, C) */
    float *bq, *bk, *bv;   /* (H*D), (KV*D), (KV*D) or NULL */
    float *wo;             /* (C, H*D) */
    float *post_attn_norm; /* (C) or NULL (gemma2 only) */
    float *ffn_norm;       /* (C) */
    float *w_gate;         /* (F, C) */
    float *w_up;           /* (F, C) */
    float *w_down;         /* (C, F) */
    float *post_ffn_norm;  /* (C) or NULL (gemma2 only) */
    /* Packed integer form of the linears q, k, v, o, gate, up, down (in
     * mq_lin_kind order) while a bit plan serves them through the kernels of
     * src/quant/kern.h; NULL: the fp32 matrix above is used. Owned by quant. */
    const struct mq_packed *packed[7];
    /* 16-bit (F16/BF16) form of the same linears while the model is served
     * and the linear is unquantized with a 16-bit source; the fp32 pointer
     * above is then NULL. Owned by the model (half_store). */
    const struct mq_half *half[7];
} mq_layer;

typedef struct mq_model {
    mq_config cfg;
    float *tok_emb;        /* (V, C) */
    mq_layer *layers;      /* (L) */
    float *final_norm;     /* (C) */
    float *lm_head;        /* (V, C); == tok_emb when tied */
    float *inv_freq;       /* (D/2) RoPE inverse frequencies, scaling applied */
    mq_tokenizer *tok;     /* NULL if the source has none and none was given */
    char *source;          /* path it was loaded from */
    char *tokenizer_path;  /* --tokenizer given at load, or NULL */
    char *source_kind;     /* "hf", "gguf", "llama2c" */
    struct mq_qstore *quant; /* parent codes when loaded from a matquant checkpoint, else NULL */
    const struct mq_packed *head_packed; /* int8 packed head while head:8 is served by the kernels, else NULL */
    const struct mq_half *tok_half;  /* (V, C) 16-bit embedding table while served (tok_emb NULL), else NULL */
    const struct mq_half *head_half; /* (V, C) 16-bit head while served (lm_head NULL); == tok_half when tied */
    bool serve_half;       /* loaded to be served with kernels: 16-bit and packed forms replace fp32 */
    struct mq_half *half_store; /* (n_half) the 16-bit matrices above */
    int n_half;
    struct mq_owned { float *p; size_t n; mq_dtype src; } *owned; /* every fp32 buffer this model
                              allocated: floats, and the dtype of the source tensor it was loaded from */
    int n_owned, cap_owned;
    size_t f32_now, f32_peak; /* floats in owned buffers now, and the most at any time (load included):
                                 a served 16-bit model never holds an fp32 copy of its big matrices */
} mq_model;

typedef struct {
    const char *tokenizer_path; /* overrides the source's tokenizer; required for llama2.c */
    const char *bits;           /* bit plan for a matquant checkpoint (default "8") */
    bool serve;                 /* the model will only be run (run, eval, bench): unless
                                   MQ_KERNELS=float, keep 16-bit source tensors 16-bit and
                                   quantized linears packed only (no fp32 copies); quantizing
                                   or training needs serve = false */
} mq_load_opts;

/* Load a model from an HF directory, a .gguf file or a llama2.c .bin (by
 * content: GGUF magic, directory, else llama2.c header). Validates shapes
 * against the config and rejects NaN/Inf weights naming the tensor.
 * On error *out is NULL. */
mq_status mq_model_load(const char *path, const mq_load_opts *opts, mq_model **out);
void mq_model_free(mq_model *m);
/* Number of parameters (embeddings counted once when tied). */
int64_t mq_model_n_params(const mq_model *m);
/* The dtype of the source tensor an fp32 buffer of m was loaded from
 * (F16/BF16 for 16-bit sources, F32 for F32 sources, dequantized GGUF types
 * and buffers the model computed itself; F32 for a pointer m does not own). */
mq_dtype mq_model_src_dtype(const mq_model *m, const float *p);
/* Resident weight memory of m, by form: fp32 buffers (including RoPE
 * frequencies), 16-bit matrices, packed integer layouts (with the int8
 * head) and the checkpoint's parent codes (codes, scales, zero points). */
typedef struct { size_t f32, half, packed, codes; } mq_weight_bytes;
void mq_model_weight_bytes(const mq_model *m, mq_weight_bytes *out);

/* ---- for the loaders and quant/qmodel.c ---- */

/* Record that fp32 buffer p of m holds a tensor loaded from dtype src. */
void mq_model_note_src(mq_model *m, const float *p, mq_dtype src);
/* Free fp32 buffer p of m before mq_model_free (p must be owned by m). */
void mq_model_release(mq_model *m, float *p);
/* The fp32 weight slot of linear `kind` (mq_lin_kind order q, k, v, o,
 * gate, up, down) of layer L. */
float **mq_layer_weight_slot(mq_layer *L, int kind);

/* Inference state: KV cache for up to max_ctx positions and scratch for up
 * to max_batch tokens per forward call. All memory is allocated here, none
 * per token. */
typedef struct mq_state mq_state;
mq_state *mq_state_new(const mq_model *m, int max_ctx, int max_batch);
void mq_state_free(mq_state *s);

/* Run tokens[0..n) at positions pos..pos+n-1 (the cache must hold positions
 * 0..pos-1 from earlier calls). n may exceed max_batch (processed in
 * pieces). Logits: all_logits ? (n, V) : (V) for the last token only.
 * Errors: position past max_ctx, token id out of range. */
mq_status mq_forward(const mq_model *m, mq_state *s, const int32_t *tokens, int n, int pos,
                     float *logits, bool all_logits);

const char *mq_arch_name(mq_arch a);
/* The config as a transformers config.json text (malloc'ed; free()). */
char *mq_config_to_json(const mq_config *c);

/* ---- pieces of the forward pass, for calibration and training code ---- */

/* Where activations can be observed inside a block: the input of q/k/v
 * (normed, (B, C)), the input of o_proj ((B, H*D)), the input of gate/up
 * ((B, C)) and the input of down_proj ((B, F)). */
typedef enum { MQ_TAP_ATTN_IN = 0, MQ_TAP_ATTN_OUT, MQ_TAP_FFN_IN, MQ_TAP_FFN_MID } mq_tap_point;
typedef void (*mq_tap_fn)(void *user, int layer, mq_tap_point at, const float *x, int B, int dim);
/* Observe activations during every later forward on s (NULL to stop). */
void mq_state_set_tap(mq_state *s, mq_tap_fn fn, void *user);
/* x(B, C) = token embeddings (scaled for gemma2). */
void mq_embed(const mq_model *m, const int32_t *tokens, int B, float *x);
/* Run block `layer` on the residual stream x (B, C) in place, for positions
 * pos0..pos0+B-1 (the layer's KV cache in s is written). B <= max_batch. */
void mq_forward_block(const mq_model *m, mq_state *s, int layer, float *x, int B, int pos0);
/* The residual stream (B, C) of the last batch mq_forward processed
 * (valid until the next call), so callers can take logits of some rows only. */
const float *mq_state_residual(const mq_state *s);
/* logits(R, V) from residual rows x(R, C): final norm, head, soft-cap. */
void mq_logits(const mq_model *m, mq_state *s, const float *x, int R, float *logits);

#endif

/*
 * load_gguf.c — GGUF models as llama.cpp writes them, architectures "llama"
 * (also Mistral, SmolLM, TinyLlama) and "qwen2". Hyper-parameters come from
 * the <arch>.* keys, weights from the blk.N.* tensors (any type
 * mq_gguf_dequant handles; F16 and BF16 tensors are recorded as such for
 * the model's source dtypes, every other type as F32), the tokenizer from
 * tokenizer.ggml.*. A model loaded to be served (m->serve_half) has no fp32
 * buffer for its big matrices: an F16/BF16 one is copied straight into its
 * 16-bit form (quant/half.h), any other type dequantized into fp32.
 *
 * llama.cpp's converter permutes the rows of attn_q/attn_k of llama models so
 * that RoPE rotates adjacent pairs; we undo it here to keep one layout
 * (transformers' rotate-half): within each head, GGUF row 2*i + j holds HF
 * row j*D/2 + i. qwen2 is stored unpermuted (NEOX RoPE).
 * Reference: llama.cpp convert_hf_to_gguf.py (LlamaModel.permute),
 * gguf-py constants (tensor names, keys).
 *
 * Not here: gemma2 GGUF files (their norms are stored with the +1 folded in).
 */
#include "io/gguf.h"
#include "nn/load_internal.h"
#include "io/checkpoint.h"
#include "quant/half.h"

#include <string.h>

typedef struct {
    const mq_gguf *g;
    const char *path;
    char arch[32];
} ctx;

static bool key_u32(const ctx *x, const char *suffix, uint32_t *v) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", x->arch, suffix);
    return mq_gguf_get_u32(x->g, k, v);
}

static bool key_f32(const ctx *x, const char *suffix, float *v) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", x->arch, suffix);
    return mq_gguf_get_f32(x->g, k, v);
}

static mq_status need_u32(const ctx *x, const char *suffix, int *out) {
    uint32_t v;
    if (!key_u32(x, suffix, &v) || v > (1u << 30))
        return mq_fail(MQ_ERR_FORMAT, "%s: missing or invalid metadata key %s.%s", x->path,
                       x->arch, suffix);
    *out = (int)v;
    return MQ_OK;
}

/* Load tensor `name` (ggml dims ne = [cols, rows], or [rows] when cols < 0)
 * into *slot as fp32; when *slot is NULL (a served model's matrix, hslot
 * given) an F16/BF16 tensor is copied straight into its 16-bit form
 * (*hslot, no fp32 copy) and any other type dequantized into a new fp32
 * buffer set in *slot. rope_heads > 0: a llama q/k projection, its rows
 * reordered to rotate-half (file comment). */
static mq_status load(mq_model *m, const ctx *x, const char *name, float **slot, const mq_half **hslot, int64_t rows,
                      int64_t cols, int rope_heads) {
    const mq_gguf_tensor *t = mq_gguf_find_tensor(x->g, name);
    if (!t) return mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s' not found", x->path, name);
    bool ok = cols < 0 ? (t->ndim == 1 && t->ne[0] == rows)
                       : (t->ndim == 2 && t->ne[0] == cols && t->ne[1] == rows);
    if (!ok) {
        if (cols < 0)
            return mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s' has %d dims [%lld, %lld], expected [%lld]",
                           x->path, name, t->ndim, (long long)t->ne[0],
                           (long long)(t->ndim > 1 ? t->ne[1] : 1), (long long)rows);
        return mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s' has ne [%lld, %lld], expected [%lld, %lld] "
                       "(ggml order: columns first)", x->path, name, (long long)t->ne[0],
                       (long long)(t->ndim > 1 ? t->ne[1] : 1), (long long)cols, (long long)rows);
    }
    size_t n = (size_t)rows * (size_t)(cols < 0 ? 1 : cols);
    int D = m->cfg.head_dim;
    if (!*slot) {
        MQ_ASSERT(hslot && cols > 0 && m->half_store);
        if (t->type == MQ_GGML_F16 || t->type == MQ_GGML_BF16) {
            mq_dtype dt = t->type == MQ_GGML_F16 ? MQ_DTYPE_F16 : MQ_DTYPE_BF16;
            int64_t bad = mq_find_nonfinite16(t->data, dt, n);
            if (bad >= 0) {
                uint16_t v = ((const uint16_t *)t->data)[bad];
                return mq_fail(MQ_ERR_NUMERIC, "%s: tensor '%s' has a non-finite value (%g) at element %lld",
                               x->path, name, dt == MQ_DTYPE_F16 ? mq_f16_to_f32(v) : mq_bf16_to_f32(v),
                               (long long)bad);
            }
            mq_half *h = &m->half_store[m->n_half++];
            mq_half_from_bits(t->data, (int)rows, (int)cols, dt, h);
            if (rope_heads) mq_rope_rows_to_half_bytes(h->data, rope_heads, D, (size_t)cols * sizeof(uint16_t));
            *hslot = h;
            return MQ_OK;
        }
        *slot = mq_model_alloc(m, n);
    }
    float *dst = *slot;
    mq_status st = mq_gguf_dequant(t, dst);
    if (st) return st;
    if (t->type == MQ_GGML_F16) mq_model_note_src(m, dst, MQ_DTYPE_F16);
    else if (t->type == MQ_GGML_BF16) mq_model_note_src(m, dst, MQ_DTYPE_BF16);
    if (rope_heads) mq_rope_rows_to_half(dst, rope_heads, D, cols);
    return mq_check_finite(dst, n, x->path, name);
}

mq_status mq_load_gguf(const char *path, mq_model *m) {
    mq_gguf *g = NULL;
    mq_status st = mq_gguf_open(path, &g);
    if (st) return st;
    ctx x = {.g = g, .path = path};
    const char *a;
    size_t alen;
    if (!mq_gguf_get_str(g, "general.architecture", &a, &alen) || alen >= sizeof x.arch) {
        mq_gguf_close(g);
        return mq_fail(MQ_ERR_FORMAT, "%s: missing metadata key general.architecture", path);
    }
    memcpy(x.arch, a, alen);
    x.arch[alen] = 0;
    mq_config *c = &m->cfg;
    if (!strcmp(x.arch, "llama")) c->arch = MQ_ARCH_LLAMA;
    else if (!strcmp(x.arch, "qwen2")) c->arch = MQ_ARCH_QWEN2;
    else {
        st = mq_fail(MQ_ERR_UNSUPPORTED, "%s: GGUF architecture \"%s\" is not supported "
                     "(supported: llama, qwen2)", path, x.arch);
        mq_gguf_close(g);
        return st;
    }
    if ((st = need_u32(&x, "embedding_length", &c->dim)) ||
        (st = need_u32(&x, "feed_forward_length", &c->hidden_dim)) ||
        (st = need_u32(&x, "block_count", &c->n_layers)) ||
        (st = need_u32(&x, "attention.head_count", &c->n_heads))) {
        mq_gguf_close(g);
        return st;
    }
    uint32_t v;
    c->n_kv_heads = key_u32(&x, "attention.head_count_kv", &v) ? (int)v : c->n_heads;
    c->head_dim = key_u32(&x, "attention.key_length", &v) ? (int)v
                : key_u32(&x, "rope.dimension_count", &v) ? (int)v
                : (c->n_heads ? c->dim / c->n_heads : 0);
    c->max_seq = key_u32(&x, "context_length", &v) ? (int)v : 2048;
    if (!key_f32(&x, "attention.layer_norm_rms_epsilon", &c->norm_eps)) c->norm_eps = 1e-5f;
    if (!key_f32(&x, "rope.freq_base", &c->rope_theta)) c->rope_theta = 10000.0f;
    const mq_gguf_tensor *emb = mq_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->ndim != 2) {
        mq_gguf_close(g);
        return mq_fail(MQ_ERR_FORMAT, "%s: tensor 'token_embd.weight' missing or not 2-D", path);
    }
    c->vocab_size = key_u32(&x, "vocab_size", &v) ? (int)v : (int)emb->ne[1];
    c->tied_embeddings = mq_gguf_find_tensor(g, "output.weight") == NULL;
    c->qkv_bias = c->arch == MQ_ARCH_QWEN2;
    c->act = MQ_ACT_SILU;
    if (mq_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &v)) c->bos_id = (int)v;
    if (mq_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &v)) c->eos_id = (int)v;
    if (mq_gguf_find_tensor(g, "rope_freqs.weight")) {
        mq_gguf_close(g);
        return mq_fail(MQ_ERR_UNSUPPORTED, "%s: rope_freqs.weight (llama3 rope scaling in GGUF) is "
                       "not supported yet", path);
    }
    if ((st = mq_config_validate(m, path))) {
        mq_gguf_close(g);
        return st;
    }
    mq_model_alloc_weights(m);
    int64_t C = c->dim, F = c->hidden_dim, V = c->vocab_size;
    int64_t QD = (int64_t)c->n_heads * c->head_dim, KD = (int64_t)c->n_kv_heads * c->head_dim;
    char n[128];
    bool llama = c->arch == MQ_ARCH_LLAMA;
#define LOADH(name_, dst, hdst, r, cl, rope) \
    if (st == MQ_OK) st = load(m, &x, (name_), &(dst), (hdst), (r), (cl), (rope))
#define LOAD(name_, dst, r, cl) LOADH(name_, dst, NULL, r, cl, 0)
    LOADH("token_embd.weight", m->tok_emb, &m->tok_half, V, C, 0);
    if (c->tied_embeddings) m->lm_head = m->tok_emb;
    LOAD("output_norm.weight", m->final_norm, C, -1);
    if (!c->tied_embeddings) LOADH("output.weight", m->lm_head, &m->head_half, V, C, 0);
    for (int l = 0; l < c->n_layers && st == MQ_OK; l++) {
        mq_layer *L = &m->layers[l];
#define LAYER(suffix, dst, r, cl)                        \
        snprintf(n, sizeof n, "blk.%d.%s", l, (suffix)); \
        LOAD(n, (dst), (r), (cl))
#define LINEAR(kind, suffix, dst, r, cl, rope)           \
        snprintf(n, sizeof n, "blk.%d.%s", l, (suffix)); \
        LOADH(n, (dst), &L->half[kind], (r), (cl), (rope))
        LAYER("attn_norm.weight", L->attn_norm, C, -1);
        LINEAR(MQ_LIN_Q, "attn_q.weight", L->wq, QD, C, llama ? c->n_heads : 0);
        LINEAR(MQ_LIN_K, "attn_k.weight", L->wk, KD, C, llama ? c->n_kv_heads : 0);
        LINEAR(MQ_LIN_V, "attn_v.weight", L->wv, KD, C, 0);
        LINEAR(MQ_LIN_O, "attn_output.weight", L->wo, C, QD, 0);
        if (c->qkv_bias) {
            LAYER("attn_q.bias", L->bq, QD, -1);
            LAYER("attn_k.bias", L->bk, KD, -1);
            LAYER("attn_v.bias", L->bv, KD, -1);
        }
        LAYER("ffn_norm.weight", L->ffn_norm, C, -1);
        LINEAR(MQ_LIN_GATE, "ffn_gate.weight", L->w_gate, F, C, 0);
        LINEAR(MQ_LIN_UP, "ffn_up.weight", L->w_up, F, C, 0);
        LINEAR(MQ_LIN_DOWN, "ffn_down.weight", L->w_down, C, F, 0);
#undef LAYER
#undef LINEAR
    }
#undef LOADH
#undef LOAD
    /* the vocabulary is optional (a weights-only GGUF still runs on ids) */
    if (st == MQ_OK && mq_gguf_find_key(g, "tokenizer.ggml.model") >= 0)
        st = mq_tokenizer_load_gguf(g, &m->tok);
    mq_gguf_close(g);
    return st;
}

/*
 * model.c — the model object: ownership of fp32 weights (with the source
 * dtype of each), configuration checks, RoPE frequencies, the format
 * dispatch of mq_model_load, and for served models the switch of 16-bit
 * source tensors to their 16-bit form (quant/half.h).
 *
 * Not here: reading each format (load_hf.c, load_gguf.c, load_llama2c.c)
 * and the forward pass (forward.c).
 * References: transformers' LlamaRotaryEmbedding / _compute_llama3_parameters
 * for the RoPE frequencies.
 */
#include "nn/load_internal.h"
#include "quant/half.h"
#include "quant/kern.h"
#include "quant/qmodel.h"

#include <math.h>
#include <string.h>

float *mq_model_alloc(mq_model *m, size_t n) {
    if (m->n_owned == m->cap_owned) {
        m->cap_owned = m->cap_owned ? 2 * m->cap_owned : 64;
        m->owned = mq_realloc(m->owned, (size_t)m->cap_owned * sizeof *m->owned);
    }
    float *p = mq_aligned_alloc(n * sizeof(float));
    memset(p, 0, n * sizeof(float));
    m->owned[m->n_owned++] = (struct mq_owned){.p = p, .n = n, .src = MQ_DTYPE_F32};
    m->f32_now += n;
    if (m->f32_now > m->f32_peak) m->f32_peak = m->f32_now;
    return p;
}

static struct mq_owned *find_owned(const mq_model *m, const float *p) {
    for (int i = 0; p && i < m->n_owned; i++)
        if (m->owned[i].p == p) return &m->owned[i];
    return NULL;
}

void mq_model_note_src(mq_model *m, const float *p, mq_dtype src) {
    struct mq_owned *o = find_owned(m, p);
    MQ_ASSERT(o);
    o->src = src;
}

mq_dtype mq_model_src_dtype(const mq_model *m, const float *p) {
    const struct mq_owned *o = find_owned(m, p);
    return o ? o->src : MQ_DTYPE_F32;
}

void mq_model_release(mq_model *m, float *p) {
    struct mq_owned *o = find_owned(m, p);
    MQ_ASSERT(o);
    free(o->p);
    m->f32_now -= o->n;
    *o = m->owned[--m->n_owned];
}

float **mq_layer_weight_slot(mq_layer *L, int kind) {
    switch (kind) {
    case 0: return &L->wq;
    case 1: return &L->wk;
    case 2: return &L->wv;
    case 3: return &L->wo;
    case 4: return &L->w_gate;
    case 5: return &L->w_up;
    case 6: return &L->w_down;
    default: break;
    }
    MQ_ASSERT(!"bad linear kind");
    return NULL;
}

void mq_model_weight_bytes(const mq_model *m, mq_weight_bytes *out) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < m->n_owned; i++) out->f32 += m->owned[i].n * sizeof(float);
    for (int i = 0; i < m->n_half; i++) out->half += mq_half_bytes(&m->half_store[i]);
    const struct mq_qstore *q = m->quant;
    if (!q) return;
    if (q->head_fp) out->f32 += (size_t)m->cfg.vocab_size * (size_t)m->cfg.dim * sizeof(float);
    for (int i = 0; i < q->n; i++) {
        size_t ng = (size_t)q->q[i].rows * (size_t)(q->q[i].cols / q->q[i].group);
        out->codes += (size_t)q->q[i].rows * (size_t)q->q[i].cols + ng * (sizeof(float) + 1);
        if (q->packed && q->packed[i].data) out->packed += mq_pack_bytes(&q->packed[i]);
    }
    if (q->head_pk.data) out->packed += mq_pack_bytes(&q->head_pk);
}

/* Serving: every unquantized linear, the embedding table and an untied head
 * whose source tensor was F16/BF16 move to their 16-bit form; the fp32
 * buffer is freed (its values came from that dtype, so nothing changes). */
static mq_status serve_half(mq_model *m) {
    const mq_config *c = &m->cfg;
    if (!m->half_store) m->half_store = mq_calloc((size_t)c->n_layers * 7 + 2, sizeof *m->half_store);
    mq_status st = MQ_OK;
#define TO_HALF(slot, rows, cols, what, dst)                                                      do {                                                                                              mq_dtype dt_ = mq_model_src_dtype(m, *(slot));                                                if (st || !*(slot) || (dt_ != MQ_DTYPE_F16 && dt_ != MQ_DTYPE_BF16)) break;                   mq_half *h_ = &m->half_store[m->n_half];                                                      st = mq_half_from_f32(*(slot), (rows), (cols), dt_, (what), h_);                              if (st) break;                                                                                m->n_half++;                                                                                  mq_model_release(m, *(slot));                                                                 *(slot) = NULL;                                                                               (dst) = h_;                                                                               } while (0)
    bool tied = c->tied_embeddings;
    TO_HALF(&m->tok_emb, c->vocab_size, c->dim, "model.embed_tokens.weight", m->tok_half);
    if (tied) {
        if (m->tok_half) {
            m->lm_head = NULL;
            m->head_half = m->tok_half;
        }
    } else {
        TO_HALF(&m->lm_head, c->vocab_size, c->dim, "lm_head.weight", m->head_half);
    }
    int C = c->dim, F = c->hidden_dim, QD = c->n_heads * c->head_dim, KD = c->n_kv_heads * c->head_dim;
    int rows[7] = {QD, KD, KD, C, F, F, C}, cols[7] = {C, C, C, QD, C, C, F};
    for (int l = 0; l < c->n_layers && st == MQ_OK; l++)
        for (int k = 0; k < 7; k++) {
            if (mq_qstore_has(m->quant, l, (mq_lin_kind)k)) continue;
            char nm[96];
            mq_linear_name(l, (mq_lin_kind)k, nm, sizeof nm);
            TO_HALF(mq_layer_weight_slot(&m->layers[l], k), rows[k], cols[k], nm, m->layers[l].half[k]);
        }
#undef TO_HALF
    return st;
}

void mq_model_alloc_weights(mq_model *m) {
    const mq_config *c = &m->cfg;
    size_t C = (size_t)c->dim, F = (size_t)c->hidden_dim, V = (size_t)c->vocab_size;
    size_t QD = (size_t)c->n_heads * c->head_dim, KD = (size_t)c->n_kv_heads * c->head_dim;
    /* a served HF or GGUF model: the loader makes the big matrices, 16-bit
     * when the file holds them so (load_hf.c, load_gguf.c), so no fp32
     * buffer is made for them here */
    bool lazy = m->serve_half && m->source_kind && (!strcmp(m->source_kind, "hf") || !strcmp(m->source_kind, "gguf"));
    if (m->serve_half) m->half_store = mq_calloc((size_t)c->n_layers * 7 + 2, sizeof *m->half_store);
    m->tok_emb = lazy ? NULL : mq_model_alloc(m, V * C);
    m->lm_head = c->tied_embeddings ? m->tok_emb : lazy ? NULL : mq_model_alloc(m, V * C);
    m->final_norm = mq_model_alloc(m, C);
    m->layers = mq_calloc((size_t)c->n_layers, sizeof *m->layers);
    for (int l = 0; l < c->n_layers; l++) {
        mq_layer *L = &m->layers[l];
        L->attn_norm = mq_model_alloc(m, C);
        /* a served checkpoint's quantized linears get fp32 only if a plan
         * cannot pack them (quant/qmodel.c allocates it then) */
        size_t n[7] = {QD * C, KD * C, KD * C, C * QD, F * C, F * C, C * F};
        for (int k = 0; k < 7; k++)
            if (!(m->serve_half && mq_qstore_has(m->quant, l, (mq_lin_kind)k)) && !lazy)
                *mq_layer_weight_slot(L, k) = mq_model_alloc(m, n[k]);
        if (c->qkv_bias) {
            L->bq = mq_model_alloc(m, QD);
            L->bk = mq_model_alloc(m, KD);
            L->bv = mq_model_alloc(m, KD);
        }
        L->ffn_norm = mq_model_alloc(m, C);
        if (c->post_norms) {
            L->post_attn_norm = mq_model_alloc(m, C);
            L->post_ffn_norm = mq_model_alloc(m, C);
        }
    }
}

void mq_rope_inv_freq(const mq_config *c, float *out) {
    int D = c->head_dim;
    for (int i = 0; i < D / 2; i++) {
        /* as transformers: base ** (arange(0, D, 2) / D) in fp32 */
        float inv = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)D);
        if (c->rope_scale_factor > 0) {
            float lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
            float old = (float)c->rope_orig_max_pos, factor = c->rope_scale_factor;
            float lo_wavelen = old / lo, hi_wavelen = old / hi;
            float wavelen = 2.0f * (float)M_PI / inv;
            if (wavelen > lo_wavelen) {
                inv = inv / factor;
            } else if (wavelen >= hi_wavelen) {
                float smooth = (old / wavelen - lo) / (hi - lo);
                inv = (1.0f - smooth) * inv / factor + smooth * inv;
            }
        }
        out[i] = inv;
    }
}

mq_status mq_config_validate(mq_model *m, const char *src) {
    mq_config *c = &m->cfg;
    const int64_t big = (int64_t)1 << 20;
    struct { const char *name; int v; int64_t max; } f[] = {
        {"hidden size", c->dim, big}, {"intermediate size", c->hidden_dim, big},
        {"layer count", c->n_layers, 4096}, {"head count", c->n_heads, 4096},
        {"kv head count", c->n_kv_heads, 4096}, {"head dim", c->head_dim, 65536},
        {"vocab size", c->vocab_size, 1 << 24},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].v <= 0 || f[i].v > f[i].max)
            return mq_fail(MQ_ERR_FORMAT, "%s: %s %d is out of range (1..%lld)", src, f[i].name,
                           f[i].v, (long long)f[i].max);
    if (c->n_heads % c->n_kv_heads)
        return mq_fail(MQ_ERR_FORMAT, "%s: head count %d is not a multiple of kv head count %d",
                       src, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2)
        return mq_fail(MQ_ERR_FORMAT, "%s: head dim %d must be even for RoPE", src, c->head_dim);
    if (!(c->norm_eps > 0) || !isfinite(c->norm_eps))
        return mq_fail(MQ_ERR_FORMAT, "%s: norm epsilon %g must be positive", src, c->norm_eps);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return mq_fail(MQ_ERR_FORMAT, "%s: rope theta %g must be positive", src, c->rope_theta);
    if (c->max_seq <= 0) c->max_seq = 2048;
    if (c->query_scale <= 0) c->query_scale = 1.0f / sqrtf((float)c->head_dim);
    if (c->rope_scale_factor > 0 &&
        (!(c->rope_low_freq_factor > 0) || !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
         c->rope_orig_max_pos <= 0))
        return mq_fail(MQ_ERR_FORMAT, "%s: llama3 rope_scaling needs low_freq_factor < "
                       "high_freq_factor and original_max_position_embeddings", src);
    if (c->bos_id >= c->vocab_size) c->bos_id = -1;
    if (c->eos_id >= c->vocab_size) c->eos_id = -1;
    /* every product used to size a buffer must fit */
    size_t n;
    if (!mq_mul_ok((size_t)c->vocab_size, (size_t)c->dim, &n) ||
        !mq_mul_ok((size_t)c->hidden_dim, (size_t)c->dim, &n) ||
        !mq_mul_ok((size_t)c->n_heads * (size_t)c->head_dim, (size_t)c->dim, &n) ||
        n > ((size_t)1 << 40))
        return mq_fail(MQ_ERR_FORMAT, "%s: tensor sizes overflow", src);
    m->inv_freq = mq_model_alloc(m, (size_t)c->head_dim / 2);
    mq_rope_inv_freq(c, m->inv_freq);
    return MQ_OK;
}

void mq_rope_rows_to_half_bytes(void *w, int heads, int D, size_t row) {
    char *tmp = mq_malloc((size_t)D * row);
    for (int h = 0; h < heads; h++) {
        char *base = (char *)w + (size_t)h * D * row;
        for (int i = 0; i < D / 2; i++)
            for (int j = 0; j < 2; j++) memcpy(tmp + (size_t)(j * D / 2 + i) * row, base + (size_t)(2 * i + j) * row, row);
        memcpy(base, tmp, (size_t)D * row);
    }
    free(tmp);
}

void mq_rope_rows_to_half(float *w, int heads, int D, int64_t cols) {
    mq_rope_rows_to_half_bytes(w, heads, D, (size_t)cols * sizeof(float));
}

int64_t mq_find_nonfinite16(const uint16_t *v, mq_dtype dt, size_t n) {
    uint16_t e = dt == MQ_DTYPE_F16 ? 0x7C00 : 0x7F80; /* exponent all ones */
    for (size_t i = 0; i < n; i++)
        if ((v[i] & e) == e) return (int64_t)i;
    return -1;
}

mq_status mq_check_finite(const float *x, size_t n, const char *src, const char *tensor) {
    int64_t i = mq_find_nonfinite(x, n);
    if (i >= 0)
        return mq_fail(MQ_ERR_NUMERIC, "%s: tensor '%s' has a non-finite value (%g) at element %lld",
                       src, tensor, x[i], (long long)i);
    return MQ_OK;
}

static bool is_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char magic[4] = {0};
    size_t r = fread(magic, 1, 4, f);
    fclose(f);
    return r == 4 && !memcmp(magic, "GGUF", 4);
}

mq_status mq_model_load(const char *path, const mq_load_opts *opts, mq_model **out) {
    *out = NULL;
    mq_model *m = mq_calloc(1, sizeof *m);
    m->cfg.bos_id = m->cfg.eos_id = -1;
    m->source = mq_strdup(path);
    m->serve_half = opts && opts->serve && !mq_kern_float_forced();
    mq_status st;
    if (mq_is_dir(path)) {
        m->source_kind = "hf";
        st = mq_load_hf(path, m);
    } else if (!mq_file_exists(path)) {
        st = mq_fail(MQ_ERR_IO, "%s: no such file or directory", path);
    } else if (is_gguf(path)) {
        m->source_kind = "gguf";
        st = mq_load_gguf(path, m);
    } else {
        m->source_kind = "llama2c";
        st = mq_load_llama2c(path, m);
    }
    if (st == MQ_OK && opts && opts->tokenizer_path) {
        mq_tokenizer *t = NULL;
        const char *tp = opts->tokenizer_path;
        if (mq_has_suffix(tp, ".json") || mq_is_dir(tp)) {
            char *p = mq_is_dir(tp) ? mq_path_join(tp, "tokenizer.json") : mq_strdup(tp);
            st = mq_tokenizer_load_json(p, &t);
            free(p);
        } else {
            st = mq_tokenizer_load_llama2c(tp, m->cfg.vocab_size, &t);
        }
        if (st == MQ_OK) {
            if (m->tok) mq_tokenizer_free(m->tok);
            m->tok = t;
            m->tokenizer_path = mq_strdup(tp);
        }
    }
    if (st == MQ_OK && m->tok && mq_tokenizer_vocab_size(m->tok) > m->cfg.vocab_size)
        st = mq_fail(MQ_ERR_FORMAT, "%s: tokenizer has %d tokens but the model only %d", path,
                     mq_tokenizer_vocab_size(m->tok), m->cfg.vocab_size);
    if (st == MQ_OK && m->serve_half) st = serve_half(m);
    if (st == MQ_OK && m->quant) {
        mq_plan p;
        const char *bits = opts && opts->bits ? opts->bits : "8";
        st = mq_plan_parse(bits, m->cfg.n_layers, &p);
        if (st == MQ_OK) {
            st = mq_model_apply_plan(m, &p);
            mq_plan_free(&p);
        }
    } else if (st == MQ_OK && opts && opts->bits) {
        st = mq_fail(MQ_ERR_ARG, "%s: --bits applies to matquant checkpoints; quantize this model first "
                     "(matquant quantize)", path);
    }
    if (st == MQ_OK && m->tok) {
        if (m->cfg.bos_id < 0) m->cfg.bos_id = mq_tokenizer_bos(m->tok);
        if (m->cfg.eos_id < 0) m->cfg.eos_id = mq_tokenizer_eos(m->tok);
    }
    if (st != MQ_OK) {
        mq_model_free(m);
        return st;
    }
    *out = m;
    return MQ_OK;
}

void mq_model_free(mq_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i].p);
    free(m->owned);
    for (int i = 0; i < m->n_half; i++) mq_half_free(&m->half_store[i]);
    free(m->half_store);
    free(m->layers);
    mq_qstore_free(m->quant);
    if (m->tok) mq_tokenizer_free(m->tok);
    free(m->source);
    free(m->tokenizer_path);
    free(m);
}

int64_t mq_model_n_params(const mq_model *m) {
    const mq_config *c = &m->cfg;
    int64_t C = c->dim, F = c->hidden_dim, V = c->vocab_size;
    int64_t QD = (int64_t)c->n_heads * c->head_dim, KD = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t per = C + QD * C + 2 * KD * C + C * QD + C + 3 * F * C;
    if (c->qkv_bias) per += QD + 2 * KD;
    if (c->post_norms) per += 2 * C;
    int64_t n = V * C + C + per * c->n_layers;
    if (!c->tied_embeddings) n += V * C;
    return n;
}

const char *mq_arch_name(mq_arch a) {
    switch (a) {
    case MQ_ARCH_LLAMA: return "llama";
    case MQ_ARCH_MISTRAL: return "mistral";
    case MQ_ARCH_QWEN2: return "qwen2";
    case MQ_ARCH_GEMMA2: return "gemma2";
    }
    return "?";
}

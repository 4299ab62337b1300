/*
 * load_hf.c — Hugging Face model directories: config.json (llama, mistral,
 * qwen2, gemma2), weights from model.safetensors or a sharded index
 * (F32/F16/BF16), tokenizer.json when present.
 *
 * Every tensor is looked up by its transformers name, its shape checked
 * against the config and converted to fp32 (its dtype recorded as the
 * buffer's source dtype); NaN/Inf is rejected naming it. A model loaded to
 * be served (m->serve_half) has no fp32 buffer for its big matrices: an
 * F16/BF16 one is copied straight into its 16-bit form (quant/half.h), an
 * F32 one gets its fp32 buffer here.
 * Not here: matquant checkpoints (qweight/scale/zero) — src/io/checkpoint.c.
 * References: transformers LlamaConfig, MistralConfig, Qwen2Config,
 * Gemma2Config and their modeling files (parameter names, defaults).
 */
#include "io/safetensors.h"
#include "quant/half.h"
#include "quant/qmodel.h"
#include "nn/load_internal.h"

#include <cJSON.h>
#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- config */

static bool json_num(const cJSON *o, const char *key, double *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(x)) return false;
    *v = x->valuedouble;
    return true;
}

/* Integer field: absent -> def (if def >= 0) else error. */
static mq_status json_int(const cJSON *o, const char *key, int def, int *out, const char *src) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!x || cJSON_IsNull(x)) {
        if (def < 0) return mq_fail(MQ_ERR_FORMAT, "%s: missing key \"%s\"", src, key);
        *out = def;
        return MQ_OK;
    }
    if (!cJSON_IsNumber(x) || x->valuedouble != (double)(int64_t)x->valuedouble ||
        x->valuedouble < 0 || x->valuedouble > 2147483647.0)
        return mq_fail(MQ_ERR_FORMAT, "%s: \"%s\" must be a non-negative integer", src, key);
    *out = (int)x->valuedouble;
    return MQ_OK;
}

static mq_status parse_config(const char *path, mq_config *c, bool *tie_given) {
    char *text;
    size_t len;
    mq_status st = mq_read_file(path, &text, &len);
    if (st) return st;
    const char *err = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &err, false);
    if (!j) {
        long off = err ? (long)(err - text) : -1;
        free(text);
        return mq_fail(MQ_ERR_FORMAT, "%s: invalid JSON near byte %ld", path, off);
    }
    free(text);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return mq_fail(MQ_ERR_FORMAT, "%s: expected a JSON object", path);
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    /* multimodal wrappers keep the LM config under text_config */
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(j, "text_config");
    const cJSON *o = cJSON_IsObject(tc) ? tc : j;
    if (o == tc) mt = cJSON_GetObjectItemCaseSensitive(tc, "model_type");
    if (!cJSON_IsString(mt)) {
        cJSON_Delete(j);
        return mq_fail(MQ_ERR_FORMAT, "%s: missing string key \"model_type\"", path);
    }
    const char *type = mt->valuestring;
    if (!strcmp(type, "llama")) c->arch = MQ_ARCH_LLAMA;
    else if (!strcmp(type, "mistral")) c->arch = MQ_ARCH_MISTRAL;
    else if (!strcmp(type, "qwen2")) c->arch = MQ_ARCH_QWEN2;
    else if (!strcmp(type, "gemma2")) c->arch = MQ_ARCH_GEMMA2;
    else {
        st = mq_fail(MQ_ERR_UNSUPPORTED, "%s: model_type \"%s\" is not supported "
                     "(supported: llama, mistral, qwen2, gemma2)", path, type);
        cJSON_Delete(j);
        return st;
    }
    bool gemma = c->arch == MQ_ARCH_GEMMA2;
    if ((st = json_int(o, "hidden_size", -1, &c->dim, path)) ||
        (st = json_int(o, "intermediate_size", -1, &c->hidden_dim, path)) ||
        (st = json_int(o, "num_hidden_layers", -1, &c->n_layers, path)) ||
        (st = json_int(o, "num_attention_heads", -1, &c->n_heads, path)) ||
        (st = json_int(o, "num_key_value_heads", c->n_heads, &c->n_kv_heads, path)) ||
        (st = json_int(o, "vocab_size", -1, &c->vocab_size, path)) ||
        (st = json_int(o, "max_position_embeddings", 2048, &c->max_seq, path)) ||
        (st = json_int(o, "head_dim", c->n_heads > 0 ? c->dim / c->n_heads : 0, &c->head_dim, path))) {
        cJSON_Delete(j);
        return st;
    }
    double v;
    c->norm_eps = json_num(o, "rms_norm_eps", &v) ? (float)v : 1e-6f;
    /* transformers 5 nests rope settings in rope_parameters; 4.x uses rope_theta + rope_scaling */
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(o, "rope_parameters");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, "rope_scaling");
    c->rope_theta = 10000.0f;
    if (json_num(o, "rope_theta", &v)) c->rope_theta = (float)v;
    if (cJSON_IsObject(rp) && json_num(rp, "rope_theta", &v)) c->rope_theta = (float)v;
    const cJSON *scal = cJSON_IsObject(rs) ? rs : cJSON_IsObject(rp) ? rp : NULL;
    if (scal) {
        const cJSON *rt = cJSON_GetObjectItemCaseSensitive(scal, "rope_type");
        if (!cJSON_IsString(rt)) rt = cJSON_GetObjectItemCaseSensitive(scal, "type");
        const char *rtype = cJSON_IsString(rt) ? rt->valuestring : "default";
        if (!strcmp(rtype, "llama3")) {
            double f = 0, lo = 0, hi = 0, om = 0;
            json_num(scal, "factor", &f);
            json_num(scal, "low_freq_factor", &lo);
            json_num(scal, "high_freq_factor", &hi);
            json_num(scal, "original_max_position_embeddings", &om);
            c->rope_scale_factor = (float)f;
            c->rope_low_freq_factor = (float)lo;
            c->rope_high_freq_factor = (float)hi;
            c->rope_orig_max_pos = (int)om;
            if (!(f > 0)) {
                cJSON_Delete(j);
                return mq_fail(MQ_ERR_FORMAT, "%s: llama3 rope scaling needs a positive factor", path);
            }
        } else if (strcmp(rtype, "default") != 0) {
            st = mq_fail(MQ_ERR_UNSUPPORTED, "%s: rope scaling type \"%s\" is not supported "
                         "(supported: default, llama3)", path, rtype);
            cJSON_Delete(j);
            return st;
        }
    }
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(o, "tie_word_embeddings");
    if (!tie) tie = cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings");
    *tie_given = cJSON_IsBool(tie);
    c->tied_embeddings = cJSON_IsBool(tie) ? cJSON_IsTrue(tie) : gemma;
    c->qkv_bias = c->arch == MQ_ARCH_QWEN2;
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(o, "attention_bias");
    const cJSON *mb = cJSON_GetObjectItemCaseSensitive(o, "mlp_bias");
    if ((c->arch == MQ_ARCH_LLAMA && cJSON_IsTrue(ab)) || cJSON_IsTrue(mb)) {
        cJSON_Delete(j);
        return mq_fail(MQ_ERR_UNSUPPORTED, "%s: attention_bias/mlp_bias on llama is not supported", path);
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(o, "hidden_activation");
    if (!cJSON_IsString(act)) act = cJSON_GetObjectItemCaseSensitive(o, "hidden_act");
    const char *acts = cJSON_IsString(act) ? act->valuestring : (gemma ? "gelu_pytorch_tanh" : "silu");
    if (!strcmp(acts, "silu") || !strcmp(acts, "swish")) c->act = MQ_ACT_SILU;
    else if (!strcmp(acts, "gelu_pytorch_tanh") || !strcmp(acts, "gelu_tanh") ||
             (gemma && !strcmp(acts, "gelu")))
        c->act = MQ_ACT_GELU_TANH;
    else {
        st = mq_fail(MQ_ERR_UNSUPPORTED, "%s: activation \"%s\" is not supported", path, acts);
        cJSON_Delete(j);
        return st;
    }
    /* sliding window: mistral (all layers), qwen2 (only with use_sliding_window), gemma2 (even layers) */
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(o, "sliding_window");
    int window = cJSON_IsNumber(sw) ? (int)sw->valuedouble : 0;
    if (c->arch == MQ_ARCH_QWEN2 && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "use_sliding_window")))
        window = 0;
    if (c->arch == MQ_ARCH_LLAMA) window = 0;
    c->sliding_window = window > 0 ? window : 0;
    if (gemma) {
        c->norm_plus_one = c->post_norms = c->embed_scale = true;
        c->sliding_even_only = true;
        if (json_num(o, "attn_logit_softcapping", &v)) c->attn_softcap = (float)v;
        if (json_num(o, "final_logit_softcapping", &v)) c->final_softcap = (float)v;
        double qs = c->head_dim;
        if (json_num(o, "query_pre_attn_scalar", &v)) qs = v;
        if (!(qs > 0)) {
            cJSON_Delete(j);
            return mq_fail(MQ_ERR_FORMAT, "%s: query_pre_attn_scalar must be positive", path);
        }
        c->query_scale = (float)(1.0 / sqrt(qs));
        const cJSON *lt = cJSON_GetObjectItemCaseSensitive(o, "layer_types");
        if (cJSON_IsArray(lt) && c->sliding_window > 0) {
            int i = 0;
            const cJSON *e;
            cJSON_ArrayForEach(e, lt) {
                bool sliding = cJSON_IsString(e) && !strcmp(e->valuestring, "sliding_attention");
                if (sliding != (i % 2 == 0)) {
                    cJSON_Delete(j);
                    return mq_fail(MQ_ERR_UNSUPPORTED, "%s: layer_types other than alternating "
                                   "sliding/full (sliding first) are not supported", path);
                }
                i++;
            }
        }
    }
    double b;
    if (json_num(o, "bos_token_id", &b)) c->bos_id = (int)b;
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(o, "eos_token_id");
    if (cJSON_IsNumber(eos)) c->eos_id = eos->valueint;
    else if (cJSON_IsArray(eos) && cJSON_IsNumber(cJSON_GetArrayItem(eos, 0)))
        c->eos_id = cJSON_GetArrayItem(eos, 0)->valueint;
    cJSON_Delete(j);
    return MQ_OK;
}

/* ---------------------------------------------------------------- weights */

/* Load tensor `name` into *slot (fp32); when *slot is NULL (a served
 * model's matrix, hslot given) into *hslot if the file holds it 16-bit, else
 * into a new fp32 buffer set in *slot. */
static mq_status load_tensor(mq_model *m, const mq_st_set *s, const char *dir, const char *name, float **slot,
                             const mq_half **hslot, int64_t rows, int64_t cols) {
    const mq_tensor *t = mq_st_set_find(s, name);
    if (!t) {
        char q[300];
        snprintf(q, sizeof q, "%.*s.qweight", (int)(strlen(name) > 7 ? strlen(name) - 7 : 0), name);
        if (mq_st_set_find(s, q))
            return mq_fail(MQ_ERR_UNSUPPORTED, "%s: '%s' is stored quantized (%s); load it as a "
                           "matquant checkpoint", dir, name, q);
        return mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s' not found", dir, name);
    }
    bool ok = cols < 0 ? (t->ndim == 1 && t->shape[0] == rows)
                       : (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!ok) {
        char got[96] = "";
        size_t k = 0;
        for (int i = 0; i < t->ndim && k < sizeof got - 24; i++)
            k += (size_t)snprintf(got + k, sizeof got - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (cols < 0)
            return mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s' has shape [%s], config expects [%lld]",
                           dir, name, got, (long long)rows);
        return mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s' has shape [%s], config expects [%lld, %lld]",
                       dir, name, got, (long long)rows, (long long)cols);
    }
    size_t n = (size_t)rows * (size_t)(cols < 0 ? 1 : cols);
    if (t->dtype != MQ_DTYPE_F32 && t->dtype != MQ_DTYPE_F16 && t->dtype != MQ_DTYPE_BF16)
        return mq_fail(MQ_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s, expected F32, F16 or BF16",
                       dir, name, mq_dtype_name(t->dtype));
    if (!*slot) {
        MQ_ASSERT(hslot && cols > 0 && m->half_store);
        if (t->dtype != MQ_DTYPE_F32) {
            int64_t bad = mq_find_nonfinite16(t->data, t->dtype, n);
            if (bad >= 0) {
                uint16_t v = ((const uint16_t *)t->data)[bad];
                return mq_fail(MQ_ERR_NUMERIC, "%s: tensor '%s' has a non-finite value (%g) at element %lld", dir,
                               name, t->dtype == MQ_DTYPE_F16 ? mq_f16_to_f32(v) : mq_bf16_to_f32(v), (long long)bad);
            }
            mq_half *h = &m->half_store[m->n_half++];
            mq_half_from_bits(t->data, (int)rows, (int)cols, t->dtype, h);
            *hslot = h;
            return MQ_OK;
        }
        *slot = mq_model_alloc(m, n);
    }
    float *dst = *slot;
    mq_status st = mq_convert_to_f32(t->data, t->dtype, n, dst);
    if (st) return st;
    mq_model_note_src(m, dst, t->dtype);
    return mq_check_finite(dst, n, dir, name);
}

/* A checkpoint's quantized linear must have the shape the config implies. */
static mq_status check_qshape(const struct mq_qstore *q, const char *dir, int layer, mq_lin_kind kind,
                              int64_t rows, int64_t cols) {
    for (int i = 0; i < q->n; i++)
        if (q->q[i].layer == layer && q->q[i].kind == kind && (q->q[i].rows != rows || q->q[i].cols != cols)) {
            char nm[96];
            mq_linear_name(layer, kind, nm, sizeof nm);
            return mq_fail(MQ_ERR_FORMAT, "%s: '%s.qweight' is [%d, %d], config expects [%lld, %lld]", dir, nm,
                           q->q[i].rows, q->q[i].cols, (long long)rows, (long long)cols);
        }
    return MQ_OK;
}

mq_status mq_load_hf(const char *dir, mq_model *m) {
    char *cfg_path = mq_path_join(dir, "config.json");
    bool tie_given = false;
    mq_status st = mq_file_exists(cfg_path) ? parse_config(cfg_path, &m->cfg, &tie_given)
                 : mq_fail(MQ_ERR_IO, "%s: no config.json in this directory", dir);
    if (st == MQ_OK) st = mq_config_validate(m, cfg_path);
    free(cfg_path);
    if (st) return st;
    mq_st_set *s = NULL;
    if ((st = mq_st_open_dir(dir, &s))) return st;
    /* a matquant checkpoint: the quantized linears come from their codes */
    if (mq_st_set_meta(s, "matquant.format_version")) {
        struct mq_qstore *q = mq_calloc(1, sizeof *q);
        m->quant = q;
        if ((st = mq_checkpoint_read(dir, &q->q, &q->n, &q->meta))) {
            mq_st_set_close(s);
            return st;
        }
        for (int i = 0; i < q->n; i++)
            if (q->q[i].layer >= m->cfg.n_layers) {
                mq_st_set_close(s);
                return mq_fail(MQ_ERR_FORMAT, "%s: quantized layer %d beyond the config's %d layers", dir,
                               q->q[i].layer, m->cfg.n_layers);
            }
    }
    mq_config *c = &m->cfg;
    /* a checkpoint without lm_head.weight and no explicit tie flag is tied */
    if (!tie_given && !c->tied_embeddings && !mq_st_set_find(s, "lm_head.weight"))
        c->tied_embeddings = true;
    mq_model_alloc_weights(m);
    int64_t C = c->dim, F = c->hidden_dim, V = c->vocab_size;
    int64_t QD = (int64_t)c->n_heads * c->head_dim, KD = (int64_t)c->n_kv_heads * c->head_dim;
    bool gemma = c->arch == MQ_ARCH_GEMMA2;
    char n[256];
#define LOADH(name_, dst, hdst, r, cl) \
    if (st == MQ_OK) st = load_tensor(m, s, dir, (name_), &(dst), (hdst), (r), (cl))
#define LOAD(name_, dst, r, cl) LOADH(name_, dst, NULL, r, cl)
    LOADH("model.embed_tokens.weight", m->tok_emb, &m->tok_half, V, C);
    if (c->tied_embeddings) m->lm_head = m->tok_emb;
    LOAD("model.norm.weight", m->final_norm, C, -1);
    if (!c->tied_embeddings) LOADH("lm_head.weight", m->lm_head, &m->head_half, V, C);
    for (int l = 0; l < c->n_layers && st == MQ_OK; l++) {
        mq_layer *L = &m->layers[l];
#define LAYER(suffix, dst, r, cl)                                   \
        snprintf(n, sizeof n, "model.layers.%d.%s", l, (suffix));   \
        LOAD(n, dst, (r), (cl))
#define LINEAR(kind, suffix, dst, r, cl)                                    \
        if (!mq_qstore_has(m->quant, l, (kind))) {                          \
            snprintf(n, sizeof n, "model.layers.%d.%s", l, (suffix));       \
            LOADH(n, dst, &L->half[kind], (r), (cl));                       \
        } else if (st == MQ_OK) {                                           \
            st = check_qshape(m->quant, dir, l, (kind), (r), (cl));         \
        }
        LAYER("input_layernorm.weight", L->attn_norm, C, -1);
        LINEAR(MQ_LIN_Q, "self_attn.q_proj.weight", L->wq, QD, C);
        LINEAR(MQ_LIN_K, "self_attn.k_proj.weight", L->wk, KD, C);
        LINEAR(MQ_LIN_V, "self_attn.v_proj.weight", L->wv, KD, C);
        LINEAR(MQ_LIN_O, "self_attn.o_proj.weight", L->wo, C, QD);
        if (c->qkv_bias) {
            LAYER("self_attn.q_proj.bias", L->bq, QD, -1);
            LAYER("self_attn.k_proj.bias", L->bk, KD, -1);
            LAYER("self_attn.v_proj.bias", L->bv, KD, -1);
        }
        if (gemma) {
            LAYER("post_attention_layernorm.weight", L->post_attn_norm, C, -1);
            LAYER("pre_feedforward_layernorm.weight", L->ffn_norm, C, -1);
            LAYER("post_feedforward_layernorm.weight", L->post_ffn_norm, C, -1);
        } else {
            LAYER("post_attention_layernorm.weight", L->ffn_norm, C, -1);
        }
        LINEAR(MQ_LIN_GATE, "mlp.gate_proj.weight", L->w_gate, F, C);
        LINEAR(MQ_LIN_UP, "mlp.up_proj.weight", L->w_up, F, C);
        LINEAR(MQ_LIN_DOWN, "mlp.down_proj.weight", L->w_down, C, F);
#undef LINEAR
#undef LAYER
    }
#undef LOAD
#undef LOADH
    mq_st_set_close(s);
    if (st) return st;
    char *tok_path = mq_path_join(dir, "tokenizer.json");
    char *bin_path = mq_path_join(dir, "tokenizer.bin"); /* llama2.c vocabularies */
    if (mq_file_exists(tok_path)) st = mq_tokenizer_load_json(tok_path, &m->tok);
    else if (mq_file_exists(bin_path)) st = mq_tokenizer_load_llama2c(bin_path, c->vocab_size, &m->tok);
    free(tok_path);
    free(bin_path);
    return st;
}

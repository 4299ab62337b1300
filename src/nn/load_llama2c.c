/*
 * load_llama2c.c — llama2.c "legacy" (version 0) checkpoints: a header of 7
 * little-endian int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size, seq_len; vocab_size < 0 means an unshared classifier), then fp32
 * tensors: token_embedding (V,C), rms_att (L,C), wq (L,C,C), wk (L,KV*D,C),
 * wv (L,KV*D,C), wo (L,C,C), rms_ffn (L,C), w1 (L,F,C), w2 (L,C,F),
 * w3 (L,F,C), rms_final (C), freq_cis_real/imag (seq_len, D/2) [unused], and
 * wcls (V,C) when unshared. RoPE rotates adjacent pairs (x0,x1),(x2,x3); the q/k rows are reordered on load to
 * transformers' rotate-half layout, so that every model has one layout.
 * Reference: karpathy/llama2.c run.c (memory_map_weights).
 *
 * Not here: the version 1/2 ("ak42") exports.
 */
#include "nn/load_internal.h"

#include <string.h>

static mq_status copy_checked(float *dst, const float *src, size_t n,
                              const char *path, const char *name) {
    memcpy(dst, src, n * sizeof(float));
    return mq_check_finite(dst, n, path, name);
}

mq_status mq_load_llama2c(const char *path, mq_model *m) {
    mq_map map;
    mq_status st = mq_map_file(path, &map);
    if (st) return st;
    if (map.size < 28) {
        mq_unmap(&map);
        return mq_fail(MQ_ERR_FORMAT, "%s: not a model: too short for a llama2.c header "
                       "(%zu bytes) and not GGUF or a directory", path, map.size);
    }
    int32_t h[7];
    memcpy(h, map.data, sizeof h);
    bool shared = h[5] > 0;
    int64_t V = h[5] < 0 ? -(int64_t)h[5] : h[5];
    mq_config *c = &m->cfg;
    c->arch = MQ_ARCH_LLAMA;
    c->dim = h[0];
    c->hidden_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->vocab_size = (int)(V > (1 << 24) ? 0 : V);
    c->max_seq = h[6];
    c->head_dim = h[3] > 0 ? h[0] / h[3] : 0;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->tied_embeddings = shared;
    c->act = MQ_ACT_SILU;
    c->bos_id = 1;
    c->eos_id = 2;
    if (c->dim <= 0 || c->n_heads <= 0 || c->dim % c->n_heads || c->max_seq <= 0 ||
        c->max_seq > (1 << 22)) {
        mq_unmap(&map);
        return mq_fail(MQ_ERR_FORMAT, "%s: not a llama2.c checkpoint (header dim=%d heads=%d "
                       "seq_len=%d is not sane) and not GGUF or a directory",
                       path, h[0], h[3], h[6]);
    }
    if ((st = mq_config_validate(m, path))) {
        mq_unmap(&map);
        return st;
    }
    size_t C = c->dim, F = c->hidden_dim, L = c->n_layers, KD = (size_t)c->n_kv_heads * c->head_dim;
    size_t D = c->head_dim, S = c->max_seq;
    size_t floats = V * C + L * C + L * C * C + 2 * L * KD * C + L * C * C + L * C + 3 * L * F * C +
                    C + S * D + (shared ? 0 : V * C);
    size_t want = 28 + floats * 4;
    if (map.size != want) {
        mq_unmap(&map);
        return mq_fail(MQ_ERR_FORMAT, "%s: llama2.c checkpoint should be %zu bytes for its header "
                       "(dim=%zu hidden=%zu layers=%zu heads=%d kv=%d vocab=%lld seq=%zu), file has %zu",
                       path, want, C, F, L, c->n_heads, c->n_kv_heads, (long long)V, S, map.size);
    }
    mq_model_alloc_weights(m);
    const float *p = (const float *)(map.data + 28);
    char name[64];
#define TAKE(dst, n, label)                                                     \
    do {                                                                        \
        if ((st = copy_checked((dst), p, (n), path, (label)))) goto done;    \
        p += (n);                                                               \
    } while (0)
    TAKE(m->tok_emb, V * C, "token_embedding_table");
    for (size_t l = 0; l < L; l++) { snprintf(name, sizeof name, "rms_att_weight[%zu]", l); TAKE(m->layers[l].attn_norm, C, name); }
    for (size_t l = 0; l < L; l++) { snprintf(name, sizeof name, "wq[%zu]", l); TAKE(m->layers[l].wq, C * C, name); }
    for (size_t l = 0; l < L; l++) { snprintf(name, sizeof name, "wk[%zu]", l); TAKE(m->layers[l].wk, KD * C, name); }
    for (size_t l = 0; l < L; l++) { snprintf(name, sizeof name, "wv[%zu]", l); TAKE(m->layers[l].wv, KD * C, name); }
    for (size_t l = 0; l < L; l++) { snprintf(name, sizeof name, "wo[%zu]", l); TAKE(m->layers[l].wo, C * C, name); }
    for (size_t l = 0; l < L; l++) { snprintf(name, sizeof name, "rms_ffn_weight[%zu]", l); TAKE(m->layers[l].ffn_norm, C, name); }
    for (size_t l = 0; l < L; l++) { snprintf(name, sizeof name, "w1[%zu]", l); TAKE(m->layers[l].w_gate, F * C, name); }
    for (size_t l = 0; l < L; l++) { snprintf(name, sizeof name, "w2[%zu]", l); TAKE(m->layers[l].w_down, C * F, name); }
    for (size_t l = 0; l < L; l++) { snprintf(name, sizeof name, "w3[%zu]", l); TAKE(m->layers[l].w_up, F * C, name); }
    TAKE(m->final_norm, C, "rms_final_weight");
    p += S * D; /* legacy freq_cis_real / freq_cis_imag, recomputed instead */
    if (!shared) TAKE(m->lm_head, V * C, "wcls");
#undef TAKE
    /* one layout for every source: rotate-half RoPE, as transformers */
    for (size_t l = 0; l < L; l++) {
        mq_rope_rows_to_half(m->layers[l].wq, c->n_heads, c->head_dim, (int64_t)C);
        mq_rope_rows_to_half(m->layers[l].wk, c->n_kv_heads, c->head_dim, (int64_t)C);
    }
done:
    mq_unmap(&map);
    return st;
}

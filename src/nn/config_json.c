/*
 * config_json.c — write an mq_config as a transformers config.json, so that
 * a checkpoint made from a GGUF or llama2.c source is an ordinary HF
 * directory (read back by load_hf.c, and by transformers).
 *
 * Not here: reading (load_hf.c).
 */
#include "nn/model.h"

#include <cJSON.h>
#include <math.h>

static const char *hf_arch_class(mq_arch a) {
    switch (a) {
    case MQ_ARCH_LLAMA: return "LlamaForCausalLM";
    case MQ_ARCH_MISTRAL: return "MistralForCausalLM";
    case MQ_ARCH_QWEN2: return "Qwen2ForCausalLM";
    case MQ_ARCH_GEMMA2: return "Gemma2ForCausalLM";
    }
    return "?";
}

char *mq_config_to_json(const mq_config *c) {
    cJSON *j = cJSON_CreateObject();
    cJSON *archs = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(archs, cJSON_CreateString(hf_arch_class(c->arch)));
    cJSON_AddStringToObject(j, "model_type", mq_arch_name(c->arch));
    cJSON_AddNumberToObject(j, "hidden_size", c->dim);
    cJSON_AddNumberToObject(j, "intermediate_size", c->hidden_dim);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(j, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(j, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(j, "max_position_embeddings", c->max_seq);
    cJSON_AddNumberToObject(j, "rms_norm_eps", c->norm_eps);
    cJSON_AddNumberToObject(j, "rope_theta", c->rope_theta);
    if (c->rope_scale_factor > 0) {
        cJSON *rs = cJSON_AddObjectToObject(j, "rope_scaling");
        cJSON_AddStringToObject(rs, "rope_type", "llama3");
        cJSON_AddNumberToObject(rs, "factor", c->rope_scale_factor);
        cJSON_AddNumberToObject(rs, "low_freq_factor", c->rope_low_freq_factor);
        cJSON_AddNumberToObject(rs, "high_freq_factor", c->rope_high_freq_factor);
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->rope_orig_max_pos);
    }
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tied_embeddings);
    cJSON_AddStringToObject(j, c->arch == MQ_ARCH_GEMMA2 ? "hidden_activation" : "hidden_act",
                            c->act == MQ_ACT_SILU ? "silu" : "gelu_pytorch_tanh");
    if (c->arch == MQ_ARCH_QWEN2 && c->sliding_window > 0) cJSON_AddBoolToObject(j, "use_sliding_window", 1);
    if (c->sliding_window > 0) cJSON_AddNumberToObject(j, "sliding_window", c->sliding_window);
    else if (c->arch == MQ_ARCH_MISTRAL) cJSON_AddNullToObject(j, "sliding_window");
    if (c->arch == MQ_ARCH_GEMMA2) {
        cJSON_AddNumberToObject(j, "attn_logit_softcapping", c->attn_softcap);
        cJSON_AddNumberToObject(j, "final_logit_softcapping", c->final_softcap);
        /* query_scale = 1/sqrt(query_pre_attn_scalar) */
        cJSON_AddNumberToObject(j, "query_pre_attn_scalar",
                                nearbyint(1.0 / ((double)c->query_scale * c->query_scale)));
    }
    if (c->bos_id >= 0) cJSON_AddNumberToObject(j, "bos_token_id", c->bos_id);
    if (c->eos_id >= 0) cJSON_AddNumberToObject(j, "eos_token_id", c->eos_id);
    cJSON_AddStringToObject(j, "torch_dtype", "float32");
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

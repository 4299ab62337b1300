#!/usr/bin/env python3
"""Writes the small bad model directories the CLI tests feed to matquant
(tests/fixtures/hf_*): each must give one clear error line and exit 1.
numpy + safetensors only. Run from the repo root: python3 scripts/make_cli_fixtures.py"""
import json, os
import numpy as np
from safetensors.numpy import save_file

OUT = "tests/fixtures"
CFG = dict(model_type="llama", hidden_size=8, intermediate_size=16, num_hidden_layers=1,
           num_attention_heads=2, num_key_value_heads=1, vocab_size=16, rms_norm_eps=1e-5,
           max_position_embeddings=64, tie_word_embeddings=True)

def weights(dtype=np.float32):
    r = np.random.default_rng(0)
    C, F, V, KD = 8, 16, 16, 4
    t = {"model.embed_tokens.weight": (V, C), "model.norm.weight": (C,),
         "model.layers.0.input_layernorm.weight": (C,), "model.layers.0.post_attention_layernorm.weight": (C,),
         "model.layers.0.self_attn.q_proj.weight": (C, C), "model.layers.0.self_attn.k_proj.weight": (KD, C),
         "model.layers.0.self_attn.v_proj.weight": (KD, C), "model.layers.0.self_attn.o_proj.weight": (C, C),
         "model.layers.0.mlp.gate_proj.weight": (F, C), "model.layers.0.mlp.up_proj.weight": (F, C),
         "model.layers.0.mlp.down_proj.weight": (C, F)}
    return {k: r.standard_normal(s).astype(dtype) for k, s in t.items()}

def write(name, cfg_text=None, cfg=None, w=None):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(cfg_text if cfg_text is not None else json.dumps(cfg if cfg is not None else CFG, indent=1))
    if w is not None:
        save_file(w, os.path.join(d, "model.safetensors"))

write("hf_ok", w=weights())                                   # a valid tiny model (control)
w = weights(); w["model.layers.0.mlp.up_proj.weight"][3, 5] = np.nan
write("hf_nan", w=w)                                          # NaN in a weight
w = weights(); w["model.layers.0.self_attn.k_proj.weight"] = np.zeros((5, 8), np.float32)
write("hf_bad_shape", w=w)                                    # shape disagrees with config
w = weights(); w["model.norm.weight"] = np.arange(8, dtype=np.int64)
write("hf_bad_dtype", w=w)                                    # integer weight
w = weights(); del w["model.layers.0.mlp.down_proj.weight"]
write("hf_missing_tensor", w=w)
write("hf_config_invalid_json", cfg_text='{"model_type": "llama", "hidden_size": 8,,}', w=weights())
c = dict(CFG); del c["hidden_size"]
write("hf_config_missing_key", cfg=c, w=weights())
c = dict(CFG); c["model_type"] = "gpt_neox"
write("hf_config_unknown_arch", cfg=c, w=weights())
c = dict(CFG); c["num_key_value_heads"] = 3
write("hf_config_bad_heads", cfg=c, w=weights())
c = dict(CFG); c["hidden_size"] = "eight"
write("hf_config_bad_type", cfg=c, w=weights())
write("hf_no_weights", cfg=CFG)
print("fixtures written to", OUT)

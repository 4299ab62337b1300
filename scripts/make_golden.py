#!/usr/bin/env python3
"""make_golden.py — tiny random-weight transformers models and their logits,
the goldens tests/test_models.c checks matquant's loaders and forward pass
against.

Writes tests/golden/models/<name>/ (config.json + safetensors as
save_pretrained writes them, and golden.json) for:
  llama          GQA (4 heads / 2 kv heads), untied lm_head
  llama_tied     tie_word_embeddings
  llama3_rope    (tied) rope_parameters {"rope_type": "llama3", ...}: all three
                 frequency bands (unchanged, smoothed, divided) are hit
  mistral        sliding_window 8, prompts of 20 tokens
  qwen2          q/k/v biases (nonzero), tied embeddings
  gemma2         head_dim 24 != 64/4, query_pre_attn_scalar 32, attention and
                 final logit soft-capping, alternating sliding window 8,
                 four norms per block ((1 + w), random w), tied embeddings
  llama_bf16     weights stored as bfloat16 (goldens from those weights in fp32)
  llama_sharded  model.safetensors.index.json + 3 shards
and tests/golden/models/llama.gguf (F32) and llama_f16.gguf (F16 2-D weights,
F32 norms) laid out as llama.cpp's convert_hf_to_gguf.py writes a llama model,
q/k rows permuted (see gguf_permute), with a 256-token byte-level vocabulary
so that llama.cpp itself loads them; their goldens are llama.gguf.json and
llama_f16.gguf.json.

golden.json: {"prompts": [[ids]...], "logits": [[[V floats] per position]
per prompt], "greedy": [8 ids continuing prompts[0]], ...}. Logits come from
an fp32 eager-attention forward in transformers with no KV cache; greedy
ids are argmax of a full (cache-free) forward at each step.

Checks done here, before writing anything (the script fails otherwise):
  - the sliding window, both soft-caps and llama3 scaling change the logits
    (so the goldens would catch a model that ignores them), and the window
    does not change positions < window;
  - the saved directory reloads in transformers to the same logits;
  - when llama-cpp-python is installed, llama.cpp's own logits on both GGUF
    files agree with the goldens (an independent check of the permutation).

Not here: real models (golden_smollm2.py), perplexity (ppl_llamacpp.py).
Run from the repository root: python3 scripts/make_golden.py
"""
import copy
import json
import os
import shutil
import sys

import numpy as np
import torch

# ---------------------------------------------------------------- versions
PINNED = {"torch": "2.15", "transformers": "5.23", "safetensors": "0.8", "gguf": "0.19", "numpy": "2.4"}


def _check_versions():
    import importlib.metadata as md
    bad = []
    for pkg, want in PINNED.items():
        got = md.version(pkg)
        if not (got == want or got.startswith(want + ".")):
            bad.append(f"{pkg} {got} (want {want}.x)")
    if bad:
        sys.exit("make_golden.py: pinned versions differ: " + ", ".join(bad) +
                 " (pip install -r scripts/requirements.txt)")


_check_versions()

import gguf  # noqa: E402
import transformers  # noqa: E402
from transformers import (AutoModelForCausalLM, Gemma2Config, LlamaConfig, MistralConfig,  # noqa: E402
                          Qwen2Config)

transformers.utils.logging.disable_progress_bar()
torch.set_num_threads(1)  # identical sums run to run
torch.use_deterministic_algorithms(True)

OUT = "tests/golden/models"
GREEDY_N = 8
COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=256, max_position_embeddings=256,
              rms_norm_eps=1e-5, initializer_range=0.15, bos_token_id=1, eos_token_id=2)


def sig6(x):
    """Round to 6 significant digits (as floats, so JSON stays numeric)."""
    return [float(f"{v:.6g}") for v in x]


# ---------------------------------------------------------------- models

def build(cfg, seed, dtype=torch.float32):
    """A randomly initialised model with random norm weights and biases."""
    torch.manual_seed(seed)
    cfg._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    gemma = cfg.model_type == "gemma2"
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                # llama: w near 1; gemma2 stores w and uses (1 + w): w near 0
                p.copy_((0.0 if gemma else 1.0) + 0.3 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            if dtype != torch.float32:  # the values the file will hold, kept in fp32
                p.copy_(p.to(dtype).float())
    model.save_dtype = dtype
    return model


def logits_of(model, ids):
    with torch.no_grad():
        out = model(torch.tensor([ids]), use_cache=False)
    return out.logits[0].float()


def greedy(model, ids, n):
    ids = list(ids)
    new = []
    for _ in range(n):
        t = int(torch.argmax(logits_of(model, ids)[-1]))
        new.append(t)
        ids.append(t)
    return new


def prompts_for(seed, lengths, vocab):
    rng = np.random.default_rng(seed)
    return [[int(t) for t in rng.integers(3, vocab, size=n)] for n in lengths]


def golden_of(model, prompts, extra=None):
    g = {
        "generator": "scripts/make_golden.py",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "note": "fp32 eager forward, no KV cache; logits rounded to 6 significant digits",
        "prompts": prompts,
        "logits": [[sig6(row.tolist()) for row in logits_of(model, p)] for p in prompts],
        "greedy": greedy(model, prompts[0], GREEDY_N),
    }
    if extra:
        g.update(extra)
    return g


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")


def save(name, model, prompts, save_kw=None, extra=None):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    if model.save_dtype == torch.float32:
        model.save_pretrained(d, safe_serialization=True, **(save_kw or {}))
    else:
        # a copy in the file dtype (the original keeps its fp32 RoPE buffers)
        copy.deepcopy(model).to(model.save_dtype).save_pretrained(d, safe_serialization=True,
                                                                  **(save_kw or {}))
    for junk in ("generation_config.json",):
        p = os.path.join(d, junk)
        if os.path.exists(p):
            os.remove(p)
    # the goldens come from what was written: reload it in fp32
    re = AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager", dtype=torch.float32)
    re.eval()
    g = golden_of(re, prompts, extra)
    for p in prompts:
        a, b = logits_of(re, p), logits_of(model, p)
        assert torch.allclose(a, b, atol=1e-5), f"{name}: reloaded model differs from the built one"
    write_json(os.path.join(d, "golden.json"), g)
    print(f"{name}: {sorted(os.listdir(d))}, max|logit| "
          f"{max(abs(v) for pr in g['logits'] for row in pr for v in row):.3f}, greedy {g['greedy']}")
    return re


def differs(a, b, what, tol=1e-3):
    d = float((a - b).abs().max())
    assert d > tol, f"{what} does not change the logits (max diff {d:g}): the golden would not test it"
    return d


# ---------------------------------------------------------------- GGUF

def gguf_permute(w, n_head):
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute: within each head,
    rows go from rotate-half pairing (i, i + D/2) to adjacent pairs (2i, 2i+1):
    GGUF row 2*i + j = HF row j*D/2 + i. For attn_k, n_head is the kv head
    count (the converter passes n_head_kv when it differs)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def byte_vocab():
    """GPT-2's byte-to-unicode map: token i is the printable char for byte i
    (each of the 256 ids is a single byte, no merges)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    m = dict(zip(bs, cs))
    return [chr(m[b]) for b in range(256)]


def write_gguf(path, model, f16):
    cfg = model.config
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    H, KV = cfg.num_attention_heads, cfg.num_key_value_heads
    D = cfg.hidden_size // H
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("matquant tiny llama golden")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_rope_dimension_count(D)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
    # a byte-level vocabulary, so that llama.cpp accepts the file
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(byte_vocab())
    w.add_token_types([gguf.TokenType.NORMAL] * 256)
    w.add_token_merges(["Ġ Ġ"])  # llama.cpp's BPE wants at least one merge
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)
    w.add_add_bos_token(False)

    def put(name, a):
        a = np.ascontiguousarray(a)
        if f16 and a.ndim == 2:
            a = a.astype(np.float16)
        w.add_tensor(name, a)

    put("token_embd.weight", sd["model.embed_tokens.weight"])
    for l in range(cfg.num_hidden_layers):
        p = f"model.layers.{l}."
        put(f"blk.{l}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        put(f"blk.{l}.attn_q.weight", gguf_permute(sd[p + "self_attn.q_proj.weight"], H))
        put(f"blk.{l}.attn_k.weight", gguf_permute(sd[p + "self_attn.k_proj.weight"], KV))
        put(f"blk.{l}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        put(f"blk.{l}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        put(f"blk.{l}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        put(f"blk.{l}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        put(f"blk.{l}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        put(f"blk.{l}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    put("output_norm.weight", sd["model.norm.weight"])
    put("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def f16_rounded(model):
    """A copy of model whose 2-D weights are rounded to fp16 (as llama_f16.gguf)."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for _, p in m.named_parameters():
            if p.ndim == 2:
                p.copy_(p.half().float())
    return m


def llamacpp_check(path, golden):
    """llama.cpp's logits on the GGUF agree with the goldens (if installed)."""
    try:
        from llama_cpp import Llama
    except ImportError:
        print(f"  (llama-cpp-python not installed: {path} not cross-checked)")
        return
    import llama_cpp
    # F32 KV cache: llama.cpp's default F16 cache alone moves logits by ~5e-3
    llm = Llama(model_path=path, n_ctx=64, n_batch=64, logits_all=True, n_threads=2, verbose=False,
                type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    worst = 0.0
    for ids, want in zip(golden["prompts"], golden["logits"]):
        llm.reset()
        llm.eval(ids)
        got = np.array(llm.scores[:len(ids)], dtype=np.float64)
        worst = max(worst, float(np.abs(got - np.array(want)).max()))
    del llm
    assert worst < 1e-3, f"{path}: llama.cpp logits differ from the goldens by {worst:g}"
    print(f"  llama.cpp agrees on {path}: max |diff| {worst:.2e}")


# ---------------------------------------------------------------- main

def main():
    if not os.path.isdir("tests/golden"):
        sys.exit("run from the repository root")
    os.makedirs(OUT, exist_ok=True)
    P = prompts_for(1, [6, 1, 13], 256)           # short prompts
    PW = prompts_for(2, [7, 1, 20], 256)          # longer than the window (8)

    # llama: GQA, untied
    llama = build(LlamaConfig(**COMMON, tie_word_embeddings=False), seed=10)
    llama = save("llama", llama, P)

    save("llama_tied", build(LlamaConfig(**COMMON, tie_word_embeddings=True), seed=11), P)

    rope = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    m = build(LlamaConfig(**COMMON, tie_word_embeddings=True, rope_parameters=rope), seed=12)
    plain = build(LlamaConfig(**COMMON, tie_word_embeddings=True), seed=12)
    differs(logits_of(m, P[2]), logits_of(plain, P[2]), "llama3 rope scaling")
    save("llama3_rope", m, P)

    # mistral: sliding window 8 on every layer
    W = 8
    m = build(MistralConfig(**COMMON, sliding_window=W, tie_word_embeddings=False), seed=13)
    nowin = build(MistralConfig(**COMMON, sliding_window=None, tie_word_embeddings=False), seed=13)
    a, b = logits_of(m, PW[2]), logits_of(nowin, PW[2])
    assert torch.allclose(a[:W], b[:W], atol=1e-6), "mistral window changed positions < window"
    d = differs(a[W:], b[W:], "mistral sliding window")
    print(f"mistral: the window changes positions >= {W} by up to {d:.3f}")
    save("mistral", m, PW)

    # qwen2: q/k/v biases
    m = build(Qwen2Config(**COMMON, tie_word_embeddings=True), seed=14)
    assert all(float(p.detach().abs().max()) > 0 for n, p in m.named_parameters() if n.endswith("bias"))
    assert sum(1 for n, _ in m.named_parameters() if n.endswith("bias")) == 3 * COMMON["num_hidden_layers"]
    save("qwen2", m, P)

    # gemma2
    gk = dict(COMMON, head_dim=24, query_pre_attn_scalar=32, attn_logit_softcapping=2.0,
              final_logit_softcapping=4.0, sliding_window=W, tie_word_embeddings=True,
              hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6)
    m = build(Gemma2Config(**gk), seed=15)
    assert m.config.layer_types == ["sliding_attention", "full_attention"], m.config.layer_types
    a = logits_of(m, PW[2])
    for key, what in (("attn_logit_softcapping", "gemma2 attention soft-cap"),
                      ("final_logit_softcapping", "gemma2 final soft-cap")):
        v = build(Gemma2Config(**dict(gk, **{key: None})), seed=15)
        differs(a, logits_of(v, PW[2]), what)
    v = build(Gemma2Config(**dict(gk, sliding_window=1000)), seed=15)  # window > prompt
    b = logits_of(v, PW[2])
    assert torch.allclose(a[:W], b[:W], atol=1e-6), "gemma2 window changed positions < window"
    differs(a[W:], b[W:], "gemma2 sliding window")
    save("gemma2", m, PW)

    # bf16 weights
    save("llama_bf16", build(LlamaConfig(**COMMON, tie_word_embeddings=False), seed=16,
                             dtype=torch.bfloat16), P)

    # sharded
    m = build(LlamaConfig(**COMMON, tie_word_embeddings=False), seed=17)
    save("llama_sharded", m, P, save_kw={"max_shard_size": "160KB"})
    shards = [f for f in os.listdir(os.path.join(OUT, "llama_sharded")) if f.endswith(".safetensors")]
    assert os.path.exists(os.path.join(OUT, "llama_sharded", "model.safetensors.index.json"))
    assert 2 <= len(shards) <= 4, shards

    # GGUF versions of llama
    for name, f16 in (("llama.gguf", False), ("llama_f16.gguf", True)):
        path = os.path.join(OUT, name)
        write_gguf(path, llama, f16)
        src = f16_rounded(llama) if f16 else llama
        g = golden_of(src, P, {"source": "llama/ (HF)" + (" with 2-D weights rounded to fp16" if f16 else "")})
        write_json(path + ".json", g)
        print(f"{name}: {os.path.getsize(path)} bytes, greedy {g['greedy']}")
        llamacpp_check(path, g)

    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print(f"total {total / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    main()

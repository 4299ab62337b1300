#!/usr/bin/env python3
"""make_tinyllama_shape.py — a llama model with the shapes of TinyLlama-1.1B
(d=2048, FFN 5632, 22 layers, 32 heads, 4 KV heads, vocab 32000, untied head)
and random weights, for speed measurements (decode speed depends on the
shapes, not the values). Writes, from the same weights:

  OUT/hf/config.json + OUT/hf/model.safetensors   (F16, HF layout; no tokenizer)
  OUT/tinyllama-shape-f16.gguf                    (F16 GGUF v3, llama.cpp layout:
                                                  Q/K rows permuted as llama.cpp's
                                                  converter does, norms in F32,
                                                  the Llama 2 vocabulary)

The GGUF vocabulary comes from a llama2.c tokenizer.bin (default
../shared/data/llama2-tokenizer/tokenizer.bin): pieces with ' ' turned back
into U+2581, <unk>/<s>/</s> as unknown/control tokens, <0xXX> as byte tokens.
Weights ~ N(0, 0.02^2) (numpy default_rng(seed)), norms 1.

Not here: quantizing (matquant quantize; llama.cpp's quantize through
bench/vs-llamacpp.sh). Usage:
  python3 scripts/make_tinyllama_shape.py OUT [--layers 22] [--seed 0] [--tokenizer PATH]
Needs numpy only (formats written by hand: safetensors header, GGUF v3 per
ggml docs/gguf.md).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

CFG = dict(dim=2048, hidden=5632, layers=22, heads=32, kv_heads=4, vocab=32000, ctx=2048, eps=1e-5, theta=10000.0)


def tensors(c):
    """(hf name, gguf name, shape (rows, cols) or (n,), kind) in file order."""
    C, F, D = c["dim"], c["hidden"], c["dim"] // c["heads"]
    KD = c["kv_heads"] * D
    out = [("model.embed_tokens.weight", "token_embd.weight", (c["vocab"], C), "w")]
    for l in range(c["layers"]):
        h, g = f"model.layers.{l}.", f"blk.{l}."
        out += [
            (h + "input_layernorm.weight", g + "attn_norm.weight", (C,), "norm"),
            (h + "self_attn.q_proj.weight", g + "attn_q.weight", (C, C), "q"),
            (h + "self_attn.k_proj.weight", g + "attn_k.weight", (KD, C), "k"),
            (h + "self_attn.v_proj.weight", g + "attn_v.weight", (KD, C), "w"),
            (h + "self_attn.o_proj.weight", g + "attn_output.weight", (C, C), "w"),
            (h + "post_attention_layernorm.weight", g + "ffn_norm.weight", (C,), "norm"),
            (h + "mlp.gate_proj.weight", g + "ffn_gate.weight", (F, C), "w"),
            (h + "mlp.up_proj.weight", g + "ffn_up.weight", (F, C), "w"),
            (h + "mlp.down_proj.weight", g + "ffn_down.weight", (C, F), "w"),
        ]
    out += [("model.norm.weight", "output_norm.weight", (C,), "norm"),
            ("lm_head.weight", "output.weight", (c["vocab"], C), "w")]
    return out


def permute(w, n_head):
    """HF rotate-half rows -> llama.cpp's interleaved rows (its converter's permute)."""
    r, cols = w.shape
    return w.reshape(n_head, 2, r // n_head // 2, cols).swapaxes(1, 2).reshape(r, cols)


def read_llama2c_vocab(path, n):
    with open(path, "rb") as f:
        f.read(4)
        toks, scores = [], []
        for _ in range(n):
            s, ln = struct.unpack("<fi", f.read(8))
            toks.append(f.read(ln).decode("utf-8", errors="replace"))
            scores.append(s)
    types = []
    for i, t in enumerate(toks):
        t = t.strip("\n") if i in (1, 2) else t
        toks[i] = t
        if i == 0:
            types.append(2)  # unknown
        elif i in (1, 2):
            types.append(3)  # control
        elif len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
            types.append(6)  # byte
        else:
            types.append(1)
            toks[i] = t.replace(" ", "\u2581")
    return toks, scores, types


# ---------------------------------------------------------------- GGUF v3
def g_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def g_kv(key, typ, val):
    out = g_str(key) + struct.pack("<I", typ)
    if typ == 4:
        out += struct.pack("<I", val)
    elif typ == 6:
        out += struct.pack("<f", val)
    elif typ == 8:
        out += g_str(val)
    return out


def g_arr(key, elem, vals):
    out = g_str(key) + struct.pack("<IIQ", 9, elem, len(vals))
    if elem == 8:
        out += b"".join(g_str(v) for v in vals)
    elif elem == 6:
        out += np.asarray(vals, dtype="<f4").tobytes()
    elif elem == 5:
        out += np.asarray(vals, dtype="<i4").tobytes()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=CFG["layers"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", default=os.path.join(os.environ.get("MQ_SHARED_DATA", "../shared/data"),
                                                        "llama2-tokenizer", "tokenizer.bin"))
    a = ap.parse_args()
    c = dict(CFG, layers=a.layers)
    if not os.path.exists(a.tokenizer):
        sys.exit(f"make_tinyllama_shape: {a.tokenizer}: no such file (give --tokenizer)")
    toks, scores, types = read_llama2c_vocab(a.tokenizer, c["vocab"])
    hf = os.path.join(a.out, "hf")
    os.makedirs(hf, exist_ok=True)
    D = c["dim"] // c["heads"]
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": c["dim"],
           "intermediate_size": c["hidden"], "num_hidden_layers": c["layers"], "num_attention_heads": c["heads"],
           "num_key_value_heads": c["kv_heads"], "vocab_size": c["vocab"], "max_position_embeddings": c["ctx"],
           "rms_norm_eps": c["eps"], "rope_theta": c["theta"], "tie_word_embeddings": False, "hidden_act": "silu",
           "torch_dtype": "float16", "bos_token_id": 1, "eos_token_id": 2}
    with open(os.path.join(hf, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    ts = tensors(c)
    # safetensors header (all F16), GGUF header (norms F32, matrices F16)
    hdr, off = {}, 0
    for hn, _, shp, _ in ts:
        n = int(np.prod(shp)) * 2
        hdr[hn] = {"dtype": "F16", "shape": list(shp), "data_offsets": [off, off + n]}
        off += n
    hdr["__metadata__"] = {"format": "pt", "source": "make_tinyllama_shape.py random weights"}
    hj = json.dumps(hdr, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    kv = [g_kv("general.architecture", 8, "llama"), g_kv("general.name", 8, "tinyllama-shape-random"),
          g_kv("general.alignment", 4, 32), g_kv("general.file_type", 4, 1),
          g_kv("llama.context_length", 4, c["ctx"]), g_kv("llama.embedding_length", 4, c["dim"]),
          g_kv("llama.block_count", 4, c["layers"]), g_kv("llama.feed_forward_length", 4, c["hidden"]),
          g_kv("llama.rope.dimension_count", 4, D), g_kv("llama.attention.head_count", 4, c["heads"]),
          g_kv("llama.attention.head_count_kv", 4, c["kv_heads"]),
          g_kv("llama.attention.layer_norm_rms_epsilon", 6, c["eps"]), g_kv("llama.rope.freq_base", 6, c["theta"]),
          g_kv("tokenizer.ggml.model", 8, "llama"), g_arr("tokenizer.ggml.tokens", 8, toks),
          g_arr("tokenizer.ggml.scores", 6, scores), g_arr("tokenizer.ggml.token_type", 5, types),
          g_kv("tokenizer.ggml.bos_token_id", 4, 1), g_kv("tokenizer.ggml.eos_token_id", 4, 2),
          g_kv("tokenizer.ggml.unknown_token_id", 4, 0)]
    infos, goff = [], 0
    for _, gn, shp, kind in ts:
        es = 4 if kind == "norm" else 2
        n = int(np.prod(shp)) * es
        dims = list(reversed(shp))
        infos.append(g_str(gn) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) +
                     struct.pack("<IQ", 0 if kind == "norm" else 1, goff))
        goff += n + (-n % 32)
    gh = b"GGUF" + struct.pack("<IQQ", 3, len(ts), len(kv)) + b"".join(kv) + b"".join(infos)
    gh += b"\0" * (-len(gh) % 32)
    rng = np.random.default_rng(a.seed)
    gpath = os.path.join(a.out, "tinyllama-shape-f16.gguf")
    with open(os.path.join(hf, "model.safetensors.tmp"), "wb") as fs, open(gpath + ".tmp", "wb") as fg:
        fs.write(struct.pack("<Q", len(hj)) + hj)
        fg.write(gh)
        for i, (hn, gn, shp, kind) in enumerate(ts):
            if kind == "norm":
                w = np.ones(shp, dtype=np.float32)
            else:
                w = (rng.standard_normal(shp, dtype=np.float32) * 0.02)
            fs.write(w.astype("<f2").tobytes())
            if kind == "q":
                w = permute(w, c["heads"])
            elif kind == "k":
                w = permute(w, c["kv_heads"])
            b = w.astype("<f4" if kind == "norm" else "<f2").tobytes()
            fg.write(b + b"\0" * (-len(b) % 32))
            print(f"\r{i + 1}/{len(ts)} tensors", end="", file=sys.stderr)
    print(file=sys.stderr)
    os.replace(os.path.join(hf, "model.safetensors.tmp"), os.path.join(hf, "model.safetensors"))
    os.replace(gpath + ".tmp", gpath)
    print(f"wrote {hf} and {gpath}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""golden_qat.py — the PyTorch golden of MatQuant-QAT (src/train/qat.c),
which tests/test_qat.c compares against.

Writes tests/golden/qat_tiny/: a tiny random llama (config.json +
model.safetensors, F32; C 32, F 48, 2 layers, 4 heads / 2 kv heads of 8,
V 64, untied head) and golden.json with, for one configuration of qat.c
(scope all: every linear fake-quantized per output channel on the int8 parent
grid, R = {8,4,2}, lambda (1, 1, 2), co-distillation 8:2 with weight 0.5,
B 2 x T 8 tokens per step):

  - the loss, the KL of each slice and the gradient of every trained tensor
    (W, lwc_upper, lwc_lower of each linear) at step 0;
  - the losses of the first 10 steps of AdamW (betas 0.9/0.95, eps 1e-8,
    lr 1e-3 for W with decoupled weight decay 0.01, lr 1e-2 for the LWC
    logits without decay), 2 warmup steps then cosine to 10 % over the 10
    steps, global gradient norm clipped to 1.0 — each step on its own batch
    (the tokens are in the file).

The model is written here from the formulas, autograd doing the backward (no
hand-written gradient): embedding, RMSNorm, rotate-half RoPE, causal GQA
attention, SwiGLU, the LM head, log-softmax and
  L = sum_r lambda_r KL(p_teacher || p_r) + 0.5 KL(sg(p_8) || p_2)
(KL the mean over positions), the teacher being the unquantized model. The
fake quantizer is the LWC one of src/train/ops.h:
  hi' = max(sigmoid(u) max(W_row), 0),  lo' = min(sigmoid(l) min(W_row), 0)
  a = (hi' - lo') / 255,  z = clamp(round(-lo'/a), 0, 255)
  q = clamp(round(W/a) + z, 0, 255),  s = 2^d min(floor((q + 2^(d-1)) / 2^d), 2^r - 1)
  W_r = a (s - z)
round and floor straight-through (x + (round(x) - x).detach()), the clamps
with torch.clamp's own gradient.

Run from the repository root: python3 scripts/golden_qat.py
(torch pinned in scripts/requirements.txt; CPU, fp32, one thread).
"""
import json
import math
import os
import struct
import sys

import torch

PINNED_TORCH = "2.15"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "qat_tiny")
CFG = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, head_dim=8, vocab_size=64, max_position_embeddings=64,
           rms_norm_eps=1e-5, rope_theta=10000.0)
B, T, STEPS = 2, 8, 10
BITS, LAMBDA = [8, 4, 2], [1.0, 1.0, 2.0]
CO = (8, 2, 0.5)
LR, LR_CLIP, WD, MIN_FRAC, WARMUP, CLIP = 1e-3, 1e-2, 0.01, 0.1, 2, 1.0
KINDS = [("q", "self_attn.q_proj"), ("k", "self_attn.k_proj"), ("v", "self_attn.v_proj"),
         ("o", "self_attn.o_proj"), ("gate", "mlp.gate_proj"), ("up", "mlp.up_proj"),
         ("down", "mlp.down_proj")]


def f32(t):
    """float32 values with 9 significant digits (exact round trip)."""
    return [float(f"{v:.9g}") for v in t.reshape(-1).tolist()]


def write_safetensors(path, tensors):
    hdr, off, blobs = {}, 0, []
    for name, t in tensors.items():
        b = t.contiguous().numpy().tobytes() if hasattr(t, "numpy") else t
        hdr[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def make_model(gen):
    C, F, V = CFG["hidden_size"], CFG["intermediate_size"], CFG["vocab_size"]
    H, KV, D = CFG["num_attention_heads"], CFG["num_key_value_heads"], CFG["head_dim"]
    shapes = {"q": (H * D, C), "k": (KV * D, C), "v": (KV * D, C), "o": (C, H * D),
              "gate": (F, C), "up": (F, C), "down": (C, F)}
    t = {"model.embed_tokens.weight": torch.randn(V, C, generator=gen)}
    for layer in range(CFG["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        t[p + "input_layernorm.weight"] = 1 + 0.1 * torch.randn(C, generator=gen)
        t[p + "post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(C, generator=gen)
        for k, hf in KINDS:
            rows, cols = shapes[k]
            t[p + hf + ".weight"] = torch.randn(rows, cols, generator=gen) * (1.5 / math.sqrt(cols))
    t["model.norm.weight"] = 1 + 0.1 * torch.randn(C, generator=gen)
    t["lm_head.weight"] = torch.randn(V, C, generator=gen) * (2.0 / math.sqrt(C))
    return {k: v.float() for k, v in t.items()}


def round_ste(x):
    return x + (torch.round(x) - x).detach()


def floor_ste(x):
    return x + (torch.floor(x) - x).detach()


def fake_quant(w, u, l, r):
    """Per output channel on the int8 parent grid, sliced to r bits."""
    hi = torch.clamp(torch.sigmoid(u) * w.amax(dim=1), min=0.0)
    lo = torch.clamp(torch.sigmoid(l) * w.amin(dim=1), max=0.0)
    a = (hi - lo) / 255.0
    z = torch.clamp(round_ste(-lo / a), 0.0, 255.0)
    q = torch.clamp(round_ste(w / a[:, None]) + z[:, None], 0.0, 255.0)
    d = 8 - r
    if d > 0:
        p2 = float(2 ** d)
        s = torch.clamp(floor_ste((q + p2 / 2) / p2), max=float(2 ** r - 1)) * p2
    else:
        s = q
    return a[:, None] * (s - z[:, None])


def rmsnorm(x, g):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + CFG["rms_norm_eps"]) * g


def rope(x, n_heads):
    D = CFG["head_dim"]
    inv = 1.0 / (CFG["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]
    x = x.reshape(B, T, n_heads, D)
    a, c = x[..., : D // 2], x[..., D // 2:]
    return torch.cat([a * cos - c * sin, c * cos + a * sin], dim=-1)


def forward(t, W, tokens):
    """log-probabilities (B*T, V); W maps (layer, kind) to the weight used."""
    H, KV, D = CFG["num_attention_heads"], CFG["num_key_value_heads"], CFG["head_dim"]
    x = t["model.embed_tokens.weight"][tokens]  # (B, T, C)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    for layer in range(CFG["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        xn = rmsnorm(x, t[p + "input_layernorm.weight"])
        q = rope(xn @ W[layer, "q"].T, H).transpose(1, 2)  # (B, H, T, D)
        k = rope(xn @ W[layer, "k"].T, KV).transpose(1, 2)
        v = (xn @ W[layer, "v"].T).reshape(B, T, KV, D).transpose(1, 2)
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        s = (q @ k.transpose(2, 3)) / math.sqrt(D)
        pr = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1)
        x = x + (pr @ v).transpose(1, 2).reshape(B, T, H * D) @ W[layer, "o"].T
        xn = rmsnorm(x, t[p + "post_attention_layernorm.weight"])
        h = torch.nn.functional.silu(xn @ W[layer, "gate"].T) * (xn @ W[layer, "up"].T)
        x = x + h @ W[layer, "down"].T
    logits = rmsnorm(x, t["model.norm.weight"]) @ t["lm_head.weight"].T
    return torch.log_softmax(logits.reshape(B * T, -1), dim=-1)


def kl(logp_t, logp_s):
    return (logp_t.exp() * (logp_t - logp_s)).sum(-1).mean()


def lr_at(step, peak):
    if step < WARMUP:
        return peak * (step + 1) / WARMUP
    span = STEPS - WARMUP - 1
    p = min(1.0, (step - WARMUP) / span)
    lo = peak * MIN_FRAC
    return lo + (peak - lo) * 0.5 * (1 + math.cos(math.pi * p))


def main():
    if not torch.__version__.startswith(PINNED_TORCH):
        sys.exit(f"torch {torch.__version__}: the golden is pinned to {PINNED_TORCH}.x (scripts/requirements.txt)")
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(2025)
    t = make_model(gen)
    V = CFG["vocab_size"]
    tokens = torch.randint(0, V, (1, B, T), generator=gen).repeat(STEPS, 1, 1)  # one batch, every step
    teacher = {(layer, k): t[f"model.layers.{layer}.{hf}.weight"] for layer in range(2) for k, hf in KINDS}
    # trained tensors, in qat.c's order: per layer, per kind q k v o gate up down: W, u, l
    names, params = [], []
    for layer in range(CFG["num_hidden_layers"]):
        for k, hf in KINDS:
            base = f"model.layers.{layer}.{hf}"
            w = teacher[layer, k].clone().requires_grad_(True)
            u = torch.full((w.shape[0],), 4.0, requires_grad=True)
            lo = torch.full((w.shape[0],), 4.0, requires_grad=True)
            names += [base + ".weight", base + ".lwc_upper", base + ".lwc_lower"]
            params += [w, u, lo]

    def loss_fn(tok):
        with torch.no_grad():
            lt = forward(t, teacher, tok)
        total, per, src = 0.0, [], None
        for bits, lam in zip(BITS, LAMBDA):
            W = {}
            i = 0
            for layer in range(CFG["num_hidden_layers"]):
                for k, _ in KINDS:
                    W[layer, k] = fake_quant(params[i], params[i + 1], params[i + 2], bits)
                    i += 3
            ls = forward(t, W, tok)
            d = kl(lt, ls)
            per.append(d.item())
            total = total + lam * d
            if bits == CO[0]:
                src = ls.detach()
            if bits == CO[1]:
                total = total + CO[2] * kl(src, ls)
        return total, per

    weights = [p for n, p in zip(names, params) if n.endswith(".weight")]
    clips = [p for n, p in zip(names, params) if not n.endswith(".weight")]
    opt = torch.optim.AdamW([{"params": weights, "lr": LR, "weight_decay": WD},
                             {"params": clips, "lr": LR_CLIP, "weight_decay": 0.0}],
                            betas=(0.9, 0.95), eps=1e-8)
    losses, gnorms, out = [], [], {}
    for step in range(STEPS):
        opt.zero_grad()
        loss, per = loss_fn(tokens[step])
        loss.backward()
        if step == 0:
            out["loss0"], out["kl0"] = loss.item(), per
            out["grad0"] = {n: f32(p.grad) for n, p in zip(names, params)}
        losses.append(loss.item())
        norm = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in params))
        gnorms.append(norm)
        coef = min(1.0, CLIP / norm) if norm > 0 else 1.0
        for p in params:
            p.grad.mul_(coef)
        opt.param_groups[0]["lr"] = lr_at(step, LR)
        opt.param_groups[1]["lr"] = lr_at(step, LR_CLIP)
        opt.step()
    assert losses[-1] < losses[0], "10 steps should lower the loss"
    out.update({"generator": "scripts/golden_qat.py", "torch": torch.__version__, "B": B, "T": T,
                "steps": STEPS, "bits": BITS, "lambda": LAMBDA, "co_distill": list(CO), "lr": LR,
                "lr_clip": LR_CLIP, "weight_decay": WD, "min_lr_frac": MIN_FRAC, "warmup": WARMUP,
                "clip": CLIP, "tokens": tokens.reshape(STEPS, B * T).tolist(), "losses": losses,
                "gnorms": gnorms})
    os.makedirs(OUT, exist_ok=True)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
           "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "attention_bias": False,
           "rope_parameters": {"rope_theta": CFG["rope_theta"], "rope_type": "default"}, "dtype": "float32"}
    cfg.update({k: v for k, v in CFG.items() if k != "rope_theta"})
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(OUT, "model.safetensors"), t)
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump(out, f)
    print(f"loss {losses[0]:.6f} -> {losses[-1]:.6f} in {STEPS} steps; KL at step 0 {out['kl0']}")
    print("wrote", OUT, os.path.getsize(os.path.join(OUT, "golden.json")), "bytes of golden.json")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""golden_omniquant.py — the PyTorch golden of one MatQuant-OmniQuant block
step, which tests/test_omniquant.c compares train/omniquant.c against.

The block is a layer of the tiny random llama in tests/golden/models/llama
(C 64, F 128, 4 heads / 2 kv heads of 16, made by make_golden.py), written
here from the formulas with autograd doing the backward (no hand-written
gradient): RMSNorm, rotate-half RoPE, causal GQA attention, SwiGLU, and the
LWC fake quantizer of src/train/ops.h

    hi' = max(sigmoid(u) max(W_k), 0),  lo' = min(sigmoid(l) min(W_k), 0)
    a = (hi' - lo') / (2^N - 1),  z = clamp(round(-lo'/a), 0, 2^N - 1)
    q = clamp(round(W / a) + z, 0, 2^N - 1)
    s = 2^d min(floor((q + 2^(d-1)) / 2^d), 2^r - 1)      (d = N - r)
    Wq = a (s - z)

with round and floor straight-through (x + (round(x) - x).detach()) and
torch.clamp's own gradient (passes inside the range, inclusive). The loss of
one sequence x (T, C) against the fp block's output y:

    sum_r lambda_r MSE(block_r(x), y) [+ MSE(block_lo(x), block_hi(x).detach())]

Cases (all in golden/omniquant.json):
  ffn   layer 0, gate/up/down quantized per output channel, R = {8,4,2},
        lambda (1, 1, 2)
  all   layer 1, every linear quantized in groups of 32, R = {8,4,2},
        lambda (1,1,1), LET scales (init sqrt(max|xn|) / sqrt(max|W|) per
        channel) between both norms and q/k/v resp. gate/up, co-distillation 8:2
For each: x, y, the loss and the gradient of the flat parameter vector at
the initial parameters (u = l = 4), and the parameters and loss after 3 AdamW
steps (lr 1e-2 for LWC, 5e-3 for LET, weight decay 0) on the same sequence.
Flat layout (omniquant.h): per quantized linear in kind order q, k, v, o,
gate, up, down: u (rows, G) then l (rows, G); then s_attn (C), s_ffn (C).

Run from the repository root: python3 scripts/golden_omniquant.py
(torch pinned in scripts/requirements.txt; CPU, fp32).
"""
import json
import os
import struct
import sys

import torch

PINNED_TORCH = "2.15"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODEL = os.path.join(ROOT, "tests", "golden", "models", "llama")
OUT = os.path.join(ROOT, "tests", "golden", "omniquant.json")
T = 8


def load_safetensors(path):
    """Tensors of an F32 safetensors file (the format is a JSON header)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    hdr = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (name, t["dtype"])
        a, b = t["data_offsets"]
        buf = bytearray(data[base + a: base + b])
        out[name] = torch.frombuffer(buf, dtype=torch.float32).reshape(t["shape"]).clone()
    return out


def f32(t):
    """A float32 tensor as a list with 9 significant digits (exact for fp32)."""
    return [float(f"{v:.9g}") for v in t.reshape(-1).tolist()]


def round_ste(x):
    return x + (torch.round(x) - x).detach()


def floor_ste(x):
    return x + (torch.floor(x) - x).detach()


def fakequant(w, u, l, group, N, r):
    rows, cols = w.shape
    G = group if group else cols
    wg = w.reshape(rows, cols // G, G)
    top = float(2 ** N - 1)
    hi = torch.clamp(torch.sigmoid(u) * wg.amax(dim=2), min=0.0)
    lo = torch.clamp(torch.sigmoid(l) * wg.amin(dim=2), max=0.0)
    a = (hi - lo) / top
    z = torch.clamp(round_ste(-lo / a), 0.0, top)
    q = torch.clamp(round_ste(wg / a[..., None]) + z[..., None], 0.0, top)
    d = N - r
    if d > 0:
        p2 = float(2 ** d)
        t = floor_ste((q + p2 / 2) / p2)
        s = torch.clamp(t, max=float(2 ** r - 1)) * p2
    else:
        s = q
    return (a[..., None] * (s - z[..., None])).reshape(rows, cols)


def rmsnorm(x, g, eps):
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return x * r * g


def rope(x, n_heads, D, theta):
    Tn = x.shape[0]
    inv = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    ang = torch.arange(Tn, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = torch.cos(ang), torch.sin(ang)
    x = x.reshape(Tn, n_heads, D)
    a, c = x[..., : D // 2], x[..., D // 2:]
    out = torch.cat([a * cos[:, None] - c * sin[:, None], c * cos[:, None] + a * sin[:, None]], dim=-1)
    return out.reshape(Tn, n_heads * D)


def block(x, W, n1, n2, cfg):
    """W: dict kind -> effective weight; n1, n2: effective norm weights."""
    H, KV, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, theta = cfg["rms_norm_eps"], cfg["rope_parameters"]["rope_theta"]
    Tn = x.shape[0]
    xn = rmsnorm(x, n1, eps)
    q = rope(xn @ W["q"].T, H, D, theta).reshape(Tn, H, D).transpose(0, 1)
    k = rope(xn @ W["k"].T, KV, D, theta).reshape(Tn, KV, D).transpose(0, 1)
    v = (xn @ W["v"].T).reshape(Tn, KV, D).transpose(0, 1)
    k = k.repeat_interleave(H // KV, dim=0)
    v = v.repeat_interleave(H // KV, dim=0)
    s = (q @ k.transpose(1, 2)) / (D ** 0.5)
    mask = torch.triu(torch.ones(Tn, Tn, dtype=torch.bool), 1)
    p = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1)
    att = (p @ v).transpose(0, 1).reshape(Tn, H * D)
    h = x + att @ W["o"].T
    hn = rmsnorm(h, n2, eps)
    a = torch.nn.functional.silu(hn @ W["gate"].T) * (hn @ W["up"].T)
    return h + a @ W["down"].T


KINDS = ["q", "k", "v", "o", "gate", "up", "down"]
HF = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
      "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}


def run_case(name, tensors, cfg, layer, scope, group, bits, lam, let, cd, gen):
    pre = f"model.layers.{layer}."
    Wfp = {k: tensors[pre + HF[k] + ".weight"] for k in KINDS}
    n1 = tensors[pre + "input_layernorm.weight"]
    n2 = tensors[pre + "post_attention_layernorm.weight"]
    C = cfg["hidden_size"]
    x = torch.randn(T, C, generator=gen)
    x = x.float()
    with torch.no_grad():
        y = block(x, Wfp, n1, n2, cfg)
    quant = [k for k in KINDS if scope == "all" or k in ("gate", "up", "down")]
    lwc = []
    for k in quant:
        rows, cols = Wfp[k].shape
        ng = cols // (group if group else cols)
        lwc.append(torch.full((rows, ng), 4.0, requires_grad=True))
        lwc.append(torch.full((rows, ng), 4.0, requires_grad=True))
    lets = []
    if let:
        # s = sqrt(max|xn|) / sqrt(max|W|) per channel, from the fp block on x
        with torch.no_grad():
            xn1 = rmsnorm(x, n1, cfg["rms_norm_eps"])
            xn2 = rmsnorm_h(x, Wfp, n1, n2, cfg)[1]
        pairs = []
        if scope == "all":
            pairs.append((xn1, ["q", "k", "v"]))
        pairs.append((xn2, ["gate", "up"]))
        for xn, ks in pairs:
            amax = xn.abs().amax(dim=0).clamp(min=1e-5)
            wmax = torch.stack([Wfp[k].abs().amax(dim=0) for k in ks]).amax(dim=0).clamp(min=1e-5)
            lets.append((amax.sqrt() / wmax.sqrt()).clamp(min=1e-5).clone().requires_grad_(True))
    params = lwc + lets
    widths = sorted(set(bits) | ({cd[0], cd[1]} if cd else set()), reverse=True)

    def loss_fn():
        s_attn = lets[0] if (let and scope == "all") else None
        s_ffn = lets[-1] if let else None
        g1 = n1 / s_attn if s_attn is not None else n1
        g2 = n2 / s_ffn if s_ffn is not None else n2
        total = 0.0
        out_hi = None
        for r in widths:
            W = dict(Wfp)
            for i, k in enumerate(quant):
                w = Wfp[k]
                if let and k in ("q", "k", "v") and s_attn is not None:
                    w = w * s_attn[None, :]
                if let and k in ("gate", "up"):
                    w = w * s_ffn[None, :]
                W[k] = fakequant(w, lwc[2 * i], lwc[2 * i + 1], group, 8, r)
            out = block(x, W, g1, g2, cfg)
            if r in bits:
                total = total + lam[bits.index(r)] * torch.mean((out - y) ** 2)
            if cd and r == cd[1]:
                total = total + torch.mean((out - out_hi) ** 2)
            if cd and r == cd[0]:
                out_hi = out.detach()
        return total

    groups = [{"params": lwc, "lr": 1e-2}]
    if lets:
        groups.append({"params": lets, "lr": 5e-3})
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    flat = lambda ts: f32(torch.cat([t.detach().reshape(-1) for t in ts]))
    init = flat(params)
    loss0 = None
    grad0 = None
    losses = []
    for step in range(3):
        opt.zero_grad()
        L = loss_fn()
        L.backward()
        if step == 0:
            loss0 = L.item()
            grad0 = flat([p.grad for p in params])
        losses.append(L.item())
        opt.step()
    with torch.no_grad():
        loss3 = loss_fn().item()
    return {"layer": layer, "scope": scope, "group": group, "bits": bits, "lambda": lam, "let": let,
            "co_distill": list(cd) if cd else [], "T": T, "x": f32(x), "y": f32(y),
            "params0": init, "loss0": loss0, "grad0": grad0, "losses": losses,
            "params3": flat(params), "loss3": loss3}


def rmsnorm_h(x, W, n1, n2, cfg):
    """(h, normed h) of the fp block: the FFN's input."""
    H, KV, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, theta = cfg["rms_norm_eps"], cfg["rope_parameters"]["rope_theta"]
    Tn = x.shape[0]
    xn = rmsnorm(x, n1, eps)
    q = rope(xn @ W["q"].T, H, D, theta).reshape(Tn, H, D).transpose(0, 1)
    k = rope(xn @ W["k"].T, KV, D, theta).reshape(Tn, KV, D).transpose(0, 1).repeat_interleave(H // KV, dim=0)
    v = (xn @ W["v"].T).reshape(Tn, KV, D).transpose(0, 1).repeat_interleave(H // KV, dim=0)
    s = (q @ k.transpose(1, 2)) / (D ** 0.5)
    mask = torch.triu(torch.ones(Tn, Tn, dtype=torch.bool), 1)
    p = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1)
    h = x + (p @ v).transpose(0, 1).reshape(Tn, H * D) @ W["o"].T
    return h, rmsnorm(h, n2, eps)


def main():
    if not torch.__version__.startswith(PINNED_TORCH):
        sys.exit(f"torch {torch.__version__}: the golden is pinned to {PINNED_TORCH}.x (scripts/requirements.txt)")
    torch.set_num_threads(1)
    with open(os.path.join(MODEL, "config.json")) as f:
        cfg = json.load(f)
    tensors = load_safetensors(os.path.join(MODEL, "model.safetensors"))
    gen = torch.Generator().manual_seed(1234)
    cases = {
        "ffn": run_case("ffn", tensors, cfg, 0, "ffn", 0, [8, 4, 2], [1.0, 1.0, 2.0], False, None, gen),
        "all": run_case("all", tensors, cfg, 1, "all", 32, [8, 4, 2], [1.0, 1.0, 1.0], True, (8, 2), gen),
    }
    for k, c in cases.items():
        print(f"{k}: loss {c['loss0']:.6e} -> {c['loss3']:.6e} after 3 steps, {len(c['grad0'])} parameters")
    # LWC alone must make progress; with LET and co-distillation 3 steps may not
    assert cases["ffn"]["loss3"] < cases["ffn"]["loss0"], "3 AdamW steps should lower the ffn loss"
    cases["torch"] = torch.__version__
    with open(OUT, "w") as f:
        json.dump(cases, f)
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()

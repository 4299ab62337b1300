#!/usr/bin/env python3
"""qat_vs_torch.py — training throughput of one MatQuant-QAT step, matquant
against PyTorch (CPU) on the same model, batch and threads, in one run.

The step (both sides): the teacher's forward (unquantized, no gradient),
then for each width r in R a forward with every FFN weight fake-quantized at
slice r of the int8 parent (LWC clipping, straight-through rounds), the loss
lambda_r KL(p_teacher || p_r) and its backward into the FFN weights and LWC
logits; then global-norm clipping and AdamW. matquant's side is
`matquant quantize --method qat`, timed from its own per-step log lines
over the steps after the first (so, like PyTorch's side, without loading,
the warm-up step, the final training-state save and the checkpoint write);
PyTorch's side is written here with autograd (eager mode, fp32), timed over
the same number of steps after one warm-up step.

  python3 bench/qat_vs_torch.py [--model stories260K|smollm2] [--threads 2] [--steps 8] [--batch 8] [--seq-len 256]

Models: stories260K (../shared/data; llama2.c weights read here, rotate-half
RoPE applied to them as is — the layout does not change the work) and
SmolLM2-135M (the GGUF of scripts/get-models.sh, dequantized here with the
`gguf` package from PyPI, llama.cpp's Q/K row permutation undone; tied head).
Prints a markdown table: tokens/s of each side and the ratio.
"""
import argparse
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def load_llama2c(path):
    with open(path, "rb") as f:
        data = f.read()
    C, F, L, H, KV, V, S = struct.unpack("<7i", data[:28])
    shared = V > 0
    V = abs(V)
    D = C // H
    buf = torch.frombuffer(bytearray(data[28:]), dtype=torch.float32)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = math.prod(shape)
        t = buf[pos:pos + n].reshape(shape).clone()
        pos += n
        return t

    w = {"emb": take(V, C), "rms1": take(L, C), "wq": take(L, H * D, C), "wk": take(L, KV * D, C),
         "wv": take(L, KV * D, C), "wo": take(L, C, H * D), "rms2": take(L, C), "w1": take(L, F, C),
         "w2": take(L, C, F), "w3": take(L, F, C), "rmsf": take(C)}
    take(S * D // 2)
    take(S * D // 2)
    w["head"] = w["emb"] if shared else take(V, C)
    return dict(C=C, F=F, L=L, H=H, KV=KV, V=V, D=D, theta=10000.0, eps=1e-5), w


def load_gguf(path):
    import gguf
    import numpy as np
    r = gguf.GGUFReader(path)

    def field(name):
        f = r.fields[name]
        return f.parts[f.data[0]][0]

    C, F, L = int(field("llama.embedding_length")), int(field("llama.feed_forward_length")), int(field("llama.block_count"))
    H, KV = int(field("llama.attention.head_count")), int(field("llama.attention.head_count_kv"))
    theta, eps = float(field("llama.rope.freq_base")), float(field("llama.attention.layer_norm_rms_epsilon"))
    D = C // H
    t = {}
    for x in r.tensors:
        a = gguf.quants.dequantize(x.data, x.tensor_type).astype(np.float32)
        t[x.name] = torch.from_numpy(np.ascontiguousarray(a.reshape([int(d) for d in reversed(x.shape)])))
    V = t["token_embd.weight"].shape[0]

    def unpermute(m, n):  # llama.cpp interleaves the two RoPE halves of each head's rows
        return m.reshape(n, D // 2, 2, C).transpose(1, 2).reshape(n * D, C).contiguous()

    def stack(name, fn=lambda m, i: m):
        return torch.stack([fn(t[f"blk.{i}.{name}.weight"], i) for i in range(L)])

    w = {"emb": t["token_embd.weight"], "rms1": stack("attn_norm"), "wq": stack("attn_q", lambda m, i: unpermute(m, H)),
         "wk": stack("attn_k", lambda m, i: unpermute(m, KV)), "wv": stack("attn_v"), "wo": stack("attn_output"),
         "rms2": stack("ffn_norm"), "w1": stack("ffn_gate"), "w2": stack("ffn_down"), "w3": stack("ffn_up"),
         "rmsf": t["output_norm.weight"]}
    w["head"] = t["output.weight"] if "output.weight" in t else w["emb"]
    return dict(C=C, F=F, L=L, H=H, KV=KV, V=V, D=D, theta=theta, eps=eps), w


def round_ste(x):
    return x + (torch.round(x) - x).detach()


def floor_ste(x):
    return x + (torch.floor(x) - x).detach()


def fake_quant(w, u, l, r):
    hi = torch.clamp(torch.sigmoid(u) * w.amax(dim=1), min=0.0)
    lo = torch.clamp(torch.sigmoid(l) * w.amin(dim=1), max=0.0)
    a = (hi - lo) / 255.0
    z = torch.clamp(round_ste(-lo / a), 0.0, 255.0)
    q = torch.clamp(round_ste(w / a[:, None]) + z[:, None], 0.0, 255.0)
    d = 8 - r
    if d > 0:
        p2 = float(2 ** d)
        q = torch.clamp(floor_ste((q + p2 / 2) / p2), max=float(2 ** r - 1)) * p2
    return a[:, None] * (q - z[:, None])


def rmsnorm(x, g, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g


def forward(cfg, w, ffn, tokens, cos, sin):
    B, T = tokens.shape
    H, KV, D = cfg["H"], cfg["KV"], cfg["D"]
    x = w["emb"][tokens]
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)

    def rope(t, n):
        t = t.reshape(B, T, n, D)
        a, c = t[..., : D // 2], t[..., D // 2:]
        return torch.cat([a * cos - c * sin, c * cos + a * sin], dim=-1).transpose(1, 2)

    for i in range(cfg["L"]):
        xn = rmsnorm(x, w["rms1"][i], cfg["eps"])
        q = rope(xn @ w["wq"][i].T, H)
        k = rope(xn @ w["wk"][i].T, KV).repeat_interleave(H // KV, dim=1)
        v = (xn @ w["wv"][i].T).reshape(B, T, KV, D).transpose(1, 2).repeat_interleave(H // KV, dim=1)
        p = torch.softmax(((q @ k.transpose(2, 3)) / math.sqrt(D)).masked_fill(mask, float("-inf")), dim=-1)
        x = x + (p @ v).transpose(1, 2).reshape(B, T, H * D) @ w["wo"][i].T
        xn = rmsnorm(x, w["rms2"][i], cfg["eps"])
        g, u, dn = ffn[i]
        x = x + (torch.nn.functional.silu(xn @ g.T) * (xn @ u.T)) @ dn.T
    logits = rmsnorm(x, w["rmsf"], cfg["eps"]) @ w["head"].T
    return torch.log_softmax(logits.reshape(B * T, -1), dim=-1)


def torch_tokens_per_s(cfg, w, data, args, bits, lam):
    B, T = args.batch, args.seq_len
    D = cfg["D"]
    inv = 1.0 / (cfg["theta"] ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]
    teacher = [(w["w1"][i], w["w3"][i], w["w2"][i]) for i in range(cfg["L"])]
    lat = [[t.clone().requires_grad_(True) for t in layer] for layer in teacher]
    lwc = [[(torch.full((t.shape[0],), 4.0, requires_grad=True), torch.full((t.shape[0],), 4.0, requires_grad=True))
            for t in layer] for layer in teacher]
    params = [p for layer in lat for p in layer] + [p for layer in lwc for pair in layer for p in pair]
    opt = torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)

    def step(tokens):
        opt.zero_grad()
        with torch.no_grad():
            lt = forward(cfg, w, teacher, tokens, cos, sin)
        pt = lt.exp()
        for r, lm in zip(bits, lam):
            ffn = [[fake_quant(lat[i][k], lwc[i][k][0], lwc[i][k][1], r) for k in range(3)] for i in range(cfg["L"])]
            ls = forward(cfg, w, ffn, tokens, cos, sin)
            loss = lm * (pt * (lt - ls)).sum(-1).mean()
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    step(data[0])
    t0 = time.perf_counter()
    for s in range(args.steps):
        step(data[(s + 1) % len(data)])
    return args.steps * B * T / (time.perf_counter() - t0)


def matquant_tokens_per_s(args, bits, tmp, text, model):
    out = os.path.join(tmp, "qat-bench")
    cmd = [args.bin, "quantize", *model, "-o", out, "--method", "qat", "--train-bits",
           ",".join(map(str, bits)), "--data", text, "--tokens", str((args.steps + 1) * args.batch * args.seq_len),
           "--seq-len", str(args.seq_len), "--batch", str(args.batch), "--lr", "5e-4", "--warmup", "1",
           "-t", str(args.threads), "--save-every", "0"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"matquant failed: {r.stderr}")
    m = re.search(r"trained (\d+) steps \((\d+) tokens per step\) in ([0-9.]+)s", r.stderr)
    subprocess.run(["rm", "-rf", out, out + ".qat-state"])
    per_step = int(m.group(2))
    # The step lines give tokens/s over the steps since the previous line; the
    # first line is step 1 alone. Timed like PyTorch's side: the steps after
    # the first (the warm-up), without loading, the final state save and the
    # checkpoint write.
    lines = [(int(a), float(b)) for a, b in re.findall(r"step (\d+)/\d+ loss .* ([0-9.]+) tok/s", r.stderr)]
    tokens = seconds = 0.0
    for (prev, _), (step, rate) in zip(lines, lines[1:]):
        tokens += (step - prev) * per_step
        seconds += (step - prev) * per_step / rate
    if tokens == 0:  # a single step: the whole training line
        return int(m.group(1)) * per_step / float(m.group(3))
    return tokens / seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["stories260K", "smollm2"], default="stories260K")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=None, help="default 8 (stories260K), 4 (smollm2)")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "matquant"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = os.environ.get("MQ_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
    if args.model == "stories260K":
        args.batch = args.batch or 8
        cfg, w = load_llama2c(os.path.join(data_dir, "stories260K", "stories260K.bin"))
        model = [os.path.join(data_dir, "stories260K", "stories260K.bin"), "--tokenizer",
                 os.path.join(data_dir, "stories260K", "tok512.bin")]
    else:
        args.batch = args.batch or 4
        gguf_path = subprocess.run([os.path.join(ROOT, "scripts", "get-models.sh")], capture_output=True, text=True,
                                   check=True).stdout.split()[-1]
        cfg, w = load_gguf(gguf_path)
        model = [gguf_path]
    gen = torch.Generator().manual_seed(0)
    data = [torch.randint(0, cfg["V"], (args.batch, args.seq_len), generator=gen) for _ in range(4)]
    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "stories260K":
            text = os.path.join(tmp, "train.txt")
            with open(os.path.join(data_dir, "tinystories", "tinystories_validation_head.txt"), "rb") as f:
                f.seek(-300000, 2)
                open(text, "wb").write(f.read())
        else:
            text = os.path.join(data_dir, "c4", "c4-validation.00000-of-00008.head1025.jsonl")
        print(f"| R | matquant tok/s | PyTorch {torch.__version__} tok/s | ratio |")
        print("|---|---|---|---|")
        for bits, lam in (([8, 4, 2], [1.0, 1.0, 1.0]), ([2], [1.0])):
            mq = matquant_tokens_per_s(args, bits, tmp, text, model)
            tt = torch_tokens_per_s(cfg, w, data, args, bits, lam)
            print(f"| {{{','.join(map(str, bits))}}} | {mq:.0f} | {tt:.0f} | {mq / tt:.2f} |", flush=True)
    print(f"\n{args.model}, batch {args.batch} x {args.seq_len} tokens, {args.steps} timed steps, "
          f"{args.threads} threads, FFN scope, per channel")


if __name__ == "__main__":
    main()

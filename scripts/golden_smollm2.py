#!/usr/bin/env python3
"""golden_smollm2.py — goldens of the real SmolLM2-135M-Instruct (the Q4_1
GGUF scripts/get-models.sh fetches) from transformers, for
tests/test_smollm2.c.

transformers loads the GGUF itself (from_pretrained(dir, gguf_file=...)):
it dequantizes every tensor to fp32 with gguf-py and undoes llama.cpp's q/k
row permutation, so this is an implementation independent of matquant's
GGUF reader, dequantizer and forward pass. The tokenizer comes from the same
file; the ids actually used are recorded (no BOS is added unless the
tokenizer adds one: SmolLM2's add_bos_token is false).

For each prompt: greedy 32 new tokens (argmax of a cache-free forward at
each step, not stopping at EOS; checked against generate(do_sample=False)
up to where that stops at EOS) and, from one
cache-free fp32 eager forward over prompt + generated ids, the top-20
(id, logit) at every position; the full logit vector at the last prompt
position of the first prompt only (49152 values; all three would exceed the
500 KB budget). Logits are rounded to 1e-4 (the test's tolerance is 1e-3).

  python3 scripts/golden_smollm2.py [GGUF]   (default: $MQ_CACHE or
                                               ~/.cache/matquant/SmolLM2-135M-Instruct.Q4_1.gguf)
writes tests/golden/smollm2.json. Run from the repository root.
"""
import json
import os
import sys

import torch

PINNED = {"torch": "2.15", "transformers": "5.23", "gguf": "0.19", "tokenizers": "0.23"}


def _check_versions():
    import importlib.metadata as md
    bad = []
    for pkg, want in PINNED.items():
        got = md.version(pkg)
        if not (got == want or got.startswith(want + ".")):
            bad.append(f"{pkg} {got} (want {want}.x)")
    if bad:
        sys.exit("golden_smollm2.py: pinned versions differ: " + ", ".join(bad))


_check_versions()

import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = ["Once upon a time", "The capital of France is", "def fibonacci(n):"]
N_NEW = 32
TOPK = 20
OUT = "tests/golden/smollm2.json"


def r4(x):
    return round(float(x), 4)


def main():
    if len(sys.argv) > 1:
        path = sys.argv[1]
    else:
        cache = os.environ.get("MQ_CACHE", os.path.expanduser("~/.cache/matquant"))
        path = os.path.join(cache, NAME)
    if not os.path.exists(path):
        sys.exit(f"{path}: not found (scripts/get-models.sh fetches it)")
    d, f = os.path.split(os.path.abspath(path))
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    out = {
        "generator": "scripts/golden_smollm2.py",
        "model": NAME,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "note": "transformers fp32 eager forward of the GGUF dequantized by transformers/gguf-py; "
                "logits rounded to 1e-4; top-20 (id, logit) at every position of prompt + generated; "
                "full logits at the last prompt position of prompt 0",
        "n_new": N_NEW,
        "topk": TOPK,
        "cases": [],
    }
    for i, text in enumerate(PROMPTS):
        ids = tok(text, add_special_tokens=True)["input_ids"]
        with torch.no_grad():
            # greedy without stopping at EOS (the C test takes the argmax 32 times)
            seq = list(ids)
            for _ in range(N_NEW):
                seq.append(int(model(torch.tensor([seq]), use_cache=False).logits[0, -1].argmax()))
            gen = seq[len(ids):]
            logits = model(torch.tensor([seq]), use_cache=False).logits[0].float()
            # transformers' own greedy search (KV cache) agrees up to where it stops at EOS
            ref = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=N_NEW, do_sample=False,
                                 pad_token_id=tok.eos_token_id)[0, len(ids):].tolist()
        assert gen[:len(ref)] == ref, f"prompt {i}: generate() {ref} != cache-free greedy {gen}"
        margins = []
        for j in range(len(gen)):
            top2 = torch.topk(logits[len(ids) - 1 + j], 2).values
            margins.append(float(top2[0] - top2[1]))
        top = torch.topk(logits, TOPK, dim=-1)
        case = {
            "prompt": text,
            "ids": ids,
            "greedy": gen,
            "min_greedy_margin": round(min(margins), 5),
            "topk_ids": top.indices.tolist(),
            "topk_logits": [[r4(v) for v in row] for row in top.values.tolist()],
        }
        if i == 0:
            case["last_prompt_logits"] = [r4(v) for v in logits[len(ids) - 1].tolist()]
        out["cases"].append(case)
        print(f"{text!r}: ids {ids} -> {tok.decode(gen)!r} (min margin {min(margins):.3f})")
    with open(OUT, "w") as fh:
        json.dump(out, fh, separators=(",", ":"))
        fh.write("\n")
    print(f"{OUT}: {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()

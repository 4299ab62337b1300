#!/usr/bin/env python3
"""ppl_llamacpp.py — perplexity of a GGUF model on a text file through
llama-cpp-python, computed the way llama.cpp's llama-perplexity does
(tools/perplexity/perplexity.cpp, perplexity()), so that matquant's `eval`
can be compared with the reference implementation on the same tokens.

The algorithm, as llama-perplexity:
  - tokenize the whole file once with the model's tokenizer, add_special as
    llama.cpp does (common_tokenize(ctx, text, true): a BOS only if the
    vocabulary asks for one, tokenizer.ggml.add_bos_token), no special-token
    parsing;
  - n_chunks = n_tokens // n_ctx chunks of n_ctx consecutive tokens (the tail
    is dropped), optionally limited by --chunks;
  - if the vocabulary adds BOS, the first token of each chunk is replaced by
    BOS before evaluation (the scored tokens are never the first one);
  - each chunk is evaluated from an empty KV cache; with first = n_ctx/2, the
    logits at positions first .. n_ctx-2 score the tokens at first+1 ..
    n_ctx-1: n_ctx - first - 1 tokens per chunk (255 for n_ctx 512);
  - ppl = exp(mean NLL); its standard error as llama.cpp prints it:
    ppl * sqrt((mean(NLL^2) - mean(NLL)^2) / (count - 1)).
llama-perplexity's defaults are kept: F16 KV cache, n_batch = n_ctx.
One difference: ggml's "extra" CPU buffer types (AMX / repacked weights) are
turned off (llama.cpp's --no-extra-bufts): with them, llama.cpp 0.3.36 as
built here segfaults in decode on this AMX machine with the Q4_1 SmolLM2
file. The plain CPU path computes the same dot products.

Not here: matquant's own perplexity (src/eval/ppl.c, `matquant eval`).

  python3 scripts/ppl_llamacpp.py MODEL.gguf TEXT.txt [--ctx 512] [--chunks N]
      [--threads 2] [--json]
"""
import argparse
import json
import math
import sys
import time

import numpy as np

PINNED = {"llama_cpp_python": "0.3.36", "numpy": "2.4"}


def _check_versions():
    import importlib.metadata as md
    for pkg, want in PINNED.items():
        try:
            got = md.version(pkg)
        except md.PackageNotFoundError:
            sys.exit(f"ppl_llamacpp.py: {pkg} is not installed (pip install -r scripts/requirements.txt)")
        if not (got == want or got.startswith(want + ".")):
            sys.exit(f"ppl_llamacpp.py: {pkg} {got} installed, pinned {want}")


def _no_extra_bufts():
    """Make llama_cpp.Llama load with model_params.use_extra_bufts = False
    (its constructor takes no such argument)."""
    import llama_cpp.llama_cpp as lc
    orig = lc.llama_model_default_params

    def params():
        p = orig()
        p.use_extra_bufts = False
        return p
    lc.llama_model_default_params = params


def log_softmax_nll(logits, targets):
    """-log softmax(logits[i])[targets[i]] for every row, in float64 (as
    llama.cpp's log_softmax, which works in double after subtracting the max)."""
    x = logits.astype(np.float64)
    mx = x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(x - mx).sum(axis=1)) + mx[:, 0]
    return lse - x[np.arange(len(targets)), targets]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("text")
    ap.add_argument("--ctx", type=int, default=512, help="tokens per chunk (default 512)")
    ap.add_argument("--chunks", type=int, default=-1, help="evaluate at most N chunks (default all)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    ap.add_argument("--extra-bufts", action="store_true",
                    help="keep ggml's AMX/repack buffer types (crashes here with Q4_1)")
    ap.add_argument("--json", action="store_true", help="print one JSON line at the end")
    a = ap.parse_args()
    _check_versions()
    if not a.extra_bufts:
        _no_extra_bufts()
    from llama_cpp import Llama, llama_vocab_get_add_bos, llama_model_get_vocab

    llm = Llama(model_path=a.model, n_ctx=a.ctx, n_batch=a.ctx, logits_all=True,
                n_threads=a.threads, n_threads_batch=a.threads, verbose=False)
    vocab = llama_model_get_vocab(llm.model)
    add_bos = bool(llama_vocab_get_add_bos(vocab))
    bos = llm.token_bos()
    with open(a.text, "rb") as f:
        text = f.read()
    # llama.cpp: common_tokenize(ctx, prompt, add_special=true, parse_special=false)
    tokens = llm.tokenize(text, add_bos=True, special=False)
    n_plain = len(llm.tokenize(text, add_bos=False, special=False))
    n_ctx = a.ctx
    n_chunk = len(tokens) // n_ctx
    if a.chunks >= 0:
        n_chunk = min(n_chunk, a.chunks)
    if n_chunk == 0:
        sys.exit(f"{a.text}: {len(tokens)} tokens, fewer than one chunk of {n_ctx}")
    print(f"{a.text}: {len(tokens)} tokens ({n_plain} without BOS), add_bos={add_bos}, "
          f"{len(tokens) // n_ctx} chunks of {n_ctx} available, evaluating {n_chunk}", file=sys.stderr)
    first = n_ctx // 2
    nll = nll2 = 0.0
    count = 0
    t0 = time.time()
    for i in range(n_chunk):
        chunk = list(tokens[i * n_ctx:(i + 1) * n_ctx])
        if add_bos:
            chunk[0] = bos
        llm.reset()  # empty KV cache: every chunk starts at position 0
        llm.eval(chunk)
        logits = np.asarray(llm.scores[first:n_ctx - 1], dtype=np.float32)
        targets = np.asarray(tokens[i * n_ctx + first + 1:(i + 1) * n_ctx])
        v = log_softmax_nll(logits, targets)
        nll += float(v.sum())
        nll2 += float((v * v).sum())
        count += len(v)
        if not a.json:
            print(f"[{i + 1}]{math.exp(nll / count):.4f},", end="", flush=True)
    if not a.json:
        print()
    mean = nll / count
    ppl = math.exp(mean)
    var = nll2 / count - mean * mean
    ppl_se = ppl * math.sqrt(var / (count - 1)) if var > 0 else float("nan")
    dt = time.time() - t0
    print(f"Final estimate: PPL = {ppl:.4f} +/- {ppl_se:.5f} ({count} scored tokens, {n_chunk} chunks, "
          f"file {len(tokens)} tokens, {dt:.0f} s)", file=sys.stderr if a.json else sys.stdout)
    if a.json:
        print(json.dumps({"ppl": ppl, "ppl_se": ppl_se, "tokens": count, "chunks": n_chunk,
                          "file_tokens": len(tokens), "n_ctx": n_ctx, "add_bos": add_bos}))


if __name__ == "__main__":
    main()

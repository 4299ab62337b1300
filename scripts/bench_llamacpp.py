#!/usr/bin/env python3
"""bench_llamacpp.py — llama.cpp's speed on a GGUF model through
llama-cpp-python (PyPI), for bench/vs-llamacpp.sh: quantizes an F16/F32 GGUF
(or, with allow_requantize, an already quantized one) with llama.cpp's own
quantize call (llama_model_quantize) to the requested types, then measures prompt processing (one batch of -p tokens) and
generation (-n single-token evals after the prompt) at each thread count,
median of --reps after one warm-up. Prints one JSON line per (type, threads):
{"engine":"llama.cpp","type","threads","p","n","pp_tps","tg_tps","file_bytes"}.

Token ids are a fixed pseudo-random sequence (speed does not depend on the
text). Not here: matquant's side (matquant bench), the table (vs-llamacpp.sh).
Usage: bench_llamacpp.py F16.gguf OUTDIR --types Q8_0,Q4_0,Q2_K --threads 1,2 [-p 128] [-n 64] [--reps 3]
"""
import argparse
import ctypes
import json
import os
import statistics
import sys
import time

PINNED = {"llama_cpp_python": "0.3.36"}
FTYPES = {"F16": 1, "Q8_0": 7, "Q4_0": 2, "Q4_1": 3, "Q2_K": 10, "Q3_K_M": 12, "Q4_K_M": 15, "Q6_K": 18}


def quantize(lc, src, dst, typ, nthread):
    if os.path.exists(dst):
        return
    p = lc.llama_model_quantize_default_params()
    p.ftype = FTYPES[typ]
    p.nthread = nthread
    p.allow_requantize = True  # a quantized source (SmolLM2's Q4_1 GGUF) is requantized; F16/F32 are unaffected
    rc = lc.llama_model_quantize(src.encode(), (dst + ".tmp").encode(), ctypes.byref(p))
    if rc != 0:
        sys.exit(f"bench_llamacpp: llama_model_quantize {src} -> {typ} failed ({rc})")
    os.replace(dst + ".tmp", dst)


def measure(Llama, path, threads, p, n, reps, vocab_hint):
    llm = Llama(model_path=path, n_ctx=p + n + 8, n_batch=p, n_ubatch=p, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    V = llm.n_vocab()
    x, ids = 0x9E3779B97F4A7C15, []
    for _ in range(p + n):
        x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 7
        x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
        ids.append(x % V)

    def rep(pp, nn):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids[:pp])
        t1 = time.perf_counter()
        for i in range(nn):
            llm.eval([ids[pp + i]])
        t2 = time.perf_counter()
        return pp / (t1 - t0), nn / (t2 - t1) if nn else 0.0

    rep(min(p, 16), min(n, 4))  # warm-up
    r = [rep(p, n) for _ in range(reps)]
    del llm
    return statistics.median(a for a, _ in r), statistics.median(b for _, b in r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("outdir")
    ap.add_argument("--types", default="Q8_0,Q4_0,Q2_K")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("-p", type=int, default=128)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    import llama_cpp
    import llama_cpp.llama_cpp as lc
    from llama_cpp import Llama
    if llama_cpp.__version__ != PINNED["llama_cpp_python"]:
        print(f"bench_llamacpp: llama-cpp-python {llama_cpp.__version__}, figures were taken with "
              f"{PINNED['llama_cpp_python']}", file=sys.stderr)
    os.makedirs(a.outdir, exist_ok=True)
    base = os.path.splitext(os.path.basename(a.gguf))[0]
    for typ in a.types.split(","):
        dst = os.path.join(a.outdir, f"{base}.{typ}.gguf")
        quantize(lc, a.gguf, dst, typ, 2)
        for t in [int(v) for v in a.threads.split(",")]:
            pp, tg = measure(Llama, dst, t, a.p, a.n, a.reps, None)
            print(json.dumps({"engine": "llama.cpp", "type": typ, "threads": t, "p": a.p, "n": a.n,
                              "pp_tps": round(pp, 3), "tg_tps": round(tg, 3),
                              "file_bytes": os.path.getsize(dst)}), flush=True)


if __name__ == "__main__":
    main()

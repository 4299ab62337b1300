#!/usr/bin/env python3
"""tasks_crosscheck.py — score the zero-shot tasks of `matquant eval --tasks`
through llama.cpp (llama-cpp-python) on a GGUF model, independently of
matquant, and print the metrics as one JSON line with the same keys:

    python3 scripts/tasks_crosscheck.py MODEL.gguf --tasks arc_easy,piqa --limit 200
    build/matquant eval MODEL.gguf --tasks arc_easy,piqa --limit 200 --json

With --compare FILE (a file holding matquant's --json line) it also prints
both side by side.

Protocol (as lm-evaluation-harness scores multiple choice; see
src/eval/tasks.h): the context's trailing whitespace moves into the
continuation; the continuation tokens are encode(context + continuation)
past len(encode(context)); the model sees encode(context) + those tokens,
with BOS first when llama.cpp's tokenizer adds one, cut from the left to
n_ctx + 1 tokens; loglik = sum of log-softmax (float64, numpy) of the
continuation tokens; acc = argmax loglik, acc_norm = argmax loglik /
len(choice) (code points, without the leading space); lambada: acc = every
continuation token greedy, ppl = exp(-mean loglik).
"""
import argparse
import json
import math
import os
import sys

import numpy as np

TASKS = ["arc_easy", "arc_challenge", "hellaswag", "piqa", "boolq", "winogrande", "lambada"]
ACC_NORM = {"arc_easy", "arc_challenge", "hellaswag", "piqa"}


def jsonl(path, limit):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            out.append(json.loads(line))
            if limit and len(out) >= limit:
                break
    return out


def items(task, data, limit):
    """[(contexts per choice, continuations per choice, lengths, gold)]"""
    res = []
    if task.startswith("arc_"):
        name = "arc_easy_test" if task == "arc_easy" else "arc_challenge_test"
        for d in jsonl(f"{data}/arc/{name}.llmfoundry.jsonl", limit):
            q = d["query"] if d["query"].startswith("Question: ") else "Question: " + d["query"]
            ctx = q + "\nAnswer:"
            res.append(([ctx] * len(d["choices"]), [" " + c for c in d["choices"]],
                        [len(c) for c in d["choices"]], d["gold"]))
    elif task == "boolq":
        for d in jsonl(f"{data}/boolq/boolq_dev.llmfoundry.jsonl", limit):
            assert d["query"].startswith("Passage: ")
            ctx = d["query"][len("Passage: "):] + "\nAnswer:"
            res.append(([ctx] * 2, [" " + c for c in d["choices"]], [len(c) for c in d["choices"]], d["gold"]))
    elif task == "piqa":
        docs = jsonl(f"{data}/piqa/valid.jsonl", limit)
        with open(f"{data}/piqa/valid-labels.lst") as f:
            labels = [int(x) for x in f.read().split()]
        for d, g in zip(docs, labels):
            ctx = "Question: " + d["goal"] + "\nAnswer:"
            sols = [d["sol1"], d["sol2"]]
            res.append(([ctx] * 2, [" " + s for s in sols], [len(s) for s in sols], g))
    elif task == "hellaswag":
        with open(f"{data}/hellaswag/hellaswag_val_full.txt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        for i in range(0, len(lines) - 5, 6):
            ctx, gold, ends = lines[i], int(lines[i + 1]), lines[i + 2:i + 6]
            res.append(([ctx] * 4, [" " + e for e in ends], [len(e) for e in ends], gold))
            if limit and len(res) >= limit:
                break
    elif task == "winogrande":
        for d in jsonl(f"{data}/winogrande/winogrande_dev.llmfoundry.jsonl", limit):
            cont = " " + d["continuation"].strip()
            res.append((d["context_options"], [cont] * 2, [len(c) for c in d["context_options"]], d["gold"]))
    elif task == "lambada":
        for d in jsonl(f"{data}/lambada/lambada_openai_test.llmfoundry.jsonl", limit):
            res.append(([d["context"]], [" " + d["continuation"]], [len(d["continuation"])], 0))
    else:
        raise SystemExit(f"unknown task {task} (known: {','.join(TASKS)})")
    return res


def no_extra_bufts():
    """Load with model_params.use_extra_bufts = False: llama-cpp-python's
    decode crashes on the repacked CPU weight buffers here (as in
    scripts/ppl_llamacpp.py; Llama() takes no such argument)."""
    import llama_cpp.llama_cpp as lc
    orig = lc.llama_model_default_params

    def params():
        p = orig()
        p.use_extra_bufts = False
        return p
    lc.llama_model_default_params = params


class Scorer:
    def __init__(self, llm):
        from llama_cpp import llama_model_get_vocab, llama_vocab_get_add_bos
        self.llm = llm
        add_bos = bool(llama_vocab_get_add_bos(llama_model_get_vocab(llm.model)))
        self.bos = [llm.token_bos()] if add_bos else []
        self.cur = []  # tokens whose KV/logits the context holds

    def enc(self, s):
        return self.llm.tokenize(s.encode("utf-8"), add_bos=False, special=False)

    def loglik(self, ctx, cont):
        n_sp = len(ctx) - len(ctx.rstrip())
        if n_sp:
            ctx, cont = ctx[:-n_sp], ctx[-n_sp:] + cont
        c_ids = self.enc(ctx)
        cont_ids = self.enc(ctx + cont)[len(c_ids):]
        assert cont_ids, "continuation adds no tokens"
        seq = self.bos + c_ids + cont_ids
        maxlen = self.llm.n_ctx()
        seq = seq[-(maxlen + 1):]
        inp = seq[:-1]
        # reuse the evaluated prefix (the choices of an item share the context)
        k = 0
        while k < min(len(self.cur), len(inp)) and self.cur[k] == inp[k]:
            k += 1
        k = min(k, len(inp) - 1)
        self.llm.n_tokens = k
        self.llm.eval(inp[k:])
        self.cur = list(inp)
        n = len(cont_ids)
        logits = np.asarray(self.llm.scores[len(inp) - n:len(inp)], dtype=np.float64)
        mx = logits.max(axis=1, keepdims=True)
        lsm = logits - mx - np.log(np.exp(logits - mx).sum(axis=1, keepdims=True))
        tgt = np.array(seq[-n:])
        ll = float(lsm[np.arange(n), tgt].sum())
        greedy = bool((logits.argmax(axis=1) == tgt).all())
        return ll, greedy


def evaluate(sc, task, data, limit):
    its = items(task, data, limit)
    acc = accn = llsum = 0.0
    for ctxs, conts, lens, gold in its:
        res = [sc.loglik(c, k) for c, k in zip(ctxs, conts)]
        lls = np.array([r[0] for r in res])
        if task == "lambada":
            acc += res[0][1]
            llsum += lls[0]
            continue
        acc += int(np.argmax(lls)) == gold
        accn += int(np.argmax(lls / np.array(lens, dtype=np.float64))) == gold
    n = len(its)
    se = lambda p: math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else 0.0
    out = {task: acc / n, f"{task}_acc_se": se(acc / n)}
    if task in ACC_NORM:
        out[f"{task}_acc_norm"] = accn / n
        out[f"{task}_acc_norm_se"] = se(accn / n)
    if task == "lambada":
        out[f"{task}_ppl"] = math.exp(-llsum / n)
    out[f"{task}_n"] = n
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="GGUF file")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--limit", type=int, default=0, help="first N items per task (default: all)")
    ap.add_argument("--data", default=os.environ.get("MQ_SHARED_DATA", "../shared/data"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--compare", help="file with matquant eval --json output to print side by side")
    a = ap.parse_args()
    no_extra_bufts()
    from llama_cpp import Llama

    llm = Llama(model_path=a.model, logits_all=True, n_ctx=a.n_ctx, n_threads=a.threads,
                n_threads_batch=a.threads, verbose=False)
    sc = Scorer(llm)
    res = {"model": a.model, "engine": "llama-cpp-python", "limit": a.limit}
    for t in a.tasks.split(","):
        res.update(evaluate(sc, t, a.data, a.limit))
        print(f"{t}: done", file=sys.stderr)
    print(json.dumps(res))
    if a.compare:
        with open(a.compare) as f:
            mq = [json.loads(l) for l in f if l.startswith("{")][-1]
        print(f"{'metric':24s} {'matquant':>9s} {'llama.cpp':>9s} {'diff':>8s}")
        for t in a.tasks.split(","):
            for k in [t, f"{t}_acc_norm", f"{t}_ppl"]:
                if k in res and k in mq:
                    print(f"{k:24s} {mq[k]:9.4f} {res[k]:9.4f} {mq[k] - res[k]:+8.4f}")


if __name__ == "__main__":
    main()

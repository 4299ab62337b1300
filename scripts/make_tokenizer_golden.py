#!/usr/bin/env python3
"""make_tokenizer_golden.py — golden tokenizations for tests/test_tokenizer.c.

Trains five SMALL BPE tokenizers with Hugging Face `tokenizers` on the text in
shared/data (wikitext2, tinystories, c4), one per flavour matquant must match:

  llama3  byte-level, Split(Llama-3 regex) + ByteLevel, ignore_merges, specials
  gpt2    byte-level, ByteLevel(use_regex=True)
  qwen2   byte-level, NFC + Split(Qwen2 regex: digits one by one) + ByteLevel
  spm     SentencePiece-style like Llama 2's tokenizer.json: Prepend("▁") +
          Replace(" ", "▁"), byte_fallback, <unk> <s> </s> <0x00>..<0xFF>
  metaspace  Metaspace pre-tokenizer (prepend_scheme "first"), unk, no fallback

and writes for each tests/golden/tokenizers/<name>/tokenizer.json
(+ tokenizer_config.json) and pairs.json: [{"text", "ids", "decoded"}] with ids
from `Tokenizer.encode(text, add_special_tokens=False)` and decoded =
`Tokenizer.decode(ids)`.  Also llama3.gguf (model gpt2, pre llama-bpe) and
spm.gguf (model llama, scores) carrying the same vocabularies (no tensors),
and, when ~/.cache/matquant/SmolLM2-135M-Instruct.Q4_1.gguf exists,
smollm2_pairs.json ({"gguf", "pairs"}) from a `tokenizers` object built from
that GGUF's tokens/merges with SmolLM2's pre-tokenizer (Digits + ByteLevel).

Pinned: tokenizers 0.23.x, transformers 5.23.x, gguf 0.19.x, sentencepiece 0.2.x.
Run from the repository root: python3 scripts/make_tokenizer_golden.py
"""
import json
import os
import sys
from importlib.metadata import version as pkg_version

import gguf
import sentencepiece
import tokenizers
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

assert tokenizers.__version__.startswith("0.23."), tokenizers.__version__
assert transformers.__version__.startswith("5.23."), transformers.__version__
assert sentencepiece.__version__.startswith("0.2."), sentencepiece.__version__
assert pkg_version("gguf").startswith("0.19."), pkg_version("gguf")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("MQ_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
OUT = os.path.join(ROOT, "tests", "golden", "tokenizers")
SMOL = os.path.expanduser("~/.cache/matquant/SmolLM2-135M-Instruct.Q4_1.gguf")

LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
            r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def training_text():
    def read(rel, limit):
        with open(os.path.join(DATA, rel), encoding="utf-8") as f:
            return f.read(limit)
    lines = read("wikitext2/wikitext-2-raw-v1.test.joined.txt", 600_000).split("\n")
    lines += read("tinystories/tinystories_validation_head.txt", 300_000).split("\n")
    with open(os.path.join(DATA, "c4/c4-validation.00000-of-00008.head1025.jsonl"), encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= 300:
                break
            lines += json.loads(line)["text"].split("\n")
    return [x for x in lines if x]


def test_texts():
    with open(os.path.join(DATA, "wikitext2/wikitext-2-raw-v1.test.joined.txt"), encoding="utf-8") as f:
        wiki = f.read(200_000)
    paras = [p for p in wiki.split("\n\n") if len(p) > 600]
    with open(os.path.join(DATA, "tinystories/tinystories_validation_head.txt"), encoding="utf-8") as f:
        story = f.read(3000).split("\n\n")[0]
    return [
        "", " ", "  ", "   ", "\t", "\t\t x", "\n", "\n\n\n", " \n \n", "hello", " hello", "  hello",
        "hello world", "Hello World!", "hello   world", "hello\tworld\n", "trailing spaces   ",
        "line one\nline two\n\nline four\r\nend", "12345", "3.14159", "1,000,000", "year 2024: 42 apples",
        "don't", "I'LL", "we've they're she'd it's", "DON'T YOU'D",
        "Hello, world! (really?) [yes]; {no}: \"quoted\" 'single' -- dash... @#$%^&*_+=<>/\\|~`",
        "café naïve façade résumé Ångström Œuvre", "Ünïcödé ßtraße",
        "中文测试，你好世界。", "日本語のテキストです。カタカナ", "한국어 텍스트입니다", "مرحبا بالعالم",
        "नमस्ते दुनिया", "Привет, мир! Ёлка", "Γειά σου Κόσμε",
        "emoji 😀 👍🏽 ok", "family 👨‍👩‍👧‍👦 and flags 🇫🇷🇯🇵", "🤖🦙", "mixed 中文 and English 123",
        "<|begin_of_text|>Hello<|end_of_text|>", "<|im_start|>user\nhi<|im_end|>\n",
        "<s> inside </s> text", "x<|endoftext|>y", "<unk>",
        "  leading and trailing  ", "a\u00a0b (nbsp)", "tab\there", "\u2028sep", "zero\u200bwidth",
        story, paras[0], paras[1][:1500],
    ]


def write_json(path, obj, indent=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent)
        f.write("\n")


def pairs_for(tok, texts):
    out = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False).ids
        out.append({"text": t, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    return out


def train_bytelevel(pre, specials, vocab_size, normalizer=None, ignore_merges=False):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer)
    return tok


def spm_tokenizers():
    """Train a Metaspace BPE, then rebuild it the way Llama 2's tokenizer.json is laid out."""
    base = Tokenizer(models.BPE(unk_token="<unk>"))
    base.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["<unk>", "<s>", "</s>"],
                                  limit_alphabet=120, show_progress=False)
    base.train_from_iterator(training_text(), trainer)
    m = json.loads(base.to_str())["model"]
    old_vocab = sorted(m["vocab"].items(), key=lambda kv: kv[1])
    merges = [tuple(x) if isinstance(x, list) else tuple(x.split(" ", 1)) for x in m["merges"]]

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = 3 + b
    for piece, _ in old_vocab:
        if piece not in vocab:
            vocab[piece] = len(vocab)

    spm = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    spm.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    spm.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1, right=0)])
    spm.add_special_tokens(["<unk>", "<s>", "</s>"])
    spm.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])

    meta = Tokenizer(models.BPE(vocab=dict(m["vocab"]), merges=merges, unk_token="<unk>"))
    meta.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    meta.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    meta.add_special_tokens(["<unk>", "<s>", "</s>"])
    return spm, meta, vocab


def save(name, tok, texts, config=None):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"), pretty=False)
    if config is not None:
        write_json(os.path.join(d, "tokenizer_config.json"), config, indent=1)
    p = pairs_for(tok, texts)
    write_json(os.path.join(d, "pairs.json"), p)
    size = os.path.getsize(os.path.join(d, "tokenizer.json"))
    print(f"{name}: vocab {tok.get_vocab_size()}, tokenizer.json {size} bytes, {len(p)} pairs")
    return p


def gguf_vocab_only(path, fill):
    w = gguf.GGUFWriter(path, arch="llama")
    fill(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_llama3_gguf(tok, path):
    js = json.loads(tok.to_str())
    vocab = js["model"]["vocab"]
    added = {a["id"]: a for a in js["added_tokens"]}
    n = max(max(vocab.values()), max(added) if added else 0) + 1
    tokens = [""] * n
    types = [1] * n
    for piece, i in vocab.items():
        tokens[i] = piece
    for i, a in added.items():
        tokens[i] = a["content"]
        types[i] = 3 if a["special"] else 4
    merges = [" ".join(x) if isinstance(x, list) else x for x in js["model"]["merges"]]

    def fill(w):
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("llama-bpe")
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        w.add_bos_token_id(tok.token_to_id("<|begin_of_text|>"))
        w.add_eos_token_id(tok.token_to_id("<|end_of_text|>"))
        w.add_add_bos_token(True)
    gguf_vocab_only(path, fill)


def write_spm_gguf(vocab, path):
    n = len(vocab)
    tokens = [""] * n
    for piece, i in vocab.items():
        tokens[i] = piece
    # Scores ordered like the merges that made each piece (later id = later merge).
    scores = [-float(i) for i in range(n)]
    types = [1] * n
    types[0] = 2
    types[1] = types[2] = 3
    for b in range(256):
        types[3 + b] = 6

    def fill(w):
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_unk_token_id(0)
        w.add_add_bos_token(True)
        w.add_add_space_prefix(True)
    gguf_vocab_only(path, fill)


def smollm2_pairs(texts):
    r = gguf.GGUFReader(SMOL)
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    merges = r.fields["tokenizer.ggml.merges"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    pre = r.fields["tokenizer.ggml.pre"].contents()
    assert pre == "smollm", pre
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([t for t, ty in zip(tokens, types) if ty == 3])
    p = pairs_for(tok, texts)
    write_json(os.path.join(OUT, "smollm2_pairs.json"), {"gguf": os.path.basename(SMOL), "pairs": p})
    print(f"smollm2: vocab {len(tokens)}, {len(p)} pairs")


def main():
    texts = test_texts()
    l3_specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"]
    llama3 = train_bytelevel(
        pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
        l3_specials, 2000, ignore_merges=True)
    llama3.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", llama3.token_to_id("<|begin_of_text|>"))])
    save("llama3", llama3, texts, {"add_bos_token": True, "bos_token": "<|begin_of_text|>",
                                   "eos_token": "<|end_of_text|>"})
    write_llama3_gguf(llama3, os.path.join(OUT, "llama3.gguf"))

    gpt2 = train_bytelevel(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), ["<|endoftext|>"], 1500)
    save("gpt2", gpt2, texts, {"add_bos_token": False, "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"})

    qwen2 = train_bytelevel(
        pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated", invert=False),
                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], 1500, normalizer=normalizers.NFC())
    save("qwen2", qwen2, texts, {"add_bos_token": False, "bos_token": None, "eos_token": "<|im_end|>"})

    spm, meta, spm_vocab = spm_tokenizers()
    save("spm", spm, texts, {"add_bos_token": True, "bos_token": "<s>", "eos_token": "</s>"})
    write_spm_gguf(spm_vocab, os.path.join(OUT, "spm.gguf"))
    save("metaspace", meta, texts)

    if os.path.exists(SMOL):
        smollm2_pairs(texts)
    else:
        print(f"{SMOL} not found: smollm2_pairs.json not regenerated", file=sys.stderr)


if __name__ == "__main__":
    main()

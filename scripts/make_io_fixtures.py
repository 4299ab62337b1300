#!/usr/bin/env python3
"""make_io_fixtures.py — small committed files for tests/test_safetensors.c,
tests/test_gguf.c and tests/test_cli_inspect.sh.

Writes
  tests/fixtures/st_*.safetensors, nan.safetensors   bad (and one NaN-laden) safetensors files
  tests/fixtures/gguf_*.gguf, nan.gguf               bad (and one NaN-laden) GGUF files
  tests/golden/gguf_quants.gguf                      one 2 x 512 tensor per ggml type we dequantize
  tests/golden/gguf_quants_expected.safetensors      gguf-py's numpy dequantization of each (F32)
  tests/golden/smollm2_q4_1_expected.json            metadata and dequantization checksums of the
                                                     real SmolLM2-135M Q4_1 GGUF (when present)

Bad files are built byte by byte (a tiny GGUF/safetensors encoder below) so
that each one breaks exactly one rule. Quantized goldens use
gguf.quants.quantize where gguf-py implements it (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0,
BF16) and random valid blocks (random bytes, sane f16 scales) for the
K-quants, whose quantizers gguf-py lacks; the expected values always come
from gguf.quants.dequantize, the reference implementation.

Pinned: numpy, safetensors, gguf 0.19 (python3 -m pip show gguf). Run from the
repository root: python3 scripts/make_io_fixtures.py [--model PATH]
"""
import argparse
import json
import os
import struct

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from safetensors.numpy import save_file

FIX = "tests/fixtures"
GOLD = "tests/golden"


# ------------------------------------------------------------ safetensors

def st_bytes(header, data=b"", hlen=None):
    """A safetensors file from a header (dict or raw str) and data bytes."""
    h = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    hb = h.encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    n = len(hb) if hlen is None else hlen
    return struct.pack("<Q", n) + hb + data


def write(path, b):
    with open(path, "wb") as f:
        f.write(b)
    assert os.path.getsize(path) < 200_000, path


def make_safetensors():
    good = st_bytes({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                     "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}},
                    np.arange(6, dtype=np.float32).tobytes())
    # the file ends inside the data section of tensor 'b'
    write(f"{FIX}/st_truncated.safetensors", good[:-5])
    # the file ends inside the header
    write(f"{FIX}/st_truncated_header.safetensors", good[:20])
    # header length field far beyond the file (and any sane allocation)
    write(f"{FIX}/st_huge_header.safetensors", struct.pack("<Q", 1 << 62) + b"{}      ")
    write(f"{FIX}/st_overlap.safetensors",
          st_bytes({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                    "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24)))
    write(f"{FIX}/st_bad_dtype.safetensors",
          st_bytes({"x.weight": {"dtype": "F31", "shape": [2], "data_offsets": [0, 8]}}, bytes(8)))
    write(f"{FIX}/st_shape_mismatch.safetensors",
          st_bytes({"x.weight": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}, bytes(16)))
    write(f"{FIX}/st_offsets_outside.safetensors",
          st_bytes({"x.weight": {"dtype": "F32", "shape": [25], "data_offsets": [0, 100]}}, bytes(64)))
    write(f"{FIX}/st_negative_shape.safetensors",
          st_bytes({"x.weight": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8)))
    write(f"{FIX}/st_not_json.safetensors", st_bytes('{"x.weight": {"dtype": ', bytes(8)))
    write(f"{FIX}/st_not_object.safetensors", st_bytes('[1, 2, 3]'))
    write(f"{FIX}/st_duplicate.safetensors",
          st_bytes('{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                   '"x":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', bytes(8)))
    # invalid UTF-8 in a tensor name
    raw = b'{"x\xff":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    raw += b" " * ((8 - len(raw) % 8) % 8)
    write(f"{FIX}/st_bad_utf8.safetensors", struct.pack("<Q", len(raw)) + raw + bytes(8))
    # valid file; NaN checks are the model loader's job
    x = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, np.inf]], dtype=np.float32)
    save_file({"w": x}, f"{FIX}/nan.safetensors", metadata={"note": "NaN and Inf on purpose"})


# ------------------------------------------------------------------ GGUF

def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gguf_bytes(kvs, tensors, alignment=32, version=3, magic=b"GGUF"):
    """kvs: list of (key, type id, value bytes); tensors: list of
    (name, ne list, ggml type, data bytes, offset override or None)."""
    out = magic + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += gstr(k) + struct.pack("<I", t) + v
    off = 0
    infos, datas = b"", []
    for name, ne, typ, data, off_override in tensors:
        o = off if off_override is None else off_override
        infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        infos += struct.pack("<IQ", typ, o)
        pad = (-len(data)) % alignment
        datas.append(data + bytes(pad))
        off += len(data) + pad
    out += infos
    out += bytes((-len(out)) % alignment)
    return out + b"".join(datas)


def make_gguf():
    f32 = np.arange(8, dtype=np.float32)
    kv = [("general.architecture", 8, gstr("llama")), ("test.count", 4, struct.pack("<I", 7))]
    good = gguf_bytes(kv, [("t", [8], 0, f32.tobytes(), None)])
    write(f"{FIX}/gguf_truncated.gguf", good[:40])
    write(f"{FIX}/gguf_bad_magic.gguf", b"GGUX" + good[4:])
    huge = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 60) + b"general.name"
    write(f"{FIX}/gguf_huge_string.gguf", huge)
    write(f"{FIX}/gguf_offset_outside.gguf", gguf_bytes(kv, [("t", [8], 0, f32.tobytes(), 1 << 20)]))
    write(f"{FIX}/gguf_unknown_type.gguf", gguf_bytes(kv, [("t", [8], 99, f32.tobytes(), None)]))
    write(f"{FIX}/gguf_bad_version.gguf", gguf_bytes(kv, [("t", [8], 0, f32.tobytes(), None)], version=7))
    write(f"{FIX}/gguf_huge_count.gguf", b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 0))
    write(f"{FIX}/gguf_overlap.gguf",
          gguf_bytes(kv, [("a", [8], 0, f32.tobytes(), 0), ("b", [8], 0, f32.tobytes(), 0)]))
    arr = struct.pack("<IQ", 5, 1 << 40)  # array of 2^40 int32
    write(f"{FIX}/gguf_huge_array.gguf",
          b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gstr("tokenizer.ggml.token_type") + struct.pack("<I", 9) + arr)
    x = np.array([1.0, np.nan, 3.0, np.inf, 5.0, 6.0, 7.0, 8.0], dtype=np.float32)
    write(f"{FIX}/nan.gguf", gguf_bytes(kv, [("w", [8], 0, x.tobytes(), None)]))


# --------------------------------------------------------------- goldens

K_LAYOUT = {  # block bytes, offsets of f16 scale fields (must be finite and sane)
    QT.Q2_K: (84, [80, 82]),
    QT.Q3_K: (110, [108]),
    QT.Q4_K: (144, [0, 2]),
    QT.Q5_K: (176, [0, 2]),
    QT.Q6_K: (210, [208]),
}


def random_k_blocks(rng, qt, n_blocks):
    size, fields = K_LAYOUT[qt]
    b = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for off in fields:
        v = rng.uniform(0.001, 0.05, size=n_blocks).astype(np.float16)
        b[:, off:off + 2] = v.view(np.uint8).reshape(n_blocks, 2)
    return b


def make_quant_goldens():
    rng = np.random.default_rng(1234)
    rows, cols = 2, 512
    x = (rng.standard_normal((rows, cols)) * 0.1).astype(np.float32)
    x[0, :7] = [0.0, -0.0, 1e-3, -1e-3, 0.25, -0.3, 2.0]
    w = gguf.GGUFWriter(f"{GOLD}/gguf_quants.gguf", "test")
    expected = {}
    for qt in [QT.F32, QT.F16, QT.BF16, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.Q8_0]:
        q = gguf.quants.quantize(x, qt)
        w.add_tensor(qt.name.lower(), q, raw_dtype=qt)
        expected[qt.name.lower()] = gguf.quants.dequantize(q, qt).astype(np.float32).reshape(rows, cols)
    w.add_tensor("f64", x.astype(np.float64), raw_dtype=QT.F64)
    expected["f64"] = x.astype(np.float64).astype(np.float32)
    for qt in K_LAYOUT:
        blocks = random_k_blocks(rng, qt, rows * cols // 256)
        q = blocks.reshape(rows, -1)
        w.add_tensor(qt.name.lower(), q, raw_dtype=qt)
        expected[qt.name.lower()] = gguf.quants.dequantize(q, qt).astype(np.float32).reshape(rows, cols)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_file(expected, f"{GOLD}/gguf_quants_expected.safetensors",
              metadata={"source": "gguf-py %s gguf.quants.dequantize" % getattr(gguf, "__version__", "0.19")})
    for p in (f"{GOLD}/gguf_quants.gguf", f"{GOLD}/gguf_quants_expected.safetensors"):
        assert os.path.getsize(p) < 200_000, p


def make_model_golden(path):
    if not os.path.exists(path):
        print(f"{path} not found: smollm2 golden not (re)written")
        return
    r = gguf.GGUFReader(path)
    f = r.fields

    def scalar(k):
        return f[k].contents()

    out = {"file": os.path.basename(path), "version": int(scalar("GGUF.version")),
           "n_tensors": len(r.tensors), "n_kv": len(f) - 3,
           "u32": {k: int(scalar(k)) for k in ["llama.block_count", "llama.embedding_length",
                                               "llama.feed_forward_length", "llama.attention.head_count",
                                               "llama.attention.head_count_kv", "tokenizer.ggml.bos_token_id",
                                               "tokenizer.ggml.eos_token_id", "general.file_type"]},
           "f32": {k: float(scalar(k)) for k in ["llama.rope.freq_base",
                                                 "llama.attention.layer_norm_rms_epsilon"]},
           "str": {k: str(scalar(k)) for k in ["general.architecture", "tokenizer.ggml.model"]},
           "n_tokens": len(f["tokenizer.ggml.tokens"].data),
           "tokens": {str(i): str(f["tokenizer.ggml.tokens"].contents(i)) for i in [0, 1, 2, 100, 49151]},
           "tensors": {}}
    for t in r.tensors:
        if t.name not in ("token_embd.weight", "blk.0.ffn_down.weight", "blk.0.attn_norm.weight"):
            continue
        d = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        idx = sorted({0, 1, 2, 31, 32, 333, d.size // 2, d.size - 1})
        out["tensors"][t.name] = {
            "type": t.tensor_type.name, "ne": [int(n) for n in t.shape], "nbytes": int(t.n_bytes),
            "sum": float(d.astype(np.float64).sum()), "abs_sum": float(np.abs(d.astype(np.float64)).sum()),
            "idx": [int(i) for i in idx], "values": [float(d[i]) for i in idx]}
    with open(f"{GOLD}/smollm2_q4_1_expected.json", "w") as fh:
        json.dump(out, fh, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/matquant/SmolLM2-135M-Instruct.Q4_1.gguf"))
    a = ap.parse_args()
    os.makedirs(FIX, exist_ok=True)
    os.makedirs(GOLD, exist_ok=True)
    make_safetensors()
    make_gguf()
    make_quant_goldens()
    make_model_golden(a.model)


if __name__ == "__main__":
    main()

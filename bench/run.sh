#!/usr/bin/env bash
# run.sh — `make bench`: the machine's ceilings (build/membw) and one
# core's rate of the decode kernel's inner step (build/vnnimix), then
# `matquant bench` at widths 8, 6, 4, 3, 2, 2x on 1 and 2 threads for
# stories260K (quantized here into a temp dir) and SmolLM2-135M (MinMax,
# --scope all, head at int8; quantized once into $MQ_BENCH_CACHE, default
# ~/.cache/matquant, when scripts/get-models.sh has the model cached).
# The 1.1B shape and llama.cpp: see the last line it prints (bench/vs-llamacpp.sh).
# The machine may be shared: the load average is printed with the figures.
set -eu
bin=${MQ_BIN:-build/matquant}
data=${MQ_SHARED_DATA:-../shared/data}
cache=${MQ_BENCH_CACHE:-$HOME/.cache/matquant}
echo "== ceilings ($(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg))"
build/membw
build/vnnimix
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
if [ -d "$data/stories260K" ]; then
  "$bin" quantize "$data/stories260K/stories260K.bin" --tokenizer "$data/stories260K/tok512.bin" -o "$tmp/s260" \
    --method minmax --scope all >/dev/null 2>&1
  for t in 1 2; do
    echo "== stories260K, $t thread(s)"
    OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-active} "$bin" bench "$tmp/s260" --bits "8;6;4;3;2;2x" -t $t --reps 5
  done
else
  echo "== stories260K: $data/stories260K not found, skipped"
fi
M=$(scripts/get-models.sh 2>/dev/null | tail -n 1 || true)
if [ -n "$M" ] && [ -f "$M" ]; then
  ck="$cache/smollm2-135m-minmax-all"
  [ -f "$ck/model.safetensors" ] || "$bin" quantize "$M" -o "$ck" --method minmax --scope all >/dev/null 2>&1
  for t in 1 2; do
    echo "== SmolLM2-135M ($ck), $t thread(s)"
    OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-active} "$bin" bench "$ck" --bits "8,head:8;6,head:8;4,head:8;3,head:8;2,head:8;2x,head:8" -t $t
  done
else
  echo "== SmolLM2-135M: not cached (scripts/get-models.sh), skipped"
fi
echo "== 1.1B shape vs llama.cpp: python3 scripts/make_tinyllama_shape.py DIR && bench/vs-llamacpp.sh DIR/tinyllama-shape-f16.gguf"

#!/usr/bin/env bash
# The issue-3 table: perplexity, KL and top-1 agreement (vs the unquantized
# model) of single-width baselines and of MatGPTQ with R = {8,4,2}, all from
# the committed code. FFN scope, per output channel.
#
#   bench/quant_table.sh stories260K     # the llama2.c model, TinyStories text
#   bench/quant_table.sh smollm2         # SmolLM2-135M (GGUF), WikiText-2, C4 calibration
#
# Environment: CHUNKS (eval chunks), SAMPLES / LEN (calibration sequences x
# tokens), OUT (work directory, default /tmp/mq-quant-table), BIN
# (default build/matquant). Prints a markdown table; the JSON lines of every
# eval go to $OUT/<model>.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
# a quality table, not a speed benchmark: threads sleep instead of spinning at
# barriers, which keeps the run fast when the machine is shared
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
which=${1:-stories260K}
bin=${BIN:-build/matquant}
out=${OUT:-/tmp/mq-quant-table}
mkdir -p "$out"
. bench/models.sh
bench_model "$which" "$out" || exit 2
calib=$text
case "$which" in
  stories260K) : "${CHUNKS:=100}" "${SAMPLES:=128}" "${LEN:=256}" ;;
  smollm2) : "${CHUNKS:=16}" "${SAMPLES:=32}" "${LEN:=512}" ;;
esac
[ -x "$bin" ] || make -s
json=$out/$which.jsonl
: > "$json"
calib_opts=(--calib "$calib" --calib-samples "$SAMPLES" --calib-len "$LEN")

# quantize NAME METHOD TRAIN-BITS [extra options]
quant() {
  local name=$1 method=$2 bits=$3; shift 3
  local dir=$out/$which-$name
  if [ ! -d "$dir" ]; then
    echo "== quantize $name ($method, R={$bits})" >&2
    "$bin" quantize "$model" "${tok[@]}" -o "$dir" --method "$method" --train-bits "$bits" --scope ffn \
      "${calib_opts[@]}" "$@" >&2
  fi
}
# evaluate NAME LABEL PLANS
ev() {
  local name=$1 label=$2 plans=$3
  echo "== eval $name at $plans" >&2
  "$bin" eval "$out/$which-$name" --bits "$plans" --base "$model" --ppl "$ppl" --ctx "$ctx" --chunks "$CHUNKS" \
    --json -q | grep '^{' | sed "s/^{/{\"row\":\"$label\",/" >> "$json"
}

quant minmax8 minmax 8;  quant minmax4 minmax 4;  quant minmax2 minmax 2
quant gptq8 gptq 8;      quant gptq4 gptq 4;      quant gptq2 gptq 2
quant mat842 gptq 8,4,2
ev minmax8 "MinMax, R={8}" "8";  ev minmax4 "MinMax, R={4}" "4";  ev minmax2 "MinMax, R={2}" "2"
ev minmax8 "MinMax int8, sliced" "4,2"
ev gptq8 "GPTQ, R={8}" "8";  ev gptq4 "GPTQ, R={4}" "4";  ev gptq2 "GPTQ, R={2}" "2"
ev mat842 "MatGPTQ, R={8,4,2}" "8,6,4,3,2,2x"

echo "| model: $which | bits | eff. bits | ppl | KL | top-1 |"
echo "|---|---|---|---|---|---|"
sed -E 's/.*"row":"([^"]*)".*"bits":"([^"]*)","eff_bits":([0-9.]+).*"ppl":([0-9.]+),"ppl_se":([0-9.]+).*"kl":([0-9.]+).*"top1":([0-9.]+).*/\1|\2|\3|\4|\5|\6|\7/' "$json" |
  awk -F'|' '{printf "| %s | %s | %.3f | %.3f ± %.3f | %.4f | %.1f%% |\n", $1, $2, $3, $4, $5, $6, 100*$7}'
echo
echo "eval: $ppl, ctx $ctx, $CHUNKS chunks; calibration (gptq): $calib, $SAMPLES x $LEN tokens"

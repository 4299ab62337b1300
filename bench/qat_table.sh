#!/usr/bin/env bash
# The issue-5 table: perplexity, KL and top-1 agreement (vs the unquantized
# model) of QAT single-width baselines (R = {8}, {4}, {2}, each on its native
# r-bit grid), MatQuant-QAT with R = {8,4,2}, and the same with
# co-distillation 8:2 — all `matquant quantize --method qat` from the
# committed code, FFN scope, per output channel, then `matquant eval` at
# 8, 6, 4, 3, 2 and 2x.
#
#   bench/qat_table.sh stories260K     # llama2.c model, TinyStories text
#   bench/qat_table.sh smollm2         # SmolLM2-135M (GGUF), C4 training text, WikiText-2 eval
#
# Environment: TOKENS (training token budget per run), SEQ / BATCH, LR, WARMUP,
# CHUNKS (eval chunks), OUT (work directory, default /tmp/mq-qat-table), BIN
# (default build/matquant). Prints a markdown table; the JSON line of every
# eval goes to $OUT/<model>.jsonl and every training log to $OUT/<run>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
which=${1:-stories260K}
bin=${BIN:-build/matquant}
out=${OUT:-/tmp/mq-qat-table}
mkdir -p "$out"
. bench/models.sh
bench_model "$which" "$out" || exit 2
train=$text
case "$which" in
  stories260K) : "${TOKENS:=262144}" "${SEQ:=256}" "${BATCH:=8}" "${LR:=5e-4}" "${CHUNKS:=100}" "${WARMUP:=20}" ;;
  smollm2) : "${TOKENS:=32768}" "${SEQ:=256}" "${BATCH:=4}" "${LR:=1e-4}" "${CHUNKS:=16}" "${WARMUP:=4}" ;;
esac
[ -x "$bin" ] || make -s
json=$out/$which.jsonl
: > "$json"

# train NAME TRAIN-BITS [extra options]
train_run() {
  local name=$1 bits=$2; shift 2
  local dir=$out/$which-$name
  if [ ! -d "$dir" ]; then
    echo "== qat $name (R={$bits}) $*" >&2
    "$bin" quantize "$model" "${tok[@]}" -o "$dir" --method qat --train-bits "$bits" --scope ffn \
      --data "$train" --tokens "$TOKENS" --seq-len "$SEQ" --batch "$BATCH" --lr "$LR" --warmup "$WARMUP" "$@" 2> "$out/$which-$name.log"
    grep -E "trained|wrote" "$out/$which-$name.log" >&2
  fi
}
# evaluate NAME LABEL PLANS
ev() {
  local name=$1 label=$2 plans=$3
  echo "== eval $name at $plans" >&2
  "$bin" eval "$out/$which-$name" --bits "$plans" --base "$model" --ppl "$ppl" --ctx "$ctx" --chunks "$CHUNKS" \
    --json -q | grep '^{' | sed "s/^{/{\"row\":\"$label\",/" >> "$json"
}

train_run qat8 8;  train_run qat4 4;  train_run qat2 2
train_run mat842 8,4,2
train_run mat842cd 8,4,2 --co-distill 8:2
ev qat8 "QAT, R={8}" "8";  ev qat4 "QAT, R={4}" "4";  ev qat2 "QAT, R={2}" "2"
ev mat842 "MatQuant-QAT, R={8,4,2}" "8,6,4,3,2,2x"
ev mat842cd "MatQuant-QAT, R={8,4,2}, co-distill 8:2" "8,6,4,3,2,2x"

echo "| model: $which | bits | eff. bits | ppl | KL | top-1 |"
echo "|---|---|---|---|---|---|"
sed -E 's/.*"row":"([^"]*)".*"bits":"([^"]*)","eff_bits":([0-9.]+).*"ppl":([0-9.]+),"ppl_se":([0-9.]+).*"kl":([0-9.]+).*"top1":([0-9.]+).*/\1|\2|\3|\4|\5|\6|\7/' "$json" |
  awk -F'|' '{printf "| %s | %s | %.3f | %.3f ± %.3f | %.4f | %.1f%% |\n", $1, $2, $3, $4, $5, $6, 100*$7}'
echo
echo "eval: $ppl, ctx $ctx, $CHUNKS chunks; training (qat): $train, $TOKENS tokens per run ($BATCH x $SEQ per step), lr $LR, warmup $WARMUP steps then cosine"

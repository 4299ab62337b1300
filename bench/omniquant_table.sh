#!/usr/bin/env bash
# The issue-4 table: MatQuant on OmniQuant against OmniQuant baselines, all
# from the committed code, FFN scope, per output channel, the same
# calibration token budget (SAMPLES x LEN tokens x EPOCHS passes) for every
# learned row. Perplexity and KL divergence to the unquantized model at
# int8, int6, int4, int3, int2 and 2x (extra precision) where the row has
# those widths (single-width baselines on their native grid only at their
# own width; the int8 baseline is sliced like a MinMax int8 model).
#
#   bench/omniquant_table.sh stories260K   # llama2.c model, TinyStories text (tail calibrates, head evaluates)
#   bench/omniquant_table.sh smollm2       # SmolLM2-135M (GGUF), WikiText-2 eval, C4 calibration
#
# Environment: SAMPLES, LEN, EPOCHS (budget), CHUNKS (eval chunks), OUT
# (work directory, default /tmp/mq-omni-table), BIN (default build/matquant),
# ROWS (space-separated subset of the row names below). Prints a markdown
# table, then the throughput of the MatQuant R={8,4,2} run (calibration
# tokens/s per block, GFLOP/s of the block's linear products) next to the
# machine's fp32 FMA peak measured here; JSON lines of every eval go to
# $OUT/<model>.jsonl, quantize logs to $OUT/<model>-<row>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
which=${1:-stories260K}
bin=${BIN:-build/matquant}
out=${OUT:-/tmp/mq-omni-table}
mkdir -p "$out"
. bench/models.sh
bench_model "$which" "$out" || exit 2
calib=$text
case "$which" in
  stories260K) : "${CHUNKS:=100}" "${SAMPLES:=64}" "${LEN:=256}" "${EPOCHS:=5}" ;;
  smollm2) : "${CHUNKS:=16}" "${SAMPLES:=16}" "${LEN:=512}" "${EPOCHS:=2}" ;;
esac
[ -x "$bin" ] || make -s
json=$out/$which.jsonl
: > "$json"
budget=(--calib "$calib" --calib-samples "$SAMPLES" --calib-len "$LEN" --epochs "$EPOCHS")

# quant NAME METHOD TRAIN-BITS [extra options]: quantize once (kept in $out)
quant() {
  local name=$1 method=$2 bits=$3; shift 3
  local dir=$out/$which-$name
  if [ ! -d "$dir" ]; then
    echo "== quantize $name ($method, R={$bits} $*)" >&2
    "$bin" quantize "$model" "${tok[@]}" -o "$dir" --method "$method" --train-bits "$bits" --scope ffn \
      "${budget[@]}" "$@" 2> "$out/$which-$name.log" || { tail -n 5 "$out/$which-$name.log" >&2; exit 1; }
  fi
}
# ev NAME LABEL PLANS
ev() {
  local name=$1 label=$2 plans=$3
  echo "== eval $name at $plans" >&2
  "$bin" eval "$out/$which-$name" --bits "$plans" --base "$model" --ppl "$ppl" --ctx "$ctx" --chunks "$CHUNKS" \
    --json -q 2>/dev/null | grep '^{' | sed "s/^{/{\"row\":\"$label\",/" >> "$json"
}
all="8,6,4,3,2,2x"
rows=${ROWS:-"minmax omni8 omni4 omni2 mat111 mat114 matcd sp2"}
for r in $rows; do
  case $r in
    minmax) quant minmax minmax 8;               ev minmax "MinMax int8 (sliced)" "$all" ;;
    omni8)  quant omni8 omniquant 8;              ev omni8 "OmniQuant R={8} (sliced)" "$all" ;;
    omni4)  quant omni4 omniquant 4;              ev omni4 "OmniQuant R={4}" "4" ;;
    omni2)  quant omni2 omniquant 2;              ev omni2 "OmniQuant R={2}" "2" ;;
    mat111) quant mat111 omniquant 8,4,2;         ev mat111 "MatQuant R={8,4,2} λ=(1,1,1)" "$all" ;;
    mat114) quant mat114 omniquant 8,4,2 --lambda 1,1,4; ev mat114 "MatQuant R={8,4,2} λ=(1,1,4)" "$all" ;;
    matcd)  quant matcd omniquant 8,4,2 --co-distill 8:2; ev matcd "MatQuant R={8,4,2} + co-distill 8→2" "$all" ;;
    sp2)    quant sp2 omniquant 2 --parent-grid;  ev sp2 "Single-precision MatQuant R={2}" "$all" ;;
    *) echo "unknown row $r" >&2; exit 2 ;;
  esac
done

# one table: a row per model, a column per width, "ppl (KL)"
echo "| $which, FFN, per channel | int8 | int6 | int4 | int3 | int2 | 2x (eff. bits) |"
echo "|---|---|---|---|---|---|---|"
awk '
  { row = $0; sub(/.*"row":"/, "", row); sub(/".*/, "", row)
    b = $0; sub(/.*"bits":"/, "", b); sub(/".*/, "", b)
    p = $0; sub(/.*"ppl":/, "", p); sub(/,.*/, "", p)
    k = $0; sub(/.*"kl":/, "", k); sub(/[,}].*/, "", k)
    e = $0; sub(/.*"eff_bits":/, "", e); sub(/,.*/, "", e)
    if (!(row in seen)) { seen[row] = 1; order[++n] = row }
    cell[row, b] = sprintf("%.3f (%.4f)", p, k); if (b == "2x") eff[row] = e }
  END { split("8 6 4 3 2 2x", ws, " ")
        for (i = 1; i <= n; i++) { r = order[i]; line = "| " r
          for (j = 1; j <= 6; j++) { c = cell[r, ws[j]]; if (c == "") c = "–"
            if (ws[j] == "2x" && c != "–") c = c " " sprintf("%.3f", eff[r]); line = line " | " c }
          print line " |" } }' "$json"
echo
echo "eval: $ppl, ctx $ctx, $CHUNKS chunks; cells: perplexity (KL to the unquantized model, nats/token)."
echo "calibration: $calib, $SAMPLES x $LEN tokens, $EPOCHS epochs per block for every learned row; AdamW lr 1e-2, wd 0, LWC init 4.0."

# parent-code histograms, MinMax vs MatQuant R={8,4,2} (matquant inspect's 16 bins) as an SVG
if [ -d "$out/$which-minmax" ] && [ -d "$out/$which-mat111" ]; then
  svg=$out/$which-parent-codes.svg
  { "$bin" inspect "$out/$which-minmax"; echo "=== next"; "$bin" inspect "$out/$which-mat111"; } 2>/dev/null | awk -v title="$which: parent codes of the FFN weights, MinMax vs MatQuant R={8,4,2} (OmniQuant)" '
    /^=== next/ { s = 2; next }
    /histogram in 16 bins/ { if (!s) s = 1; on = 1; i = 0; next }
    on && /^ *[0-9]+- *[0-9]+ / { for (f = 1; f <= NF; f++) if ($f ~ /%$/) v[s, i] = $f + 0
                                    if (++i == 16) on = 0; next }
    END {
      W = 760; H = 360; L = 60; B = 300; bw = (W - L - 20) / 16; mx = 0
      for (k = 1; k <= 2; k++) for (j = 0; j < 16; j++) if (v[k, j] > mx) mx = v[k, j]
      mx = int(mx / 2 + 1) * 2
      printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">\n", W, H
      printf "<text x=\"%d\" y=\"18\" font-size=\"13\">%s</text>\n", L, title
      for (t = 0; t <= mx; t += 2) { y = B - (B - 40) * t / mx
        printf "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%d%%</text>\n", L, W - 20, y, y, L - 4, y + 4, t }
      col[1] = "#999999"; col[2] = "#d9534f"; name[1] = "MinMax int8"; name[2] = "MatQuant R={8,4,2}"
      for (j = 0; j < 16; j++) {
        x = L + j * bw
        for (k = 1; k <= 2; k++) { h = (B - 40) * v[k, j] / mx
          printf "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n", x + 2 + (k - 1) * (bw - 4) / 2, B - h, (bw - 4) / 2, h, col[k] }
        printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", x + bw / 2, B + 14, j * 16 }
      printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">parent code (bins of 16: 0-15, 16-31, ...), share of weights</text>\n", (W + L) / 2, B + 32
      for (k = 1; k <= 2; k++) printf "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">%s</text>\n", W - 200, 28 + 16 * k, col[k], W - 184, 38 + 16 * k, name[k]
      print "</svg>" }' > "$svg"
  echo
  echo "parent-code histograms: $svg"
fi

# throughput of the MatQuant R={8,4,2} run, from its log
log=$out/$which-mat111.log
if [ -f "$log" ]; then
  # the machine's fp32 FMA peak at 1 and 2 threads from bench/membw (12 independent zmm FMA chains per core)
  [ -x build/membw ] || make -s build/membw
  peaks=$(build/membw --json | tail -n 1)
  cores=$(nproc); [ "$cores" -gt 2 ] && cores=2
  per_core=$(echo "$peaks" | sed -E "s/.*\"fma_gflops_${cores}t\":([0-9.]+).*/\1/")
  per_core=$(awk -v p="$per_core" -v n="$cores" 'BEGIN { print p / n }')
  awk -v pc="$per_core" -v nc="$cores" '
    /trained:/ { for (i = 1; i <= NF; i++) { if ($i == "tokens/s;") tps[++n] = $(i-1); if ($i == "GFLOP/s") gf[n] = $(i-1) } }
    END { if (!n) exit
          for (i = 1; i <= n; i++) { st += tps[i]; sg += gf[i] }
          printf "throughput (MatQuant R={8,4,2}, %d blocks): %.0f calibration tokens/s per block on average (3 widths, forward+backward each); ", n, st/n
          printf "linear products %.1f GFLOP/s = %.0f%% of the measured fp32 FMA peak %.1f GFLOP/s (%d cores x %.1f)\n", sg/n, 100*sg/n/(pc*nc), pc*nc, nc, pc }' "$log"
  echo "(the machine is shared: the peak and the products are measured under whatever else runs)"
fi

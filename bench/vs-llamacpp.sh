#!/usr/bin/env bash
# vs-llamacpp.sh — matquant's integer kernels against llama.cpp on one model,
# in one run, with the same threads, prompt and generation lengths:
#   - the machine's ceilings (build/membw: read bandwidth, FMA/VNNI peaks);
#   - matquant: the F16/F32 GGUF quantized with MinMax --scope all, served at
#     8, 6, 4, 3, 2, 2x with the head at int8 (matquant bench --json);
#   - llama.cpp (llama-cpp-python): Q8_0, Q4_0, Q2_K made from the same GGUF
#     by its quantize call (scripts/bench_llamacpp.py);
# then one table with tok/s and the effective bandwidth (weight bytes per
# token x tg tok/s) as a fraction of the measured read bandwidth at that
# thread count (the highest of build/membw before, between and after the
# runs). llama.cpp's bytes per token are its file size (that counts
# its whole embedding table, of which a token reads one row: a slight
# overestimate of its bandwidth).
#
# usage: bench/vs-llamacpp.sh MODEL.gguf [WORKDIR]
#   env: THREADS="1 2" P=128 N=64 REPS=3 MQ_BIN=build/matquant
# Needs: make all build/membw; python3 with llama_cpp (pip install llama-cpp-python==0.3.36), jq.
# Another llama.cpp build (AVX2 only, or without AMX where its AMX path
# crashes: ggml-org/llama.cpp#20824, docs/results.md §16) is used by putting
# its --target directory first: PYTHONPATH=/tmp/llama-noamx bench/vs-llamacpp.sh ...
# The machine is shared: figures are medians of REPS and still depend on load
# (the script prints the load average before and after). matquant's OpenMP
# threads spin at barriers (OMP_WAIT_POLICY=active, as llama.cpp's pool
# does): a decode step has ~150 parallel products, and sleeping threads cost
# ~45% of int8 generation at 2 threads on an idle machine (measured
# 1 December 2026). On a busy machine set OMP_WAIT_POLICY=passive.
set -eu
gguf=${1:?usage: bench/vs-llamacpp.sh MODEL.gguf [WORKDIR]}
work=${2:-/tmp/mq-vs-llamacpp/$(basename "$gguf" .gguf)}
bin=${MQ_BIN:-build/matquant}
THREADS=${THREADS:-1 2}; P=${P:-128}; N=${N:-64}; REPS=${REPS:-3}
mkdir -p "$work"
python3 -c "import llama_cpp" 2>/dev/null || { echo "vs-llamacpp: python3 cannot import llama_cpp (pip install llama-cpp-python)" >&2; exit 1; }
[ -x build/membw ] || make -s build/membw
echo "# $(date -u +%FT%TZ) $(uname -n), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
peaks=$(build/membw --json | tail -n 1)
echo "# ceilings: $peaks"
ck="$work/matquant-minmax-all"
if [ ! -f "$ck/model.safetensors" ]; then
  "$bin" quantize "$gguf" -o "$ck" --method minmax --scope all >&2
fi
plans="8,head:8;6,head:8;4,head:8;3,head:8;2,head:8;2x,head:8"
res="$work/results.jsonl"; : > "$res"
for t in $THREADS; do
  OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-active} "$bin" bench "$ck" --bits "$plans" -p "$P" -n "$N" -t "$t" --reps "$REPS" --json \
    | grep '^{' | jq -c '. + {engine: "matquant"}' >> "$res"
done
peaksm=$(build/membw --json | tail -n 1)
echo "# ceilings between the engines: $peaksm"
tl=$(echo $THREADS | tr ' ' ',')
python3 scripts/bench_llamacpp.py "$gguf" "$work" --types Q8_0,Q4_0,Q2_K --threads "$tl" -p "$P" -n "$N" \
  --reps "$REPS" >> "$res"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
# this VM's bandwidth drifts by tens of percent within minutes: measure the
# ceilings again between the engines and after the runs, and divide by the
# highest of the three readings
peaks2=$(build/membw --json | tail -n 1)
echo "# ceilings after: $peaks2"
peaks=$(jq -c -n --argjson a "$peaks" --argjson m "$peaksm" --argjson b "$peaks2" \
  '$a + {read_gbs_1t: ([$a.read_gbs_1t, $m.read_gbs_1t, $b.read_gbs_1t] | max),
         read_gbs_2t: ([$a.read_gbs_2t, $m.read_gbs_2t, $b.read_gbs_2t] | max)}')
echo
echo "| engine | weights | threads | pp tok/s | tg tok/s | MB/token | GB/s | of read BW |"
echo "|---|---|---|---|---|---|---|---|"
jq -r --argjson pk "$peaks" '
  (if .engine == "matquant" then .bytes_per_token else .file_bytes end) as $b |
  (if .threads == 1 then $pk.read_gbs_1t else $pk.read_gbs_2t end) as $bw |
  ($b * .tg_tps / 1e9) as $gbs |
  "| \(.engine) | \(if .engine == "matquant" then .bits else .type end) | \(.threads) | \(.pp_tps * 10 | round / 10) | \(.tg_tps * 100 | round / 100) | \($b / 1e6 | round) | \($gbs * 100 | round / 100) | \($gbs / $bw * 100 | round)% |"
' "$res"
echo
echo "# raw results: $res"

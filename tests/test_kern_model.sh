#!/usr/bin/env bash
# The integer kernels inside the model: stories260K is quantized (MinMax,
# --scope all) into a temp dir, and its TinyStories perplexity at widths
# 8, 6, 4, 3, 2, 2x and 4,head:8 through each kernel variant (MQ_KERNELS) is
# compared with the fp32 dequantized path (MQ_KERNELS=float): within 0.5%,
# and not identical (so the kernels did run). Also `matquant bench`: options,
# errors and its JSON line.
# Ends with "N passed, N failed"; the exit code is the verdict.
# Covers quant/qmodel.c, nn/forward.c's packed hook, quant/kern_*.c,
# tools/cmd_bench.c end to end.
set -u
bin=${MQ_BIN:-build/matquant}
data=${MQ_SHARED_DATA:-../shared/data}
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }

if [ ! -d "$data/stories260K" ]; then
  echo "SKIP: $data/stories260K not found; kernel model tests skipped"
  echo "test_kern_model.sh: $pass passed, $fail failed"
  exit 0
fi
m="$data/stories260K/stories260K.bin"; t="$data/stories260K/tok512.bin"
txt="$data/tinystories/tinystories_validation_head.txt"
q=/tmp/mq_kern_q.$$
trap 'rm -rf "$q"' EXIT
"$bin" quantize "$m" --tokenizer "$t" -o "$q" --method minmax --scope all >/dev/null 2>&1 \
  && ok || bad "quantize stories260K --scope all"
plans="8;6;4;3;2;2x;4,head:8"
ppls() { # variant -> "bits ppl" lines
  MQ_KERNELS=$1 "$bin" eval "$q" --bits "$plans" --no-base --ppl "$txt" --ctx 256 --chunks 8 -t 1 -q --json 2>/dev/null \
    | grep '^{' | sed -E 's/.*"bits":"([^"]*)".*"ppl":([0-9.]+).*/\1 \2/'
}
ref=$(ppls float)
[ "$(printf '%s\n' "$ref" | grep -c .)" -eq 7 ] && ok || bad "float path rows: $ref"
for k in scalar avx2 avx512; do
  if ! grep -qw "$( [ $k = avx512 ] && echo avx512_vnni || echo ${k/scalar/fpu})" /proc/cpuinfo; then
    echo "SKIP: this CPU lacks $k; its model test is skipped"; continue
  fi
  got=$(ppls $k)
  joined=$(join <(printf '%s\n' "$ref" | sort) <(printf '%s\n' "$got" | sort))
  n=$(printf '%s\n' "$joined" | grep -c .)
  [ "$n" -eq 7 ] && ok || bad "$k: $n plans evaluated: $got"
  while read -r bits a b; do
    awk -v a="$a" -v b="$b" 'BEGIN{d=(b-a)/a; if (d<0) d=-d; exit !(d <= 0.005 && a != b)}' \
      && ok || bad "$k at $bits: ppl $b vs float $a (want within 0.5% and not identical)"
  done <<< "$joined"
done

# matquant bench: help, usage errors, a fp32 model, JSON rows of a checkpoint
expect_error() { # CODE PATTERN -- command...: exit CODE, one stderr line matching PATTERN
  local code=$1 pat=$2; shift 3
  local err rc; err=$("$@" 2>&1 >/dev/null); rc=$?
  if [ "$rc" -ne "$code" ] || [ "$(printf '%s\n' "$err" | grep -c .)" -ne 1 ] || ! printf '%s' "$err" | grep -Eq -- "$pat"; then
    bad "$* -> exit $rc, stderr '$err' (want $code, /$pat/)"; else ok; fi
}
"$bin" bench --help | grep -q -- "--json" && ok || bad "bench --help"
expect_error 2 "expected one MODEL" -- "$bin" bench
expect_error 2 "must be >= 1" -- "$bin" bench "$q" -p 0
expect_error 2 "must be >= 1" -- "$bin" bench "$q" --reps 0
expect_error 2 "unknown option" -- "$bin" bench "$q" --frobnicate
expect_error 2 "bit plan '9'" -- "$bin" bench "$q" --bits 9
expect_error 1 "applies to matquant checkpoints" -- "$bin" bench "$m" --bits 4
expect_error 1 "exceeds the model's context" -- "$bin" bench "$q" -p 400 -n 200
expect_error 1 "no such file" -- "$bin" bench /nonexistent.gguf
out=$("$bin" bench "$m" -p 8 -n 4 --reps 1 -t 1 --json 2>/dev/null)
printf '%s' "$out" | grep -q '^{"bits":"fp32"' && ok || bad "bench of a fp32 model: $out"
out=$("$bin" bench "$q" --bits "8;2x" -p 8 -n 4 --reps 3 -t 1 --json 2>/dev/null); rc=$?
js=$(printf '%s\n' "$out" | grep '^{')
[ $rc -eq 0 ] && [ "$(printf '%s\n' "$js" | grep -c .)" -eq 2 ] && ok || bad "bench rows (rc $rc): $out"
for f in bits pp_tps tg_tps bytes_per_token gbps eff_bits threads; do
  [ "$(printf '%s\n' "$js" | grep -c "\"$f\":")" -eq 2 ] && ok || bad "bench json lacks $f: $js"
done
b8=$(printf '%s\n' "$js" | sed -n 1p | sed -E 's/.*"bytes_per_token":([0-9]+).*/\1/')
b2=$(printf '%s\n' "$js" | sed -n 2p | sed -E 's/.*"bytes_per_token":([0-9]+).*/\1/')
[ -n "$b8" ] && [ -n "$b2" ] && [ "$b2" -lt "$b8" ] && ok || bad "2x reads $b2 bytes per token, 8 reads $b8"
printf '%s\n' "$js" | grep -q '"tg_tps":0.000' && bad "zero generation speed: $js" || ok

echo "test_kern_model.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]

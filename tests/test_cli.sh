#!/usr/bin/env bash
# CLI tests of `matquant run` and `matquant eval`: --help, usage errors
# (exit 2), bad model files (one clear error line, exit 1, no crash), and the
# stories260K acceptance run (greedy story of ../shared/data/SOURCES.md).
# Ends with "N passed, N failed"; the exit code is the verdict.
# Covers tools/*.c and core/threads.c (--threads) end to end.
set -u
bin=${MQ_BIN:-build/matquant}
data=${MQ_SHARED_DATA:-../shared/data}
fx=tests/fixtures
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }

# expect_error CODE PATTERN -- command...: exit code CODE, exactly one stderr
# line, containing PATTERN (a grep -E regex).
expect_error() {
  local code=$1 pat=$2; shift 3
  local err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  local lines; lines=$(printf '%s\n' "$err" | grep -c .)
  if [ "$rc" -ne "$code" ]; then bad "$* -> exit $rc, want $code: $err"; return; fi
  if [ "$lines" -ne 1 ]; then bad "$* -> $lines stderr lines, want 1: $err"; return; fi
  if ! printf '%s' "$err" | grep -Eq -- "$pat"; then bad "$* -> '$err' lacks /$pat/"; return; fi
  ok
}

# --help of every command, and the top level
for c in run eval inspect; do
  out=$("$bin" $c --help 2>&1); rc=$?
  if [ $rc -eq 0 ] && printf '%s' "$out" | grep -q "usage: matquant $c"; then ok; else bad "$c --help (exit $rc)"; fi
done
"$bin" --help | grep -q "commands:" && ok || bad "matquant --help"
expect_error 2 "unknown command" -- "$bin" frobnicate
expect_error 2 "unknown option '--bogus'" -- "$bin" run x --bogus
expect_error 2 "expects an integer" -- "$bin" run x -n ten
expect_error 2 "needs a value" -- "$bin" eval x --ppl
expect_error 2 "give --ppl FILE" -- "$bin" eval x
expect_error 2 "expected one MODEL" -- "$bin" run

# bad model inputs: one line naming what is wrong, exit 1
expect_error 1 "no such file" -- "$bin" run /nonexistent/model -n 1
expect_error 1 "up_proj.weight.*non-finite" -- "$bin" run $fx/hf_nan -n 1
expect_error 1 "k_proj.weight.*shape \[5, 8\]" -- "$bin" run $fx/hf_bad_shape -n 1
expect_error 1 "model.norm.weight.*dtype I64" -- "$bin" run $fx/hf_bad_dtype -n 1
expect_error 1 "down_proj.weight' not found" -- "$bin" run $fx/hf_missing_tensor -n 1
expect_error 1 "config.json: invalid JSON" -- "$bin" run $fx/hf_config_invalid_json -n 1
expect_error 1 "missing key \"hidden_size\"" -- "$bin" run $fx/hf_config_missing_key -n 1
expect_error 1 "model_type \"gpt_neox\" is not supported" -- "$bin" run $fx/hf_config_unknown_arch -n 1
expect_error 1 "not a multiple of kv head count" -- "$bin" run $fx/hf_config_bad_heads -n 1
expect_error 1 "\"hidden_size\" must be a non-negative integer" -- "$bin" run $fx/hf_config_bad_type -n 1
expect_error 1 "safetensors" -- "$bin" run $fx/hf_no_weights -n 1
expect_error 1 "no tokenizer found" -- "$bin" run $fx/hf_ok -n 1
for f in $fx/*.safetensors $fx/*.gguf; do
  [ -f "$f" ] || continue
  case "$f" in *nan*) continue;; esac   # valid containers: checked by the loaders
  expect_error 1 "$(basename "$f")" -- "$bin" run "$f" -n 1
done

if [ -d "$data/stories260K" ]; then
  m="$data/stories260K/stories260K.bin"; t="$data/stories260K/tok512.bin"
  expect_error 1 "no tokenizer found.*--tokenizer" -- "$bin" run "$m" -n 4
  out=$("$bin" run "$m" --tokenizer "$t" --temp 0 -n 60 --ids 2>/tmp/mq_cli_err.$$); rc=$?
  ids=$(grep '^generated ids:' /tmp/mq_cli_err.$$ | cut -d: -f2)
  rm -f /tmp/mq_cli_err.$$
  want="Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball."
  [ $rc -eq 0 ] && [[ "$out" == "$want"* ]] && ok || bad "stories260K greedy text: '$out'"
  [[ "$ids" == " 403 407 261 378 432 383 286 261 376 298 315 421"* ]] && ok || bad "stories260K greedy ids: $ids"
  n=$(echo $ids | wc -w); [ "$n" -eq 60 ] && ok || bad "stories260K generated $n tokens, want 60"
  # sampling is reproducible for a seed and differs from greedy
  a=$("$bin" run "$m" --tokenizer "$t" --temp 1 --seed 7 -n 40 2>/dev/null)
  b=$("$bin" run "$m" --tokenizer "$t" --temp 1 --seed 7 -n 40 2>/dev/null)
  [ "$a" == "$b" ] && [ "$a" != "$out" ] && ok || bad "seeded sampling not reproducible"
  # perplexity on TinyStories (in-domain: must be low) with the JSON line
  js=$("$bin" eval "$m" --tokenizer "$t" --ppl "$data/tinystories/tinystories_validation_head.txt" \
        --ctx 256 --chunks 8 --json -q 2>&1 | grep '^{')
  ppl=$(printf '%s' "$js" | sed -E 's/.*"ppl":([0-9.]+).*/\1/')
  awk -v p="$ppl" 'BEGIN{exit !(p > 1.5 && p < 20)}' && ok || bad "stories260K TinyStories ppl '$ppl' ($js)"
  printf '%s' "$js" | grep -q '"chunks":8' && printf '%s' "$js" | grep -q '"tokens":1016' && ok \
    || bad "eval json fields: $js"
  expect_error 1 "fewer than one chunk" -- "$bin" eval "$m" --tokenizer "$t" --ppl tests/fixtures/hf_ok/config.json --ctx 512
  expect_error 1 "cannot open" -- "$bin" eval "$m" --tokenizer "$t" --ppl /nonexistent.txt
  # quantize -> checkpoint -> eval/run at plans; a killed quantize leaves nothing under the final name
  q=/tmp/mq_cli_q.$$; rm -rf "$q" "$q".tmp.*
  "$bin" quantize "$m" --tokenizer "$t" -o "$q" --method minmax 2>/dev/null && [ -f "$q/model.safetensors" ] \
    && [ -f "$q/tokenizer.bin" ] && ok || bad "quantize minmax stories260K"
  out=$("$bin" eval "$q" --bits 8,4,2x --base "$m" --ppl "$data/tinystories/tinystories_validation_head.txt" \
        --ctx 128 --chunks 4 --json -q 2>&1)
  [ "$(printf '%s\n' "$out" | grep -c '^{')" -eq 3 ] && printf '%s' "$out" | grep -q '"bits":"2x","eff_bits":2.0' \
    && printf '%s' "$out" | grep -q '"kl":' && ok || bad "eval --bits rows: $out"
  "$bin" run "$q" --bits "0-1:2,2-4:8" -n 8 --temp 0 >/dev/null 2>&1 && ok || bad "run a checkpoint at a per-layer plan"
  expect_error 2 "bit plan '9'" -- "$bin" eval "$q" --bits 9 --ppl "$data/tinystories/tinystories_validation_head.txt"
  expect_error 1 "names layer 7 but the model has 5 layers" -- "$bin" run "$q" --bits 0-7:4 -n 1
  expect_error 1 "applies to matquant checkpoints" -- "$bin" eval "$m" --tokenizer "$t" --bits 4 \
    --ppl "$data/tinystories/tinystories_validation_head.txt"
  "$bin" inspect "$q" | grep -q "matquant.method *minmax" && ok || bad "inspect shows checkpoint metadata"
  rm -rf "$q"
  "$bin" quantize "$m" --tokenizer "$t" -o "$q" --method gptq --calib-samples 512 --calib-len 256 \
    --calib "$data/tinystories/tinystories_validation_head.txt" >/dev/null 2>&1 &
  pid=$!; sleep 1.5; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  [ ! -e "$q" ] && ok || bad "a killed quantize left $q behind"
  rm -rf "$q" "$q".tmp.*
  expect_error 2 "--method must be minmax or gptq" -- "$bin" quantize "$m" -o "$q" --method awq
  expect_error 2 "--lambda needs 3 numbers" -- "$bin" quantize "$m" -o "$q" --lambda 1,2
  expect_error 2 "outside 1..8" -- "$bin" quantize "$m" -o "$q" --train-bits 8,9
  expect_error 1 "not a matquant checkpoint; refusing" -- "$bin" quantize "$m" --tokenizer "$t" -o tests/fixtures/hf_ok --method minmax
else
  echo "SKIP: $data/stories260K not found; stories260K CLI tests skipped"
fi
echo "test_cli.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]

#!/usr/bin/env bash
# CLI tests of `matquant quantize --method qat` (src/train/qat.c through
# tools/cmd_quantize.c): a short distillation run on stories260K whose
# checkpoint `eval --bits 8,6,4,3,2,2x` reads; a run stopped with
# --max-steps and one killed with SIGKILL, both resumed with --resume, give
# the same final loss and a byte-identical checkpoint as an uninterrupted
# run; bad options (exit 2) and bad resumes (exit 1) with one clear line.
# Needs ../shared/data (skips otherwise). Ends with "N passed, N failed".
set -u
bin=${MQ_BIN:-build/matquant}
data=${MQ_SHARED_DATA:-../shared/data}
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
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

model=$data/stories260K/stories260K.bin
if [ ! -f "$model" ]; then
  echo "SKIP: $model not found; QAT CLI tests skipped"
  echo "test_qat.sh: $pass passed, $fail failed"; exit 0
fi
tmp=$(mktemp -d /tmp/mq_qat_cli.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
tail -c 60000 "$data/tinystories/tinystories_validation_head.txt" | sed 1d > "$tmp/train.txt"
export OMP_WAIT_POLICY=passive
common=("$model" --tokenizer "$data/stories260K/tok512.bin" --method qat --data "$tmp/train.txt"
        --tokens 3072 --seq-len 64 --batch 4 --warmup 2 --lr 3e-4 --co-distill 8:2 -t 2)
final_loss() { grep -Eo 'final loss [0-9.e+-]+' "$1" | tail -n 1 | awk '{print $3}'; }

# 1. uninterrupted run: 12 steps, a checkpoint every command reads
"$bin" quantize "${common[@]}" -o "$tmp/full" 2> "$tmp/full.log"; rc=$?
if [ $rc -eq 0 ] && [ -f "$tmp/full/model.safetensors" ]; then ok; else bad "qat run exit $rc: $(tail -n 3 "$tmp/full.log")"; fi
grep -q "step 12/12 loss" "$tmp/full.log" && ok || bad "no step 12/12 line"
l_full=$(final_loss "$tmp/full.log")
[ -n "$l_full" ] && ok || bad "no final loss in the log"
[ ! -e "$tmp/full.qat-state" ] && ok || bad "training state left after a finished run"
# the loss goes down from step 1 to step 12
l1=$(grep -Eo 'step 1/12 loss [0-9.]+' "$tmp/full.log" | awk '{print $4}')
awk -v a="$l1" -v b="$l_full" 'BEGIN{exit !(b < a)}' && ok || bad "loss did not decrease: $l1 -> $l_full"
out=$("$bin" eval "$tmp/full" --bits 8,6,4,3,2,2x --base "$model" --ppl "$data/tinystories/tinystories_validation_head.txt" \
      --ctx 128 --chunks 2 --json -q 2>/dev/null)
n=$(printf '%s\n' "$out" | grep -c '^{')
[ "$n" -eq 6 ] && ok || bad "eval of the qat checkpoint gave $n JSON rows, want 6"
"$bin" inspect "$tmp/full" 2>/dev/null | grep -q "qat" && ok || bad "inspect does not show method qat"

# 2. stopped after 5 steps, resumed: same final loss, same bytes
"$bin" quantize "${common[@]}" -o "$tmp/stop" --save-every 100 --max-steps 5 2> "$tmp/stop1.log"; rc=$?
[ $rc -eq 0 ] && [ -f "$tmp/stop.qat-state" ] && [ ! -e "$tmp/stop" ] && ok || bad "--max-steps 5: exit $rc, state/checkpoint wrong"
"$bin" quantize "${common[@]}" -o "$tmp/stop" --resume 2> "$tmp/stop2.log"; rc=$?
grep -q "resumed .* at step 5/12" "$tmp/stop2.log" && ok || bad "resume did not start at step 5: $(head -n 3 "$tmp/stop2.log")"
l_stop=$(final_loss "$tmp/stop2.log")
[ $rc -eq 0 ] && [ "$l_stop" = "$l_full" ] && ok || bad "stopped+resumed final loss '$l_stop' vs uninterrupted '$l_full' (exit $rc)"
cmp -s "$tmp/full/model.safetensors" "$tmp/stop/model.safetensors" && ok || bad "stopped+resumed checkpoint differs"

# 3. killed (SIGKILL) after a state save, resumed
"$bin" quantize "${common[@]}" -o "$tmp/kill" --save-every 2 2> "$tmp/kill1.log" &
pid=$!
for _ in $(seq 1 400); do [ -f "$tmp/kill.qat-state" ] && break; sleep 0.05; done
if [ -f "$tmp/kill.qat-state" ] && kill -9 $pid 2>/dev/null; then
  wait $pid 2>/dev/null
  [ ! -e "$tmp/kill" ] && ok || bad "a killed run left a checkpoint"
  "$bin" quantize "${common[@]}" -o "$tmp/kill" --save-every 2 --resume 2> "$tmp/kill2.log"; rc=$?
  l_kill=$(final_loss "$tmp/kill2.log")
  [ $rc -eq 0 ] && [ "$l_kill" = "$l_full" ] && ok || bad "killed+resumed final loss '$l_kill' vs '$l_full' (exit $rc): $(tail -n 2 "$tmp/kill2.log")"
  cmp -s "$tmp/full/model.safetensors" "$tmp/kill/model.safetensors" && ok || bad "killed+resumed checkpoint differs"
else
  wait $pid 2>/dev/null
  echo "SKIP: the run ended before it could be killed"
fi

# 4. bad options: usage errors (exit 2) and bad resumes (exit 1)
q=(quantize "${common[@]}" -o "$tmp/bad")
expect_error 2 "source must be wider" -- "$bin" "${q[@]}" --co-distill 2:8
expect_error 2 "both widths must be in --train-bits" -- "$bin" "${q[@]}" --co-distill 6:2
expect_error 2 "co-distill: expected FROM:TO" -- "$bin" "${q[@]}" --co-distill eight
expect_error 2 "seq-len >= 2, --batch >= 1" -- "$bin" "${q[@]}" --batch 0
expect_error 2 "lists width 4 twice" -- "$bin" "${q[@]}" --train-bits 8,4,4
expect_error 2 "max-steps must be >= 0" -- "$bin" "${q[@]}" --max-steps -1
expect_error 1 "cannot read the training state" -- "$bin" "${q[@]}" --resume
expect_error 1 "exceeds the model's context" -- "$bin" "${q[@]}" --seq-len 100000
"$bin" quantize "${common[@]}" -o "$tmp/mis" --max-steps 1 2>/dev/null
expect_error 1 "other options: 'lr=0.000300000014' in the state, 'lr=0.00100000005' now" -- \
  "$bin" quantize "${common[@]}" -o "$tmp/mis" --resume --lr 1e-3
echo "not a state" > "$tmp/mis.qat-state"
expect_error 1 "not a matquant QAT training state" -- "$bin" quantize "${common[@]}" -o "$tmp/mis" --resume
expect_error 1 "data.*(no such file|cannot open)" -- "$bin" quantize "${common[@]}" -o "$tmp/bad" --data /nonexistent.txt

echo "test_qat.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]

#!/usr/bin/env bash
# CLI tests of `matquant quantize --method omniquant` on stories260K: a run
# writes a checkpoint that evaluates at 8, 4 and 2 bits (int2 closer to the
# unquantized model than MinMax's int2), a run killed with SIGKILL after its
# second block resumes with --resume from OUT.partial/ and ends with the same
# checkpoint byte for byte as an uninterrupted run, a resume with other
# options is refused naming the state file, and bad options exit 2.
# Ends with "N passed, N failed"; the exit code is the verdict.
# Covers tools/cmd_quantize.c (omniquant options) and train/omniquant.c.
set -u
bin=${MQ_BIN:-build/matquant}
data=${MQ_SHARED_DATA:-../shared/data}
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
expect_error() { # CODE PATTERN -- command...
  local code=$1 pat=$2; shift 3
  local err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  if [ "$rc" -ne "$code" ]; then bad "$* -> exit $rc, want $code: $err"; return; fi
  if ! printf '%s' "$err" | grep -Eq -- "$pat"; then bad "$* -> '$err' lacks /$pat/"; return; fi
  ok
}

if [ ! -d "$data/stories260K" ]; then
  echo "SKIP: $data/stories260K not found; omniquant CLI tests skipped"
  echo "test_omniquant.sh: $pass passed, $fail failed"
  exit 0
fi
export OMP_WAIT_POLICY=passive
m=$data/stories260K/stories260K.bin; t=$data/stories260K/tok512.bin
txt=$data/tinystories/tinystories_validation_head.txt
w=/tmp/mq_omni_cli.$$; mkdir -p "$w"
tail -c 200000 "$txt" | sed 1d > "$w/calib.txt"   # calibration disjoint from the eval chunks (file head)
common=(--tokenizer "$t" --method omniquant --calib "$w/calib.txt" --calib-samples 16 --calib-len 128 --epochs 4)

# an uninterrupted run
"$bin" quantize "$m" -o "$w/a" "${common[@]}" 2> "$w/a.log" && [ -f "$w/a/model.safetensors" ] && ok \
  || bad "quantize --method omniquant: $(tail -n 3 "$w/a.log")"
grep -q "block 5/5 epoch 4/4: loss" "$w/a.log" && grep -q "tokens/s" "$w/a.log" && ok || bad "progress per block and epoch"
[ ! -e "$w/a.partial" ] && ok || bad "state directory left after a finished run"
"$bin" inspect "$w/a" 2>/dev/null | grep -q "omniquant" && ok || bad "inspect shows method omniquant"
"$bin" quantize "$m" --tokenizer "$t" -o "$w/mm" --method minmax 2>/dev/null || bad "minmax"
ev() { "$bin" eval "$1" --bits 8,4,2 --base "$m" --ppl "$txt" --ctx 128 --chunks 4 --json -q 2>/dev/null | grep '^{'; }
oq=$(ev "$w/a"); mm=$(ev "$w/mm")
[ "$(printf '%s\n' "$oq" | grep -c '"bits":"[842]"')" -eq 3 ] && ok || bad "eval at 8,4,2: $oq"
kl2() { printf '%s\n' "$1" | grep '"bits":"2"' | sed -E 's/.*"kl":([0-9.e+-]+).*/\1/'; }
awk -v a="$(kl2 "$oq")" -v b="$(kl2 "$mm")" 'BEGIN { exit !(a < b) }' && ok \
  || bad "omniquant int2 KL $(kl2 "$oq") not below MinMax int2 KL $(kl2 "$mm")"

# killed after block 2, then resumed
"$bin" quantize "$m" -o "$w/b" "${common[@]}" 2> "$w/b.log" &
pid=$!
for i in $(seq 1 600); do [ -f "$w/b.partial/block_001.bin" ] && break; sleep 0.02; done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
if [ -f "$w/b.partial/block_001.bin" ] && [ ! -e "$w/b" ]; then
  ok
  expect_error 1 "block_000.bin: written with other options" -- \
    "$bin" quantize "$m" -o "$w/b" "${common[@]}" --epochs 3 --resume
  "$bin" quantize "$m" -o "$w/b" "${common[@]}" --resume 2> "$w/b2.log" && ok || bad "resume: $(tail -n 2 "$w/b2.log")"
  grep -q "block 2/5 restored" "$w/b2.log" && grep -q "resuming at block" "$w/b2.log" && ok \
    || bad "resume restores the finished blocks: $(grep -E 'restored|resuming' "$w/b2.log")"
  cmp -s "$w/a/model.safetensors" "$w/b/model.safetensors" && ok || bad "resumed checkpoint differs from an uninterrupted run"
else
  bad "the run was not killed between blocks (state: $(ls "$w/b.partial" 2>&1))"
fi

# bad options
expect_error 2 "one pair HI:LO" -- "$bin" quantize "$m" -o "$w/c" --method omniquant --co-distill 8:2:x
expect_error 2 "8 >= HI > LO >= 1" -- "$bin" quantize "$m" -o "$w/c" --method omniquant --co-distill 2:8
expect_error 2 "epochs >= 0" -- "$bin" quantize "$m" -o "$w/c" --method omniquant --epochs -1
[ ! -e "$w/c" ] && ok || bad "a refused run wrote $w/c"
rm -rf "$w"
echo "test_omniquant.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]

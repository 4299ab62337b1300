#!/usr/bin/env bash
# CLI tests of `matquant inspect`: --help, usage errors (exit 2), every bad
# safetensors/GGUF fixture (one stderr line naming the file and the fault,
# exit 1, no crash), the text and --json output of good files, an HF directory
# with sharded safetensors, and the real SmolLM2 GGUF when present.
# Binary: $MQ_BIN (default build/matquant). Run from the repository root.
# Ends with "N passed, N failed"; the exit code is the verdict.
set -u
bin=${MQ_BIN:-build/matquant}
fx=tests/fixtures
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
tmp=$(mktemp -d /tmp/mq_test_inspect.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# expect_error CODE PATTERN -- command...: exit code CODE, exactly one stderr
# line, starting "matquant inspect: " and matching PATTERN (grep -E).
expect_error() {
  local code=$1 pat=$2; shift 3
  local err rc lines
  err=$("$@" 2>&1 >/dev/null); rc=$?
  lines=$(printf '%s\n' "$err" | grep -c .)
  if [ "$rc" -ne "$code" ]; then bad "$* -> exit $rc, want $code: $err"; return; fi
  if [ "$lines" -ne 1 ]; then bad "$* -> $lines stderr lines, want 1: $err"; return; fi
  if ! printf '%s' "$err" | grep -q '^matquant inspect: '; then bad "$* -> '$err' lacks the prefix"; return; fi
  if ! printf '%s' "$err" | grep -Eq -- "$pat"; then bad "$* -> '$err' lacks /$pat/"; return; fi
  ok
}

# expect_out PATTERN -- command...: exit 0 and stdout matching PATTERN
expect_out() {
  local pat=$1; shift 2
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -ne 0 ]; then bad "$* -> exit $rc: $(printf '%s' "$out" | tail -n 2)"; return; fi
  if ! printf '%s' "$out" | grep -Eq -- "$pat"; then bad "$* -> output lacks /$pat/"; return; fi
  ok
}

if [ ! -x "$bin" ]; then
  echo "FAIL: $bin not found (build it, or set MQ_BIN)"
  echo "test_cli_inspect.sh: 0 passed, 1 failed"; exit 1
fi

# --help documents every option and its default
help=$("$bin" inspect --help); rc=$?
[ $rc -eq 0 ] && ok || bad "inspect --help exit $rc"
for w in "usage: matquant inspect" "--json" "--all" "default" "--help"; do
  printf '%s' "$help" | grep -q -- "$w" && ok || bad "inspect --help lacks '$w'"
done

# usage errors
expect_error 2 "expected one FILE" -- "$bin" inspect
expect_error 2 "unknown option '--bogus'" -- "$bin" inspect $fx/nan.gguf --bogus
expect_error 2 "unexpected argument" -- "$bin" inspect $fx/nan.gguf $fx/nan.safetensors
expect_error 2 "takes no value" -- "$bin" inspect $fx/nan.gguf --json=1
expect_error 1 "no_such_file.gguf: no such file" -- "$bin" inspect $fx/no_such_file.gguf

# bad safetensors files
expect_error 1 "st_truncated.safetensors: tensor 'b': data_offsets \[16, 24\] exceed the data section \(19 bytes\)" -- "$bin" inspect $fx/st_truncated.safetensors
expect_error 1 "st_truncated_header.safetensors: header length .* exceeds the file" -- "$bin" inspect $fx/st_truncated_header.safetensors
expect_error 1 "st_huge_header.safetensors: header length 4611686018427387904 exceeds" -- "$bin" inspect $fx/st_huge_header.safetensors
expect_error 1 "st_overlap.safetensors: tensors 'a' .* and 'b' .* overlap" -- "$bin" inspect $fx/st_overlap.safetensors
expect_error 1 "st_bad_dtype.safetensors: tensor 'x.weight': unknown dtype \"F31\"" -- "$bin" inspect $fx/st_bad_dtype.safetensors
expect_error 1 "st_shape_mismatch.safetensors: tensor 'x.weight': F32 shape needs 16 bytes but data_offsets span 12" -- "$bin" inspect $fx/st_shape_mismatch.safetensors
expect_error 1 "st_offsets_outside.safetensors: tensor 'x.weight': data_offsets \[0, 100\] exceed the data section \(64 bytes\)" -- "$bin" inspect $fx/st_offsets_outside.safetensors
expect_error 1 "st_negative_shape.safetensors: tensor 'x.weight': shape entry 0" -- "$bin" inspect $fx/st_negative_shape.safetensors
expect_error 1 "st_not_json.safetensors: the header is not a JSON object" -- "$bin" inspect $fx/st_not_json.safetensors
expect_error 1 "st_not_object.safetensors: the header is not a JSON object" -- "$bin" inspect $fx/st_not_object.safetensors
expect_error 1 "st_duplicate.safetensors: tensor 'x' appears twice" -- "$bin" inspect $fx/st_duplicate.safetensors
expect_error 1 "st_bad_utf8.safetensors: the header is not valid UTF-8" -- "$bin" inspect $fx/st_bad_utf8.safetensors

# bad GGUF files
expect_error 1 "gguf_truncated.gguf: truncated" -- "$bin" inspect $fx/gguf_truncated.gguf
expect_error 1 "gguf_bad_magic.gguf: not a GGUF file \(bad magic\)" -- "$bin" inspect $fx/gguf_bad_magic.gguf
expect_error 1 "gguf_huge_string.gguf: metadata key has an absurd length" -- "$bin" inspect $fx/gguf_huge_string.gguf
expect_error 1 "gguf_offset_outside.gguf: tensor 't' data .* outside the file's data section" -- "$bin" inspect $fx/gguf_offset_outside.gguf
expect_error 1 "gguf_unknown_type.gguf: tensor 't' has unknown ggml type 99" -- "$bin" inspect $fx/gguf_unknown_type.gguf
expect_error 1 "gguf_bad_version.gguf: GGUF version 7" -- "$bin" inspect $fx/gguf_bad_version.gguf
expect_error 1 "gguf_huge_count.gguf: .* cannot fit" -- "$bin" inspect $fx/gguf_huge_count.gguf
expect_error 1 "gguf_overlap.gguf: tensors 'a' and 'b' overlap" -- "$bin" inspect $fx/gguf_overlap.gguf
expect_error 1 "gguf_huge_array.gguf: key 'tokenizer.ggml.token_type': array of 1099511627776 elements exceeds the file" -- "$bin" inspect $fx/gguf_huge_array.gguf

# good files: NaN-laden ones are valid files (NaN checks belong to the loader)
expect_out "1 tensors, 6 parameters, 24 bytes" -- "$bin" inspect $fx/nan.safetensors
expect_out "note +NaN and Inf on purpose" -- "$bin" inspect $fx/nan.safetensors
expect_out "w +F32 +\[8\] +32" -- "$bin" inspect $fx/nan.gguf
expect_out "test.count +u32 = 7" -- "$bin" inspect $fx/nan.gguf
expect_out "q6_k +Q6_K +\[2, 512\] +840" -- "$bin" inspect tests/golden/gguf_quants.gguf
expect_out "14 tensors, 14336 parameters, 23056 bytes" -- "$bin" inspect tests/golden/gguf_quants.gguf

# --json is one valid JSON object with the totals
if command -v python3 >/dev/null; then
  for f in $fx/nan.safetensors tests/golden/gguf_quants.gguf; do
    out=$("$bin" inspect "$f" --json); rc=$?
    n=$(printf '%s' "$out" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["n_tensors"], len(j["tensors"]), j["n_params"])' 2>/dev/null)
    case "$f" in *.gguf) want="14 14 14336";; *) want="1 1 6";; esac
    [ $rc -eq 0 ] && [ "$n" = "$want" ] && ok || bad "inspect $f --json -> exit $rc, '$n' want '$want'"
  done
else
  echo "SKIP: python3 not found, --json output not parsed"
fi

# an HF directory with two shards and an index
cp $fx/nan.safetensors "$tmp/model-00001-of-00002.safetensors"
cp tests/golden/gguf_quants_expected.safetensors "$tmp/model-00002-of-00002.safetensors"
cat > "$tmp/model.safetensors.index.json" <<'EOF'
{"metadata": {}, "weight_map": {"w": "model-00001-of-00002.safetensors", "q4_0": "model-00002-of-00002.safetensors"}}
EOF
expect_out "15 tensors, 14342 parameters" -- "$bin" inspect "$tmp"
expect_out "safetensors directory" -- "$bin" inspect "$tmp"
printf '{"weight_map": {"w": "model-00002-of-00002.safetensors"}}' > "$tmp/model.safetensors.index.json"
expect_error 1 "tensor 'w' is not in shard model-00002-of-00002.safetensors" -- "$bin" inspect "$tmp"
expect_error 1 "no model.safetensors or model.safetensors.index.json" -- "$bin" inspect $fx

# the real model, when present
model=${MQ_GGUF_MODEL:-$HOME/.cache/matquant/SmolLM2-135M-Instruct.Q4_1.gguf}
if [ -f "$model" ]; then
  out=$("$bin" inspect "$model" --all); rc=$?
  [ $rc -eq 0 ] && ok || bad "inspect $model exit $rc"
  for pat in "GGUF v3, 33 metadata keys, 272 tensors" "llama.block_count +u32 = 30" \
             "tokenizer.ggml.tokens +arr\[str,49152\] = \[\"<\|endoftext\|>\", .*, \.\.\.\]" \
             "token_embd.weight +Q8_0 +\[49152, 576\] +30081024" "blk.0.ffn_down.weight +Q4_1 +\[576, 1536\]" \
             "blk.29.ffn_norm.weight" "^272 tensors, [0-9]+ parameters"; do
    printf '%s\n' "$out" | grep -Eq -- "$pat" && ok || bad "inspect $model lacks /$pat/"
  done
  longest=$(printf '%s\n' "$out" | awk '{ if (length($0) > m) m = length($0) } END { print m }')
  [ "$longest" -lt 400 ] && ok || bad "inspect $model: a line of $longest characters (long arrays not abbreviated)"
else
  echo "SKIP: $model not found, real-model inspect skipped"
fi

echo "test_cli_inspect.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]

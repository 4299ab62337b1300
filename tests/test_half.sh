#!/usr/bin/env bash
# 16-bit serving end to end through the CLI: `matquant quantize` of a BF16
# HF model (tests/golden/models/llama_bf16) keeps its unquantized tensors
# BF16 in the checkpoint (`inspect --all`), an F32 source keeps F32; `bench
# --json` of the served checkpoint reports resident fp32 bytes of only the
# norms and RoPE frequencies (no fp32 copy of the 16-bit tensors or of the
# packed linears), fp32 again for a width without a packed layout (5), and
# everything fp32 under MQ_KERNELS=float.
# Ends with "N passed, N failed"; the exit code is the verdict.
# Covers io/checkpoint.c (source dtypes), the serve path of nn/model.c and
# quant/qmodel.c, tools/cmd_bench.c (resident bytes).
set -u
bin=${MQ_BIN:-build/matquant}
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
d=/tmp/mq_half_cli.$$
trap 'rm -rf "$d" "$d.f32"' EXIT

dtype_of() { # checkpoint tensor -> dtype column of inspect --all
  "$bin" inspect "$1" --all | awk -v n="$2" '$1 == n { print $2 }'
}
json_key() { # json line, key -> value
  printf '%s\n' "$1" | sed -E "s/.*\"$2\":\"?([^,\"}]*).*/\1/"
}

"$bin" quantize tests/golden/models/llama_bf16 -o "$d" --method minmax --scope ffn >/dev/null 2>&1 \
  && ok || bad "quantize llama_bf16"
for t in model.embed_tokens.weight lm_head.weight model.layers.1.self_attn.o_proj.weight \
         model.layers.0.input_layernorm.weight model.norm.weight; do
  [ "$(dtype_of "$d" "$t")" = BF16 ] && ok || bad "$t is $(dtype_of "$d" "$t"), want BF16"
done
[ "$(dtype_of "$d" model.layers.0.mlp.up_proj.qweight)" = U8 ] && ok || bad "qweight dtype"
[ "$(dtype_of "$d" model.layers.0.mlp.up_proj.scale)" = F32 ] && ok || bad "scale dtype"

"$bin" quantize tests/golden/models/llama -o "$d.f32" --method minmax --scope ffn >/dev/null 2>&1 \
  && ok || bad "quantize llama (F32)"
[ "$(dtype_of "$d.f32" model.embed_tokens.weight)" = F32 ] && ok || bad "F32 source: embedding not F32"
[ "$(dtype_of "$d.f32" model.layers.0.self_attn.q_proj.weight)" = F32 ] && ok || bad "F32 source: q_proj not F32"

# llama_bf16: C = 64, 2 layers, head dim 16: norms 64 * 5 + RoPE 8 floats = 1312 bytes
rows=$("$bin" bench "$d" --bits "4;5" -p 4 -n 2 --reps 1 -t 1 --json | grep '^{')
r4=$(printf '%s\n' "$rows" | sed -n 1p); r5=$(printf '%s\n' "$rows" | sed -n 2p)
[ "$(json_key "$r4" resident_f32_bytes)" = 1312 ] && ok || bad "int4 served: fp32 bytes $(json_key "$r4" resident_f32_bytes), want 1312"
# FFN 3 * 128 * 64 weights per layer, fp32 at width 5
[ "$(json_key "$r5" resident_f32_bytes)" = $((1312 + 4 * 2 * 3 * 128 * 64)) ] && ok \
  || bad "width 5: fp32 bytes $(json_key "$r5" resident_f32_bytes)"
# bytes per token at int4: 16-bit attention and head, packed FFN: less than the fp32 reference
rf=$(MQ_KERNELS=float "$bin" bench "$d" --bits 4 -p 4 -n 2 --reps 1 -t 1 --json | grep '^{')
[ "$(json_key "$rf" kernels)" = float ] && ok || bad "MQ_KERNELS=float row: $rf"
[ "$(json_key "$rf" resident_f32_bytes)" -gt 400000 ] && ok || bad "float path is not fp32: $rf"
[ "$(json_key "$r4" bytes_per_token)" -lt "$(json_key "$rf" bytes_per_token)" ] && ok \
  || bad "served bytes/token $(json_key "$r4" bytes_per_token) not below float $(json_key "$rf" bytes_per_token)"
"$bin" bench --help | grep -q resident_f32_bytes && ok || bad "bench --help names resident_f32_bytes"

echo "test_half.sh: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

# models.sh — sourced by the quality tables (quant_table.sh, omniquant_table.sh,
# qat_table.sh): the model, tokenizer option, evaluation text and learning
# text of each benchmark model, so the three tables use the same split.
#
#   bench_model NAME OUTDIR   sets model, tok (array), ppl, ctx and text
#   stories260K: the llama2.c model; evaluation on the first chunks of the
#     TinyStories file, learning text = its last 300 KB (written to OUTDIR), no overlap
#   smollm2: SmolLM2-135M (GGUF), WikiText-2 test; learning text = the C4 slice
# Needs data (MQ_SHARED_DATA, default ../shared/data); returns 2 on an unknown NAME.
bench_model() {
  local data=${MQ_SHARED_DATA:-../shared/data}
  case "$1" in
    stories260K)
      model=$data/stories260K/stories260K.bin; tok=(--tokenizer "$data/stories260K/tok512.bin")
      ppl=$data/tinystories/tinystories_validation_head.txt; ctx=256
      text=$2/tinystories_tail.txt
      tail -c 300000 "$ppl" | sed '1d' > "$text" ;;
    smollm2)
      model=$(scripts/get-models.sh | tail -n 1); tok=()
      ppl=$data/wikitext2/wikitext-2-raw-v1.test.joined.txt; ctx=512
      text=$data/c4/c4-validation.00000-of-00008.head1025.jsonl ;;
    *) echo "usage: $0 stories260K|smollm2" >&2; return 2 ;;
  esac
}

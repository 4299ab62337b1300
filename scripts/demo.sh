#!/usr/bin/env bash
# The main job on the default model: fetch SmolLM2-135M-Instruct (GGUF), generate
# text from a prompt, and measure WikiText-2 perplexity on the first chunks.
#   MQ_DEMO_CHUNKS  chunks of 512 tokens to score (default 20; 0 = the whole file)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/matquant
model=$(scripts/get-models.sh | tail -n 1)
data=${MQ_SHARED_DATA:-../shared/data}
wiki="$data/wikitext2/wikitext-2-raw-v1.test.joined.txt"
echo "== matquant run $model (greedy, 48 tokens)"
"$bin" run "$model" -p "The three most important things to know about the Moon are" -n 48 --temp 0
if [ -f "$wiki" ]; then
  chunks=${MQ_DEMO_CHUNKS:-20}
  echo "== matquant eval $model --ppl WikiText-2 test --ctx 512 --chunks $chunks"
  "$bin" eval "$model" --ppl "$wiki" --ctx 512 --chunks "$chunks"
else
  echo "demo: $wiki not found (set MQ_SHARED_DATA); skipping perplexity" >&2
fi

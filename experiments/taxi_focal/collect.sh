#!/bin/bash
# Copy one probe's results (no adapters) here, machine paths written as runs/...: collect.sh RUNS_DIR NAME
set -e
src=$1/$2; dst=$(dirname "$0")/$2
mkdir -p "$dst"
for f in eval-sft-reflect/eval.md eval-sft-reflect/eval.json sft-reflector/metrics.json sft-reflector/warmup_config.json; do
  sed "s#$1/#runs/#g" "$src/$f" > "$dst/$(echo $f | tr / _)"
done
gzip -9 -n -c "$src/eval-sft-reflect/episodes.jsonl" | cat > "$dst/eval-sft-reflect_episodes.jsonl.gz"

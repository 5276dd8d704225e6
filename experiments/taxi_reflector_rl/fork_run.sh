#!/bin/bash
# Start a variant of a finished `reflectrl pipeline taxi --preset cpu` run that changes only Reflect-RL's settings:
# copy the stages those settings do not touch, so that the pipeline, given the variant's --set changes and the new
# folder, finds them done and runs Reflect-RL, its evaluation, its ceiling row and the report.
#
#   fork_run.sh SRC DST [--no-dagger]
#
# Copied: the teacher data, the three SFT runs, RL without reflection and every evaluation that does not read
# Reflect-RL's players (the prompted model, oracle, random, the SFT rows and their ceiling, RL without reflection),
# and the reflection cache of the SFT reflector. With --no-dagger the DAgger round's stages are left behind too (the
# variant sets dagger.episodes=0, and Reflect-RL starts from the first-round reflector). pipeline.json is not copied:
# the pipeline writes the variant's own.
set -euo pipefail
src=$1; dst=$2; dagger=yes
[ "${3:-}" = "--no-dagger" ] && dagger=no
stages="data sft-reflector sft-policy sft-plain rl-plain eval-oracle eval-prompted eval-random eval-sft-plain eval-sft-reflect eval-sft-ceiling eval-rl-plain"
caches="sft-reflector.jsonl"
if [ $dagger = yes ]; then
  stages="$stages dagger-data sft-reflector-dagger eval-sft-reflect-dagger"
  caches="$caches sft-reflector-dagger.jsonl"
fi
mkdir -p "$dst/reflection-cache"
for stage in $stages; do cp -a "$src/$stage" "$dst/"; done
for cache in $caches; do cp -a "$src/reflection-cache/$cache" "$dst/reflection-cache/"; done

#!/usr/bin/env bash
# Writes the two random-weight BLOOM checkpoints alibi-gpubench measures
# (bf16, via alibi-mkmodel; ~1.1 GB and ~14 GB, kept between runs) and runs
# the benchmark on them. Needs a configured and built tree with the CUDA
# backend (scripts/build.sh) and a visible GPU.
#   ALIBI_BUILD_DIR  build directory (default: build)
#   GPUBENCH_DIR     where the checkpoints go (default: /tmp/alibi-gpubench)
# Extra arguments go to alibi-gpubench (e.g. --reps 11, --dtype fp16).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${ALIBI_BUILD_DIR:-build}
scratch=${GPUBENCH_DIR:-/tmp/alibi-gpubench}
mkdir -p "$scratch"
for preset in bloom-560m bloom-7b1; do
  if [[ ! -f $scratch/$preset/config.json ]]; then
    "$build/tools/mkmodel/alibi-mkmodel" --preset "$preset" --dtype bf16 \
      --out "$scratch/$preset"
  fi
done
exec "$build/bench/gpu/alibi-gpubench" \
  --model_dir "$scratch/bloom-560m,$scratch/bloom-7b1" "$@"

#!/usr/bin/env bash
# Writes the two random-weight BLOOM checkpoints alibi-gpubench measures
# (bf16, via alibi-mkmodel; ~1.1 GB and ~14 GB, kept between runs) and runs
# the benchmark on them. Needs the CUDA build's executables and a visible GPU.
#   ALIBI_BIN_DIR    a directory holding alibi-mkmodel and alibi-gpubench (a
#                    device bundle's bin/, an install prefix's bin/); else
#                    they are taken from PATH, else from the build tree
#                    ${ALIBI_BUILD_DIR:-build}
#   GPUBENCH_DIR     where the checkpoints go (default: /tmp/alibi-gpubench)
# Extra arguments go to alibi-gpubench (e.g. --reps 11, --dtype fp16).
set -euo pipefail
cd "$(dirname "$0")/../.."

# The path of executable $1 (build-tree subdirectory $2).
find_exe() {
  if [[ -n ${ALIBI_BIN_DIR:-} ]]; then
    echo "$ALIBI_BIN_DIR/$1"
  elif command -v "$1" >/dev/null; then
    command -v "$1"
  else
    echo "${ALIBI_BUILD_DIR:-build}/$2/$1"
  fi
}
mkmodel=$(find_exe alibi-mkmodel tools/mkmodel)
gpubench=$(find_exe alibi-gpubench bench/gpu)
for exe in "$mkmodel" "$gpubench"; do
  [[ -x $exe ]] || { echo "run_gpubench.sh: $exe: not found (set ALIBI_BIN_DIR)" >&2; exit 2; }
done
scratch=${GPUBENCH_DIR:-/tmp/alibi-gpubench}
mkdir -p "$scratch"
for preset in bloom-560m bloom-7b1; do
  if [[ ! -f $scratch/$preset/config.json ]]; then
    "$mkmodel" --preset "$preset" --dtype bf16 --out "$scratch/$preset"
  fi
done
exec "$gpubench" --model_dir "$scratch/bloom-560m,$scratch/bloom-7b1" "$@"

#!/usr/bin/env bash
# Builds alibi-serve with AddressSanitizer and UndefinedBehaviorSanitizer
# (gcc, no CUDA) into ${ALIBI_BUILD_DIR:-build-asan} and runs the end-to-end
# tests (the real server binary, sanitized) and the fuzz corpora replays.
# Any sanitizer report fails the run. Extra arguments go to ctest.
#
#   scripts/sanitize.sh            # e2e + fuzz replays
#   scripts/sanitize.sh -R Rpc     # a subset
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${ALIBI_BUILD_DIR:-build-asan}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "$build_dir" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DALIBI_CUDA=OFF -DALIBI_SANITIZE=ON \
  -DALIBI_BUILD_TESTS=ON
# The default run builds only what it runs (alibi_sanitize_targets: every
# e2e test, what they drive, and the fuzz replays; tests/CMakeLists.txt); a
# subset given as ctest arguments may name any test, so it builds everything.
targets=()
if ((! $#)); then
  targets=(--target alibi_sanitize_targets)
fi
cmake --build "$build_dir" --parallel "${ALIBI_JOBS:-$(nproc)}" "${targets[@]}"

# Leak checking on; reports abort the process (so the test fails).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# What system libraries keep for the life of the process is not a leak.
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/scripts/lsan_suppressions.txt:print_suppressions=0}
cd "$build_dir"
if (($#)); then
  ctest --output-on-failure --timeout 1200 -j "${ALIBI_TEST_JOBS:-2}" "$@"
else
  ctest --output-on-failure --timeout 1200 -j "${ALIBI_TEST_JOBS:-2}" \
    -L e2e
  ctest --output-on-failure --timeout 1200 -j "${ALIBI_TEST_JOBS:-2}" \
    -R '_replay$'
fi

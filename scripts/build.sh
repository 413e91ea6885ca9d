#!/usr/bin/env bash
# Configures and builds alibi-serve (Release with debug info) into
# ${ALIBI_BUILD_DIR:-build}. Environment:
#   ALIBI_CUDA      AUTO (default: the CUDA backend when nvcc is found), ON, OFF
#   ALIBI_TESTS     ON (default) or OFF (server and clients only, e.g. images)
#   ALIBI_INSTALL   a prefix to `cmake --install` into after building
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${ALIBI_BUILD_DIR:-build}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

cmake -S . -B "$build_dir" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" \
  -DALIBI_CUDA="${ALIBI_CUDA:-AUTO}" \
  -DALIBI_BUILD_TESTS="${ALIBI_TESTS:-ON}"
cmake --build "$build_dir" --parallel "${ALIBI_JOBS:-$(nproc)}"
if [[ -n ${ALIBI_INSTALL:-} ]]; then
  cmake --install "$build_dir" --prefix "$ALIBI_INSTALL"
fi

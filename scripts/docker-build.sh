#!/usr/bin/env bash
# The build stage of the container images (Dockerfile), runnable without a
# Docker engine: CI runs `scripts/docker-build.sh cpu` to exercise exactly the
# steps of the CPU image. It is the README's own build, nothing more:
#
#   scripts/setup.sh                                   build dependencies
#   ALIBI_CUDA=.. ALIBI_TESTS=OFF ALIBI_INSTALL=.. scripts/build.sh
#
# and then checks that the prefix holds what the images run.
#
#   scripts/docker-build.sh cpu|cuda
#
# Environment (the Dockerfile passes its build ARGs through):
#   ALIBI_INSTALL       install prefix (default /opt/alibi, the images' prefix)
#   ALIBI_BUILD_DIR     build directory (default build-image)
#   CUDA_VERSION        cuda: the toolkit from NVIDIA's Debian 12 repository,
#                       MAJOR.MINOR (default 13.0); see scripts/docker-cuda.sh
#   CUDA_ARCHITECTURES  cuda: CMake CUDA architectures (default 90: H100/H200),
#                       handed to CMake as CUDAARCHS
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: scripts/docker-build.sh cpu|cuda" >&2; exit 2; }
(($# == 1)) || usage

case $1 in
  cpu) cuda=OFF ;;
  cuda)
    cuda=ON
    scripts/docker-cuda.sh devel "${CUDA_VERSION:-13.0}"
    export CUDAARCHS=${CUDA_ARCHITECTURES:-90}
    ;;
  *) usage ;;
esac

prefix=${ALIBI_INSTALL:-/opt/alibi}

scripts/setup.sh
ALIBI_CUDA=$cuda ALIBI_TESTS=OFF ALIBI_INSTALL=$prefix \
  ALIBI_BUILD_DIR=${ALIBI_BUILD_DIR:-build-image} scripts/build.sh

# The images run these; fail here rather than in a container that cannot start.
for exe in alibi-server alibi-cli; do
  if [[ ! -x $prefix/bin/$exe ]]; then
    echo "docker-build: $prefix/bin/$exe was not installed" >&2
    exit 1
  fi
done
echo "docker-build: $1 build installed into $prefix"

#!/usr/bin/env bash
# The runtime stage of the container images (Dockerfile).
#
#   scripts/docker-runtime.sh install cpu|cuda   the packages of
#       scripts/runtime-packages.txt (cuda: also its `cuda` lines, from NVIDIA's
#       repository, for CUDA_VERSION, default 13.0) and the user `alibi`
#       (uid/gid 10001) that the server runs as
#   scripts/docker-runtime.sh verify PREFIX      every executable in PREFIX/bin
#       and plugin in PREFIX/lib
#       finds all its shared libraries (libcuda.so.1, the driver, excepted: the
#       NVIDIA container toolkit mounts it into the container at run time)
#
# Runs as root (an image build); leaves apt's lists removed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

usage() {
  echo "usage: scripts/docker-runtime.sh install cpu|cuda | verify PREFIX" >&2
  exit 2
}
(($# == 2)) || usage

case $1 in
  install)
    [[ $2 == cpu || $2 == cuda ]] || usage
    mapfile -t packages < <(awk '!/^#/ && NF == 1 { print $1 }' "$here/runtime-packages.txt")
    ((${#packages[@]})) || { echo "docker-runtime: no packages listed" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${packages[@]}"
    rm -rf /var/lib/apt/lists/*
    if [[ $2 == cuda ]]; then
      "$here/docker-cuda.sh" runtime "${CUDA_VERSION:-13.0}"
    fi
    groupadd --system --gid 10001 alibi
    useradd --system --uid 10001 --gid alibi --home-dir /opt/alibi --no-create-home \
      --shell /usr/sbin/nologin alibi
    ;;
  verify)
    status=0
    for exe in "$2"/bin/* "$2"/lib/*.so; do
      [[ -e $exe ]] || continue
      missing=$(ldd "$exe" | awk '/not found/ && $1 != "libcuda.so.1" { printf " %s", $1 }')
      if [[ -n $missing ]]; then
        echo "docker-runtime: $exe needs libraries no installed package provides:$missing" >&2
        status=1
      fi
    done
    exit $status
    ;;
  *) usage ;;
esac

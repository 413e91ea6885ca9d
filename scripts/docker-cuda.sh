#!/usr/bin/env bash
# Installs CUDA from NVIDIA's apt repository for Debian 12, the distribution
# the project's dependencies come from (see the Dockerfile for why the CUDA
# image is Debian 12 plus NVIDIA's packages rather than an nvidia/cuda image).
#
#   scripts/docker-cuda.sh devel VERSION     nvcc, headers, cuBLAS (build stage)
#   scripts/docker-cuda.sh runtime VERSION   the CUDA packages listed with a
#                                            `cuda` tag in scripts/runtime-packages.txt
#
# VERSION is MAJOR.MINOR, e.g. 13.0 (packages are named like cuda-nvcc-13-0).
# Runs as root (an image build); leaves apt's lists removed.
set -euo pipefail
cd "$(dirname "$0")"

usage() { echo "usage: scripts/docker-cuda.sh devel|runtime MAJOR.MINOR" >&2; exit 2; }
(($# == 2)) || usage
kind=$1
version=$2
[[ $version =~ ^[0-9]+\.[0-9]+$ ]] || usage
suffix=${version/./-}

case $(dpkg --print-architecture) in
  amd64) repo_arch=x86_64 ;;
  arm64) repo_arch=sbsa ;;
  *) echo "docker-cuda: no NVIDIA repository for $(dpkg --print-architecture)" >&2; exit 1 ;;
esac

case $kind in
  devel) packages=("cuda-minimal-build-$suffix" "libcublas-dev-$suffix") ;;
  runtime)
    mapfile -t packages < <(awk '!/^#/ && $1 == "cuda" { print $2 }' runtime-packages.txt |
      sed "s/X-Y\$/$suffix/")
    ;;
  *) usage ;;
esac
((${#packages[@]})) || { echo "docker-cuda: no packages for $kind" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends ca-certificates curl
# NVIDIA's documented network-repository setup: the keyring package adds the
# signing key and the apt source.
curl -fsSL -o /tmp/cuda-keyring.deb \
  "https://developer.download.nvidia.com/compute/cuda/repos/debian12/$repo_arch/cuda-keyring_1.1-1_all.deb"
dpkg -i /tmp/cuda-keyring.deb
rm /tmp/cuda-keyring.deb
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"
apt-get purge -y -q --auto-remove curl
rm -rf /var/lib/apt/lists/*

# The packages point /usr/local/cuda at the toolkit through update-alternatives;
# make sure it is there (CMakeLists.txt looks for /usr/local/cuda/bin/nvcc).
[[ -e /usr/local/cuda ]] || ln -s "cuda-$version" /usr/local/cuda
# And that the dynamic loader finds the libraries (the packages register the
# directory in /etc/ld.so.conf.d; this is a no-op then).
for dir in /usr/local/cuda-"$version"/targets/*/lib; do
  [[ -d $dir ]] && echo "$dir" >>/etc/ld.so.conf.d/zz-alibi-cuda.conf
done
ldconfig
if [[ $kind == devel && ! -x /usr/local/cuda/bin/nvcc ]]; then
  echo "docker-cuda: /usr/local/cuda/bin/nvcc is missing after installing ${packages[*]}" >&2
  exit 1
fi
echo "docker-cuda: installed ${packages[*]}"

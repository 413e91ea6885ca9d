#!/usr/bin/env bash
# Installs alibi-serve's build and test dependencies from Debian packages and the
# buf linter from npm. Idempotent: packages already present are left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev libopenblas-dev nlohmann-json3-dev libssl-dev
  libpcre2-dev libutf8proc-dev libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev
  # tests: a real Prometheus (and promtool), TLS certificates, the Python
  # client example, buf from npm
  prometheus openssl python3-grpcio python3-protobuf shellcheck
)
# buf (proto lint) and the deploy/ validators come from npm; machines of this
# kind ship Node.js, others get Debian's.
command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi

# npm tools (buf; deploy/ validators), pinned by package-lock.json. Reinstalled
# only when the lock file changed. `npm install` rather than `npm ci`: buf's
# lock lists optional per-platform packages the registry does not serve for
# every platform, which `npm ci` refuses; `install` keeps the lock as it is.
if [[ ! -f node_modules/.package-lock.json ||
      package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "setup: installing npm tools"
  npm install --no-audit --no-fund --loglevel=error
else
  echo "setup: npm tools present"
fi

#!/usr/bin/env bash
# The README's first command: installs the dependencies, builds alibi-serve
# and starts the server on the default model (models/alibi-tiny-en) with
# gRPC on port 50051, the OpenAI-compatible HTTP API on port 8000 and
# Prometheus metrics on port 9464. Extra arguments go
# to alibi-server, e.g. `scripts/serve.sh --model tests/data/models/tiny-mpt`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build.sh
exec "${ALIBI_BUILD_DIR:-build}/server/alibi-server" "$@"

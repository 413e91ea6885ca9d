#!/usr/bin/env bash
# The README's test command: installs the dependencies (scripts/setup.sh),
# builds everything (scripts/build.sh) and runs every test with ctest.
# Extra arguments go to ctest, e.g. `scripts/test.sh -L unit` or
# `scripts/test.sh -R Engine`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build.sh
cd "${ALIBI_BUILD_DIR:-build}"
ctest --output-on-failure --timeout 600 -j "${ALIBI_TEST_JOBS:-$(nproc)}" "$@"

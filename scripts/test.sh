#!/usr/bin/env bash
# Sets up, builds and runs every test that needs no GPU. The README's test command and what CI
# runs. GPU tests (label gpu) run on the GPU machine: scripts/gpu-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh
echo "== running the tests (ctest -LE gpu)"
ctest --test-dir "${KCHAIN_BUILD_DIR:-build}" -LE gpu --output-on-failure -j "${KCHAIN_JOBS:-$(nproc)}"

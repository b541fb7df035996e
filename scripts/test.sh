#!/usr/bin/env bash
# Sets up, builds and runs every test that needs no GPU. The README's test command and what CI
# runs. GPU tests (label gpu) run on the GPU machine: scripts/gpu-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh
build=${KCHAIN_BUILD_DIR:-build}
echo "== running the C++ tests (ctest -LE gpu)"
ctest --test-dir "$build" -LE gpu --output-on-failure -j "${KCHAIN_JOBS:-$(nproc)}"
venv=$(scripts/python-env.sh)
echo "== running the Python SDK tests (pytest tests/python, against a real gateway)"
KCHAIN_BUILD_DIR="$build" "$venv/bin/python" -m pytest -q tests/python

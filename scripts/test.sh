#!/usr/bin/env bash
# Sets up, builds and runs every test that needs no GPU. The README's test command and what CI
# runs. GPU tests (label gpu) run on the GPU machine: scripts/gpu-check.sh.
# One line per phase, with the seconds it took; the C++ tests' full log is in
# $build/ctest.log (printed in part when a test fails).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${KCHAIN_BUILD_DIR:-build}
jobs=${KCHAIN_JOBS:-$(nproc)}
start=$SECONDS
phase() { echo "== [$((SECONDS - start)) s] $*"; }

phase "installing what is missing (scripts/setup-deps.sh)"
scripts/setup-deps.sh
phase "building (scripts/build.sh)"
scripts/build.sh
phase "running the C++ tests (ctest -LE gpu, $jobs jobs; log: $build/ctest.log)"
if ctest --test-dir "$build" -LE gpu --output-on-failure -j "$jobs" >"$build/ctest.log" 2>&1; then
  grep -E "tests passed|tests failed" "$build/ctest.log" | tail -1
else
  grep -E "\*\*\*Failed|\*\*\*Timeout|\*\*\*Exception|Not Run" "$build/ctest.log" || true
  echo "-- the end of $build/ctest.log:"
  tail -60 "$build/ctest.log"
  exit 1
fi
phase "preparing the Python environment (scripts/python-env.sh)"
venv=$(scripts/python-env.sh)
phase "running the Python SDK tests (pytest tests/python, against a real gateway)"
KCHAIN_BUILD_DIR="$build" "$venv/bin/python" -m pytest -q tests/python
phase "all tests passed"

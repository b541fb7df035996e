#!/usr/bin/env bash
# Configures and builds kchain into build/ (or $KCHAIN_BUILD_DIR). CUDA is used when nvcc is
# found (KCHAIN_CUDA=AUTO|ON|OFF to choose).
#
#   scripts/build.sh [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${KCHAIN_BUILD_DIR:-build}
jobs=${KCHAIN_JOBS:-$(nproc)}
generator=()
[ -f "$build/CMakeCache.txt" ] || { command -v ninja >/dev/null && generator=(-G Ninja); }
echo "== configuring $build"
cmake -S . -B "$build" "${generator[@]}" -DKCHAIN_CUDA="${KCHAIN_CUDA:-AUTO}" "$@" >/dev/null
echo "== building ($jobs jobs; the first build compiles CUDA code and takes a few minutes)"
cmake --build "$build" -j "$jobs"

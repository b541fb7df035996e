#!/usr/bin/env bash
# Builds kchain for the GPU test machine, here, into build-gpu/ (git-ignored), ready to be
# carried there and run by scripts/gpu-check.sh. The GPU machine has the CUDA runtime but not
# every library this machine has, so the non-system shared libraries the binaries need are
# copied into build-gpu/lib.
#
#   scripts/gpu-build.sh [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${KCHAIN_GPU_BUILD:-build-gpu}
jobs=${KCHAIN_JOBS:-$(nproc)}

scripts/setup-deps.sh
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
echo "== configuring $build (CUDA on, Release)"
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DKCHAIN_CUDA=ON "$@" >/dev/null
echo "== building with $jobs jobs"
cmake --build "$build" -j "$jobs"

# Libraries that the GPU machine's image does not ship (Debian-specific sonames).
mkdir -p "$build/lib"
for bin in "$build"/bin/* "$build"/tests/kchain_*; do
  [ -x "$bin" ] && [ -f "$bin" ] || continue
  ldd "$bin" 2>/dev/null | awk '/=> \// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libbenchmark*|libgtest*|libgmock*|libcpp-httplib*) cp -u "$lib" "$build/lib/" ;;
    esac
  done
done
echo "== $build is $(du -sh "$build" | cut -f1) (carry limit 64 MiB with the tree)"

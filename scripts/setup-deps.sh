#!/usr/bin/env bash
# Installs what kchain needs to build and test, from Debian's packages, and any packages
# named as arguments. Idempotent: does nothing (not even apt-get update) when everything is
# already there.
#
#   scripts/setup-deps.sh [PACKAGE...]
set -euo pipefail
packages=(cmake ninja-build g++ pkg-config binutils googletest libgtest-dev libbenchmark-dev
          nlohmann-json3-dev libcpp-httplib-dev libssl-dev libseccomp-dev
          libb64-0d curl)  # curl: the tutorial test; libb64-0d: for the perf_analyzer that tritonclient's wheel carries
packages+=("$@")  # extra packages a caller needs (scripts/fuzz.sh: clang)
# Python with venv and pip, for the SDK and its tests (any python3 >= 3.9 that has them will do).
python3 -c "import venv, ensurepip" 2>/dev/null || packages+=(python3 python3-venv python3-pip)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  echo "== installing Debian packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

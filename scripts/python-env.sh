#!/usr/bin/env bash
# Creates (or updates) a Python virtual environment in $KCHAIN_BUILD_DIR/venv with the kchain
# SDK installed from sdk-python/, pytest and openapi-spec-validator (for tests/python/test_docs.py),
# and prints its folder. Debian's own Python refuses `pip install` outside a virtual
# environment, hence one.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${KCHAIN_BUILD_DIR:-build}/venv"
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating the Python environment $venv" >&2
  python3 -m venv "$venv" >&2
fi
echo "== installing the SDK (pip install ./sdk-python), pytest and openapi-spec-validator" >&2
"$venv/bin/python" -m pip install -q --upgrade pip >&2
"$venv/bin/python" -m pip install -q ./sdk-python pytest openapi-spec-validator >&2
echo "$venv"

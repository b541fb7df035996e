#!/usr/bin/env bash
# The project's GPU check: everything the GPU test machine must verify, in one go.
#  1. uses the prepared build in build-gpu/ (scripts/gpu-build.sh, carried along), or builds;
#  2. runs the `gpu`-labelled tests, then every other test on the same machine;
#  3. runs the samples through the runtime on the GPU (kchain-run);
#  4. with --bench, runs the benchmark suite (bench/run.sh; about 5 minutes on an H100);
#  5. prints a short summary last: device, pass/fail counts, key timings.
# Logs land in $OUT (the device tool's output folder) or /tmp/kchain-gpu-check.
#
#   bash scripts/gpu-check.sh [--bench]
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${KCHAIN_GPU_BUILD:-build-gpu}
out=${OUT:-/tmp/kchain-gpu-check}
mkdir -p "$out"
bench=0
[ "${1:-}" = "--bench" ] && bench=1

if [ ! -f "$build/CMakeCache.txt" ]; then
  echo "== no prepared build; building here"
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DKCHAIN_CUDA=ON >/dev/null &&
    cmake --build "$build" -j "$(nproc)" >"$out/build.log" 2>&1 || {
      tail -30 "$out/build.log"; echo "BUILD FAILED"; exit 1; }
fi
# The build records absolute paths of the machine it was made on; make them resolve here.
src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")
if [ -n "$src" ] && [ "$src" != "$root" ] && [ ! -e "$src" ]; then
  mkdir -p "$(dirname "$src")" && ln -s "$root" "$src"
fi
export LD_LIBRARY_PATH="$root/$build/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"

device=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
echo "== device: ${device:-none visible}"

run_ctest() {  # label-args log-name
  ctest --test-dir "$build" "$@" --output-on-failure --timeout 300 >"$out/$log" 2>&1
  local rc=$?
  grep -E "tests passed|tests failed" "$out/$log" | tail -1
  grep -E "\*\*\*Failed|Failed  |Not Run|Timeout" "$out/$log" | grep -v "tests failed" | head -20
  return $rc
}
echo "== gpu tests"
log=ctest-gpu.log; run_ctest -L gpu; gpu_rc=$?
gpu_line=$(grep -E "tests passed" "$out/ctest-gpu.log" | tail -1)
gpu_skipped=$(grep -c "\*\*\*Skipped" "$out/ctest-gpu.log")
grep -E "^(device|cnn|fallback|fault reported): " "$build/Testing/Temporary/LastTest.log" 2>/dev/null | sort -u
echo "== all other tests (but abi: those check build artifacts with the build machine's tools)"
log=ctest-rest.log; run_ctest -LE 'gpu|abi'; rest_rc=$?
rest_line=$(grep -E "tests passed" "$out/ctest-rest.log" | tail -1)

echo "== samples on the GPU (kchain-run)"
samples="$build/samples"
"$build/bin/kchain-run" --device cuda --runs 1000 "$samples/vecadd/manifest.json" 2>&1 | tee "$out/run-vecadd.log"
"$build/bin/kchain-run" --device cuda --runs 1000 --eval-images "$samples/mnist_cnn/heldout_images.bin" \
  --eval-labels "$samples/mnist_cnn/heldout_labels.bin" "$samples/mnist_cnn/manifest.json" 2>&1 | tee "$out/run-cnn.log"

echo "== the gateway on the GPU (default: process isolation): deploy and invoke the CUDA samples over HTTP"
rm -rf /tmp/kchain-gpu-gateway && mkdir -p /tmp/kchain-gpu-gateway
"$build/bin/kchain-gateway" --listen 127.0.0.1:0 --device cuda --data-dir /tmp/kchain-gpu-gateway/data \
  --port-file /tmp/kchain-gpu-gateway/port >"$out/gateway.log" 2>&1 &
gateway=$!
for _ in $(seq 100); do [ -s /tmp/kchain-gpu-gateway/port ] && break; sleep 0.1; done
"$build/bin/kchain-demo" --url "http://127.0.0.1:$(cat /tmp/kchain-gpu-gateway/port 2>/dev/null)" \
  --samples "$samples" --hot-runs 1000 2>&1 | tee "$out/demo.log"
demo_rc=${PIPESTATUS[0]}
kill -TERM $gateway 2>/dev/null; wait $gateway 2>/dev/null
head -1 "$out/gateway.log"

echo "== the Python SDK on the GPU: pip install ./sdk-python, pytest against a CUDA gateway"
py_rc=0
if python3 -c "import scikit_build_core, pybind11, httpx, tqdm, numpy, pytest" 2>/dev/null; then
  # No network there: build with what the machine has.
  python3 -m pip install -q --no-build-isolation --no-deps ./sdk-python >"$out/sdk-install.log" 2>&1 ||
    { tail -20 "$out/sdk-install.log"; py_rc=1; }
  if [ $py_rc = 0 ]; then
    KCHAIN_BUILD_DIR="$root/$build" KCHAIN_TEST_DEVICE=auto python3 -m pytest -q tests/python \
      >"$out/pytest.log" 2>&1
    py_rc=$?
    tail -3 "$out/pytest.log"
    rm -rf /tmp/kchain-sdk-bench && mkdir -p /tmp/kchain-sdk-bench
    "$build/bin/kchain-gateway" --listen 127.0.0.1:0 --device cuda --data-dir /tmp/kchain-sdk-bench/data \
      --port-file /tmp/kchain-sdk-bench/port >/dev/null 2>&1 &
    sdk_gateway=$!
    for _ in $(seq 100); do [ -s /tmp/kchain-sdk-bench/port ] && break; sleep 0.1; done
    export KCHAIN_URL="http://127.0.0.1:$(cat /tmp/kchain-sdk-bench/port)"
    python3 -m kchain deploy "$samples/mnist_cnn/manifest.json" --quiet
    python3 -m kchain bench mnist_cnn -n 1000 | tee "$out/sdk-bench.txt"
    kill -TERM $sdk_gateway; wait $sdk_gateway 2>/dev/null
    unset KCHAIN_URL
  fi
else
  echo "NOT RUN: this machine's python3 lacks scikit-build-core, pybind11, httpx, tqdm, numpy or pytest"
  py_rc=2
fi

if [ $bench = 1 ]; then
  echo "== the benchmark suite (bench/run.sh): results in $out/bench-results"
  KCHAIN_BUILD_DIR=$build bench/run.sh --device cuda --out-dir "$out/bench-results" 2>&1 |
    tee "$out/bench.log" | grep -E "^\[|^report|kchain_load_bench:|FAILED"
  bench_rc=${PIPESTATUS[0]}
fi

echo
echo "==== kchain GPU check summary ===="
echo "device:      ${device:-none visible}"
if [ "$gpu_skipped" -gt 0 ]; then
  echo "gpu tests:   ${gpu_line:-did not run}; $gpu_skipped SKIPPED = NOT RUN (no usable GPU)"
else
  echo "gpu tests:   ${gpu_line:-did not run}; none skipped"
fi
echo "other tests: ${rest_line:-did not run}"
grep -E "hot runs|cold start|warm start|held-out" "$out/run-cnn.log" | sed 's/^ */cnn:         /'
grep -E "hot runs" "$out/run-vecadd.log" | sed 's/^ */vecadd:      /'
echo "gateway:     kchain-demo exit $demo_rc"
echo "python sdk:  $(tail -1 "$out/pytest.log" 2>/dev/null || echo 'did not run') (rc $py_rc)"
[ -f "$out/sdk-bench.txt" ] && sed 's/^/  /' "$out/sdk-bench.txt"
grep -E "^==|start  client|x1000|held-out|checked" "$out/demo.log" | sed 's/^/  /'
if [ $bench = 1 ]; then
  echo "bench:       bench/run.sh exit $bench_rc"
  sed -n '/^## Headline/,/^## PyPlover/p' "$out"/bench-results/*.md 2>/dev/null | head -20
fi
[ $gpu_rc = 0 ] && [ $rest_rc = 0 ] && [ "$demo_rc" = 0 ] && [ "$py_rc" = 0 ] &&
  { [ $bench = 0 ] || [ "$bench_rc" = 0 ]; }

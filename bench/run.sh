#!/usr/bin/env bash
# Runs every benchmark and writes bench/results/<date>-<device>.md and .json, with PNG plots in
# bench/results/<date>-<device>/. One command, on a GPU machine or (with the host backend)
# anywhere:
#   micro       kchain_micro_bench: native CUDA vs kchain direct vs graph; chain length; sizes
#   isolation   kchain_isolation_bench: --isolation=process vs none on the hot path
#   load        kchain_load_bench: PyPlover's tables, latency, throughput, payloads, many functions,
#               tenant workers (density, many tenants, containment)
#   report      bench/report.py: the results file and the plots (plots need matplotlib)
#
#   bench/run.sh [--quick] [--device auto|cuda|host] [--out-dir DIR]
# The build comes from $KCHAIN_BUILD_DIR (default: build-gpu when it holds a CUDA build, else
# build); it is built first when missing. --quick: tiny counts, to check the harness (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
quick=0
device=auto
out_dir=bench/results
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --device) device=$2; shift ;;
    --out-dir) out_dir=$2; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ -z "${KCHAIN_BUILD_DIR:-}" ]; then
  if grep -qs "KCHAIN_HAVE_CUDA:INTERNAL=ON\|CMAKE_CUDA_COMPILER:.*nvcc" build-gpu/CMakeCache.txt; then
    KCHAIN_BUILD_DIR=build-gpu
  else
    KCHAIN_BUILD_DIR=build
  fi
fi
build=$KCHAIN_BUILD_DIR
if [ ! -x "$build/bin/kchain_load_bench" ]; then
  echo "== no benchmark build in $build; building (Release)"
  KCHAIN_BUILD_DIR=$build scripts/build.sh -DCMAKE_BUILD_TYPE=Release
fi
# A build carried from another machine records that machine's source path; make it resolve.
src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")
if [ -n "$src" ] && [ "$src" != "$root" ] && [ ! -e "$src" ]; then
  mkdir -p "$(dirname "$src")" && ln -s "$root" "$src"
fi
export LD_LIBRARY_PATH="$root/$build/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
bin=$build/bin

started=$(date +%s)
stamp() { printf '[%4ds] ' $(( $(date +%s) - started )); }
work=$(mktemp -d /tmp/kchain-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The machine, for the results file.
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1 || true)
if [ "$device" = host ] || { [ "$device" = auto ] && [ -z "$gpu" ]; }; then
  device=host
  device_name="host CPU ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1))"
  driver=""
  cuda=""
else
  device=cuda
  device_name=${gpu%%,*}
  driver=$(echo "${gpu#*,}" | xargs)
  cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -1)
fi
# KCHAIN_COMMIT names the commit where the tree is a copy without .git (the GPU machine's).
if [ -n "${KCHAIN_COMMIT:-}" ]; then
  commit=$KCHAIN_COMMIT
else
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  git diff --quiet HEAD 2>/dev/null || commit="$commit+uncommitted changes"
fi
python3 - "$work/env.json" <<EOF
import json, sys, datetime, os, platform
json.dump({
  "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
  "time_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
  "device_kind": "$device", "device": """$device_name""", "driver": "$driver",
  "cuda_driver_api": "$cuda", "commit": "$commit", "quick": bool($quick),
  "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "machine": platform.machine()},
}, open(sys.argv[1], "w"), indent=1)
EOF
echo "== kchain benchmarks on $device_name ($device backend)$([ $quick = 1 ] && echo ', quick')"

if [ $quick = 1 ]; then
  micro_flags=(--kchain_quick --benchmark_repetitions=2)
  iso_flags=(--rounds 2 --calls 20)
  load_flags=(--quick)
else
  micro_flags=(--benchmark_min_time=0.1 --benchmark_repetitions=5)
  iso_flags=(--rounds 5 --calls 300)
  load_flags=()
fi

echo "$(stamp)== micro-benchmarks (kchain_micro_bench)"
"$bin/kchain_micro_bench" "${micro_flags[@]}" --benchmark_display_aggregates_only=true \
  --benchmark_out="$work/micro.json" --benchmark_out_format=json --benchmark_color=false \
  >"$work/micro.txt" 2>&1 || { tail -30 "$work/micro.txt"; exit 1; }
sed -n '/^Hot path/,$p' "$work/micro.txt"

echo "$(stamp)== process isolation against none (kchain_isolation_bench)"
"$bin/kchain_isolation_bench" --device "$device" "${iso_flags[@]}" --json "$work/isolation.json"

echo "$(stamp)== end to end through the gateway (kchain_load_bench)"
"$bin/kchain_load_bench" --device "$device" "${load_flags[@]}" --out "$work/load.json"

echo "$(stamp)== report"
"${PYTHON:-python3}" bench/report.py --env "$work/env.json" --micro "$work/micro.json" \
  --isolation "$work/isolation.json" --load "$work/load.json" --out-dir "$out_dir"
echo "$(stamp)== done"

#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz/README.md) into build-fuzz/ (or
# $KCHAIN_FUZZ_BUILD_DIR) with clang 14 under ASan and UBSan, and runs each for SECONDS
# (default 20), one after the other, on a scratch copy of its seed corpus. Prints one summary
# line per fuzzer; exits non-zero when any found a crash, a leak, a timeout or ran out of
# memory, and names the input that did it (kept under build-fuzz/fuzz-runs/<fuzzer>/).
#
#   scripts/fuzz.sh [SECONDS] [FUZZER...]     e.g. scripts/fuzz.sh 600, scripts/fuzz.sh 60 manifest
#
# The grown corpora stay in build-fuzz/fuzz-runs/<fuzzer>/corpus; the tree keeps only the seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS] [FUZZER...]" >&2; exit 2; }
all=(manifest json_tensor v2_infer http_request worker_message)
if [ $# -gt 1 ]; then fuzzers=("${@:2}"); else fuzzers=("${all[@]}"); fi
build=${KCHAIN_FUZZ_BUILD_DIR:-build-fuzz}
jobs=${KCHAIN_JOBS:-$(nproc)}

# The build's own dependencies, and clang with its compiler-rt (libFuzzer and the sanitizers).
scripts/setup-deps.sh clang-14 libclang-rt-14-dev

generator=()
[ -f "$build/CMakeCache.txt" ] || { command -v ninja >/dev/null && generator=(-G Ninja); }
echo "== configuring $build (clang 14, ASan + UBSan, libFuzzer)"
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_C_COMPILER=clang-14 \
  -DCMAKE_CXX_COMPILER=clang++-14 -DKCHAIN_CUDA=OFF -DKCHAIN_BUILD_TESTS=OFF \
  -DKCHAIN_BUILD_BENCH=OFF -DKCHAIN_BUILD_FUZZERS=ON >/dev/null
echo "== building the fuzzers ($jobs jobs)"
cmake --build "$build" -j "$jobs" --target kchain_fuzzers

# Longest input per fuzzer: room for the seeds (a CNN image is 3136 bytes) and some growth.
max_len() {
  case "$1" in
    http_request) echo 16384 ;;
    *) echo 8192 ;;
  esac
}

# "key: value" of libFuzzer's final stats, or "?".
stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -n 1 | grep . || echo "?"; }

failed=()
summary=()
for name in "${fuzzers[@]}"; do
  binary="$build/fuzz/${name}_fuzzer"
  [ -x "$binary" ] || { echo "no fuzzer '$name' (known: ${all[*]})" >&2; exit 2; }
  runs="$build/fuzz-runs/$name"
  rm -rf "$runs"
  mkdir -p "$runs/corpus" "$runs/artifacts"
  cp tests/fuzz/corpus/"$name"/* "$runs/corpus/"
  seeds=$(ls "$runs/corpus" | wc -l)
  # The HTTP fuzzer's gateway keeps its data directory in memory where it can, per run.
  data_root=$(mktemp -d "$([ -d /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/kchain-fuzz.XXXXXX")
  echo "== fuzzing $name for $seconds s"
  rc=0
  KCHAIN_FUZZ_DATA_DIR="$data_root" nice -n "${KCHAIN_FUZZ_NICE:-10}" "$binary" \
    -max_total_time="$seconds" -max_len="$(max_len "$name")" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$runs/artifacts/" "$runs/corpus" \
    >"$runs/log" 2>&1 || rc=$?
  rm -rf "$data_root"
  last=$(grep -E '^#[0-9]+' "$runs/log" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  units=$(ls "$runs/corpus" | wc -l)
  artifacts=$(find "$runs/artifacts" -type f | sort)
  line=$(printf "%-15s %10s execs %7s exec/s  cov %5s  ft %6s  corpus %5s (%s seeds, +%s new)" \
    "$name" "$(stat number_of_executed_units "$runs/log")" \
    "$(stat average_exec_per_sec "$runs/log")" "${cov:-?}" "${ft:-?}" "$units" "$seeds" \
    "$(stat new_units_added "$runs/log")")
  if [ "$rc" -ne 0 ] || [ -n "$artifacts" ]; then
    line+="  FAILED (exit $rc)"
    failed+=("$name")
    grep -E '^(SUMMARY|==[0-9]+==ERROR)|libFuzzer: (timeout|out-of-memory)|_fuzzer: ' "$runs/log" \
      | head -n 5 | sed 's/^/   /' || true
    for a in $artifacts; do echo "   input: $a"; done
    echo "   log: $runs/log"
  fi
  echo "   $line"
  summary+=("$line")
done

echo "== summary ($seconds s each)"
printf '   %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "== findings in: ${failed[*]} (reproduce: $build/fuzz/<name>_fuzzer <input>)"
  exit 1
fi

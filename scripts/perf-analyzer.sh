#!/usr/bin/env bash
# Measures a running kchain gateway with Triton's perf_analyzer over the v2 inference protocol
# (HTTP, binary tensor data): the model (default mnist_cnn) at concurrency 1, 8 and 64, and
# prints each level's throughput and p50 / p90 / p99 latency, then a summary table.
#
#   scripts/perf-analyzer.sh [URL] [MODEL]          URL default $KCHAIN_URL or http://127.0.0.1:8080
#
# Each perf_analyzer connection holds one of the gateway's HTTP threads while it stays open
# (keep-alive), so start the gateway with more threads than the highest concurrency, e.g.
# `kchain-gateway --threads 128`; with fewer, the connections beyond them wait for a thread and
# the measurement stalls.
#
# Environment:
#   KCHAIN_API_KEY     sent as "Authorization: Bearer <key>" when set
#   PERF_ANALYZER      the perf_analyzer to use; else the one on PATH (e.g. `pip install
#                      perf-analyzer` where glibc >= 2.38), else $KCHAIN_BUILD_DIR/venv's
#                      (tritonclient 2.47.0's, from scripts/python-env.sh)
#   KCHAIN_SAMPLES     a built samples folder (e.g. build/samples): deploys MODEL from it first
#                      when the gateway does not have it (the library for the gateway's device)
#   CONCURRENCY        the levels, default "1 8 64"
#   PA_INTERVAL_MS     perf_analyzer's measurement window, default 3000
#   PA_STABILITY       the % by which windows may differ and count as stable, default 10
#   PA_MAX_TRIALS      windows tried before a level is given up as unstable, default 20
#   OUT                where the full outputs go, default a fresh temporary folder
set -euo pipefail
cd "$(dirname "$0")/.."
url=${1:-${KCHAIN_URL:-http://127.0.0.1:8080}}
url=${url%/}
model=${2:-mnist_cnn}
levels=${CONCURRENCY:-1 8 64}
out=${OUT:-$(mktemp -d /tmp/kchain-perf-analyzer.XXXXXX)}
mkdir -p "$out"
auth=()
[ -n "${KCHAIN_API_KEY:-}" ] && auth=(-H "Authorization: Bearer $KCHAIN_API_KEY")

pa=${PERF_ANALYZER:-$(command -v perf_analyzer || true)}
venv=${KCHAIN_BUILD_DIR:-build}/venv
[ -z "$pa" ] && [ -x "$venv/bin/perf_analyzer" ] && pa=$venv/bin/perf_analyzer
if [ -z "$pa" ]; then
  echo "no perf_analyzer: set PERF_ANALYZER, pip install perf-analyzer, or run scripts/python-env.sh" >&2
  exit 2
fi
# tritonclient's build of perf_analyzer loads libcudart.so.12: nvidia-cuda-runtime-cu12's.
for lib in "$venv"/lib/python3*/site-packages/nvidia/cuda_runtime/lib; do
  [ -d "$lib" ] && export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
"$pa" --version >/dev/null 2>&1 || { echo "$pa does not run here:" >&2; "$pa" --version >&2; exit 2; }

curl_auth=()
[ -n "${KCHAIN_API_KEY:-}" ] && curl_auth=(-H "Authorization: Bearer $KCHAIN_API_KEY")
status=$(curl -s -o /dev/null -w '%{http_code}' "${curl_auth[@]}" "$url/v2/models/$model/ready" || true)
if [ "$status" = 404 ] && [ -n "${KCHAIN_SAMPLES:-}" ]; then
  kind=$(curl -s "${curl_auth[@]}" "$url/v1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["device"]["kind"])')
  dir=$KCHAIN_SAMPLES/$model
  echo "== deploying $model from $dir ($kind library)"
  form=(-F "manifest=@$dir/manifest.json" -F "library=@$dir/lib${model}_${kind}.so")
  for c in "$dir"/weights.bin "$dir"/constants.bin; do [ -f "$c" ] && form+=(-F "constants=@$c"); done
  curl -sf -o /dev/null "${curl_auth[@]}" -X PUT "$url/v1/functions/$model" "${form[@]}"
  status=$(curl -s -o /dev/null -w '%{http_code}' "${curl_auth[@]}" "$url/v2/models/$model/ready")
fi
if [ "$status" != 200 ]; then
  echo "model $model is not ready at $url (GET /v2/models/$model/ready: HTTP $status);" \
    "deploy it (PUT /v1/functions/$model) or set KCHAIN_SAMPLES" >&2
  exit 1
fi

echo "== perf_analyzer ($("$pa" --version 2>&1 | head -1)) on $model at $url, HTTP, binary tensor data"
summary=()
failed=0
for c in $levels; do
  log=$out/concurrency-$c.txt
  echo "-- concurrency $c"
  if ! "$pa" -m "$model" -u "${url#http://}" -i http "${auth[@]}" \
    --input-tensor-format binary --output-tensor-format binary --concurrency-range "$c" \
    --measurement-interval "${PA_INTERVAL_MS:-3000}" --stability-percentage "${PA_STABILITY:-10}" \
    --max-trials "${PA_MAX_TRIALS:-20}" >"$log" 2>&1; then
    echo "    perf_analyzer failed (see $log):"
    grep -E "rror|[Ff]ailed" "$log" | tail -3 | sed 's/^/    /'
    summary+=("$(printf '%11s | failed' "$c")")
    failed=1
    continue
  fi
  grep -E "^\s+(Throughput|p50 latency|p90 latency|p99 latency|Avg HTTP time):" "$log" | head -5
  grep -m1 -E "^\s+Avg request latency:" "$log" | sed 's/^\s*/    server: /'
  value() { grep -m1 -E "^\s+$1" "$log" | sed -E 's/^[^:]*: ([0-9.]+).*/\1/'; }
  summary+=("$(printf '%11s | %12s | %8s | %8s | %8s' "$c" "$(value 'Throughput:')" \
    "$(value 'p50 latency:')" "$(value 'p90 latency:')" "$(value 'p99 latency:')")")
done
echo
echo "concurrency | infer/sec    | p50 us   | p90 us   | p99 us"
printf '%s\n' "${summary[@]}"
echo "(full outputs: $out)"
exit $failed

#!/usr/bin/env bash
# The main job: sets up, builds, starts the gateway with its embedded default configuration
# (a local data directory, device auto: the GPU when there is one), deploys both samples over
# HTTP, invokes them, and prints their outputs, cold / warm / hot start timings and the CNN's
# held-out accuracy. Stops the gateway at the end.
#
#   scripts/demo.sh            (KCHAIN_PORT=8080 by default; KCHAIN_DEVICE=auto|cuda|host)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh
build=${KCHAIN_BUILD_DIR:-build}
data="$build/demo-data"
log="$build/demo-gateway.log"
port_file="$build/demo-gateway.port"
rm -f "$port_file"

echo "== starting kchain-gateway (log: $log)"
"$build/bin/kchain-gateway" --listen "127.0.0.1:${KCHAIN_PORT:-8080}" --data-dir "$data" \
  --device "${KCHAIN_DEVICE:-auto}" --port-file "$port_file" >"$log" 2>&1 &
gateway=$!
trap 'kill -TERM $gateway 2>/dev/null; wait $gateway 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  [ -s "$port_file" ] && break
  kill -0 $gateway 2>/dev/null || { cat "$log"; echo "the gateway did not start"; exit 1; }
  sleep 0.1
done
port=$(cat "$port_file")
head -1 "$log"
echo
"$build/bin/kchain-demo" --url "http://127.0.0.1:$port" --samples "$build/samples"
kill -TERM $gateway
wait $gateway
trap - EXIT
echo "== gateway stopped; its log: $log"
tail -3 "$log"

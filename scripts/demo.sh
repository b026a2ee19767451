#!/usr/bin/env bash
# Starts the proxy on :8080 (override with PROXY_PORT) in front of local demo
# endpoints, with its admin listener (stats page, /metrics) on :9090 (ADMIN_PORT),
# in the foreground until Ctrl-C. Extra arguments go to the proxy
# (for example -f for fan-out, -log-level debug to see every attempt).
#   endpoint 0: 127.0.0.1:8000, flaky: 25% errors, random delays up to 300ms
#   endpoint 1: 127.0.0.1:8001, steady: answers after 50ms
#   endpoint 2: 127.0.0.1:8002, dead: nothing listens there
set -euo pipefail
cd "$(dirname "$0")/.."
base="${BASE_PORT:-8000}"
proxy_port="${PROXY_PORT:-8080}"
admin_port="${ADMIN_PORT:-9090}"

bin=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$bin"
}
trap cleanup EXIT INT TERM

go build -o "$bin/balancing-reverse-proxy" .
go build -o "$bin/dummy-http-server" ./dummy-http-server

"$bin/dummy-http-server" -address "127.0.0.1:$base" -name flaky -max-delay 300ms 2>/dev/null &
pids+=($!)
"$bin/dummy-http-server" -address "127.0.0.1:$((base + 1))" -name steady \
  -delay-responding=false -delay 50ms -random-errors=false 2>/dev/null &
pids+=($!)

echo "demo endpoints: flaky 127.0.0.1:$base, steady 127.0.0.1:$((base + 1)), dead 127.0.0.1:$((base + 2))"
echo "try: curl -i http://127.0.0.1:$proxy_port/hello   (Ctrl-C stops everything)"
echo "stats page: http://127.0.0.1:$admin_port/   metrics: http://127.0.0.1:$admin_port/metrics"
"$bin/balancing-reverse-proxy" -address "127.0.0.1:$proxy_port" -admin-address "127.0.0.1:$admin_port" \
  -e "http://127.0.0.1:$base,http://127.0.0.1:$((base + 1)),http://127.0.0.1:$((base + 2))" "$@" &
pids+=($!)
wait "${pids[-1]}"

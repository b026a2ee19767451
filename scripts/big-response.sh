#!/usr/bin/env bash
# Passes one large response (SIZE bytes, default 1 GiB) through the proxy and
# reports the proxy's peak resident memory (VmHWM) before and after, to show
# that streaming keeps memory flat whatever the response size. It fails when the
# body is cut or the peak grew by more than GROWTH_LIMIT_KB (default 32 MiB).
# Ports: BASE_PORT (endpoint, default 38000) and PROXY_PORT (default 38080).
set -euo pipefail
cd "$(dirname "$0")/.."
size="${SIZE:-1073741824}"
endpoint_port="${BASE_PORT:-38000}"
proxy_port="${PROXY_PORT:-38080}"

bin=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$bin"
}
trap cleanup EXIT

go build -o "$bin/balancing-reverse-proxy" .
go build -o "$bin/dummy-http-server" ./dummy-http-server
"$bin/dummy-http-server" -address "127.0.0.1:$endpoint_port" -body-size "$size" \
  -delay-responding=false -random-errors=false 2>/dev/null &
pids+=($!)
"$bin/balancing-reverse-proxy" -address "127.0.0.1:$proxy_port" -e "http://127.0.0.1:$endpoint_port" \
  -log-file /dev/null &
proxy=$!
pids+=($proxy)

for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://127.0.0.1:$proxy_port/?status=204" && break
  sleep 0.1
done
peak() { awk '/VmHWM/ {print $2}' "/proc/$proxy/status"; }
before=$(peak)
got=$(curl -s -o /dev/null -w '%{size_download}' --max-time 300 "http://127.0.0.1:$proxy_port/big")
after=$(peak)
echo "response bytes: $got (wanted $size)"
echo "proxy peak RSS: ${before} kB before, ${after} kB after"
[ "$got" = "$size" ] || { echo "big-response: the body was cut" >&2; exit 1; }
limit="${GROWTH_LIMIT_KB:-32768}"
if [ $((after - before)) -gt "$limit" ]; then
  echo "big-response: peak RSS grew by $((after - before)) kB, more than $limit kB" >&2
  exit 1
fi

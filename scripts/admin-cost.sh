#!/usr/bin/env bash
# What the admin listener (the metrics) costs the serial proxy: the proxy with and
# without -admin-address in front of one dummy-http-server answering 1 KiB at once,
# in interleaved rounds of wrk -t2 -c64 -d5s (after a 1 s warm-up), each printing
# requests/s and the proxy's CPU time per request (utime+stime from /proc/PID/stat).
# Then the medians of each side. Needs wrk (apt-get install wrk); Linux only.
#   scripts/admin-cost.sh            # 8 rounds, about 2 minutes
#   ROUNDS=3 scripts/admin-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${ROUNDS:-8}"
base="${BASE_PORT:-19000}"
command -v wrk >/dev/null || { echo "admin-cost.sh: wrk is missing: apt-get install wrk" >&2; exit 1; }
bin=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$bin"
}
trap cleanup EXIT INT TERM
go build -o "$bin/proxy" .
go build -o "$bin/dummy" ./dummy-http-server
"$bin/dummy" -address "127.0.0.1:$((base + 1))" -body-size 1024 -delay-responding=false -delay 0 -random-errors=false 2>/dev/null &
pids+=($!)
sleep 0.5
ticks=$(getconf CLK_TCK)
results="$bin/results"
run() { # run NAME [PROXY FLAGS...]
  local name=$1 pid out before after total rps
  shift
  "$bin/proxy" -address "127.0.0.1:$((base + 80))" -e "http://127.0.0.1:$((base + 1))" -log-level warn "$@" >/dev/null 2>&1 &
  pid=$!
  sleep 0.7
  wrk -t2 -c64 -d1s "http://127.0.0.1:$((base + 80))/" >/dev/null 2>&1
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(wrk -t2 -c64 -d5s "http://127.0.0.1:$((base + 80))/" 2>&1)
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
  total=$(echo "$out" | awk '/requests in/ {print $1}')
  awk -v n="$name" -v r="$rps" -v a="$before" -v b="$after" -v t="$total" -v k="$ticks" \
    'BEGIN { printf "%-14s %10.0f requests/s %8.1f µs CPU per request\n", n, r, (b - a) / k * 1e6 / t }' | tee -a "$results"
}
for round in $(seq "$rounds"); do
  echo "round $round of $rounds"
  run "without admin"
  run "with admin" -admin-address "127.0.0.1:$((base + 90))"
done
echo "== medians of $rounds rounds"
median() { sort -n | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2); print (NR % 2 ? v[m] : (v[m] + v[m + 1]) / 2) }'; }
for name in "without admin" "with admin"; do
  rps=$(grep "^$name " "$results" | awk '{ print $3 }' | median)
  cpu=$(grep "^$name " "$results" | awk '{ print $5 }' | median)
  printf "%-14s %10.0f requests/s %8.1f µs CPU per request\n" "$name" "$rps" "$cpu"
done

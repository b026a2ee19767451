#!/usr/bin/env bash
# Prints the engine's allocations per request in each mode (BenchmarkProxy in
# fanout/, which counts the client and the endpoint too; "direct" is their
# share), and those of a request's log line in each format (BenchmarkRequestLine
# in logging/), next to the figures recorded in scripts/allocs-baseline.txt, and
# flags any mode that allocates more than 5% over its baseline. Allocation
# counts, unlike times, do not depend on how busy the machine is. It always
# exits 0: the comparison is for the CI log and the README, not a gate.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
out=$(go test -run XXX -bench 'Proxy|RequestLine' -benchtime 300x -benchmem ./fanout/ ./logging/ 2>&1) || { echo "$out"; exit 0; }
echo "$out" | awk -v baseline=scripts/allocs-baseline.txt '
  BEGIN { while ((getline line < baseline) > 0) { if (line !~ /^#/ && split(line, f, " ") == 2) base[f[1]] = f[2] } }
  /^Benchmark(Proxy|RequestLine)\// {
    name = $1; sub(/^BenchmarkProxy\//, "", name); sub(/^Benchmark/, "", name); sub(/-[0-9]+$/, "", name)
    for (i = 1; i <= NF; i++) if ($(i+1) == "allocs/op") allocs = $i
    mark = ""
    if (name in base && allocs > base[name] * 1.05) mark = "  <-- more than 5% over the baseline"
    printf "%-28s %5d allocs/op (baseline %s)%s\n", name, allocs, (name in base ? base[name] : "none"), mark
  }'

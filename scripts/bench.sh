#!/usr/bin/env bash
# Runs the open-loop tail-latency benchmark (scripts/bench) from the module root;
# arguments go to it, for example: scripts/bench.sh -scenario tail -duration 10s
# A quick smoke run of every tail scenario: scripts/bench.sh -duration 2s -warmup 500ms -rate 100
# The proxy's own cost against nginx and HAProxy (needs wrk; about 8 minutes, or
# about 1 with -overhead-runs 1 -overhead-duration 3s): scripts/bench.sh -scenario overhead
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
exec go run ./scripts/bench "$@"

#!/usr/bin/env bash
# Runs the soak (scripts/soak) from the module root; arguments go to it:
#   scripts/soak.sh                      # serial, fan-out and hedged p95 under faults, 3m in all
#   scripts/soak.sh -duration 20s        # a quick check of the harness itself (under a minute)
#   scripts/soak.sh -idle-conns 10000    # the proxy's memory per idle keep-alive connection
# Exit status: 0 passed, 1 harness error, 2 bad command line, 3 something grew (or
# an idle connection cost more than 50 kB). Linux only: it reads /proc.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
# Built rather than go run, which turns every failing exit status into 1.
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/soak" ./scripts/soak
status=0
"$bin/soak" "$@" || status=$?
exit "$status"

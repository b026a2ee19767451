#!/usr/bin/env bash
# The project's test command (README: "Run the tests"; CI runs exactly this).
# It needs Go (1.26 or newer), plus gcc for the race detector, curl for multi-test.sh and
# redis-server for the session replica tests, systemd-analyze for the unit's and chromium for
# the stats page's; it installs the last five with apt-get when they are missing and it runs
# as root.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { # need COMMAND DEBIAN-PACKAGE
  command -v "$1" >/dev/null && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing $2 (needed for $1)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  else
    echo "test.sh: $1 is missing; install $2" >&2
    exit 1
  fi
}
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null || { echo "test.sh: Go is missing; install Go 1.26 or newer" >&2; exit 1; }
need gcc gcc
need curl curl
need redis-server redis-server
need systemd-analyze systemd
need chromium chromium

echo "== gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "not gofmt-ed: $unformatted" >&2
  exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race"
# The packages first, then the tests of the built binary (the root package), on their
# own: those put the machine under load (a reload test sends 500 requests/s for 10 s),
# which must not share the two cores with the packages' timing-sensitive tests.
go test -race -count=1 $(go list ./... | grep -vx balancing-reverse-proxy)
go test -race -count=1 .

echo "== allocations per request, against scripts/allocs-baseline.txt"
scripts/allocs.sh

echo "== multi-test.sh (three dummy servers, the proxy in fan-out mode)"
BASE_PORT="${BASE_PORT:-18000}" PROXY_PORT="${PROXY_PORT:-18080}" scripts/multi-test.sh

echo "== big-response.sh (1 GiB through the proxy at flat memory)"
BASE_PORT=18010 PROXY_PORT=18090 scripts/big-response.sh

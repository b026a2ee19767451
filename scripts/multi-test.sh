#!/usr/bin/env bash
# multi-test.sh: end-to-end check of the proxy in fan-out mode.
#
# Builds the proxy and dummy-http-server once, starts three dummy servers on
# 127.0.0.1:BASE_PORT..BASE_PORT+2 with random delays (so each wins some
# fan-out races) and the proxy on 127.0.0.1:PROXY_PORT in front of them, all
# stopping after DURATION. It then sends requests through the proxy until the
# proxy is gone, counts which dummy answered each one, and fails unless every
# dummy answered at least once.
#
# Environment (defaults in brackets):
#   BASE_PORT     first dummy port [8000]
#   PROXY_PORT    proxy port [8080]
#   DURATION      how long the servers run, such as 5s, 1500ms or 2m [5s]
#   MAX_REQUESTS  upper bound on the requests sent [100000]
#
# Only the processes this script starts are stopped, by PID. The build
# directory is removed on exit; the logs are kept and their path printed.
set -euo pipefail

BASE_PORT=${BASE_PORT:-8000}
PROXY_PORT=${PROXY_PORT:-8080}
DURATION=${DURATION:-5s}
MAX_REQUESTS=${MAX_REQUESTS:-100000}

# How long to wait for a server to accept connections, in tenths of a second.
readonly START_TIMEOUT_TENTHS=50
# How long the request loop may run after DURATION, in seconds.
readonly LOOP_SLACK_SECONDS=15

die() {
	echo "multi-test: $*" >&2
	exit 1
}

for var in BASE_PORT PROXY_PORT MAX_REQUESTS; do
	[[ ${!var} =~ ^[0-9]+$ ]] || die "$var=${!var}: want a positive integer"
done
((BASE_PORT >= 1 && BASE_PORT + 2 <= 65535)) || die "BASE_PORT=$BASE_PORT: want a port from 1 to 65533"
((PROXY_PORT >= 1 && PROXY_PORT <= 65535)) || die "PROXY_PORT=$PROXY_PORT: want a port from 1 to 65535"
((PROXY_PORT < BASE_PORT || PROXY_PORT > BASE_PORT + 2)) ||
	die "PROXY_PORT=$PROXY_PORT: must differ from the dummy ports $BASE_PORT-$((BASE_PORT + 2))"

# DURATION goes to the servers as a Go duration; the loop bound only needs
# whole seconds, rounded up.
if [[ $DURATION =~ ^([0-9]+)s$ ]]; then
	duration_seconds=${BASH_REMATCH[1]}
elif [[ $DURATION =~ ^([0-9]+)ms$ ]]; then
	duration_seconds=$(((BASH_REMATCH[1] + 999) / 1000))
elif [[ $DURATION =~ ^([0-9]+)m$ ]]; then
	duration_seconds=$((BASH_REMATCH[1] * 60))
else
	die "DURATION=$DURATION: want whole seconds, milliseconds or minutes, such as 5s, 1500ms or 2m"
fi
((duration_seconds > 0)) || die "DURATION=$DURATION: want more than zero"

command -v go >/dev/null || die "go not found in PATH"
command -v curl >/dev/null || die "curl not found in PATH"

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(git -C "$script_dir" rev-parse --show-toplevel 2>/dev/null) || top=$(dirname "$script_dir")
cd "$top"

build_dir=$(mktemp -d "${TMPDIR:-/tmp}/multi-test-build.XXXXXX")
log_dir=$(mktemp -d "${TMPDIR:-/tmp}/multi-test-logs.XXXXXX")
logfile="$log_dir/proxy.log"
pids=()

cleanup() {
	local status=$?
	# jobs -pr lists only this shell's children that are still running, so a
	# PID that has exited (and might be reused) is never signalled.
	local running
	running=" $(jobs -pr | tr '\n' ' ') "
	local pid
	for pid in "${pids[@]}"; do
		if [[ $running == *" $pid "* ]]; then
			kill "$pid" 2>/dev/null || true
		fi
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$build_dir"
	# Nothing was started when the log directory is still empty.
	if rmdir "$log_dir" 2>/dev/null; then
		exit "$status"
	fi
	echo "multi-test: proxy log: $logfile (other logs in $log_dir)" >&2
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# port_in_use PORT succeeds when something accepts connections on PORT.
# curl exits with 7 exactly when it could not connect.
port_in_use() {
	local rc=0
	curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" || rc=$?
	((rc != 7))
}

# wait_ready NAME PID PORT LOG waits until PORT accepts connections, failing
# when the process PID exits first or after START_TIMEOUT_TENTHS.
wait_ready() {
	local name=$1 pid=$2 port=$3 log=$4 i
	for ((i = 0; i < START_TIMEOUT_TENTHS; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			die "$name exited at start: $(tail -n 1 "$log" 2>/dev/null)"
		fi
		if port_in_use "$port"; then
			return 0
		fi
		sleep 0.1
	done
	die "$name does not accept connections on 127.0.0.1:$port after $((START_TIMEOUT_TENTHS / 10))s"
}

for port in "$BASE_PORT" "$((BASE_PORT + 1))" "$((BASE_PORT + 2))" "$PROXY_PORT"; do
	if port_in_use "$port"; then
		die "port 127.0.0.1:$port is already in use"
	fi
done

echo "multi-test: building in $build_dir" >&2
go build -o "$build_dir/balancing-reverse-proxy" . || die "building the proxy failed"
go build -o "$build_dir/dummy-http-server" ./dummy-http-server || die "building dummy-http-server failed"

endpoints=()
for port in "$BASE_PORT" "$((BASE_PORT + 1))" "$((BASE_PORT + 2))"; do
	endpoints+=("http://127.0.0.1:$port")
done
endpoint_list=$(
	IFS=,
	echo "${endpoints[*]}"
)
echo "multi-test: proxy -f -e $endpoint_list -s $DURATION -address 127.0.0.1:$PROXY_PORT" >&2
"$build_dir/balancing-reverse-proxy" \
	-f \
	-e "$endpoint_list" \
	-s "$DURATION" \
	-address "127.0.0.1:$PROXY_PORT" \
	-log-file "$logfile" \
	>"$log_dir/proxy.out" 2>&1 &
proxy_pid=$!
pids+=("$proxy_pid")

# The proxy starts first so that it also stops first: the dummies then
# outlive it by a few milliseconds, and requests near the end still reach
# them instead of getting 502s.
dummies=()
dummy_pids=()
for port in "$BASE_PORT" "$((BASE_PORT + 1))" "$((BASE_PORT + 2))"; do
	"$build_dir/dummy-http-server" \
		-address "127.0.0.1:$port" \
		-stop-after "$DURATION" \
		-max-delay 50ms \
		-random-errors=false \
		-name "dummy-$port" \
		>"$log_dir/dummy-$port.log" 2>&1 &
	pids+=("$!")
	dummy_pids+=("$!")
	dummies+=("dummy-$port")
done

for i in 0 1 2; do
	wait_ready "${dummies[i]}" "${dummy_pids[i]}" "$((BASE_PORT + i))" "$log_dir/${dummies[i]}.log"
done
wait_ready proxy "$proxy_pid" "$PROXY_PORT" "$log_dir/proxy.out"

declare -A answers=()
declare -A others=()
declare -A failures=()
requests=0
answered=0
stopped=0
deadline=$((SECONDS + duration_seconds + LOOP_SLACK_SECONDS))
url="http://127.0.0.1:$PROXY_PORT/"
while ((requests < MAX_REQUESTS && SECONDS < deadline)); do
	requests=$((requests + 1))
	# The status goes on a line of its own after the body.
	curl_rc=0
	reply=$(curl -s --max-time 5 -w '\n%{http_code}' "$url") || curl_rc=$?
	if ((curl_rc == 7)); then
		# Connection refused: the proxy has stopped after -s, as it should.
		requests=$((requests - 1))
		stopped=1
		break
	fi
	if ((curl_rc != 0)); then
		# Most likely a connection closed by the proxy's shutdown; the next
		# request tells.
		failures[$curl_rc]=$((${failures[$curl_rc]:-0} + 1))
		sleep 0.05
		continue
	fi
	code=${reply##*$'\n'}
	body=${reply%$'\n'*}
	if [[ $body =~ ^Hello\ from\ (dummy-[0-9]+): ]]; then
		name=${BASH_REMATCH[1]}
		answers[$name]=$((${answers[$name]:-0} + 1))
		answered=$((answered + 1))
	else
		others[$code]=$((${others[$code]:-0} + 1))
	fi
done

ok=1
if ((!stopped)); then
	if ((requests >= MAX_REQUESTS)); then
		echo "multi-test: stopped at MAX_REQUESTS=$MAX_REQUESTS with the proxy still running" >&2
	else
		echo "multi-test: stopped after $((duration_seconds + LOOP_SLACK_SECONDS))s with the proxy still running" >&2
	fi
	ok=0
fi

# Once it refuses connections the proxy should exit on its own, with status
# 0; give it the start timeout to do so. Otherwise cleanup stops it.
for ((i = 0; stopped && i < START_TIMEOUT_TENTHS; i++)); do
	kill -0 "$proxy_pid" 2>/dev/null || break
	sleep 0.1
done
if ((stopped)) && ! kill -0 "$proxy_pid" 2>/dev/null; then
	proxy_rc=0
	wait "$proxy_pid" || proxy_rc=$?
	if ((proxy_rc != 0)); then
		echo "multi-test: proxy exited with status $proxy_rc: $(tail -n 1 "$log_dir/proxy.out")" >&2
		ok=0
	fi
fi

echo "multi-test: $requests requests, $answered answered by a dummy"
silent=()
for name in "${dummies[@]}"; do
	count=${answers[$name]:-0}
	echo "  $name: $count"
	if ((count == 0)); then
		silent+=("$name")
	fi
done
for code in "${!others[@]}"; do
	echo "  other responses with status $code: ${others[$code]}"
done
for rc in "${!failures[@]}"; do
	echo "  requests failed with curl exit status $rc: ${failures[$rc]}"
done
if ((answered == 0)); then
	echo "multi-test: no request got an answer from a dummy" >&2
	ok=0
elif ((${#silent[@]} > 0)); then
	echo "multi-test: no answer from ${silent[*]}" >&2
	ok=0
fi

if ((ok)); then
	echo "multi-test: PASS"
else
	echo "multi-test: FAIL" >&2
	exit 1
fi

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeProxyEnv makes the test binary a stand-in for the proxy, or for wrk
// when its arguments are wrk's (see TestMain), so that the process handling
// is tested without building or starting the real proxy, or having wrk.
const fakeProxyEnv = "BENCH_FAKE_PROXY"

func TestMain(m *testing.M) {
	if os.Getenv(fakeProxyEnv) == "1" {
		if len(os.Args) > 1 && (strings.HasPrefix(os.Args[1], "-t") || os.Args[1] == "-v") {
			os.Exit(fakeWrk(os.Args[1:]))
		}
		os.Exit(fakeProxy(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeWrkRequests is how many requests the fake wrk sends per run.
const fakeWrkRequests = 10

// fakeWrk prints a version for -v; otherwise it sends fakeWrkRequests GETs to
// the URL (its last argument) one after another and prints what wrkScript
// would.
func fakeWrk(args []string) int {
	if args[0] == "-v" {
		fmt.Println("wrk fake [epoll] Copyright (C) 2012 Will Glozer")
		return 1
	}
	client := &http.Client{Timeout: 5 * time.Second}
	started := time.Now()
	status := 0
	for range fakeWrkRequests {
		resp, err := client.Get(args[len(args)-1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode >= 400 {
			status++
		}
	}
	elapsed := time.Since(started)
	fmt.Printf("Running fake test @ %s\n", args[len(args)-1])
	fmt.Printf("%s requests=%d duration_us=%d requests_per_s=%.2f connect_errors=0 read_errors=0 write_errors=0 status_errors=%d timeouts=0 p50_us=1000 p99_us=2000 p999_us=3000 max_us=4000\n",
		wrkLinePrefix, fakeWrkRequests, elapsed.Microseconds(), fakeWrkRequests/elapsed.Seconds(), status)
	return 0
}

// fakeProxy takes the proxy's -address and -endpoints, rejects any
// --hedge-delay like a proxy without hedging, and forwards every request to
// the first endpoint until SIGTERM.
func fakeProxy(args []string) int {
	var address, endpointList string
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-address":
			address = args[i+1]
		case "-endpoints":
			endpointList = args[i+1]
		case "--hedge-delay":
			fmt.Fprintln(os.Stderr, "balancing-reverse-proxy: unknown flag --hedge-delay")
			fmt.Fprintln(os.Stderr, "second line")
			return 2
		}
	}
	target, err := url.Parse(strings.Split(endpointList, ",")[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	listener, err := net.Listen("tcp", address)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	server := &http.Server{Handler: httputil.NewSingleHostReverseProxy(target), ReadHeaderTimeout: time.Second}
	go func() { _ = server.Serve(listener) }()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	_ = server.Close()
	return 0
}

// testProxyPath returns the test binary, which fakeProxyEnv makes a proxy.
func testProxyPath(t *testing.T) string {
	t.Helper()
	t.Setenv(fakeProxyEnv, "1")
	path, err := os.Executable()
	require.NoError(t, err)
	return path
}

// startedEndpoint returns a listening endpoint closed at the test's end.
func startedEndpoint(t *testing.T, m Model) *endpoint {
	t.Helper()
	e := newEndpoint(m)
	require.NoError(t, e.start())
	t.Cleanup(e.close)
	return e
}

func TestLoadCountsOnlyMeasuredRequests(t *testing.T) {
	t.Parallel()
	e := startedEndpoint(t, Model{Base: time.Millisecond})
	client := newClient()
	t.Cleanup(client.CloseIdleConnections)
	var measureCalls, receivedAtMeasure atomic.Int64
	l := load{
		Client: client, URL: e.URL + "/bench", Rate: 1000,
		Warmup: 20 * time.Millisecond, Duration: 100 * time.Millisecond,
		Timeout: 5 * time.Second, MaxInFlight: 100,
		OnMeasure: func() {
			measureCalls.Add(1)
			receivedAtMeasure.Store(e.measured.Load())
		},
	}
	res, err := l.run(t.Context())
	require.NoError(t, err)
	assert.Equal(t, int64(100), res.Requests)
	assert.Equal(t, int64(100), res.Latency.TotalCount())
	assert.Zero(t, res.Errors+res.Non2xx+res.Dropped, "first error: %s", res.FirstError)
	assert.Equal(t, int64(1), measureCalls.Load())
	assert.Zero(t, receivedAtMeasure.Load(), "no measured request before OnMeasure")
	assert.Equal(t, int64(100), e.measured.Load())
	assert.Equal(t, int64(120), e.received.Load())
	assert.GreaterOrEqual(t, quantileMs(res.Latency, 50), 1.0, "latency includes the endpoint's delay")
}

func TestLoadDropsBeyondMaxInFlight(t *testing.T) {
	t.Parallel()
	e := startedEndpoint(t, Model{Base: time.Hour})
	client := newClient()
	t.Cleanup(client.CloseIdleConnections)
	l := load{
		Client: client, URL: e.URL, Rate: 100, Duration: 100 * time.Millisecond,
		Timeout: 300 * time.Millisecond, MaxInFlight: 1,
	}
	res, err := l.run(t.Context())
	require.NoError(t, err)
	assert.Equal(t, int64(1), res.Requests)
	assert.Equal(t, int64(9), res.Dropped)
	assert.Equal(t, int64(1), res.Errors, "the time-out is an error")
	assert.GreaterOrEqual(t, quantileMs(res.Latency, 100), 300.0)
	require.Eventually(t, func() bool { return e.cancelled.Load() == 1 }, 5*time.Second, time.Millisecond,
		"the timed-out request's handler stopped waiting")
}

func TestLoadStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	e := startedEndpoint(t, Model{})
	client := newClient()
	t.Cleanup(client.CloseIdleConnections)
	ctx, cancel := context.WithCancel(t.Context())
	l := load{
		Client: client, URL: e.URL, Rate: 100, Duration: time.Hour,
		Timeout: time.Second, MaxInFlight: 10, OnMeasure: cancel,
	}
	_, err := l.run(ctx)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestStartProxyUnavailable(t *testing.T) {
	path := testProxyPath(t)
	_, err := startProxy(t.Context(), path, []string{"http://127.0.0.1:1"}, []string{"--hedge-delay", "p95"})
	var unavailable *UnavailableError
	require.ErrorAs(t, err, &unavailable)
	assert.Equal(t, "balancing-reverse-proxy: unknown flag --hedge-delay", unavailable.Line)
}

func TestRunScenarioThroughProxy(t *testing.T) {
	rn := &runner{
		cfg: config{
			rate: 500, warmup: 20 * time.Millisecond, duration: 100 * time.Millisecond,
			timeout: 5 * time.Second, maxInFlight: 100,
		},
		proxyPath: testProxyPath(t),
		progress:  &bytes.Buffer{},
	}
	sc := scenario{
		name:           "test",
		models:         []Model{{}, {}},
		measuredModels: []Model{{ErrorFraction: 1}, {}},
		rows: []row{
			{name: "direct (endpoint 1)", direct: 1},
			{name: "proxy", direct: viaProxy},
			{name: "hedged", direct: viaProxy, proxyArgs: []string{"--hedge-delay", "10ms"}},
		},
	}
	results, err := rn.runScenario(t.Context(), sc)
	require.NoError(t, err)
	require.Len(t, results, 3)

	direct, proxied, hedged := results[0], results[1], results[2]
	assert.True(t, direct.Direct)
	assert.Equal(t, int64(50), direct.Requests)
	assert.Zero(t, direct.Non2xx, "endpoint 1 has no errors")
	assert.Equal(t, int64(50), direct.Upstream)

	// The fake proxy calls endpoint 0 only, which turns to 503s when the
	// measured phase starts, and the warm-up's answers were 200s.
	assert.False(t, proxied.Direct)
	assert.Equal(t, int64(50), proxied.Requests)
	assert.Equal(t, int64(50), proxied.Non2xx)
	assert.Equal(t, int64(50), proxied.Upstream)
	assert.Empty(t, proxied.Failed)

	assert.Equal(t, "balancing-reverse-proxy: unknown flag --hedge-delay", hedged.Unavailable)
	var out bytes.Buffer
	printTable(&out, "test", results)
	assert.Contains(t, out.String(), "unavailable: balancing-reverse-proxy: unknown flag --hedge-delay")
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	cfg, err := parseFlags(nil, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, config{
		rate: 200, duration: 20 * time.Second, warmup: 3 * time.Second,
		scenarios: scenarioNames, timeout: 10 * time.Second, maxInFlight: 2000,
		overheadRuns: 3, overheadDuration: 10 * time.Second, overheadRate: 2000,
		overheadWarmup: time.Second, overheadInFlight: 1000,
	}, cfg)
	assert.False(t, cfg.overhead, "all is the tail scenarios only")

	cfg, err = parseFlags([]string{"-scenario", "overhead", "-overhead-runs", "1", "-overhead-duration", "3s", "-overhead-rate", "500"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.True(t, cfg.overhead)
	assert.Empty(t, cfg.scenarios)
	assert.Equal(t, 1, cfg.overheadRuns)
	assert.Equal(t, 3*time.Second, cfg.overheadDuration)
	assert.InDelta(t, 500.0, cfg.overheadRate, 0)

	cfg, err = parseFlags([]string{"-scenario", "all,overhead"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.True(t, cfg.overhead)
	assert.Equal(t, scenarioNames, cfg.scenarios)

	cfg, err = parseFlags([]string{"--scenario", "spread,tail,spread", "-rate", "100", "-strict"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, []string{"tail", "spread"}, cfg.scenarios)
	assert.True(t, cfg.strict)

	cfg, err = parseFlags([]string{"-scenario", "overhead", "-baseline", "/tmp/old"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, "/tmp/old", cfg.baselinePath)

	bad := [][]string{
		{"-scenario", "spread", "-baseline", "/tmp/old"},
		{"-scenario", "nope"},
		{"-rate", "0"},
		{"-duration", "0s"},
		{"-warmup", "-1s"},
		{"-max-in-flight", "0"},
		{"-rate", "100000", "-duration", "1h"},
		{"extra"},
		{"-overhead-runs", "0"},
		{"-overhead-runs", "21"},
		{"-overhead-duration", "1500ms"},
		{"-overhead-duration", "0s"},
		{"-overhead-duration", "11m"},
		{"-overhead-rate", "0"},
		{"-overhead-rate", "100000", "-overhead-duration", "10m"},
	}
	for _, args := range bad {
		_, err := parseFlags(args, &bytes.Buffer{})
		assert.Error(t, err, "%q", args)
	}
}

func TestRunUsage(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	assert.Equal(t, exitUsage, run(t.Context(), []string{"bench", "-scenario", "nope"}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), `-scenario "nope"`)
	assert.Empty(t, stdout.String())
	assert.Equal(t, exitUsage, run(t.Context(), []string{"bench", "-proxy", "/nonexistent/proxy", "-scenario", "spread"}, &stdout, &stderr))
}

func TestUnavailableErrorMessage(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("row: %w", &UnavailableError{Line: "unknown flag"})
	var unavailable *UnavailableError
	assert.True(t, errors.As(err, &unavailable))
	assert.Equal(t, "row: unavailable: unknown flag", err.Error())
}

func TestRunOverheadNeedsWrk(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var stdout, stderr bytes.Buffer
	assert.Equal(t, exitHarnessError, run(t.Context(), []string{"bench", "-scenario", "overhead"}, &stdout, &stderr))
	assert.Equal(t, "bench: -scenario overhead needs wrk, which is not on PATH: apt-get install wrk\n", stderr.String())
	assert.Empty(t, stdout.String(), "nothing is built or run")
}

func TestRunOverhead(t *testing.T) {
	path := testProxyPath(t)
	rn := &runner{
		cfg: config{
			timeout: 5 * time.Second, maxInFlight: 100,
			overheadRuns: 2, overheadDuration: 100 * time.Millisecond, overheadRate: 500,
			overheadWarmup: 20 * time.Millisecond, overheadInFlight: 5,
		},
		proxyPath: path,
		// The test binary is wrk too; nginx, HAProxy and Caddy are not
		// installed.
		tools:    tools{wrk: path, dir: t.TempDir()},
		progress: &bytes.Buffer{},
	}
	var err error
	rn.tools.wrkScript, err = writeWrkScript(rn.tools.dir)
	require.NoError(t, err)
	serial := row{name: rowSerial, direct: viaProxy, endpoints: 1}
	plan := overheadPlan{
		closedLoop: []row{
			{name: rowDirect, direct: 0},
			serial,
			{name: rowNginx, direct: viaProxy, server: serverNginx, endpoints: 1},
			{name: rowCaddy, direct: viaProxy, server: serverCaddy, endpoints: 1},
		},
		openLoop: []row{
			{name: rowDirect, direct: 0},
			serial,
			{name: "hedged", direct: viaProxy, proxyArgs: []string{"--hedge-delay", "p95"}},
		},
		memory: []memoryRow{{row: serial, attempts: 1}},
	}
	var out bytes.Buffer
	require.NoError(t, rn.runOverhead(t.Context(), plan, &out))
	text := out.String()
	assert.Contains(t, text, "tools: wrk fake [epoll]")
	assert.Contains(t, text, "; caddy not installed\n")
	// The fake wrk sends 10 requests a run, each of which reaches an endpoint
	// once, and no nginx to compare with. The server's CPU time is read where
	// there is /proc, in whole ticks: a run of 10 requests may take none.
	cpu := `-`
	if haveProc() {
		cpu = `[0-9.]+ \([0-9.]+–[0-9.]+\)`
	}
	assert.Regexp(t, `\| endpoint called directly \| [0-9,]+ \([0-9,]+–[0-9,]+\) \| - \| 1\.00x \| [0-9.]+x \| 1\.00 \| `+cpu+` \| 1\.00 \(1\.00–1\.00\) \| 2\.00 \(2\.00–2\.00\) \| 3\.00 \(3\.00–3\.00\) \|\n`, text)
	assert.Regexp(t, `\| proxy, serial, 1 endpoint \| [0-9,]+ \([0-9,]+–[0-9,]+\) \| - \| [0-9.]+x \| 1\.00x \| 1\.00 \| `+cpu+` \|`, text)
	assert.Contains(t, text, "| nginx, 1 endpoint | unavailable | - | - | - | - | - | - | - | - |\n")
	assert.Contains(t, text, "- nginx, 1 endpoint: unavailable: nginx is not installed (apt-get install nginx)")
	assert.Contains(t, text, "| Caddy, 1 endpoint | unavailable | - | - | - | - | - | - | - | - |\n")
	assert.Contains(t, text, "- Caddy, 1 endpoint: unavailable: caddy is not installed (apt-get install caddy)")
	assert.Regexp(t, `\| proxy, serial, 1 endpoint \| [0-9.]+ \([0-9.]+–[0-9.]+\) \| [0-9.]+ \([0-9.]+–[0-9.]+\) \| [0-9.]+ \([0-9.]+–[0-9.]+\) \| [-+][0-9.]+ \([-+][0-9.]+–[-+][0-9.]+\) \| 0 \|\n`, text)
	assert.Contains(t, text, "| hedged | unavailable | - | - | - | - |\n")
	if haveProc() {
		assert.Regexp(t, `\| proxy, serial, 1 endpoint \| 5 \| [0-9,]+ \([0-9,]+–[0-9,]+\) \| [0-9,]+ \([0-9,]+–[0-9,]+\) \| -?[0-9.]+ \(-?[0-9.]+–-?[0-9.]+\) \|\n`, text)
	}
	assert.Contains(t, text, "overhead: took ")
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// fakeChildEnv makes the test binary a stand-in for the proxy and the dummy
// server (see fakeChild), so that the process handling is tested without
// building either.
const fakeChildEnv = "SOAK_FAKE_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(fakeChildEnv) == "1" {
		os.Exit(fakeChild(os.Args[1:]))
	}
	// Children started by the tests inherit it.
	os.Setenv(fakeChildEnv, "1")
	goleak.VerifyTestMain(m)
}

// fakeChild serves HTTP on -address and -debug-address until SIGTERM; with
// -name exits it fails at once like a program given a bad flag.
func fakeChild(args []string) int {
	if i := slices.Index(args, "-name"); i >= 0 && i+1 < len(args) && args[i+1] == "exits" {
		fmt.Fprintln(os.Stderr, "fake: bad flag -bogus")
		return 2
	}
	var servers []*http.Server
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-address", "-debug-address":
			server := &http.Server{
				Addr:              args[i+1],
				Handler:           http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
				ReadHeaderTimeout: time.Second,
			}
			servers = append(servers, server)
			go func() { _ = server.ListenAndServe() }()
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	for _, s := range servers {
		_ = s.Close()
	}
	return 0
}

// testBinary is the test binary, which fakeChildEnv makes a fake child.
func testBinary(t *testing.T) string {
	t.Helper()
	path, err := os.Executable()
	require.NoError(t, err)
	return path
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		args  []string
		want  func(c *config)
		sched schedule
	}{
		{
			name:  "defaults",
			want:  func(*config) {},
			sched: schedule{warmup: 15 * time.Second, load: 45 * time.Second, interval: 3750 * time.Millisecond},
		},
		{
			name:  "the quick check",
			args:  []string{"-duration", "20s"},
			want:  func(c *config) { c.duration = 20 * time.Second },
			sched: schedule{warmup: 1667 * time.Millisecond, load: 5 * time.Second, interval: 500 * time.Millisecond},
		},
		{
			name:  "two modes share the time",
			args:  []string{"-duration", "20s", "-modes", "hedged, fan-out"},
			want:  func(c *config) { c.duration, c.modes = 20*time.Second, []string{"hedged", "fan-out"} },
			sched: schedule{warmup: 2500 * time.Millisecond, load: 7500 * time.Millisecond, interval: 625 * time.Millisecond},
		},
		{
			name: "everything set",
			args: []string{"-duration", "1h", "-modes", "serial", "-rate", "200", "-max-in-flight", "500",
				"-interval", "30s", "-warmup", "1m", "-fault-rate", "0.125"},
			want: func(c *config) {
				c.duration, c.modes, c.rate, c.maxInFlight = time.Hour, []string{"serial"}, 200, 500
				c.interval, c.warmup, c.faultRate = 30*time.Second, time.Minute, 0.125
			},
			sched: schedule{warmup: time.Minute, load: 59 * time.Minute, interval: 30 * time.Second},
		},
		{
			name: "an automatic interval stays within 10s",
			args: []string{"-duration", "6h"},
			want: func(c *config) { c.duration = 6 * time.Hour },
			sched: schedule{warmup: 15 * time.Second, load: 2*time.Hour - 15*time.Second,
				interval: 10 * time.Second},
		},
		{
			name: "idle connections need no schedule",
			args: []string{"-idle-conns", "10000", "-duration", "1s"},
			want: func(c *config) { c.idleConns, c.duration = 10000, time.Second },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := config{
				duration: 3 * time.Minute, modes: modeNames, rate: 50, maxInFlight: 64, faultRate: 0.01,
			}
			tt.want(&want)

			got, err := parseFlags(tt.args, &bytes.Buffer{})

			require.NoError(t, err)
			assert.Equal(t, want, got)
			if tt.sched != (schedule{}) {
				assert.Equal(t, tt.sched, got.schedule())
			}
		})
	}
}

func TestParseFlagsRejectsBadValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no duration", []string{"-duration", "0s"}, "-duration 0s: accepted: above 0, at most 6h0m0s"},
		{"duration too long", []string{"-duration", "7h"}, "-duration 7h0m0s: accepted"},
		{"unknown mode", []string{"-modes", "serial,turbo"}, `-modes "serial,turbo": "turbo" is unknown or repeated; accepted: a list of serial, fan-out, hedged`},
		{"repeated mode", []string{"-modes", "hedged,hedged"}, `"hedged" is unknown or repeated`},
		{"no rate", []string{"-rate", "0"}, "-rate 0: accepted: above 0, at most 2000"},
		{"NaN rate", []string{"-rate", "NaN"}, "-rate NaN"},
		{"no request in flight", []string{"-max-in-flight", "0"}, "-max-in-flight 0: accepted: 1 to 10000"},
		{"negative interval", []string{"-interval", "-1s"}, "-interval -1s: accepted: 0 (automatic) or more"},
		{"negative warm-up", []string{"-warmup", "-1s"}, "-warmup -1s"},
		{"fault rate too high", []string{"-fault-rate", "0.2"}, "-fault-rate 0.2: accepted: 0 to 0.125"},
		{"negative idle connections", []string{"-idle-conns", "-1"}, "-idle-conns -1: accepted: 0 (soak) to 100000"},
		{"too many idle connections", []string{"-idle-conns", "100001"}, "-idle-conns 100001"},
		{"too short for four samples", []string{"-duration", "6s"}, "fewer than 4 samples 500ms apart"},
		{"interval too long for the load", []string{"-duration", "1m", "-interval", "10s"}, "fewer than 4 samples 10s apart"},
		{"warm-up longer than the mode", []string{"-duration", "30s", "-warmup", "20s"}, "leaves -10s of load per mode"},
		{"positional argument", []string{"now"}, `unexpected argument "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseFlags(tt.args, &bytes.Buffer{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}

func TestRunRejectsABadCommandLine(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer

	code := run(context.Background(), []string{"-rate", "-5"}, &stdout, &stderr)

	assert.Equal(t, exitUsage, code)
	assert.Equal(t, "soak: -rate -5: accepted: above 0, at most 2000\n", stderr.String())
	assert.Empty(t, stdout.String())
}

func TestStartDummyAndStop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	dummy, port, err := startDummy(ctx, testBinary(t), "fake", nil)
	require.NoError(t, err)
	assert.Positive(t, dummy.pid())
	require.NoError(t, dialAndReset(ctx, localAddr(port)))

	require.NoError(t, dummy.stop())
	assert.True(t, dummy.hasExited())
	assert.Error(t, dialAndReset(ctx, localAddr(port)), "nothing listens once it stopped")
}

func TestStartProxy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	proxy, err := startProxy(ctx, testBinary(t), []string{"http://127.0.0.1:1"}, []string{"-fanout"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.stop() })

	assert.Regexp(t, `^http://127\.0\.0\.1:\d+$`, proxy.URL())
	assert.NotEqual(t, proxy.URL(), proxy.debugURL())
	require.NoError(t, dialAndReset(ctx, localAddr(proxy.port)))
	assert.Contains(t, proxy.cmd.Args, "-fanout")
	assert.Contains(t, proxy.cmd.Args, "-debug-address")
	require.NoError(t, proxy.stop())
}

func TestStartReportsAChildThatExits(t *testing.T) {
	t.Parallel()

	_, _, err := startDummy(context.Background(), testBinary(t), "exits", nil)

	require.Error(t, err)
	assert.Contains(t, err.Error(), "exits exited (exit status 2): fake: bad flag -bogus")
}

func TestCappedBuffer(t *testing.T) {
	t.Parallel()
	buf := &cappedBuffer{limit: 5}
	n, err := buf.Write([]byte("abc"))
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	n, err = buf.Write([]byte("defgh"))
	require.NoError(t, err)
	assert.Equal(t, 5, n, "a write is always taken whole")
	assert.Equal(t, "abcde", buf.String())
}

func TestSettleWaitsForRest(t *testing.T) {
	t.Parallel()
	// The goroutine count falls as the load's connections close, then holds.
	counts := []int{40, 25, 12, 12, 12}
	var asked atomic.Int32
	debug := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/debug/pprof/heap" {
			fmt.Fprintf(w, "# HeapInuse = %d\n# Stack = 65536 / 65536\n", 1600<<10)
			return
		}
		i := int(asked.Add(1)) - 1
		fmt.Fprintf(w, "goroutine profile: total %d\n", counts[min(i, len(counts)-1)])
	}))
	t.Cleanup(debug.Close)
	smp := newSampler(4242, 8080, []int{8000}, debug.URL)
	smp.procRoot = fakeProc(t, 4242, []uint64{100, 101, 103}, 3)

	got, err := settle(context.Background(), smp, func() time.Duration { return time.Second })

	require.NoError(t, err)
	assert.Equal(t, int32(4), asked.Load(), "until two samples in a row agree")
	assert.Equal(t, 12, got.Goroutines)
	assert.Equal(t, int64(1600), got.HeapKB)
	assert.Equal(t, phaseRest, got.Phase)
}

func TestModeNamesHaveArgs(t *testing.T) {
	t.Parallel()
	keys := make([]string, 0, len(modeArgs))
	for name := range modeArgs {
		keys = append(keys, name)
	}
	slices.Sort(keys)
	sorted := slices.Clone(modeNames)
	slices.Sort(sorted)
	assert.Equal(t, sorted, keys)
}

package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMedian(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values []float64
		want   float64
	}{
		{name: "one", values: []float64{4}, want: 4},
		{name: "odd count, unsorted", values: []float64{9, 1, 5}, want: 5},
		{name: "even count", values: []float64{4, 1, 3, 2}, want: 2.5},
		{name: "outlier does not move it", values: []float64{10, 11, 1000}, want: 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := append([]float64(nil), tt.values...)
			assert.InDelta(t, tt.want, median(tt.values), 1e-12)
			assert.Equal(t, before, tt.values, "the values keep their order")
		})
	}
	assert.True(t, math.IsNaN(median(nil)))
}

func TestSummarizeAndFormatSpread(t *testing.T) {
	t.Parallel()
	s, ok := summarize([]float64{21300.4, 19875, 23050})
	require.True(t, ok)
	assert.Equal(t, spread{Median: 21300.4, Min: 19875, Max: 23050, N: 3}, s)
	assert.Equal(t, "21,300 (19,875–23,050)", formatSpread(s, formatThousands))

	_, ok = summarize(nil)
	assert.False(t, ok)
	assert.Equal(t, "-", spreadCell(nil, formatMs))
	assert.Equal(t, "0.95", spreadCell([]float64{0.951}, formatMs), "one run has no range")
	assert.Equal(t, "+0.10 (-0.02–+0.30)", spreadCell([]float64{0.3, -0.02, 0.1}, formatSignedMs))
}

func TestRatio(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		a, b   float64
		want   float64
		wantOK bool
	}{
		{name: "against nginx", a: 7666, b: 24306, want: 7666.0 / 24306, wantOK: true},
		{name: "itself", a: 24306, b: 24306, want: 1, wantOK: true},
		{name: "no reference", a: 7666, b: math.NaN()},
		{name: "zero reference", a: 7666, b: 0},
		{name: "no figure", a: math.NaN(), b: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := ratio(tt.a, tt.b)
			assert.Equal(t, tt.wantOK, ok)
			if tt.wantOK {
				assert.InDelta(t, tt.want, got, 1e-12)
			}
		})
	}
	assert.Equal(t, "0.32x", formatRatio(ratio(7666, 24306)))
	assert.Equal(t, "-", formatRatio(ratio(7666, math.NaN())))
}

func TestFormatThousands(t *testing.T) {
	t.Parallel()
	for v, want := range map[float64]string{
		0: "0", 999: "999", 1000: "1,000", 21300.4: "21,300", 999999.5: "1,000,000", -12345: "-12,345",
	} {
		assert.Equal(t, want, formatThousands(v), "%g", v)
	}
}

func TestMarkdownTable(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	markdownTable(&out, []string{"target", "requests/s"}, [][]string{{"nginx", "24,306"}})
	assert.Equal(t, "| target | requests/s |\n| --- | ---: |\n| nginx | 24,306 |\n", out.String())
}

// wrkRun returns a closed-loop run of rps requests/s over a second, each
// reaching perRequest upstream requests, with latencies p50, 2 x p50 and
// 3 x p50, and no server CPU time.
func wrkRun(rps float64, perRequest int64, p50 time.Duration) wrkResult {
	n := int64(rps)
	return wrkResult{
		Requests: n, Duration: time.Second, RequestsPerSec: rps, Upstream: n * perRequest,
		P50: p50, P99: 2 * p50, P999: 3 * p50,
	}
}

// withCPU returns run with the server's CPU time at perRequest a request.
func withCPU(run wrkResult, perRequest time.Duration) wrkResult {
	run.ServerCPU, run.HasServerCPU = time.Duration(run.Requests)*perRequest, true
	return run
}

func TestPrintClosedLoop(t *testing.T) {
	t.Parallel()
	rows := []closedLoopResult{
		{rowRuns: rowRuns{Name: rowDirect, OtherCores: []float64{0, 0.01, 0.02}}, Runs: []wrkResult{
			wrkRun(40000, 1, time.Millisecond), wrkRun(50000, 1, time.Millisecond), wrkRun(45000, 1, time.Millisecond),
		}},
		{rowRuns: rowRuns{Name: "proxy, fan-out to 3", OtherCores: []float64{0.6, 0, 0}}, Runs: []wrkResult{
			wrkRun(3000, 3, 20*time.Millisecond), wrkRun(2000, 3, 30*time.Millisecond), wrkRun(2500, 3, 25*time.Millisecond),
		}},
		{rowRuns: rowRuns{Name: rowNginx}, Runs: []wrkResult{
			withCPU(wrkRun(25000, 1, 2*time.Millisecond), 40*time.Microsecond),
			withCPU(wrkRun(24000, 1, 2*time.Millisecond), 42500*time.Nanosecond),
			withCPU(wrkRun(26000, 1, 2*time.Millisecond), 38*time.Microsecond),
		}},
		{rowRuns: rowRuns{Name: rowHAProxy, Failed: "HAProxy exited (exit status 1): [ALERT] cannot bind\nmore"}},
	}
	rows[1].Runs[0].StatusErrors = 5
	var out bytes.Buffer
	printClosedLoop(&out, config{overheadRuns: 3, overheadDuration: 10 * time.Second, overheadWarmup: time.Second}, rows)
	text := out.String()
	assert.Contains(t, text, "Closed loop (`wrk -t2 -c64 -d10s --latency -s script.lua`, after a 1s wrk warm-up")
	assert.Contains(t, text, "| target | requests/s | vs nginx | vs direct | cost vs serial | upstream per request | server CPU per request µs | p50 ms | p99 ms | p99.9 ms |\n")
	assert.Contains(t, text, "| endpoint called directly | 45,000 (40,000–50,000) | 1.80x | 1.00x | - | 1.00 | - | 1.00 (1.00–1.00) | 2.00 (2.00–2.00) | 3.00 (3.00–3.00) |\n")
	assert.Contains(t, text, "| proxy, fan-out to 3 | 2,500 (2,000–3,000) | 0.10x | 0.06x | - | 3.00 | - | 25.00 (20.00–30.00) | 50.00 (40.00–60.00) | 75.00 (60.00–90.00) |\n")
	assert.Contains(t, text, "| nginx, 1 endpoint | 25,000 (24,000–26,000) | 1.00x | 0.56x | - | 1.00 | 40.0 (38.0–42.5) | 2.00 (2.00–2.00) |")
	assert.Contains(t, text, "| HAProxy, 1 endpoint | failed | - | - | - | - | - | - | - | - |\n")
	assert.Contains(t, text, "- server CPU per request: utime + stime (/proc/PID/stat, in 1/100 s) of the server under test")
	assert.Contains(t, text, "- HAProxy, 1 endpoint: failed: HAProxy exited (exit status 1): [ALERT] cannot bind\n")
	assert.Contains(t, text, "- proxy, fan-out to 3: 5 failed requests over 3 runs (connect 0, read 0, write 0, status 400 or more 5, time-out 0)")
	assert.Contains(t, text, "- other processes on the machine used 0.01 cores in the median run, 0.60 at most (proxy, fan-out to 3, run 1)")
}

func TestPrintClosedLoopWithoutNginx(t *testing.T) {
	t.Parallel()
	rows := []closedLoopResult{
		{rowRuns: rowRuns{Name: rowDirect}, Runs: []wrkResult{wrkRun(40000, 1, time.Millisecond)}},
		{rowRuns: rowRuns{Name: rowSerial}, Runs: []wrkResult{wrkRun(8000, 1, 8*time.Millisecond)}},
		{rowRuns: rowRuns{Name: "proxy, fan-out to 2"}, Runs: []wrkResult{wrkRun(3200, 2, 20*time.Millisecond)}},
		{rowRuns: rowRuns{Name: rowNginx, Unavailable: installHint("nginx")}},
	}
	var out bytes.Buffer
	printClosedLoop(&out, config{overheadRuns: 1, overheadDuration: 10 * time.Second}, rows)
	text := out.String()
	assert.Contains(t, text, "| proxy, serial, 1 endpoint | 8,000 | - | 0.20x | 1.00x | 1.00 | - | 8.00 | 16.00 | 24.00 |\n", "one run: no range, no nginx ratio")
	assert.Contains(t, text, "| proxy, fan-out to 2 | 3,200 | - | 0.08x | 2.50x | 2.00 |", "a request fanned out to 2 costs 2.5 serial ones")
	assert.Contains(t, text, "| nginx, 1 endpoint | unavailable | - | - | - | - | - | - | - | - |\n")
	assert.Contains(t, text, "- nginx, 1 endpoint: unavailable: nginx is not installed (apt-get install nginx)")
	assert.NotContains(t, text, "other processes", "no CPU figures, no note")
}

// openLoopRun returns an open-loop run whose every latency is d.
func openLoopRun(d time.Duration) result {
	return measuredRow("", false, 100, repeat(d, 100)...)
}

func TestPrintOpenLoopPairsRuns(t *testing.T) {
	t.Parallel()
	failing := openLoopRun(2 * time.Millisecond)
	failing.Errors, failing.Dropped, failing.FirstError = 2, 1, "context deadline exceeded"
	rows := []openLoopResult{
		{rowRuns: rowRuns{Name: rowDirect}, Runs: []result{openLoopRun(time.Millisecond), openLoopRun(2 * time.Millisecond), openLoopRun(time.Millisecond)}},
		// Each run is paired with the direct run of its round: +0.5, -0.5, +0.3.
		{rowRuns: rowRuns{Name: "proxy, serial, 1 endpoint"}, Runs: []result{
			openLoopRun(1500 * time.Microsecond), openLoopRun(1500 * time.Microsecond), openLoopRun(1300 * time.Microsecond),
		}},
		{rowRuns: rowRuns{Name: rowNginx}, Runs: []result{failing}},
	}
	var out bytes.Buffer
	printOpenLoop(&out, config{overheadRate: 2000, overheadDuration: 10 * time.Second, overheadWarmup: time.Second}, rows)
	text := out.String()
	assert.Contains(t, text, "Open loop (2,000 requests/s for 10s after a 1s warm-up")
	assert.Contains(t, text, "| endpoint called directly | 1.00 (1.00–2.00) | 1.00 (1.00–2.00) | 1.00 (1.00–2.00) | - | 0 |\n")
	assert.Contains(t, text, "| proxy, serial, 1 endpoint | 1.50 (1.30–1.50) | 1.50 (1.30–1.50) | 1.50 (1.30–1.50) | +0.30 (-0.50–+0.50) | 0 |\n")
	assert.Contains(t, text, "| nginx, 1 endpoint | 2.00 | 2.00 | 2.00 | +1.00 | 3 |\n")
	assert.Contains(t, text, "- nginx, 1 endpoint: 3 of 101 requests failed (errors, non-2xx or dropped); the first error: context deadline exceeded")
}

func TestPrintMemory(t *testing.T) {
	t.Parallel()
	rows := []memoryResult{
		{rowRuns: rowRuns{Name: "serial, 1 endpoint"}, InFlight: 1000, Runs: []memoryRun{
			{IdleKB: 12000, HeldKB: 59000, Reached: 1000},
			{IdleKB: 12100, HeldKB: 61100, Reached: 1000},
			{IdleKB: 11900, HeldKB: 56900, Reached: 1000},
		}},
		{rowRuns: rowRuns{Name: "fan-out to 3", Failed: "2990 of 3000 upstream attempts reached the endpoints: not within 10s"}, InFlight: 1000},
	}
	var out bytes.Buffer
	printMemory(&out, config{overheadInFlight: 1000}, rows)
	text := out.String()
	assert.Contains(t, text, "with 1,000 requests held at the endpoints")
	assert.Contains(t, text, "| serial, 1 endpoint | 1,000 | 12,000 (11,900–12,100) | 59,000 (56,900–61,100) | 47.0 (45.0–49.0) |\n")
	assert.Contains(t, text, "| fan-out to 3 | failed | - | - | - |\n")
	assert.Contains(t, text, "- fan-out to 3: failed: 2990 of 3000 upstream attempts reached the endpoints: not within 10s")
	assert.InDelta(t, 47.0, perRequestKB(memoryRun{IdleKB: 12000, HeldKB: 59000}, 1000), 1e-12)
	assert.True(t, math.IsNaN(perRequestKB(memoryRun{}, 0)))
}

func TestPrintOverheadHeader(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	printOverhead(&out, config{overheadRuns: 3, overheadDuration: 10 * time.Second, overheadRate: 2000, overheadInFlight: 1000},
		"wrk 4.1.0; nginx not installed; haproxy not installed", overheadResults{})
	text := out.String()
	assert.Contains(t, text, "== overhead: ")
	assert.Contains(t, text, "each figure is the median of 3 runs (min–max)")
	assert.Contains(t, text, "tools: wrk 4.1.0; nginx not installed")
	assert.Equal(t, 3, strings.Count(text, "| --- |"), "three tables")

	out.Reset()
	printOverhead(&out, config{overheadRuns: 1}, "", overheadResults{})
	assert.Contains(t, out.String(), "each figure is from one run")
}

func TestOverheadPlanEstimate(t *testing.T) {
	t.Parallel()
	plan := defaultOverheadPlan("", false)
	cfg := config{overheadRuns: 3, overheadDuration: 10 * time.Second, overheadWarmup: time.Second}
	// 16 load rows of 12s and 3 memory rows of 4s, three times.
	assert.Equal(t, 3*(16*12+3*4)*time.Second, plan.estimate(cfg))
	for _, rw := range plan.closedLoop {
		assert.LessOrEqual(t, rw.endpoints, overheadEndpoints, rw.name)
	}
	for _, mr := range plan.memory {
		assert.Equal(t, viaProxy, mr.direct, "%s: memory is the proxy's", mr.name)
		assert.LessOrEqual(t, mr.attempts, mr.endpoints, mr.name)
	}
}

func TestOverheadPlanServers(t *testing.T) {
	t.Parallel()
	plan := defaultOverheadPlan("", false)
	for _, rows := range [][]row{plan.closedLoop, plan.openLoop} {
		servers := map[string]string{}
		for _, rw := range rows {
			if rw.server != serverProxy {
				servers[rw.name] = rw.server
				assert.Equal(t, 1, rw.endpoints, "%s forwards to one endpoint", rw.name)
			}
		}
		assert.Equal(t, map[string]string{rowNginx: serverNginx, rowHAProxy: serverHAProxy, rowCaddy: serverCaddy}, servers)
	}
}

func TestCPUPerRequestMicros(t *testing.T) {
	t.Parallel()
	got, ok := cpuPerRequestMicros(wrkResult{Requests: 4000, ServerCPU: 250 * time.Millisecond, HasServerCPU: true})
	require.True(t, ok)
	assert.InDelta(t, 62.5, got, 1e-9)
	_, ok = cpuPerRequestMicros(wrkResult{Requests: 4000, ServerCPU: 250 * time.Millisecond})
	assert.False(t, ok, "not measured")
	_, ok = cpuPerRequestMicros(wrkResult{ServerCPU: time.Second, HasServerCPU: true})
	assert.False(t, ok, "no requests")
	got, ok = cpuPerRequestMicros(wrkResult{Requests: 10, HasServerCPU: true})
	require.True(t, ok, "under a tick is a figure too")
	assert.Zero(t, got)
}

func TestOverheadPlanBaseline(t *testing.T) {
	t.Parallel()
	own := defaultOverheadPlan("", false)
	plan := defaultOverheadPlan("/tmp/old-proxy", false)
	require.Len(t, plan.closedLoop, len(own.closedLoop)+2)
	assert.Equal(t, own.closedLoop, plan.closedLoop[:len(own.closedLoop)], "the proxy's own rows stay as they are")
	for _, rw := range own.closedLoop {
		assert.Empty(t, rw.binary, "%s runs the proxy under test", rw.name)
	}
	added := plan.closedLoop[len(own.closedLoop):]
	assert.Equal(t, "baseline, serial, 1 endpoint", added[0].name)
	assert.Equal(t, "baseline, fan-out to 3", added[1].name)
	for _, rw := range added {
		assert.Equal(t, "/tmp/old-proxy", rw.binary, rw.name)
		assert.Equal(t, serverProxy, rw.server, rw.name)
	}
	assert.Equal(t, []string{"-fanout"}, added[1].proxyArgs)
	assert.Equal(t, 3, added[1].endpoints)
}

func TestOverheadPlanSessions(t *testing.T) {
	t.Parallel()
	own := defaultOverheadPlan("", false)
	plan := defaultOverheadPlan("", true)
	assert.False(t, own.needsRedis())
	assert.True(t, plan.needsRedis())
	for _, rows := range [][]row{plan.closedLoop, plan.openLoop} {
		names := []string{}
		for _, rw := range rows {
			names = append(names, rw.name)
			if rw.name == rowSerial || rw.name == rowPinnedMemory || rw.name == rowPinnedRedis {
				assert.Equal(t, sessionRequestHeader, rw.header, "%s carries the session", rw.name)
			}
		}
		assert.Contains(t, names, rowPinnedMemory)
		assert.Contains(t, names, rowPinnedRedis)
	}
	for _, rw := range plan.closedLoop {
		switch rw.name {
		case rowPinnedMemory:
			assert.Equal(t, []string{"-session-header", "X-Session-ID"}, rw.proxyArgs)
			assert.False(t, rw.redis)
		case rowPinnedRedis:
			assert.True(t, rw.redis)
		}
	}
}

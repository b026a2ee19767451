package main

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/stretchr/testify/assert"
)

// histogramOf returns a histogram of the durations.
func histogramOf(durations ...time.Duration) *hdrhistogram.Histogram {
	h := newHistogram()
	for _, d := range durations {
		recordDuration(h, d)
	}
	return h
}

// rangeHistogram holds 1ms, 2ms, ... n ms once each.
func rangeHistogram(n int) *hdrhistogram.Histogram {
	h := newHistogram()
	for i := 1; i <= n; i++ {
		recordDuration(h, time.Duration(i)*time.Millisecond)
	}
	return h
}

func TestPercentiles(t *testing.T) {
	t.Parallel()
	h := rangeHistogram(1000)
	// Three significant figures: values are within 0.1% above the true one.
	tests := []struct {
		q    float64
		want float64
	}{
		{q: 50, want: 500},
		{q: 99, want: 990},
		{q: 99.9, want: 999},
		{q: 100, want: 1000},
	}
	for _, tt := range tests {
		got := quantileMs(h, tt.q)
		assert.GreaterOrEqual(t, got, tt.want, "p%g", tt.q)
		assert.LessOrEqual(t, got, tt.want*1.001, "p%g", tt.q)
	}
	assert.InDelta(t, 1000, maxMs(h), 1)
	assert.InDelta(t, 5.0, quantileMs(histogramOf(5*time.Millisecond), 50), 0.005)
}

func TestExtraLoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		upstream, client int64
		want             float64
		wantOK           bool
	}{
		{name: "one upstream request each", upstream: 4000, client: 4000, want: 0, wantOK: true},
		{name: "fan-out to three", upstream: 12000, client: 4000, want: 200, wantOK: true},
		{name: "five percent hedged", upstream: 4200, client: 4000, want: 5, wantOK: true},
		{name: "fewer upstream than client", upstream: 3900, client: 4000, want: -2.5, wantOK: true},
		{name: "no client requests", upstream: 10, client: 0, wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := extraLoad(tt.upstream, tt.client)
			assert.Equal(t, tt.wantOK, ok)
			if tt.wantOK {
				assert.InDelta(t, tt.want, got, 1e-9)
			} else {
				assert.True(t, math.IsNaN(got))
			}
		})
	}
}

// measuredRow returns a clean row whose latencies are the durations.
func measuredRow(name string, direct bool, upstream int64, durations ...time.Duration) result {
	return result{
		Name:   name,
		Direct: direct,
		loadResult: loadResult{
			Requests: int64(len(durations)),
			Latency:  histogramOf(durations...),
			SendLag:  histogramOf(time.Microsecond),
		},
		Upstream: upstream,
		Wall:     time.Second,
		ProxyCPU: 300 * time.Millisecond,
		BenchCPU: 500 * time.Millisecond,
	}
}

// repeat returns d n times.
func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func TestPrintTableRows(t *testing.T) {
	t.Parallel()
	direct := measuredRow(rowDirect0, true, 4, 5*time.Millisecond, 5*time.Millisecond, 6*time.Millisecond, 500*time.Millisecond)
	fan := measuredRow(rowFanOut, false, 12, repeat(5250*time.Microsecond, 4)...)
	fan.Errors, fan.FirstError = 1, "context deadline exceeded"
	rows := []result{
		direct,
		fan,
		{Name: rowHedgedP95, Unavailable: "balancing-reverse-proxy: unknown flag --hedge-delay"},
		{Name: "serial", Failed: "the proxy exited (exit status 1): listen tcp: address already in use\nmore"},
	}
	var out bytes.Buffer
	printTable(&out, "tail: 3 endpoints", rows)
	text := out.String()
	assert.Contains(t, text, "== tail: 3 endpoints")
	assert.Contains(t, text, "p99.9 ms")
	assert.Regexp(t, `direct \(endpoint 0\)\s+4\s+0\s+0\s+0\s+5\.00\s+500\.22\s+500\.22\s+500\.22\s+0\.0%\s+0\.00\s+-\s+50%`, text)
	assert.Regexp(t, `fan-out\s+4\s+0\s+1\s+0\s+5\.25\s+5\.25\s+5\.25\s+5\.25\s+200\.0%\s+0\.00\s+30%\s+50%`, text)
	assert.Regexp(t, `\nhedged p95 +unavailable: balancing-reverse-proxy: unknown flag --hedge-delay\n`, text)
	assert.Regexp(t, `\nserial +failed: the proxy exited \(exit status 1\): listen tcp: address already in use\n`, text)
	assert.Contains(t, text, "note: fan-out: 1 errors, the first: context deadline exceeded")
}

func TestEvaluateTargets(t *testing.T) {
	t.Parallel()
	fast := repeat(5*time.Millisecond, 1000)
	tests := []struct {
		name    string
		results map[string][]result
		want    []string
	}{
		{
			name:    "nothing ran",
			results: map[string][]result{},
		},
		{
			name: "tail passes",
			results: map[string][]result{"tail": {
				measuredRow(rowDirect0, true, 1000, fast...),
				measuredRow(rowHedgedP95, false, 1050, repeat(19*time.Millisecond, 1000)...),
			}},
			want: []string{verdictPass},
		},
		{
			name: "tail too much load",
			results: map[string][]result{"tail": {
				measuredRow(rowDirect0, true, 1000, fast...),
				measuredRow(rowHedgedP95, false, 1200, fast...),
			}},
			want: []string{verdictFail},
		},
		{
			name: "tail too slow",
			results: map[string][]result{"tail": {
				measuredRow(rowDirect0, true, 1000, fast...),
				measuredRow(rowHedgedP95, false, 1000, repeat(21*time.Millisecond, 1000)...),
			}},
			want: []string{verdictFail},
		},
		{
			name: "tail hedged unavailable",
			results: map[string][]result{"tail": {
				measuredRow(rowDirect0, true, 1000, fast...),
				{Name: rowHedgedP95, Unavailable: "unknown flag --hedge-delay"},
			}},
			want: []string{verdictNA},
		},
		{
			name: "spread against the fastest endpoint",
			results: map[string][]result{"spread": {
				measuredRow("direct (endpoint 1)", true, 1000, repeat(10*time.Millisecond, 1000)...),
				measuredRow(rowDirect0, true, 1000, fast...),
				measuredRow(rowFanOut, false, 3000, repeat(6900*time.Microsecond, 1000)...),
			}},
			want: []string{verdictPass},
		},
		{
			name: "spread misses by more than 2 ms",
			results: map[string][]result{"spread": {
				measuredRow(rowDirect0, true, 1000, fast...),
				measuredRow(rowFanOut, false, 3000, repeat(7100*time.Microsecond, 1000)...),
			}},
			want: []string{verdictFail},
		},
		{
			name: "slowdown within and over the budget",
			results: map[string][]result{
				"slowdown": {measuredRow(rowBudgetSlowdown, false, 1050, fast...)},
				"spread":   {measuredRow(rowDirect0, true, 1000, fast...), {Name: rowFanOut, Failed: "boom"}},
			},
			want: []string{verdictNA, verdictPass},
		},
		{
			name:    "slowdown over the budget",
			results: map[string][]result{"slowdown": {measuredRow(rowBudgetSlowdown, false, 1051, fast...)}},
			want:    []string{verdictFail},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, target := range evaluateTargets(tt.results) {
				got = append(got, target.Verdict)
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestEvaluateTargetsNeedsCleanRows(t *testing.T) {
	t.Parallel()
	hedged := measuredRow(rowHedgedP95, false, 1000, repeat(5*time.Millisecond, 1000)...)
	hedged.Dropped = 3
	targets := evaluateTargets(map[string][]result{"tail": {
		measuredRow(rowDirect0, true, 1000, repeat(5*time.Millisecond, 1000)...),
		hedged,
	}})
	assert.Equal(t, verdictFail, targets[0].Verdict)
	assert.Contains(t, targets[0].Detail, "3 dropped")

	var out bytes.Buffer
	assert.Equal(t, 1, printTargets(&out, targets))
	assert.Contains(t, out.String(), "FAIL tail: hedged p95 p99.9 <= 4 x direct p50")
}

func TestShellQuote(t *testing.T) {
	t.Parallel()
	assert.Equal(t, `bench -rate 100 -warmup 500ms -scenario tail,spread '' 'a b' 'it'\''s'`,
		shellQuote([]string{"bench", "-rate", "100", "-warmup", "500ms", "-scenario", "tail,spread", "", "a b", "it's"}))
}

package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMedianAndHalves(t *testing.T) {
	t.Parallel()
	assert.Equal(t, int64(0), median(nil))
	assert.Equal(t, int64(3), median([]int64{5, 1, 3}))
	assert.Equal(t, int64(2), median([]int64{4, 1, 3, 0}))

	first, second := halves([]int64{10, 30, 20, 99, 40, 60, 50})
	assert.Equal(t, int64(20), first, "10, 30, 20")
	assert.Equal(t, int64(50), second, "40, 60, 50: the middle 99 is in neither")
}

// rssSamples returns load samples with these RSS figures.
func rssSamples(rss ...int64) []sample {
	samples := make([]sample, len(rss))
	for i, kB := range rss {
		samples[i] = sample{At: time.Duration(i) * time.Second, Phase: phaseLoad, RSSKB: kB}
	}
	return samples
}

// failedFigures returns the figures of the failed findings.
func failedFigures(findings []finding) []string {
	var failed []string
	for _, f := range findings {
		if f.failed {
			failed = append(failed, f.figure)
		}
	}
	return failed
}

func TestModeResultCheck(t *testing.T) {
	t.Parallel()
	rest := sample{Phase: phaseRest, Goroutines: 13, FDs: 14, UpstreamConns: 3, HeapKB: 1500}
	flat := rssSamples(20000, 21000, 20500, 20800, 21000, 20900)

	tests := []struct {
		name       string
		restAfter  sample
		load       []sample
		wantFailed []string
		wantLine   string
	}{
		{
			name:      "back to the baseline",
			restAfter: rest,
			load:      flat,
			wantLine:  "goroutines at rest, net of connections: 7 before the load, 7 after (+0; tolerance +20)",
		},
		{
			// 40 more goroutines and 20 more files, all of them idle
			// upstream connections the transport keeps for a while.
			name:      "a larger pool of idle upstream connections is no leak",
			restAfter: sample{Goroutines: 13 + 40, FDs: 14 + 20, UpstreamConns: 3 + 20},
			load:      flat,
			wantLine:  "open files at rest, net of connections: 11 before the load, 11 after (+0; tolerance +5)",
		},
		{
			name:       "goroutines within the tolerance",
			restAfter:  sample{Goroutines: 13 + 20, FDs: 14, UpstreamConns: 3},
			load:       flat,
			wantLine:   "7 before the load, 27 after (+20; tolerance +20)",
			wantFailed: nil,
		},
		{
			name:       "goroutines beyond it",
			restAfter:  sample{Goroutines: 13 + 21, FDs: 14, UpstreamConns: 3},
			load:       flat,
			wantLine:   "7 before the load, 28 after (+21; tolerance +20)",
			wantFailed: []string{"goroutines"},
		},
		{
			name:       "open files beyond it",
			restAfter:  sample{Goroutines: 13, FDs: 14 + 6, UpstreamConns: 3},
			load:       flat,
			wantLine:   "11 before the load, 17 after (+6; tolerance +5)",
			wantFailed: []string{"open files"},
		},
		{
			name:      "RSS rising then flat",
			restAfter: rest,
			load:      rssSamples(15000, 20000, 24000, 24500, 24400, 24600),
			wantLine:  "RSS under load, median of each half: 20000 kB, then 24500 kB (+4500 kB; tolerance +8192 kB)",
		},
		{
			// 2 MB a sample: 8 MB between the halves' medians.
			name:       "a steady RSS rise still within the tolerance",
			restAfter:  rest,
			load:       rssSamples(40000, 42000, 44000, 46000, 48000, 50000, 52000, 54000),
			wantLine:   "median of each half: 43000 kB, then 51000 kB (+8000 kB; tolerance +8600 kB)",
			wantFailed: nil,
		},
		{
			name:       "RSS rising faster",
			restAfter:  rest,
			load:       rssSamples(40000, 43000, 46000, 49000, 52000, 55000, 58000, 61000),
			wantLine:   "median of each half: 44500 kB, then 56500 kB (+12000 kB; tolerance +8900 kB)",
			wantFailed: []string{"RSS"},
		},
		{
			name:       "live heap within the tolerance",
			restAfter:  sample{Goroutines: 13, FDs: 14, UpstreamConns: 3, HeapKB: 1500 + 2048},
			load:       flat,
			wantLine:   "live heap at rest, after a collection: 1500 kB before the load, 3548 kB after (+2048 kB; tolerance +2048 kB)",
			wantFailed: nil,
		},
		{
			name:       "live heap beyond it",
			restAfter:  sample{Goroutines: 13, FDs: 14, UpstreamConns: 3, HeapKB: 1500 + 2049},
			load:       flat,
			wantLine:   "(+2049 kB; tolerance +2048 kB)",
			wantFailed: []string{"live heap"},
		},
		{
			name:       "too few samples for the RSS",
			restAfter:  rest,
			load:       rssSamples(20000, 20000, 20000),
			wantLine:   "RSS not checked: 3 load samples, want at least 4",
			wantFailed: []string{"RSS"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := modeResult{name: "serial", restBefore: rest, restAfter: tt.restAfter, load: tt.load, traffic: newTrafficStats()}

			findings := r.check()

			assert.Equal(t, tt.wantFailed, failedFigures(findings))
			var lines []string
			for _, f := range findings {
				lines = append(lines, f.line)
			}
			assert.Contains(t, strings.Join(lines, "\n"), tt.wantLine)
			assert.Equal(t, tt.wantFailed != nil, r.failed())
		})
	}
}

func TestModeResultFailsOnCorruptAnswersAndNotes(t *testing.T) {
	t.Parallel()
	rest := sample{Goroutines: 10, FDs: 10}
	load := rssSamples(1, 1, 1, 1)

	corrupt := modeResult{restBefore: rest, restAfter: rest, load: load, traffic: newTrafficStats()}
	corrupt.traffic.add("get", outcomeCorrupt)
	assert.True(t, corrupt.failed())

	died := modeResult{restBefore: rest, restAfter: rest, load: load, traffic: newTrafficStats(), notes: []string{"the proxy exited"}}
	assert.True(t, died.failed())

	fine := modeResult{restBefore: rest, restAfter: rest, load: load, traffic: newTrafficStats()}
	fine.traffic.add("get", outcomeError)
	assert.False(t, fine.failed(), "errors are what the faults cause")
}

func TestPrintSummary(t *testing.T) {
	t.Parallel()
	rest := sample{Goroutines: 13, FDs: 14, UpstreamConns: 3}
	pass := modeResult{name: "fan-out", restBefore: rest, restAfter: rest, load: rssSamples(100, 100, 100, 100), traffic: newTrafficStats()}
	pass.traffic.add("get", outcomeOK)
	pass.traffic.add("get", outcomeOK)
	pass.traffic.add("malformed", outcomeNon2xx)
	pass.load[2].TimeWait = 95
	leak := modeResult{name: "hedged", restBefore: rest, restAfter: sample{Goroutines: 113, FDs: 14, UpstreamConns: 3},
		load: rssSamples(100, 100, 100, 100), traffic: newTrafficStats()}
	var out bytes.Buffer

	failed := printSummary(&out, []modeResult{pass, leak}, 45*time.Second)

	assert.True(t, failed)
	text := out.String()
	assert.Contains(t, text, "summary (45s of load per mode after its warm-up)")
	assert.Regexp(t, `fan-out\s+3\s+2\s+1\s+0\s+0\s+0\s+7 -> 7\s+11 -> 11\s+100 -> 100\s+95\s+PASS`, text)
	assert.Regexp(t, `hedged .* FAIL`, text)
	assert.Contains(t, text, "FAIL hedged: goroutines at rest, net of connections: 7 before the load, 107 after (+100; tolerance +20)")
	assert.Contains(t, text, "ok   fan-out: goroutines at rest")
}

func TestPrintTablesAndTraffic(t *testing.T) {
	t.Parallel()
	stats := newTrafficStats()
	stats.add("get", outcomeOK)
	stats.add("slow-headers", outcomeError)
	stats.drop()
	stats.corrupt("get request 7")
	var out bytes.Buffer

	printSamples(&out, "serial", []sample{
		{At: 1500 * time.Millisecond, Phase: phaseRest, Goroutines: 9, FDs: 12, RSSKB: 17000, HeapKB: 1600, UpstreamConns: 1, TimeWait: 4},
		{At: 5 * time.Second, Phase: phaseLoad, Goroutines: 30, FDs: 20, RSSKB: 18000, ClientConns: 7, UpstreamConns: 2, CloseWait: 1},
	})
	printTraffic(&out, "serial", stats)

	text := out.String()
	assert.Regexp(t, `1\.5\s+rest\s+9\s+7\s+12\s+11\s+17000\s+1600\s+0\s+1\s+0\s+4\n`, text)
	assert.Regexp(t, `5\.0\s+load\s+30\s+19\s+20\s+11\s+18000\s+-\s+7\s+2\s+1\s+0\n`, text)
	assert.Regexp(t, `get\s+1\s+-\s+-\s+-\s+-`, text)
	assert.Regexp(t, `slow-headers\s+-\s+-\s+1\s+-\s+-`, text)
	assert.Contains(t, text, "dropped (due while -max-in-flight were outstanding): 1")
	assert.Contains(t, text, "first corrupt answer: get request 7")
}

func TestProfileExcerpt(t *testing.T) {
	t.Parallel()
	var profile strings.Builder
	profile.WriteString("goroutine profile: total 1006\n")
	for i, count := range []int{1000, 3, 2, 1} {
		if i > 0 {
			profile.WriteString("\n")
		}
		fmt.Fprintf(&profile, "%d @ 0x1 0x2\n#\t0x1\tpkg.leaky%d+0x1\tleak.go:1\n", count, i)
		for range 20 {
			profile.WriteString("#\t0x2\tpkg.deep+0x1\tdeep.go:2\n")
		}
	}

	got := profileExcerpt(profile.String(), 2)

	require.True(t, strings.HasPrefix(got, "goroutine profile: total 1006\n1000 @ 0x1 0x2\n"), got)
	assert.Contains(t, got, "pkg.leaky0")
	assert.Contains(t, got, "pkg.leaky1")
	assert.NotContains(t, got, "pkg.leaky2")
	assert.Equal(t, 2, strings.Count(got, "#\t..."), "long stacks are cut")
}

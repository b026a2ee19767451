package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wrkOutput is what wrk 4.1.0 printed with wrkScript (and --latency) on the
// development machine.
const wrkOutput = `Running 5s test @ http://127.0.0.1:18501/bench
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.61ms    1.51ms  52.20ms   90.11%
    Req/Sec    13.06k     1.12k   15.74k    71.00%
  Latency Distribution
     50%    2.19ms
     75%    2.87ms
     90%    3.99ms
     99%    9.52ms
  130822 requests in 5.04s, 146.21MB read
Requests/sec:  25980.69
Transfer/sec:     29.03MB
bench-wrk: requests=130822 duration_us=5035355 requests_per_s=25980.69 connect_errors=0 read_errors=1 write_errors=2 status_errors=3 timeouts=4 p50_us=2186 p99_us=9519 p999_us=39769 max_us=52197
`

func TestParseWrkOutput(t *testing.T) {
	t.Parallel()
	got, err := parseWrkOutput(wrkOutput)
	require.NoError(t, err)
	assert.Equal(t, wrkResult{
		Requests:       130822,
		Duration:       5035355 * time.Microsecond,
		RequestsPerSec: 25980.69,
		ReadErrors:     1, WriteErrors: 2, StatusErrors: 3, Timeouts: 4,
		P50: 2186 * time.Microsecond, P99: 9519 * time.Microsecond,
		P999: 39769 * time.Microsecond, Max: 52197 * time.Microsecond,
	}, got)
	assert.Equal(t, int64(10), got.errors())
}

func TestParseWrkOutputRejects(t *testing.T) {
	t.Parallel()
	line := "bench-wrk: requests=1 duration_us=1000000 requests_per_s=1.00 connect_errors=0 read_errors=0 write_errors=0 status_errors=0 timeouts=0 p50_us=1 p99_us=2 p999_us=3 max_us=4"
	tests := []struct {
		name    string
		out     string
		wantErr string
	}{
		{name: "no line", out: "Running 10s test @ http://127.0.0.1:1/\nunable to connect to 127.0.0.1:1 Connection refused\n", wantErr: `no "bench-wrk:" line`},
		{name: "missing key", out: strings.Replace(line, " p99_us=2", "", 1), wantErr: `p99_us=""`},
		{name: "negative count", out: strings.Replace(line, "requests=1 ", "requests=-1 ", 1), wantErr: `requests="-1"`},
		{name: "not a number", out: strings.Replace(line, "requests_per_s=1.00", "requests_per_s=nan", 1), wantErr: `requests_per_s="nan"`},
		{name: "not key=value", out: line + " stray", wantErr: `field "stray"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseWrkOutput(tt.out)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
	_, err := parseWrkOutput(line)
	assert.NoError(t, err, "the line the rejections are made from is valid")
}

// TestWrkScriptMatchesParser checks that the script prints every key the
// parser needs: a line made from the script's format parses.
func TestWrkScriptMatchesParser(t *testing.T) {
	t.Parallel()
	format := regexp.MustCompile(`"` + wrkLinePrefix + `[^"]*"(\s*\.\.\s*"[^"]*")*`).FindString(wrkScript)
	require.NotEmpty(t, format)
	format = regexp.MustCompile(`"\s*\.\.\s*"`).ReplaceAllString(format, "")
	format = strings.Trim(strings.TrimSuffix(strings.Trim(format, `"`), `\n`), " ")
	line := strings.NewReplacer("%d", "7", "%.2f", "7.00").Replace(format)
	got, err := parseWrkOutput(line)
	require.NoError(t, err, line)
	assert.Equal(t, int64(7), got.Requests)
	assert.Equal(t, 7*time.Microsecond, got.P999)
	assert.Equal(t, 12, strings.Count(format, "="), "one field per value the script prints")
}

func TestWrkArgs(t *testing.T) {
	t.Parallel()
	assert.Equal(t, []string{"-t2", "-c64", "-d10s", "--latency", "-s", "/tmp/x.lua", "http://127.0.0.1:1/bench"},
		wrkArgs("/tmp/x.lua", "http://127.0.0.1:1/bench", 10*time.Second, ""))
	assert.Equal(t, "-d1s", wrkArgs("s", "u", 20*time.Millisecond, "")[2], "wrk takes whole seconds, at least one")
	assert.Equal(t, []string{"-t2", "-c64", "-d1s", "--latency", "-s", "s", "-H", "X-Session-ID: bench", "u"},
		wrkArgs("s", "u", time.Second, "X-Session-ID: bench"))
	assert.Equal(t, "wrk -t2 -c64 -d3s --latency -s script.lua", wrkCommand(3*time.Second))
}

package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wrk's load: threads and connections, fixed so that every closed-loop figure
// is comparable with every other.
const (
	wrkThreads     = 2
	wrkConnections = 64
	// wrkGrace is how much longer than its -d a wrk run may take before it is
	// killed: its connections' start and its final report.
	wrkGrace = 15 * time.Second
)

// wrkLinePrefix starts the line wrkScript prints.
const wrkLinePrefix = "bench-wrk:"

// wrkScript is wrk's Lua script: at the end of the run it prints one line of
// key=value fields, the totals and the percentiles of wrk's latency histogram
// in microseconds, which parseWrkOutput reads.
const wrkScript = `-- Written by scripts/bench: one line for parseWrkOutput.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "` + wrkLinePrefix + ` requests=%d duration_us=%d requests_per_s=%.2f" ..
    " connect_errors=%d read_errors=%d write_errors=%d status_errors=%d timeouts=%d" ..
    " p50_us=%d p99_us=%d p999_us=%d max_us=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
`

// wrkResult is one wrk run, as its script printed it.
type wrkResult struct {
	Requests       int64
	Duration       time.Duration
	RequestsPerSec float64
	// StatusErrors counts answers with a status of 400 or more; the others
	// are socket errors and wrk's time-outs (2s).
	ConnectErrors, ReadErrors, WriteErrors, StatusErrors, Timeouts int64
	P50, P99, P999, Max                                            time.Duration
	// Upstream counts the requests the endpoints received during the run,
	// set by the harness.
	Upstream int64
	// ServerCPU is the CPU time the server under test used during the run,
	// set by the harness when HasServerCPU.
	ServerCPU    time.Duration
	HasServerCPU bool
}

// errors counts the run's failed requests of every kind.
func (r wrkResult) errors() int64 {
	return r.ConnectErrors + r.ReadErrors + r.WriteErrors + r.StatusErrors + r.Timeouts
}

// parseWrkOutput reads the line of wrkScript from wrk's output.
func parseWrkOutput(out string) (wrkResult, error) {
	var fields string
	found := false
	for line := range strings.Lines(out) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), wrkLinePrefix); ok {
			fields, found = rest, true
		}
	}
	if !found {
		return wrkResult{}, fmt.Errorf("no %q line in wrk's output", wrkLinePrefix)
	}
	values := make(map[string]string)
	for field := range strings.FieldsSeq(fields) {
		key, value, ok := strings.Cut(field, "=")
		if !ok {
			return wrkResult{}, fmt.Errorf("wrk's output: field %q: want key=value", field)
		}
		values[key] = value
	}
	var r wrkResult
	var errs []error
	count := func(key string) int64 {
		n, err := strconv.ParseInt(values[key], 10, 64)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a count", key, values[key]))
		}
		return n
	}
	micros := func(key string) time.Duration {
		return time.Duration(count(key)) * time.Microsecond
	}
	r.Requests = count("requests")
	r.Duration = micros("duration_us")
	r.ConnectErrors = count("connect_errors")
	r.ReadErrors = count("read_errors")
	r.WriteErrors = count("write_errors")
	r.StatusErrors = count("status_errors")
	r.Timeouts = count("timeouts")
	r.P50, r.P99, r.P999, r.Max = micros("p50_us"), micros("p99_us"), micros("p999_us"), micros("max_us")
	rps, err := strconv.ParseFloat(values["requests_per_s"], 64)
	if err != nil || rps < 0 || math.IsNaN(rps) || math.IsInf(rps, 0) {
		errs = append(errs, fmt.Errorf("requests_per_s=%q: want a rate", values["requests_per_s"]))
	}
	r.RequestsPerSec = rps
	if err := errors.Join(errs...); err != nil {
		return wrkResult{}, fmt.Errorf("wrk's output: %w", err)
	}
	return r, nil
}

// wrkArgs returns wrk's command line for a run of duration (whole seconds, at
// least one: wrk takes no smaller unit) against url with the script.
func wrkArgs(script, url string, duration time.Duration, header string) []string {
	seconds := max(int64(math.Round(duration.Seconds())), 1)
	args := []string{
		"-t" + strconv.Itoa(wrkThreads), "-c" + strconv.Itoa(wrkConnections),
		"-d" + strconv.FormatInt(seconds, 10) + "s", "--latency", "-s", script,
	}
	if header != "" {
		args = append(args, "-H", header)
	}
	return append(args, url)
}

// wrkCommand is wrk's command line as the report shows it.
func wrkCommand(duration time.Duration) string {
	args := wrkArgs("script.lua", "URL", duration, "")
	return "wrk " + strings.Join(args[:len(args)-1], " ")
}

// writeWrkScript writes wrkScript into dir and returns its path.
func writeWrkScript(dir string) (string, error) {
	path := filepath.Join(dir, "bench-wrk.lua")
	if err := os.WriteFile(path, []byte(wrkScript), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// runWrk runs wrk at path for duration against url, with header if not
// empty, and returns what its script printed. wrk is a child the harness kills by its PID when the run overstays
// by wrkGrace or ctx ends, and that the kernel ends if the harness dies.
func runWrk(ctx context.Context, path, script, url string, duration time.Duration, header string) (wrkResult, error) {
	ctx, cancel := context.WithTimeout(ctx, duration+wrkGrace)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, wrkArgs(script, url, duration, header)...)
	setParentDeathSignal(cmd)
	stdout, stderr := &cappedBuffer{limit: 64 << 10}, &cappedBuffer{limit: 64 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return wrkResult{}, fmt.Errorf("wrk: %w", ctx.Err())
		}
		return wrkResult{}, fmt.Errorf("wrk (%v): %s", err, firstLine(stderr.String()+"\n"+stdout.String()))
	}
	return parseWrkOutput(stdout.String())
}

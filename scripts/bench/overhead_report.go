package main

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// spread is a figure over its runs: their median, least and greatest.
type spread struct {
	Median, Min, Max float64
	N                int
}

// summarize returns the spread of values, false when there are none.
func summarize(values []float64) (spread, bool) {
	if len(values) == 0 {
		return spread{}, false
	}
	return spread{Median: median(values), Min: slices.Min(values), Max: slices.Max(values), N: len(values)}, true
}

// median returns the middle of values (the mean of the two middle ones for an
// even count), or NaN when there are none; values is not changed.
func median(values []float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	mid := len(sorted) / 2
	if len(sorted)%2 == 1 {
		return sorted[mid]
	}
	return (sorted[mid-1] + sorted[mid]) / 2
}

// ratio returns a / b, false when either is not a positive number.
func ratio(a, b float64) (float64, bool) {
	if !(a > 0) || !(b > 0) || math.IsInf(a, 0) || math.IsInf(b, 0) {
		return math.NaN(), false
	}
	return a / b, true
}

// formatSpread writes the median and, with more than one run, the range, such
// as "0.95 (0.93–0.99)"; an en dash, so that a negative bound reads clearly.
func formatSpread(s spread, format func(float64) string) string {
	if s.N <= 1 {
		return format(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", format(s.Median), format(s.Min), format(s.Max))
}

// spreadCell is formatSpread of values, or "-" when there are none.
func spreadCell(values []float64, format func(float64) string) string {
	s, ok := summarize(values)
	if !ok {
		return "-"
	}
	return formatSpread(s, format)
}

// formatThousands writes v rounded to a whole number with thousands
// separators: 21300.4 is "21,300".
func formatThousands(v float64) string {
	n := int64(math.Round(v))
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	digits := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, d := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	return sign + b.String()
}

func formatMs(v float64) string       { return fmt.Sprintf("%.2f", v) }
func formatSignedMs(v float64) string { return fmt.Sprintf("%+.2f", v) }
func formatOneDecimal(v float64) string {
	return fmt.Sprintf("%.1f", v)
}

// formatRatio writes a ratio such as "0.62x", or "-" when there is none.
func formatRatio(v float64, ok bool) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}

// ms returns d in milliseconds.
func ms(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}

// markdownTable writes a Markdown table: the first column left-aligned, the
// others right-aligned.
func markdownTable(w io.Writer, header []string, rows [][]string) {
	line := func(cells []string) {
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	line(header)
	align := make([]string, len(header))
	for i := range align {
		align[i] = "---:"
	}
	align[0] = "---"
	line(align)
	for _, r := range rows {
		line(r)
	}
}

// statusCells returns the cells of a row that has no figures: its status,
// then "-" for the other columns; or nil when the row has figures (runs).
func statusCells(r rowRuns, runs, columns int) []string {
	status := ""
	switch {
	case r.Unavailable != "":
		status = "unavailable"
	case r.Failed != "":
		status = "failed"
	case runs == 0:
		status = "not run"
	default:
		return nil
	}
	cells := []string{r.Name, status}
	for len(cells) < columns {
		cells = append(cells, "-")
	}
	return cells
}

// statusNote explains a row with no figures, or returns "".
func statusNote(r rowRuns) string {
	switch {
	case r.Unavailable != "":
		return r.Name + ": unavailable: " + r.Unavailable
	case r.Failed != "":
		return r.Name + ": failed: " + firstLine(r.Failed)
	}
	return ""
}

// otherCPUNote says how busy the machine was with other processes during a
// table's runs, and when, or returns "" when it could not tell.
func otherCPUNote(rows []rowRuns) string {
	var all []float64
	busiest, busiestRun := "", 0
	most := -1.0
	for _, r := range rows {
		for i, c := range r.OtherCores {
			all = append(all, c)
			if c > most {
				most, busiest, busiestRun = c, r.Name, i+1
			}
		}
	}
	if len(all) == 0 {
		return ""
	}
	return fmt.Sprintf("other processes on the machine used %.2f cores in the median run, %.2f at most (%s, run %d)",
		median(all), most, busiest, busiestRun)
}

// printNotes writes each non-empty note.
func printNotes(w io.Writer, notes []string) {
	for _, n := range notes {
		if n != "" {
			fmt.Fprintf(w, "\n- %s", n)
		}
	}
	fmt.Fprintln(w)
}

// printOverhead writes the overhead scenario's three tables, Markdown ready
// for the README, each followed by its notes.
func printOverhead(w io.Writer, cfg config, toolsLine string, res overheadResults) {
	workers := serverWorkers()
	fmt.Fprintf(w, "\n== %s: what the proxy costs, against nginx, HAProxy and Caddy in front of the same endpoint\n", overheadScenario)
	runs := "each figure is from one run"
	if cfg.overheadRuns > 1 {
		runs = fmt.Sprintf("each figure is the median of %d runs (min–max), taken in rounds of every row", cfg.overheadRuns)
	}
	fmt.Fprintf(w, "endpoints: the harness's own, in-process, answering %d bytes at once; %s\n", bodySize, runs)
	fmt.Fprintf(w, "tools: %s\n", toolsLine)
	// The proxy inherits the harness's environment, so its GOMAXPROCS is the
	// harness's.
	fmt.Fprintf(w, "servers: nginx worker_processes %d, HAProxy nbthread %d, the proxy GOMAXPROCS %d, Caddy its default (the CPUs); nginx keepalive 128 over HTTP/1.1 to the endpoint, HAProxy http-reuse always, Caddy up to %d idle upstream connections; no access logs\n",
		workers, workers, runtime.GOMAXPROCS(0), caddyIdleConns)
	printClosedLoop(w, cfg, res.closedLoop)
	printOpenLoop(w, cfg, res.openLoop)
	printMemory(w, cfg, res.memory)
}

// printFigures writes a table whose rows have the statuses rows and runs[i]
// runs each: figures gives the cells after the name, and a note or "", of a
// row with runs; a row without gets its status. The rows' notes follow, then
// the table's own (tableNotes), and the CPU other processes used.
func printFigures(w io.Writer, header []string, rows []rowRuns, runs []int, tableNotes []string, figures func(i int) (cells []string, note string)) {
	var cells [][]string
	var notes []string
	for i, r := range rows {
		if c := statusCells(r, runs[i], len(header)); c != nil {
			cells = append(cells, c)
			notes = append(notes, statusNote(r))
			continue
		}
		c, note := figures(i)
		cells = append(cells, append([]string{r.Name}, c...))
		notes = append(notes, note)
	}
	markdownTable(w, header, cells)
	printNotes(w, slices.Concat(notes, tableNotes, []string{otherCPUNote(rows)}))
}

// printClosedLoop writes the throughput table. Its "cost vs serial" column is
// the serial proxy's throughput over the row's: what a request costs the
// machine, in requests of the proxy making one attempt, so that fan-out to N
// should come to about N.
func printClosedLoop(w io.Writer, cfg config, rows []closedLoopResult) {
	fmt.Fprintf(w, "\nClosed loop (`%s`, after a %s wrk warm-up; latency as wrk measures it, from each request's actual send; cost vs serial: the serial proxy's requests/s over the row's):\n\n",
		wrkCommand(cfg.overheadDuration), cfg.overheadWarmup)
	rps := func(r closedLoopResult) []float64 {
		out := make([]float64, len(r.Runs))
		for i, run := range r.Runs {
			out[i] = run.RequestsPerSec
		}
		return out
	}
	reference := func(name string) float64 {
		for _, r := range rows {
			if r.Name == name && len(r.Runs) > 0 && !r.done() {
				return median(rps(r))
			}
		}
		return math.NaN()
	}
	nginx, direct, serial := reference(rowNginx), reference(rowDirect), reference(rowSerial)
	statuses, runs := make([]rowRuns, len(rows)), make([]int, len(rows))
	for i, r := range rows {
		statuses[i], runs[i] = r.rowRuns, len(r.Runs)
	}
	header := []string{"target", "requests/s", "vs nginx", "vs direct", "cost vs serial", "upstream per request", "server CPU per request µs", "p50 ms", "p99 ms", "p99.9 ms"}
	printFigures(w, header, statuses, runs, []string{serverCPUNote}, func(i int) ([]string, string) {
		r := rows[i]
		var upstream, cpu, p50, p99, p999 []float64
		var errs wrkResult
		for _, run := range r.Runs {
			if run.Requests > 0 {
				upstream = append(upstream, float64(run.Upstream)/float64(run.Requests))
			}
			if us, ok := cpuPerRequestMicros(run); ok {
				cpu = append(cpu, us)
			}
			p50, p99, p999 = append(p50, ms(run.P50)), append(p99, ms(run.P99)), append(p999, ms(run.P999))
			errs.ConnectErrors += run.ConnectErrors
			errs.ReadErrors += run.ReadErrors
			errs.WriteErrors += run.WriteErrors
			errs.StatusErrors += run.StatusErrors
			errs.Timeouts += run.Timeouts
		}
		throughput := median(rps(r))
		cells := []string{
			spreadCell(rps(r), formatThousands),
			formatRatio(ratio(throughput, nginx)),
			formatRatio(ratio(throughput, direct)),
			formatRatio(ratio(serial, throughput)),
			formatUpstream(upstream),
			spreadCell(cpu, formatOneDecimal),
			spreadCell(p50, formatMs), spreadCell(p99, formatMs), spreadCell(p999, formatMs),
		}
		note := ""
		if n := errs.errors(); n > 0 {
			note = fmt.Sprintf("%s: %d failed requests over %d runs (connect %d, read %d, write %d, status 400 or more %d, time-out %d)",
				r.Name, n, len(r.Runs), errs.ConnectErrors, errs.ReadErrors, errs.WriteErrors, errs.StatusErrors, errs.Timeouts)
		}
		return cells, note
	})
}

// serverCPUNote says what the closed-loop table's CPU column measures.
const serverCPUNote = "server CPU per request: utime + stime (/proc/PID/stat, in 1/100 s) of the server under test, its process and every descendant " +
	"(nginx: the master and its workers), from just before the measured wrk run to just after it, over the requests wrk completed; " +
	"for the endpoint called directly, the harness process's own, which serves the endpoint and is otherwise idle during the run " +
	"(wrk, its child, is not counted); \"-\" where there is no /proc"

// cpuPerRequestMicros returns the server's CPU time per request of a run, in
// µs, false when the run has no CPU time or no requests.
func cpuPerRequestMicros(run wrkResult) (float64, bool) {
	if !run.HasServerCPU || run.Requests <= 0 {
		return math.NaN(), false
	}
	return float64(run.ServerCPU) / float64(time.Microsecond) / float64(run.Requests), true
}

// formatUpstream writes the median upstream requests per client request, or
// "-" when there are none.
func formatUpstream(values []float64) string {
	if len(values) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", median(values))
}

// printOpenLoop writes the added-latency table. The added p50 of a row pairs
// each of its runs with the direct row's run of the same round.
func printOpenLoop(w io.Writer, cfg config, rows []openLoopResult) {
	fmt.Fprintf(w, "\nOpen loop (%s requests/s for %s after a %s warm-up, from the harness's load generator; latency from each request's intended send time):\n\n",
		formatThousands(cfg.overheadRate), cfg.overheadDuration, cfg.overheadWarmup)
	var direct []result
	statuses, runs := make([]rowRuns, len(rows)), make([]int, len(rows))
	for i, r := range rows {
		statuses[i], runs[i] = r.rowRuns, len(r.Runs)
		if r.Name == rowDirect && !r.done() {
			direct = r.Runs
		}
	}
	header := []string{"target", "p50 ms", "p99 ms", "p99.9 ms", "added p50 ms", "failed requests"}
	printFigures(w, header, statuses, runs, nil, func(i int) ([]string, string) {
		r := rows[i]
		var p50, p99, p999, added []float64
		var failed, requests int64
		firstError := ""
		for i, run := range r.Runs {
			p50 = append(p50, quantileMs(run.Latency, 50))
			p99 = append(p99, quantileMs(run.Latency, 99))
			p999 = append(p999, quantileMs(run.Latency, 99.9))
			if r.Name != rowDirect && i < len(direct) {
				added = append(added, quantileMs(run.Latency, 50)-quantileMs(direct[i].Latency, 50))
			}
			failed += run.Errors + run.Non2xx + run.Dropped
			requests += run.Requests + run.Dropped
			if firstError == "" {
				firstError = run.FirstError
			}
		}
		cells := []string{
			spreadCell(p50, formatMs), spreadCell(p99, formatMs), spreadCell(p999, formatMs),
			spreadCell(added, formatSignedMs),
			formatThousands(float64(failed)),
		}
		note := ""
		if failed > 0 {
			note = fmt.Sprintf("%s: %d of %d requests failed (errors, non-2xx or dropped)", r.Name, failed, requests)
			if firstError != "" {
				note += "; the first error: " + firstError
			}
		}
		return cells, note
	})
}

// perRequestKB returns a memory run's RSS growth per request held, in kB.
func perRequestKB(run memoryRun, inFlight int) float64 {
	if inFlight <= 0 {
		return math.NaN()
	}
	return float64(run.HeldKB-run.IdleKB) / float64(inFlight)
}

// printMemory writes the memory table.
func printMemory(w io.Writer, cfg config, rows []memoryResult) {
	fmt.Fprintf(w, "\nMemory (the proxy's RSS, VmRSS of /proc/PID/status: %s after its start, then with %s requests held at the endpoints once every attempt of theirs has reached one, each on its own client connection):\n\n",
		memorySettle, formatThousands(float64(cfg.overheadInFlight)))
	statuses, runs := make([]rowRuns, len(rows)), make([]int, len(rows))
	for i, r := range rows {
		statuses[i], runs[i] = r.rowRuns, len(r.Runs)
	}
	header := []string{"mode", "attempts held", "RSS idle kB", "RSS held kB", "kB per request in flight"}
	printFigures(w, header, statuses, runs, nil, func(i int) ([]string, string) {
		var reached, idle, held, per []float64
		for _, run := range rows[i].Runs {
			reached = append(reached, float64(run.Reached))
			idle = append(idle, float64(run.IdleKB))
			held = append(held, float64(run.HeldKB))
			per = append(per, perRequestKB(run, rows[i].InFlight))
		}
		return []string{
			formatThousands(median(reached)),
			spreadCell(idle, formatThousands), spreadCell(held, formatThousands),
			spreadCell(per, formatOneDecimal),
		}, ""
	})
}

package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// result is one row of a report.
type result struct {
	Name string
	// Direct is true for the load generator calling an endpoint itself.
	Direct bool
	// Unavailable is set when the proxy rejected the row's flags: the first
	// line it printed. Failed is set when the row could not run. Neither row
	// has numbers.
	Unavailable string
	Failed      string
	loadResult
	// Upstream counts the requests the endpoints received for the measured
	// client requests.
	Upstream int64
	// Wall is the row's time, warm-up included; ProxyCPU and BenchCPU are the
	// CPU time the proxy and the harness used in it.
	Wall     time.Duration
	ProxyCPU time.Duration
	BenchCPU time.Duration
}

// measured reports whether the row has numbers.
func (r result) measured() bool {
	return r.Unavailable == "" && r.Failed == "" && r.Latency != nil && r.Latency.TotalCount() > 0
}

// quantileMs returns h's value at percentile q (0-100) in milliseconds.
func quantileMs(h *hdrhistogram.Histogram, q float64) float64 {
	return float64(h.ValueAtQuantile(q)) / 1000
}

// maxMs returns h's largest value in milliseconds.
func maxMs(h *hdrhistogram.Histogram) float64 {
	return float64(h.Max()) / 1000
}

// extraLoad returns the upstream requests beyond one per client request, as a
// percentage of the client requests: (upstream / client − 1) × 100. It is
// false when there were no client requests.
func extraLoad(upstream, client int64) (float64, bool) {
	if client <= 0 {
		return math.NaN(), false
	}
	return (float64(upstream)/float64(client) - 1) * 100, true
}

// cpuPercent returns cpu as a percentage of one core over wall.
func cpuPercent(cpu, wall time.Duration) string {
	if wall <= 0 || cpu <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", float64(cpu)/float64(wall)*100)
}

var reportColumns = []string{"requests", "non-2xx", "errors", "dropped", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "extra load", "lag p99 ms", "cpu proxy", "cpu bench"}

// printTable writes one scenario's rows as a table whose first column is the
// row's name, then notes about rows that had errors.
func printTable(w io.Writer, title string, rows []result) {
	nameWidth := len("run")
	for _, r := range rows {
		nameWidth = max(nameWidth, len(r.Name))
	}
	fmt.Fprintf(w, "\n== %s\n", title)
	fmt.Fprintf(w, "%-*s", nameWidth, "run")
	for _, c := range reportColumns {
		fmt.Fprintf(w, "  %10s", c)
	}
	fmt.Fprintln(w)
	var notes []string
	for _, r := range rows {
		fmt.Fprintf(w, "%-*s", nameWidth, r.Name)
		switch {
		case r.Unavailable != "":
			fmt.Fprintf(w, "  unavailable: %s\n", r.Unavailable)
			continue
		case r.Failed != "":
			fmt.Fprintf(w, "  failed: %s\n", firstLine(r.Failed))
			continue
		case !r.measured():
			fmt.Fprintf(w, "  no measured requests\n")
			continue
		}
		extra := "-"
		if pct, ok := extraLoad(r.Upstream, r.Requests); ok {
			extra = fmt.Sprintf("%.1f%%", pct)
		}
		proxyCPU := "-"
		if !r.Direct {
			proxyCPU = cpuPercent(r.ProxyCPU, r.Wall)
		}
		cells := []string{
			fmt.Sprint(r.Requests), fmt.Sprint(r.Non2xx), fmt.Sprint(r.Errors), fmt.Sprint(r.Dropped),
			fmt.Sprintf("%.2f", quantileMs(r.Latency, 50)),
			fmt.Sprintf("%.2f", quantileMs(r.Latency, 99)),
			fmt.Sprintf("%.2f", quantileMs(r.Latency, 99.9)),
			fmt.Sprintf("%.2f", maxMs(r.Latency)),
			extra,
			fmt.Sprintf("%.2f", quantileMs(r.SendLag, 99)),
			proxyCPU,
			cpuPercent(r.BenchCPU, r.Wall),
		}
		for _, c := range cells {
			fmt.Fprintf(w, "  %10s", c)
		}
		fmt.Fprintln(w)
		if r.Errors > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d errors, the first: %s", r.Name, r.Errors, r.FirstError))
		}
	}
	for _, n := range notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

// Verdicts of a target.
const (
	verdictPass = "PASS"
	verdictFail = "FAIL"
	// verdictNA is a target that could not be checked: its scenario ran but a
	// row it needs is unavailable, failed or empty.
	verdictNA = "N/A"
)

// target is one checked goal of the benchmark.
type target struct {
	Name    string
	Verdict string
	Detail  string
}

// findRow returns the row of results named name.
func findRow(results []result, name string) (result, bool) {
	for _, r := range results {
		if r.Name == name {
			return r, true
		}
	}
	return result{}, false
}

// notMeasured explains why r has no numbers, or returns "" when it has.
func notMeasured(r result, found bool) string {
	switch {
	case !found:
		return "row missing"
	case r.Unavailable != "":
		return r.Name + " unavailable: " + r.Unavailable
	case r.Failed != "":
		return r.Name + " failed: " + firstLine(r.Failed)
	case !r.measured():
		return r.Name + ": no measured requests"
	}
	return ""
}

// joinReasons joins the non-empty reasons with "; ".
func joinReasons(reasons ...string) string {
	var kept []string
	for _, r := range reasons {
		if r != "" {
			kept = append(kept, r)
		}
	}
	return strings.Join(kept, "; ")
}

// unclean explains why a measured row cannot pass a target (errors, non-2xx
// answers or dropped requests hide latency), or returns "".
func unclean(r result) string {
	if r.Errors == 0 && r.Non2xx == 0 && r.Dropped == 0 {
		return ""
	}
	return fmt.Sprintf("; %s had %d errors, %d non-2xx, %d dropped", r.Name, r.Errors, r.Non2xx, r.Dropped)
}

// atMost reports v <= limit, forgiving float rounding: 1050 upstream requests
// for 1000 are 5% extra load, not 5.000000000000004%.
func atMost(v, limit float64) bool {
	return v <= limit+1e-9
}

// verdict is PASS when ok and the rows are clean, else FAIL.
func verdict(ok bool, why string) string {
	if ok && why == "" {
		return verdictPass
	}
	return verdictFail
}

// evaluateTargets checks the benchmark's targets against the scenarios that
// ran (results by scenario name); a scenario that did not run has no target.
func evaluateTargets(results map[string][]result) []target {
	var targets []target
	if rows, ok := results["tail"]; ok {
		t := target{Name: "tail: hedged p95 p99.9 <= 4 x direct p50, extra load <= 10%"}
		hedged, foundHedged := findRow(rows, rowHedgedP95)
		direct, foundDirect := findRow(rows, rowDirect0)
		if why := joinReasons(notMeasured(direct, foundDirect), notMeasured(hedged, foundHedged)); why != "" {
			t.Verdict, t.Detail = verdictNA, why
		} else {
			limit := 4 * quantileMs(direct.Latency, 50)
			p999 := quantileMs(hedged.Latency, 99.9)
			extra, _ := extraLoad(hedged.Upstream, hedged.Requests)
			why := unclean(hedged) + unclean(direct)
			t.Verdict = verdict(atMost(p999, limit) && atMost(extra, 10), why)
			t.Detail = fmt.Sprintf("p99.9 %.2f ms vs 4 x %.2f = %.2f ms; extra load %.1f%%%s",
				p999, quantileMs(direct.Latency, 50), limit, extra, why)
		}
		targets = append(targets, t)
	}
	if rows, ok := results["spread"]; ok {
		t := target{Name: "spread: fan-out p99.9 <= fastest direct endpoint's p99.9 + 2 ms"}
		fan, foundFan := findRow(rows, rowFanOut)
		fastest, foundFastest := fastestDirect(rows)
		if why := joinReasons(notMeasured(fastest, foundFastest), notMeasured(fan, foundFan)); why != "" {
			t.Verdict, t.Detail = verdictNA, why
		} else {
			limit := quantileMs(fastest.Latency, 99.9) + 2
			p999 := quantileMs(fan.Latency, 99.9)
			why := unclean(fan) + unclean(fastest)
			t.Verdict = verdict(atMost(p999, limit), why)
			t.Detail = fmt.Sprintf("p99.9 %.2f ms vs %s's %.2f + 2 = %.2f ms%s",
				p999, fastest.Name, quantileMs(fastest.Latency, 99.9), limit, why)
		}
		targets = append(targets, t)
	}
	if rows, ok := results["slowdown"]; ok {
		t := target{Name: "slowdown: with the 5% budget, extra load <= 5%"}
		budget, found := findRow(rows, rowBudgetSlowdown)
		if why := notMeasured(budget, found); why != "" {
			t.Verdict, t.Detail = verdictNA, why
		} else {
			extra, _ := extraLoad(budget.Upstream, budget.Requests)
			why := unclean(budget)
			t.Verdict = verdict(atMost(extra, 5), why)
			t.Detail = fmt.Sprintf("extra load %.1f%% (%d upstream for %d requests)%s",
				extra, budget.Upstream, budget.Requests, why)
		}
		targets = append(targets, t)
	}
	return targets
}

// fastestDirect returns the measured direct row with the lowest p50.
func fastestDirect(rows []result) (result, bool) {
	var fastest result
	found := false
	for _, r := range rows {
		if !r.Direct || !r.measured() {
			continue
		}
		if !found || quantileMs(r.Latency, 50) < quantileMs(fastest.Latency, 50) {
			fastest, found = r, true
		}
	}
	return fastest, found
}

// printTargets writes a line per target and returns how many did not pass.
func printTargets(w io.Writer, targets []target) int {
	if len(targets) == 0 {
		return 0
	}
	fmt.Fprintln(w, "\n== targets")
	missed := 0
	for _, t := range targets {
		fmt.Fprintf(w, "%-4s %s: %s\n", t.Verdict, t.Name, t.Detail)
		if t.Verdict != verdictPass {
			missed++
		}
	}
	return missed
}

// shellQuote quotes args so that a shell would read them back the same.
func shellQuote(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,%+@", r))
		}) < 0 {
			quoted[i] = a
			continue
		}
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(quoted, " ")
}

package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Tolerances of the growth checks.
const (
	// goroutineSlack is how many more goroutines than at the first rest
	// sample the proxy may have at the last one, net of its connections. At
	// rest the count comes back exactly; the slack leaves room for the
	// runtime's and the timers' helpers. A leak of one goroutine per hundred
	// requests exceeds it in a default mode (45s at 50/s: 2,250 requests).
	goroutineSlack = 20
	// fdSlack is the same for open files: at rest, net of its connections,
	// the proxy holds its listeners, its log and the runtime's few.
	fdSlack = 5
	// rssSlackKB and rssSlackShare bound how much the median RSS of the
	// second half of the load may exceed the first half's: the larger of
	// the two. Go's heap grows towards a steady size and its RSS follows
	// the bursts of large bodies, so a small rise is noise; a leak keeps
	// rising at the same pace in both halves.
	rssSlackKB    = 8 << 10
	rssSlackShare = 0.20
	// heapSlackKB is how much the live heap (after a collection) at the last
	// rest sample may exceed the first one's. It varies by a few hundred kB
	// between rest samples (pools, idle connections, the hedge window); a
	// leak of 1 kB per request exceeds it in a default mode.
	heapSlackKB = 2 << 10
	// minLoadSamples is the fewest load samples the RSS check compares.
	minLoadSamples = 4
)

// finding is the result of one check of one mode.
type finding struct {
	figure string
	failed bool
	// line says what was compared, and by how much it grew.
	line string
}

// modeResult is what one mode measured.
type modeResult struct {
	name string
	// restBefore is the rest sample after the warm-up; restAfter the one after
	// the load; load the samples taken during the load.
	restBefore, restAfter sample
	load                  []sample
	traffic               *trafficStats
	// notes are what went wrong besides the checks, such as the proxy dying.
	notes []string
}

// median returns the median of values, 0 for none.
func median(values []int64) int64 {
	if len(values) == 0 {
		return 0
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	mid := len(sorted) / 2
	if len(sorted)%2 == 1 {
		return sorted[mid]
	}
	return (sorted[mid-1] + sorted[mid]) / 2
}

// halves returns the medians of the first and the second half of values,
// leaving out the middle value of an odd count.
func halves(values []int64) (first, second int64) {
	n := len(values) / 2
	return median(values[:n]), median(values[len(values)-n:])
}

// check compares what r measured against the tolerances.
func (r modeResult) check() []finding {
	var findings []finding

	before, after := r.restBefore.NetGoroutines(), r.restAfter.NetGoroutines()
	findings = append(findings, finding{
		figure: "goroutines",
		failed: after-before > goroutineSlack,
		line: fmt.Sprintf("goroutines at rest, net of connections: %d before the load, %d after (%+d; tolerance +%d)",
			before, after, after-before, goroutineSlack),
	})

	before, after = r.restBefore.NetFDs(), r.restAfter.NetFDs()
	findings = append(findings, finding{
		figure: "open files",
		failed: after-before > fdSlack,
		line: fmt.Sprintf("open files at rest, net of connections: %d before the load, %d after (%+d; tolerance +%d)",
			before, after, after-before, fdSlack),
	})

	if r.restBefore.HeapKB > 0 && r.restAfter.HeapKB > 0 {
		before, after := r.restBefore.HeapKB, r.restAfter.HeapKB
		findings = append(findings, finding{
			figure: "live heap",
			failed: after-before > heapSlackKB,
			line: fmt.Sprintf("live heap at rest, after a collection: %d kB before the load, %d kB after (%+d kB; tolerance +%d kB)",
				before, after, after-before, heapSlackKB),
		})
	}

	if len(r.load) < minLoadSamples {
		findings = append(findings, finding{
			figure: "RSS", failed: true,
			line: fmt.Sprintf("RSS not checked: %d load samples, want at least %d (a longer -duration or a shorter -interval)",
				len(r.load), minLoadSamples),
		})
		return findings
	}
	rss := make([]int64, len(r.load))
	for i, s := range r.load {
		rss[i] = s.RSSKB
	}
	first, second := halves(rss)
	slack := max(int64(rssSlackKB), int64(float64(first)*rssSlackShare))
	findings = append(findings, finding{
		figure: "RSS",
		failed: second-first > slack,
		line: fmt.Sprintf("RSS under load, median of each half: %d kB, then %d kB (%+d kB; tolerance +%d kB)",
			first, second, second-first, slack),
	})
	return findings
}

// failed reports whether any finding failed or a note says something broke.
func (r modeResult) failed() bool {
	if len(r.notes) > 0 || r.traffic.total(outcomeCorrupt) > 0 {
		return true
	}
	for _, f := range r.check() {
		if f.failed {
			return true
		}
	}
	return false
}

// printSamples writes the samples of one mode as a table.
func printSamples(w io.Writer, mode string, samples []sample) {
	fmt.Fprintf(w, "\n%s: samples of the proxy process\n", mode)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "t s\tphase\tgoroutines\tnet\tfds\tnet\tRSS kB\tlive heap kB\tclient conns\tupstream conns\tCLOSE_WAIT\tTIME_WAIT upstream\t")
	for _, s := range samples {
		heap := "-"
		if s.HeapKB > 0 {
			heap = fmt.Sprint(s.HeapKB)
		}
		fmt.Fprintf(tw, "%.1f\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%d\t\n",
			s.At.Seconds(), s.Phase, s.Goroutines, s.NetGoroutines(), s.FDs, s.NetFDs(), s.RSSKB, heap,
			s.ClientConns, s.UpstreamConns, s.CloseWait, s.TimeWait)
	}
	tw.Flush()
}

// printTraffic writes one mode's requests per kind and outcome.
func printTraffic(w io.Writer, mode string, stats *trafficStats) {
	fmt.Fprintf(w, "\n%s: client requests by outcome\n", mode)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "kind\t%s\t\n", strings.Join(outcomes, "\t"))
	stats.mu.Lock()
	defer stats.mu.Unlock()
	for _, kind := range kindNames() {
		fmt.Fprintf(tw, "%s", kind)
		for _, o := range outcomes {
			fmt.Fprintf(tw, "\t%s", formatCount(stats.counts[kind][o]))
		}
		fmt.Fprintln(tw, "\t")
	}
	tw.Flush()
	if stats.dropped > 0 {
		fmt.Fprintf(w, "dropped (due while -max-in-flight were outstanding): %d\n", stats.dropped)
	}
	if stats.firstCorrupt != "" {
		fmt.Fprintf(w, "first corrupt answer: %s\n", stats.firstCorrupt)
	}
}

// maxTimeWait returns the largest TIME_WAIT count of samples.
func maxTimeWait(samples []sample) int {
	most := 0
	for _, s := range samples {
		most = max(most, s.TimeWait)
	}
	return most
}

// printSummary writes a line per mode, then every finding, and returns
// whether any mode failed.
func printSummary(w io.Writer, results []modeResult, loadTime time.Duration) bool {
	fmt.Fprintf(w, "\nsummary (%s of load per mode after its warm-up)\n", loadTime.Round(time.Second/10))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\trequests\tok\tnon-2xx\terror\tleft\tcorrupt\tgoroutines net\tfds net\tRSS kB halves\tTIME_WAIT max\tverdict\t")
	anyFailed := false
	for _, r := range results {
		verdict := "PASS"
		if r.failed() {
			verdict, anyFailed = "FAIL", true
		}
		rss := make([]int64, len(r.load))
		for i, s := range r.load {
			rss[i] = s.RSSKB
		}
		first, second := halves(rss)
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d -> %d\t%d -> %d\t%d -> %d\t%d\t%s\t\n",
			r.name, r.traffic.total(""), r.traffic.total(outcomeOK), r.traffic.total(outcomeNon2xx),
			r.traffic.total(outcomeError), r.traffic.total(outcomeLeft), r.traffic.total(outcomeCorrupt),
			r.restBefore.NetGoroutines(), r.restAfter.NetGoroutines(), r.restBefore.NetFDs(), r.restAfter.NetFDs(),
			first, second, maxTimeWait(append(slices.Clone(r.load), r.restAfter)), verdict)
	}
	tw.Flush()
	for _, r := range results {
		for _, f := range r.check() {
			status := "ok  "
			if f.failed {
				status = "FAIL"
			}
			fmt.Fprintf(w, "%s %s: %s\n", status, r.name, f.line)
		}
		if n := r.traffic.total(outcomeCorrupt); n > 0 {
			fmt.Fprintf(w, "FAIL %s: %d answers with a 2xx status carried a body other than the one asked for (first: %s)\n",
				r.name, n, r.traffic.firstCorrupt)
		}
		for _, note := range r.notes {
			fmt.Fprintf(w, "FAIL %s: %s\n", r.name, note)
		}
	}
	return anyFailed
}

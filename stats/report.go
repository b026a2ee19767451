package stats

import (
	"math"
	"time"

	"balancing-reverse-proxy/metrics"
)

// Report is what the page shows and /stats.json gives.
type Report struct {
	// Time is when it was taken.
	Time            time.Time `json:"time"`
	IntervalSeconds float64   `json:"interval_seconds"`
	Routes          []Route   `json:"routes"`
}

// Route is one route's figures.
type Route struct {
	Name string `json:"name"`
	// Mode is serial, fan-out or hedged.
	Mode string `json:"mode"`
	// HedgeDelayMs is the hedge delay in force, null unless hedged.
	HedgeDelayMs *float64 `json:"hedge_delay_ms"`
	// BudgetSpent and BudgetAllowed are the extra attempts of the budget's
	// window, null without a budget.
	BudgetSpent   *float64 `json:"budget_spent"`
	BudgetAllowed *float64 `json:"budget_allowed"`
	// Sessions is the pins held, null unless they are in memory.
	Sessions   *int       `json:"sessions"`
	Requests   uint64     `json:"requests"`
	InFlight   int64      `json:"in_flight"`
	HedgesSent uint64     `json:"hedges_sent"`
	HedgesWon  uint64     `json:"hedges_won"`
	Endpoints  []Endpoint `json:"endpoints"`
}

// Endpoint is one endpoint's figures.
type Endpoint struct {
	URL string `json:"url"`
	// State is up, ejected or paused, for SinceSeconds.
	State        string  `json:"state"`
	SinceSeconds float64 `json:"since_seconds"`
	InFlight     int64   `json:"in_flight"`
	// Attempts counts those sent to it; Failures those that failed or timed
	// out.
	Attempts uint64 `json:"attempts"`
	Failures uint64 `json:"failures"`
	// P50Ms and P99Ms are the quantiles of its time to headers over the last
	// minute, null without an answer in it.
	P50Ms      *float64 `json:"p50_ms"`
	P99Ms      *float64 `json:"p99_ms"`
	HedgesSent uint64   `json:"hedges_sent"`
	HedgesWon  uint64   `json:"hedges_won"`
	Ejections  uint64   `json:"ejections"`
	// LatencyMs is its mean time to headers in each interval of the last
	// minute, oldest first; null for an interval without an answer.
	LatencyMs []*float64 `json:"latency_ms"`
}

// report builds the report of the last of samples (oldest first, at least
// one), with the history the others give.
func report(samples []metrics.Snapshot) Report {
	now := samples[len(samples)-1]
	// latencies has each sample's, by route and endpoint.
	latencies := make([]map[[2]string]metrics.Latency, len(samples))
	for i, sample := range samples {
		latencies[i] = map[[2]string]metrics.Latency{}
		for _, r := range sample.Routes {
			for _, e := range r.Endpoints {
				latencies[i][[2]string{r.Route, e.URL}] = e.Latency
			}
		}
	}
	out := Report{Time: now.Time.UTC(), IntervalSeconds: Interval.Seconds(), Routes: []Route{}}
	for _, r := range now.Routes {
		route := Route{
			Name: r.Route, Mode: r.Mode, Sessions: r.Sessions, Requests: uint64(r.Requests), InFlight: int64(r.InFlight),
			HedgesSent: uint64(r.HedgesSent), HedgesWon: uint64(r.HedgesWon), Endpoints: []Endpoint{},
		}
		if r.HedgeDelaySeconds != nil {
			route.HedgeDelayMs = ms(*r.HedgeDelaySeconds)
		}
		if r.Budget != nil {
			route.BudgetSpent, route.BudgetAllowed = &r.Budget.Spent, &r.Budget.Allowed
		}
		for _, e := range r.Endpoints {
			key := [2]string{r.Route, e.URL}
			endpoint := Endpoint{
				URL: e.URL, State: e.State, SinceSeconds: now.Time.Sub(e.Since).Seconds(), InFlight: e.InFlight,
				Attempts: uint64(e.Won + e.Failed + e.Timeout + e.Cancelled), Failures: uint64(e.Failed + e.Timeout),
				HedgesSent: uint64(e.HedgesSent), HedgesWon: uint64(e.HedgesWon), Ejections: e.Ejections,
				LatencyMs: make([]*float64, 0, len(samples)),
			}
			oldest := e.Latency
			if first, ok := latencies[0][key]; ok {
				oldest = first
			}
			window := minus(e.Latency, oldest)
			endpoint.P50Ms, endpoint.P99Ms = quantileMs(0.5, window), quantileMs(0.99, window)
			for i := 1; i < len(samples); i++ {
				before, okBefore := latencies[i-1][key]
				after, okAfter := latencies[i][key]
				var mean *float64
				if d := minus(after, before); okBefore && okAfter && d.Count > 0 {
					mean = ms(d.Sum / float64(d.Count))
				}
				endpoint.LatencyMs = append(endpoint.LatencyMs, mean)
			}
			route.Endpoints = append(route.Endpoints, endpoint)
		}
		out.Routes = append(out.Routes, route)
	}
	return out
}

// minus is what a histogram gained from before to after.
func minus(after, before metrics.Latency) metrics.Latency {
	d := metrics.Latency{Count: after.Count - before.Count, Sum: after.Sum - before.Sum, Buckets: make([]uint64, len(after.Buckets))}
	if before.Count > after.Count || len(before.Buckets) != len(after.Buckets) {
		return after // the series started over
	}
	for i := range after.Buckets {
		d.Buckets[i] = after.Buckets[i] - before.Buckets[i]
	}
	return d
}

// quantileMs is the q-quantile of l in milliseconds, interpolated within its
// bucket as Prometheus's histogram_quantile does; nil for no observation.
func quantileMs(q float64, l metrics.Latency) *float64 {
	if l.Count == 0 {
		return nil
	}
	rank := q * float64(l.Count)
	lower, below := 0.0, uint64(0)
	for i, cumulative := range l.Buckets {
		upper := metrics.LatencyBounds[i]
		if float64(cumulative) >= rank {
			inBucket := float64(cumulative - below)
			return ms(lower + (upper-lower)*(rank-float64(below))/inBucket)
		}
		lower, below = upper, cumulative
	}
	// Past the last bound: that bound is all that is known.
	return ms(lower)
}

// ms returns seconds in milliseconds, rounded to a microsecond.
func ms(seconds float64) *float64 {
	v := math.Round(seconds*1e6) / 1e3
	return &v
}

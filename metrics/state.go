package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"balancing-reverse-proxy/endpoints"
)

// The series read from the routes' state at each scrape.
var (
	endpointUpDesc = prometheus.NewDesc("brp_endpoint_up",
		"1 while the endpoint may be tried, 0 while it is ejected or paused by Retry-After.", []string{"route", "endpoint"}, nil)
	endpointInFlightDesc = prometheus.NewDesc("brp_endpoint_in_flight",
		"Attempts in flight at the endpoint.", []string{"route", "endpoint"}, nil)
	endpointEjectionsDesc = prometheus.NewDesc("brp_endpoint_ejections_total",
		"Ejections of the endpoint after failures in a row.", []string{"route", "endpoint"}, nil)
	endpointChangeDesc = prometheus.NewDesc("brp_endpoint_last_change_timestamp_seconds",
		"When the endpoint's state (up, ejected, paused) last changed, in seconds since the epoch.", []string{"route", "endpoint"}, nil)
	hedgeDelayDesc = prometheus.NewDesc("brp_hedge_delay_seconds",
		"The hedge delay in force (hedged routes only).", []string{"route"}, nil)
	budgetAvailableDesc = prometheus.NewDesc("brp_budget_available",
		"Extra attempts the budget allows now (routes with a budget only).", []string{"route"}, nil)
	sessionsDesc = prometheus.NewDesc("brp_sessions",
		"Session pins held (routes whose pins are in memory only).", []string{"route"}, nil)
)

// stateCollector reads the state of the routes in force when scraped.
type stateCollector struct{ m *Metrics }

// Describe implements prometheus.Collector.
func (stateCollector) Describe(descs chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{endpointUpDesc, endpointInFlightDesc, endpointEjectionsDesc, endpointChangeDesc,
		hedgeDelayDesc, budgetAvailableDesc, sessionsDesc} {
		descs <- d
	}
}

// Collect implements prometheus.Collector.
func (c stateCollector) Collect(metrics chan<- prometheus.Metric) {
	for _, r := range *c.m.serving.Load() {
		state := r.state()
		for _, e := range state.Endpoints {
			up := 0.0
			if e.State == endpoints.StateUp {
				up = 1
			}
			metrics <- prometheus.MustNewConstMetric(endpointUpDesc, prometheus.GaugeValue, up, r.label, e.URL)
			metrics <- prometheus.MustNewConstMetric(endpointInFlightDesc, prometheus.GaugeValue, float64(e.InFlight), r.label, e.URL)
			metrics <- prometheus.MustNewConstMetric(endpointEjectionsDesc, prometheus.CounterValue, float64(e.Ejections), r.label, e.URL)
			metrics <- prometheus.MustNewConstMetric(endpointChangeDesc, prometheus.GaugeValue, unixSeconds(e.Since), r.label, e.URL)
		}
		if state.HedgeDelaySeconds != nil {
			metrics <- prometheus.MustNewConstMetric(hedgeDelayDesc, prometheus.GaugeValue, *state.HedgeDelaySeconds, r.label)
		}
		if state.Budget != nil {
			available := max(state.Budget.Allowed-state.Budget.Spent, 0)
			metrics <- prometheus.MustNewConstMetric(budgetAvailableDesc, prometheus.GaugeValue, available, r.label)
		}
		if state.Sessions != nil {
			metrics <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(*state.Sessions), r.label)
		}
	}
}

// unixSeconds is t as a Unix time in seconds.
func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}

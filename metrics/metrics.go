// Package metrics owns the proxy's Prometheus metrics: the registry (with
// the Go and process collectors) and, for each route, an observer of the
// engine's events that moves the route's series. Every series of a route
// exists from start-up, and observing an event allocates nothing once the
// statuses it has seen have their series.
package metrics

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/fanout"
)

// DefaultRoute is the route label of the command line's endpoints.
const DefaultRoute = "default"

// Metrics is the registry and the series of every route.
type Metrics struct {
	// Registry gathers everything /metrics serves.
	Registry        *prometheus.Registry
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	inFlight        *prometheus.GaugeVec
	attempts        *prometheus.CounterVec
	attemptDuration *prometheus.HistogramVec
	hedges          *prometheus.CounterVec
}

// results are the attempt results, as the attempts' result label has them;
// byResult holds a counter per result, indexed by it.
var results = [...]fanout.Result{fanout.ResultWon, fanout.ResultFailed, fanout.ResultTimeout, fanout.ResultCancelled}

type byResult [len(results) + 1]prometheus.Counter

// New returns the metrics, registered with the Go and process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brp_requests_total", Help: "Requests answered, by route and the status sent (499: the client left first).",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "brp_request_duration_seconds", Help: "Time from a request's arrival to the end of its answer, by route.",
			Buckets: prometheus.ExponentialBucketsRange(0.001, 30, 16),
		}, []string{"route"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "brp_requests_in_flight", Help: "Requests being served, by route.",
		}, []string{"route"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brp_attempts_total", Help: "Attempts by route, endpoint and result: won, failed (an error or a non-terminal status), timeout, cancelled (a loser).",
		}, []string{"route", "endpoint", "result"}),
		attemptDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "brp_attempt_duration_seconds", Help: "Time from an attempt's start to its response headers, by route and endpoint.",
			Buckets: prometheus.ExponentialBucketsRange(0.001, 30, 16),
		}, []string{"route", "endpoint"}),
		hedges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brp_hedges_total", Help: "Hedges by route and result: sent, and won (the hedge's answer was the one served).",
		}, []string{"route", "result"}),
	}
	m.Registry.MustRegister(m.requests, m.duration, m.inFlight, m.attempts, m.attemptDuration, m.hedges,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Route returns the observer of route's events, whose endpoints are list:
// their series exist from now on, before any traffic.
func (m *Metrics) Route(route string, list endpoints.List) *Route {
	r := &Route{
		metrics:    m,
		route:      route,
		duration:   m.duration.WithLabelValues(route),
		inFlight:   m.inFlight.WithLabelValues(route),
		hedgesSent: m.hedges.WithLabelValues(route, "sent"),
		hedgesWon:  m.hedges.WithLabelValues(route, "won"),
	}
	for _, e := range list {
		var counters byResult
		for _, result := range results {
			counters[result] = m.attempts.WithLabelValues(route, e.String(), result.String())
		}
		r.attempts = append(r.attempts, counters)
		r.attemptDuration = append(r.attemptDuration, m.attemptDuration.WithLabelValues(route, e.String()))
	}
	return r
}

// Route observes one route's events; it is a fanout.Observer.
type Route struct {
	metrics  *Metrics
	route    string
	duration prometheus.Observer
	inFlight prometheus.Gauge
	// requests has the counter of each status seen, by status.
	requests sync.Map
	// attempts and attemptDuration are by endpoint index (attempts by
	// result too).
	attempts              [][len(results) + 1]prometheus.Counter
	attemptDuration       []prometheus.Observer
	hedgesSent, hedgesWon prometheus.Counter
}

// Observe implements fanout.Observer.
func (r *Route) Observe(e fanout.Event) {
	switch e.Kind {
	case fanout.RequestReceived:
		r.inFlight.Inc()
	case fanout.RequestDone:
		r.inFlight.Dec()
		r.duration.Observe(e.Elapsed.Seconds())
		r.requestsOf(e.Done.Status).Inc()
	case fanout.HedgeSent:
		r.hedgesSent.Inc()
	case fanout.WinnerChosen:
		if e.Hedge {
			r.hedgesWon.Inc()
		}
	case fanout.AttemptAnswered, fanout.AttemptFailed, fanout.AttemptCancelled:
		i := e.Endpoint.Index
		if i < 0 || i >= len(r.attempts) || e.Result == fanout.ResultNone {
			return
		}
		r.attempts[i][e.Result].Inc()
		if e.Kind == fanout.AttemptAnswered {
			r.attemptDuration[i].Observe(e.Elapsed.Seconds())
		}
	}
}

// requestsOf returns the request counter of status.
func (r *Route) requestsOf(status int) prometheus.Counter {
	if c, ok := r.requests.Load(status); ok {
		return c.(prometheus.Counter)
	}
	c, _ := r.requests.LoadOrStore(status, r.metrics.requests.WithLabelValues(r.route, strconv.Itoa(status)))
	return c.(prometheus.Counter)
}

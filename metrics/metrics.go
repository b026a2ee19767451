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

	"balancing-reverse-proxy/fanout"
)

// DefaultRoute is the route label of the command line's endpoints.
const DefaultRoute = "default"

// Metrics is the registry and the series of every route.
type Metrics struct {
	// Registry gathers everything /metrics serves.
	Registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
}

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
	}
	m.Registry.MustRegister(m.requests, m.duration, m.inFlight,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Route returns the observer of route's events.
func (m *Metrics) Route(route string) *Route {
	return &Route{
		metrics:  m,
		route:    route,
		duration: m.duration.WithLabelValues(route),
		inFlight: m.inFlight.WithLabelValues(route),
	}
}

// Route observes one route's events; it is a fanout.Observer.
type Route struct {
	metrics  *Metrics
	route    string
	duration prometheus.Observer
	inFlight prometheus.Gauge
	// requests has the counter of each status seen, by status.
	requests sync.Map
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

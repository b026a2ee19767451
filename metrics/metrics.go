// Package metrics owns the proxy's Prometheus metrics: the registry (with
// the Go and process collectors), for each route an observer of the engine's
// events that moves the route's series, the series read from the routes'
// state at each scrape (endpoints up, budgets, hedge delays, sessions), the
// configuration reloads, and the snapshot of it all that the stats page
// shows. Every series of a route exists from start-up, and observing an
// event allocates nothing once the statuses it has seen have their series.
package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"balancing-reverse-proxy/fanout"
)

// DefaultRoute is the route label of the command line's endpoints.
const DefaultRoute = "default"

// latencyBuckets are the buckets of every duration histogram: 1 ms to 30 s.
var latencyBuckets = prometheus.ExponentialBucketsRange(0.001, 30, 16)

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
	endpointHedges  *prometheus.CounterVec
	hedgeSaved      *prometheus.HistogramVec
	denied          *prometheus.CounterVec
	sessionLookups  *prometheus.CounterVec
	repins          *prometheus.CounterVec
	reloads         *prometheus.CounterVec
	lastReload      prometheus.Gauge
	// serving are the routes in force, whose state the scrape reads.
	serving atomic.Pointer[[]*Route]
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
			Buckets: latencyBuckets,
		}, []string{"route"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "brp_requests_in_flight", Help: "Requests being served, by route.",
		}, []string{"route"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brp_attempts_total", Help: "Attempts by route, endpoint and result: won, failed (an error or a non-terminal status), timeout, cancelled (a loser).",
		}, []string{"route", "endpoint", "result"}),
		attemptDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "brp_attempt_duration_seconds", Help: "Time from an attempt's start to its response headers, by route and endpoint.",
			Buckets: latencyBuckets,
		}, []string{"route", "endpoint"}),
		hedges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brp_hedges_total", Help: "Hedges by route and result: sent, and won (the hedge's answer was the one served).",
		}, []string{"route", "result"}),
		endpointHedges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brp_endpoint_hedges_total", Help: "Hedges by route, the endpoint they went to, and result: sent, won.",
		}, []string{"route", "endpoint", "result"}),
		hedgeSaved: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "brp_hedge_saved_seconds", Help: "For each request a hedge won, how much sooner it was answered than by its first attempt (at least the time that attempt went on waiting), by route.",
			Buckets: latencyBuckets,
		}, []string{"route"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brp_extra_attempts_denied_total", Help: "Requests that wanted an extra attempt (a hedge or a fail-over) and got none, by route and reason: budget_spent, not_idempotent, body_over_replay_cap, endpoints_at_cap.",
		}, []string{"route", "reason"}),
		sessionLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brp_session_lookups_total", Help: "Look-ups of a request's session id, by route and result: hit, miss, error (the store failed).",
		}, []string{"route", "result"}),
		repins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brp_session_repins_total", Help: "Sessions whose pin moved to the endpoint that answered, by route.",
		}, []string{"route"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brp_config_reloads_total", Help: "Reloads of the configuration file, by result: success, failure (the one in force stays).",
		}, []string{"result"}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "brp_config_last_reload_success_timestamp_seconds", Help: "When the configuration in force was loaded, in seconds since the epoch.",
		}),
	}
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	m.lastReload.SetToCurrentTime()
	m.serving.Store(&[]*Route{})
	m.Registry.MustRegister(m.requests, m.duration, m.inFlight, m.attempts, m.attemptDuration, m.hedges, m.endpointHedges,
		m.hedgeSaved, m.denied, m.sessionLookups, m.repins, m.reloads, m.lastReload, stateCollector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Reloaded counts a reload of the configuration file, and when it succeeded
// stamps the time.
func (m *Metrics) Reloaded(ok bool) {
	if !ok {
		m.reloads.WithLabelValues("failure").Inc()
		return
	}
	m.reloads.WithLabelValues("success").Inc()
	m.lastReload.SetToCurrentTime()
}

// Serve makes routes the ones in force: the scrape and the snapshot read
// their state, and no other's.
func (m *Metrics) Serve(routes []*Route) {
	m.serving.Store(&routes)
}

// Route returns the observer of the events of proxy, whose Route names it
// ("" for the command line's): the series of its endpoints exist from now
// on, before any traffic. A route of the same name as an earlier one (after a
// reload) moves the same series on.
func (m *Metrics) Route(proxy *fanout.Proxy) *Route {
	label := proxy.Route
	if label == "" {
		label = DefaultRoute
	}
	r := &Route{
		metrics:    m,
		proxy:      proxy,
		label:      label,
		duration:   m.duration.WithLabelValues(label),
		inFlight:   m.inFlight.WithLabelValues(label),
		hedgesSent: m.hedges.WithLabelValues(label, "sent"),
		hedgesWon:  m.hedges.WithLabelValues(label, "won"),
		saved:      m.hedgeSaved.WithLabelValues(label),
		repins:     m.repins.WithLabelValues(label),
	}
	for _, refusal := range fanout.Refusals {
		r.denied[refusal] = m.denied.WithLabelValues(label, refusal.Label())
	}
	if proxy.Sessions != nil {
		for _, lookup := range fanout.Lookups {
			r.lookups[lookup] = m.sessionLookups.WithLabelValues(label, lookup.String())
		}
	}
	for _, e := range proxy.Endpoints.List() {
		url := e.String()
		series := endpointSeries{
			duration:   m.attemptDuration.WithLabelValues(label, url),
			hedgesSent: m.endpointHedges.WithLabelValues(label, url, "sent"),
			hedgesWon:  m.endpointHedges.WithLabelValues(label, url, "won"),
		}
		for _, result := range results {
			series.attempts[result] = m.attempts.WithLabelValues(label, url, result.String())
		}
		r.endpoints = append(r.endpoints, series)
	}
	return r
}

// Route observes one route's events; it is a fanout.Observer.
type Route struct {
	metrics *Metrics
	proxy   *fanout.Proxy
	label   string
	// requests has the counter of each status seen, by status.
	requests              sync.Map
	duration              prometheus.Observer
	inFlight              prometheus.Gauge
	hedgesSent, hedgesWon prometheus.Counter
	saved                 prometheus.Observer
	// denied is by refusal, lookups by look-up result (nil without sessions).
	denied  [len(fanout.Refusals) + 1]prometheus.Counter
	lookups [len(fanout.Lookups) + 1]prometheus.Counter
	repins  prometheus.Counter
	// endpoints are by endpoint index.
	endpoints []endpointSeries
}

// endpointSeries are one endpoint's series in a route.
type endpointSeries struct {
	attempts              byResult
	duration              prometheus.Observer
	hedgesSent, hedgesWon prometheus.Counter
}

// Observe implements fanout.Observer.
func (r *Route) Observe(e fanout.Event) {
	switch e.Kind {
	case fanout.RequestReceived:
		r.inFlight.Inc()
	case fanout.RequestDone:
		r.done(e)
	case fanout.HedgeSent:
		r.hedgesSent.Inc()
		if s := r.endpoint(e); s != nil {
			s.hedgesSent.Inc()
		}
	case fanout.WinnerChosen:
		if e.Hedge {
			r.hedgesWon.Inc()
			if s := r.endpoint(e); s != nil {
				s.hedgesWon.Inc()
			}
		}
	case fanout.HedgeSaved:
		r.saved.Observe(e.Elapsed.Seconds())
	case fanout.AttemptAnswered, fanout.AttemptFailed, fanout.AttemptCancelled:
		s := r.endpoint(e)
		if s == nil || e.Result == fanout.ResultNone {
			return
		}
		s.attempts[e.Result].Inc()
		if e.Kind == fanout.AttemptAnswered {
			s.duration.Observe(e.Elapsed.Seconds())
		}
	}
}

// done counts a request that is over.
func (r *Route) done(e fanout.Event) {
	r.inFlight.Dec()
	r.duration.Observe(e.Elapsed.Seconds())
	r.requestsOf(e.Done.Status).Inc()
	if c := r.denied[e.Done.NoExtraAttempt]; c != nil {
		c.Inc()
	}
	if c := r.lookups[e.Done.SessionLookup]; c != nil {
		c.Inc()
	}
	if e.Done.Repinned {
		r.repins.Inc()
	}
}

// endpoint returns the series of e's endpoint, nil for one not the route's.
func (r *Route) endpoint(e fanout.Event) *endpointSeries {
	if i := e.Endpoint.Index; i >= 0 && i < len(r.endpoints) {
		return &r.endpoints[i]
	}
	return nil
}

// requestsOf returns the request counter of status.
func (r *Route) requestsOf(status int) prometheus.Counter {
	if c, ok := r.requests.Load(status); ok {
		return c.(prometheus.Counter)
	}
	c, _ := r.requests.LoadOrStore(status, r.metrics.requests.WithLabelValues(r.label, strconv.Itoa(status)))
	return c.(prometheus.Counter)
}

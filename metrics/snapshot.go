package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"balancing-reverse-proxy/fanout"
)

// LatencyBounds are the upper bounds, in seconds, of the buckets of the
// duration histograms (Latency.Buckets).
var LatencyBounds = latencyBuckets

// Snapshot is the figures of the routes in force at one moment, read from
// the same series as /metrics and from the routes' state.
type Snapshot struct {
	Time   time.Time
	Routes []RouteState
}

// RouteState is one route's figures.
type RouteState struct {
	// Route is its label, Mode its schedule (serial, fan-out, hedged).
	Route, Mode string
	// HedgeDelaySeconds is the delay in force, nil unless hedged.
	HedgeDelaySeconds *float64
	// Budget is its extra attempts, nil without a budget.
	Budget *Budget
	// Sessions is the pins held, nil unless they are in memory.
	Sessions *int
	// Requests counts the requests answered, InFlight those being served.
	Requests, InFlight float64
	// HedgesSent and HedgesWon count its hedges.
	HedgesSent, HedgesWon float64
	Endpoints             []EndpointState
}

// Budget is a budget's extra attempts within its window: spent, and allowed.
type Budget struct {
	Spent, Allowed float64
}

// EndpointState is one endpoint's figures.
type EndpointState struct {
	// URL is the endpoint as configured.
	URL string
	// State is up, ejected or paused (endpoints.StateUp...), since Since.
	State string
	Since time.Time
	// InFlight counts its attempts in flight, Ejections its ejections.
	InFlight  int64
	Ejections uint64
	// Won, Failed, Timeout and Cancelled count its attempts by result.
	Won, Failed, Timeout, Cancelled float64
	// HedgesSent and HedgesWon count the hedges sent to it.
	HedgesSent, HedgesWon float64
	// Latency is its times to response headers.
	Latency Latency
}

// Latency is a histogram's content: Buckets has the cumulative count of each
// bound of LatencyBounds.
type Latency struct {
	Count   uint64
	Sum     float64
	Buckets []uint64
}

// Snapshot reads the figures of the routes in force.
func (m *Metrics) Snapshot() Snapshot {
	s := Snapshot{Time: time.Now()}
	for _, r := range *m.serving.Load() {
		state := r.state()
		state.InFlight = gaugeValue(r.inFlight)
		state.HedgesSent, state.HedgesWon = counterValue(r.hedgesSent), counterValue(r.hedgesWon)
		r.requests.Range(func(_, c any) bool {
			state.Requests += counterValue(c.(prometheus.Counter))
			return true
		})
		for i := range state.Endpoints {
			e, series := &state.Endpoints[i], &r.endpoints[i]
			e.Won = counterValue(series.attempts[fanout.ResultWon])
			e.Failed = counterValue(series.attempts[fanout.ResultFailed])
			e.Timeout = counterValue(series.attempts[fanout.ResultTimeout])
			e.Cancelled = counterValue(series.attempts[fanout.ResultCancelled])
			e.HedgesSent, e.HedgesWon = counterValue(series.hedgesSent), counterValue(series.hedgesWon)
			e.Latency = latency(series.duration)
		}
		s.Routes = append(s.Routes, state)
	}
	return s
}

// state reads the route's state from its proxy: its endpoints', its hedge
// delay, budget and sessions.
func (r *Route) state() RouteState {
	proxy := r.proxy
	state := RouteState{Route: r.label, Mode: proxy.Schedule.String()}
	if delay, ok := proxy.Schedule.HedgeDelay(); ok {
		seconds := delay.Seconds()
		state.HedgeDelaySeconds = &seconds
	}
	if proxy.Budget != nil {
		spent, allowed := proxy.Budget.Balance()
		state.Budget = &Budget{Spent: spent, Allowed: allowed}
	}
	if proxy.Sessions != nil {
		if pins, ok := proxy.Sessions.Pins(); ok {
			state.Sessions = &pins
		}
	}
	for i, e := range proxy.Endpoints.List() {
		status := proxy.Endpoints.Status(i)
		state.Endpoints = append(state.Endpoints, EndpointState{
			URL: e.String(), State: status.State, Since: status.Since, InFlight: status.InFlight, Ejections: status.Ejections,
		})
	}
	return state
}

func counterValue(c prometheus.Counter) float64 {
	var d dto.Metric
	_ = c.Write(&d)
	return d.GetCounter().GetValue()
}

func gaugeValue(g prometheus.Gauge) float64 {
	var d dto.Metric
	_ = g.Write(&d)
	return d.GetGauge().GetValue()
}

func latency(o prometheus.Observer) Latency {
	var d dto.Metric
	_ = o.(prometheus.Metric).Write(&d)
	h := d.GetHistogram()
	l := Latency{Count: h.GetSampleCount(), Sum: h.GetSampleSum()}
	for _, b := range h.GetBucket() {
		l.Buckets = append(l.Buckets, b.GetCumulativeCount())
	}
	return l
}

package metrics

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/budget"
	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/fanout"
	"balancing-reverse-proxy/hedge"
	"balancing-reverse-proxy/session"
)

func TestARequestMovesItsRoutesSeries(t *testing.T) {
	t.Parallel()
	m := New()
	route := m.Route(proxy(t, "search"))
	r := httptest.NewRequest("GET", "/", nil)
	route.Observe(fanout.Event{Kind: fanout.RequestReceived, Request: r})
	assert.InDelta(t, 1, testutil.ToFloat64(m.inFlight.WithLabelValues("search")), 0)
	route.Observe(fanout.Event{Kind: fanout.RequestDone, Request: r, Elapsed: 20 * time.Millisecond, Done: &fanout.Done{Status: 200}})
	route.Observe(fanout.Event{Kind: fanout.RequestReceived, Request: r})
	route.Observe(fanout.Event{Kind: fanout.RequestDone, Request: r, Elapsed: time.Second, Done: &fanout.Done{Status: 502}})
	assert.InDelta(t, 0, testutil.ToFloat64(m.inFlight.WithLabelValues("search")), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.requests.WithLabelValues("search", "200")), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.requests.WithLabelValues("search", "502")), 0)
	count, err := testutil.GatherAndCount(m.Registry, "brp_request_duration_seconds")
	require.NoError(t, err)
	assert.Equal(t, 1, count, "one series, for the route")
	names, err := m.Registry.Gather()
	require.NoError(t, err)
	var got []string
	for _, family := range names {
		got = append(got, family.GetName())
	}
	assert.Contains(t, got, "go_goroutines", "the Go collector")
	assert.Contains(t, got, "process_cpu_seconds_total", "the process collector")
}

func TestObservingAllocatesNothing(t *testing.T) {
	m := New()
	p := proxy(t, "r")
	eps := p.Endpoints.List()
	route := m.Route(p)
	r := httptest.NewRequest("GET", "/", nil)
	done := &fanout.Done{Status: 200, NoExtraAttempt: fanout.RefusedBudget, SessionLookup: fanout.LookupHit, Repinned: true}
	observe := func() {
		route.Observe(fanout.Event{Kind: fanout.RequestReceived, Request: r})
		route.Observe(fanout.Event{Kind: fanout.AttemptStarted, Request: r})
		route.Observe(fanout.Event{Kind: fanout.HedgeSent, Request: r, Endpoint: eps[1]})
		route.Observe(fanout.Event{Kind: fanout.AttemptAnswered, Request: r, Endpoint: eps[1], Result: fanout.ResultWon, Elapsed: time.Millisecond})
		route.Observe(fanout.Event{Kind: fanout.WinnerChosen, Request: r, Hedge: true})
		route.Observe(fanout.Event{Kind: fanout.AttemptCancelled, Request: r, Endpoint: eps[0], Result: fanout.ResultCancelled})
		route.Observe(fanout.Event{Kind: fanout.HedgeSaved, Request: r, Endpoint: eps[1], Elapsed: time.Millisecond})
		route.Observe(fanout.Event{Kind: fanout.RequestDone, Request: r, Elapsed: time.Millisecond, Done: done})
	}
	observe() // the status's series is made once
	assert.Zero(t, testing.AllocsPerRun(100, observe))
}

// proxy is the proxy of route, with two endpoints.
func proxy(t *testing.T, route string) *fanout.Proxy {
	t.Helper()
	l, err := endpoints.Parse("http://one.example,http://two.example")
	require.NoError(t, err)
	return &fanout.Proxy{Route: route, Endpoints: endpoints.NewPool(l, endpoints.PoolOptions{EjectAfter: 1, EjectBackoff: time.Minute})}
}

func TestAttemptsAndHedgesMoveTheirSeries(t *testing.T) {
	t.Parallel()
	m := New()
	p := proxy(t, "r")
	eps := p.Endpoints.List()
	route := m.Route(p)
	// Every endpoint's series exist before any traffic.
	count, err := testutil.GatherAndCount(m.Registry, "brp_attempts_total")
	require.NoError(t, err)
	assert.Equal(t, 2*4, count, "two endpoints, four results")
	r := httptest.NewRequest("GET", "/", nil)
	// A hedge that wins: sent, won, the first attempt cancelled.
	route.Observe(fanout.Event{Kind: fanout.AttemptStarted, Request: r, Endpoint: eps[0], Attempt: 1})
	route.Observe(fanout.Event{Kind: fanout.HedgeSent, Request: r, Endpoint: eps[1], Attempt: 2})
	route.Observe(fanout.Event{Kind: fanout.AttemptAnswered, Request: r, Endpoint: eps[1], Attempt: 2, Status: 200,
		Elapsed: 3 * time.Millisecond, Result: fanout.ResultWon})
	route.Observe(fanout.Event{Kind: fanout.WinnerChosen, Request: r, Endpoint: eps[1], Attempt: 2, Hedge: true})
	route.Observe(fanout.Event{Kind: fanout.AttemptCancelled, Request: r, Endpoint: eps[0], Attempt: 1, Result: fanout.ResultCancelled})
	// Another request: a timeout, then a failure.
	route.Observe(fanout.Event{Kind: fanout.AttemptFailed, Request: r, Endpoint: eps[0], Result: fanout.ResultTimeout})
	route.Observe(fanout.Event{Kind: fanout.AttemptAnswered, Request: r, Endpoint: eps[1], Status: 500, Result: fanout.ResultFailed})
	for labels, want := range map[[2]string]float64{
		{"http://two.example", "won"}: 1, {"http://one.example", "cancelled"}: 1,
		{"http://one.example", "timeout"}: 1, {"http://two.example", "failed"}: 1, {"http://one.example", "won"}: 0,
	} {
		assert.InDelta(t, want, testutil.ToFloat64(m.attempts.WithLabelValues("r", labels[0], labels[1])), 0, "%v", labels)
	}
	assert.InDelta(t, 1, testutil.ToFloat64(m.hedges.WithLabelValues("r", "sent")), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.hedges.WithLabelValues("r", "won")), 0)
	durations, err := testutil.GatherAndCount(m.Registry, "brp_attempt_duration_seconds")
	require.NoError(t, err)
	assert.Equal(t, 2, durations, "one per endpoint")
}

func TestRefusalsSessionsAndSavingsMoveTheirSeries(t *testing.T) {
	t.Parallel()
	m := New()
	p := proxy(t, "r")
	p.Sessions = session.New(session.NewMemory(time.Minute, nil), session.Options{Header: "X-Session-ID"})
	route := m.Route(p)
	denied, err := testutil.GatherAndCount(m.Registry, "brp_extra_attempts_denied_total")
	require.NoError(t, err)
	assert.Equal(t, 4, denied, "every reason has its series from the start")
	r := httptest.NewRequest("GET", "/", nil)
	for _, done := range []fanout.Done{
		{Status: 200, NoExtraAttempt: fanout.RefusedBudget, SessionLookup: fanout.LookupHit},
		{Status: 200, NoExtraAttempt: fanout.RefusedBudget, SessionLookup: fanout.LookupMiss},
		{Status: 502, NoExtraAttempt: fanout.RefusedMethod, SessionLookup: fanout.LookupHit, Repinned: true},
		{Status: 503, SessionLookup: fanout.LookupError},
	} {
		route.Observe(fanout.Event{Kind: fanout.RequestReceived, Request: r})
		route.Observe(fanout.Event{Kind: fanout.RequestDone, Request: r, Done: &done})
	}
	route.Observe(fanout.Event{Kind: fanout.HedgeSaved, Request: r, Elapsed: 40 * time.Millisecond})
	for reason, want := range map[string]float64{"budget_spent": 2, "not_idempotent": 1, "body_over_replay_cap": 0, "endpoints_at_cap": 0} {
		assert.InDelta(t, want, testutil.ToFloat64(m.denied.WithLabelValues("r", reason)), 0, reason)
	}
	for result, want := range map[string]float64{"hit": 2, "miss": 1, "error": 1} {
		assert.InDelta(t, want, testutil.ToFloat64(m.sessionLookups.WithLabelValues("r", result)), 0, result)
	}
	assert.InDelta(t, 1, testutil.ToFloat64(m.repins.WithLabelValues("r")), 0)
	assert.Equal(t, 1, histogramCount(t, m, "brp_hedge_saved_seconds"))
	assert.InDelta(t, 0.04, histogramSum(t, m, "brp_hedge_saved_seconds"), 1e-9)
}

func TestStateSeriesAreReadFromTheRoutesInForce(t *testing.T) {
	t.Parallel()
	m := New()
	p := proxy(t, "r")
	p.Budget = budget.New(0.5, 0, time.Minute)
	p.Schedule = fanout.Hedged(hedge.NewDelay(hedge.Spec{Fixed: 25 * time.Millisecond}, hedge.Options{}))
	p.Sessions = session.New(session.NewMemory(time.Minute, nil), session.Options{Header: "X-Session-ID"})
	route := m.Route(p)
	count, err := testutil.GatherAndCount(m.Registry, "brp_endpoint_up")
	require.NoError(t, err)
	assert.Zero(t, count, "no route in force yet")

	m.Serve([]*Route{route})
	eps := p.Endpoints.List()
	require.True(t, p.Endpoints.Acquire(eps[0]))
	p.Endpoints.Failed(eps[1], errors.New("refused"))
	for range 4 {
		p.Budget.Deposit()
	}
	require.True(t, p.Budget.Withdraw())
	_, err = p.Sessions.Claim("abc", eps[0].String())
	require.NoError(t, err)

	want := `
# HELP brp_endpoint_in_flight Attempts in flight at the endpoint.
# TYPE brp_endpoint_in_flight gauge
brp_endpoint_in_flight{endpoint="http://one.example",route="r"} 1
brp_endpoint_in_flight{endpoint="http://two.example",route="r"} 0
# HELP brp_endpoint_up 1 while the endpoint may be tried, 0 while it is ejected or paused by Retry-After.
# TYPE brp_endpoint_up gauge
brp_endpoint_up{endpoint="http://one.example",route="r"} 1
brp_endpoint_up{endpoint="http://two.example",route="r"} 0
# HELP brp_endpoint_ejections_total Ejections of the endpoint after failures in a row.
# TYPE brp_endpoint_ejections_total counter
brp_endpoint_ejections_total{endpoint="http://one.example",route="r"} 0
brp_endpoint_ejections_total{endpoint="http://two.example",route="r"} 1
# HELP brp_hedge_delay_seconds The hedge delay in force (hedged routes only).
# TYPE brp_hedge_delay_seconds gauge
brp_hedge_delay_seconds{route="r"} 0.025
# HELP brp_budget_available Extra attempts the budget allows now (routes with a budget only).
# TYPE brp_budget_available gauge
brp_budget_available{route="r"} 1
# HELP brp_sessions Session pins held (routes whose pins are in memory only).
# TYPE brp_sessions gauge
brp_sessions{route="r"} 1
`
	require.NoError(t, testutil.GatherAndCompare(m.Registry, strings.NewReader(want),
		"brp_endpoint_in_flight", "brp_endpoint_up", "brp_endpoint_ejections_total", "brp_hedge_delay_seconds",
		"brp_budget_available", "brp_sessions"))

	m.Serve(nil)
	count, err = testutil.GatherAndCount(m.Registry, "brp_endpoint_up")
	require.NoError(t, err)
	assert.Zero(t, count, "a route no longer in force is not read")
}

func TestReloadsAreCountedAndStamped(t *testing.T) {
	t.Parallel()
	m := New()
	first := testutil.ToFloat64(m.lastReload)
	assert.Positive(t, first, "the start-up's load")
	m.Reloaded(false)
	assert.InDelta(t, first, testutil.ToFloat64(m.lastReload), 0, "a failure stamps nothing")
	time.Sleep(10 * time.Millisecond)
	m.Reloaded(true)
	assert.Greater(t, testutil.ToFloat64(m.lastReload), first)
	assert.InDelta(t, 1, testutil.ToFloat64(m.reloads.WithLabelValues("success")), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.reloads.WithLabelValues("failure")), 0)
}

func TestSnapshotReadsTheSameSeries(t *testing.T) {
	t.Parallel()
	m := New()
	p := proxy(t, "")
	route := m.Route(p)
	m.Serve([]*Route{route})
	eps := p.Endpoints.List()
	r := httptest.NewRequest("GET", "/", nil)
	route.Observe(fanout.Event{Kind: fanout.RequestReceived, Request: r})
	route.Observe(fanout.Event{Kind: fanout.HedgeSent, Request: r, Endpoint: eps[1], Attempt: 2})
	route.Observe(fanout.Event{Kind: fanout.AttemptAnswered, Request: r, Endpoint: eps[1], Attempt: 2, Status: 200,
		Elapsed: 3 * time.Millisecond, Result: fanout.ResultWon})
	route.Observe(fanout.Event{Kind: fanout.WinnerChosen, Request: r, Endpoint: eps[1], Attempt: 2, Hedge: true})
	route.Observe(fanout.Event{Kind: fanout.AttemptCancelled, Request: r, Endpoint: eps[0], Attempt: 1, Result: fanout.ResultCancelled})
	route.Observe(fanout.Event{Kind: fanout.RequestDone, Request: r, Done: &fanout.Done{Status: 200}})
	p.Endpoints.Failed(eps[0], errors.New("refused"))

	snapshot := m.Snapshot()
	require.Len(t, snapshot.Routes, 1)
	got := snapshot.Routes[0]
	assert.Equal(t, DefaultRoute, got.Route)
	assert.Equal(t, "serial", got.Mode)
	assert.Nil(t, got.HedgeDelaySeconds)
	assert.Nil(t, got.Budget)
	assert.Nil(t, got.Sessions)
	assert.InDelta(t, 1, got.Requests, 0)
	assert.InDelta(t, 1, got.HedgesSent, 0)
	assert.InDelta(t, 1, got.HedgesWon, 0)
	require.Len(t, got.Endpoints, 2)
	one, two := got.Endpoints[0], got.Endpoints[1]
	assert.Equal(t, "http://one.example", one.URL)
	assert.Equal(t, "ejected", one.State)
	assert.EqualValues(t, 1, one.Ejections)
	assert.InDelta(t, 1, one.Cancelled, 0)
	assert.Equal(t, "up", two.State)
	assert.InDelta(t, 1, two.Won, 0)
	assert.InDelta(t, 1, two.HedgesSent, 0)
	assert.InDelta(t, 1, two.HedgesWon, 0)
	assert.EqualValues(t, 1, two.Latency.Count)
	assert.InDelta(t, 0.003, two.Latency.Sum, 1e-9)
	require.Len(t, two.Latency.Buckets, len(LatencyBounds))
	assert.EqualValues(t, 1, two.Latency.Buckets[len(LatencyBounds)-1])
}

// histogramCount and histogramSum read the one series of a histogram.
func histogramCount(t *testing.T, m *Metrics, name string) int {
	t.Helper()
	return int(histogram(t, m, name).GetSampleCount())
}

func histogramSum(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	return histogram(t, m, name).GetSampleSum()
}

func histogram(t *testing.T, m *Metrics, name string) *dto.Histogram {
	t.Helper()
	families, err := m.Registry.Gather()
	require.NoError(t, err)
	for _, family := range families {
		if family.GetName() == name {
			require.Len(t, family.GetMetric(), 1)
			return family.GetMetric()[0].GetHistogram()
		}
	}
	require.Failf(t, "no such histogram", "%s", name)
	return nil
}

// BenchmarkObserve is the metrics' cost per request of a hedge that wins,
// every event of it observed.
func BenchmarkObserve(b *testing.B) {
	m := New()
	l, err := endpoints.Parse("http://one.example,http://two.example")
	require.NoError(b, err)
	p := &fanout.Proxy{Route: "r", Endpoints: endpoints.NewPool(l, endpoints.PoolOptions{})}
	route := m.Route(p)
	r := httptest.NewRequest("GET", "/", nil)
	done := &fanout.Done{Status: 200}
	b.ReportAllocs()
	for b.Loop() {
		route.Observe(fanout.Event{Kind: fanout.RequestReceived, Request: r})
		route.Observe(fanout.Event{Kind: fanout.AttemptStarted, Request: r, Endpoint: l[0], Attempt: 1})
		route.Observe(fanout.Event{Kind: fanout.HedgeSent, Request: r, Endpoint: l[1], Attempt: 2})
		route.Observe(fanout.Event{Kind: fanout.AttemptAnswered, Request: r, Endpoint: l[1], Attempt: 2, Result: fanout.ResultWon, Elapsed: time.Millisecond})
		route.Observe(fanout.Event{Kind: fanout.WinnerChosen, Request: r, Endpoint: l[1], Attempt: 2, Hedge: true})
		route.Observe(fanout.Event{Kind: fanout.AttemptCancelled, Request: r, Endpoint: l[0], Attempt: 1, Result: fanout.ResultCancelled})
		route.Observe(fanout.Event{Kind: fanout.HedgeSaved, Request: r, Endpoint: l[1], Attempt: 2, Elapsed: time.Millisecond})
		route.Observe(fanout.Event{Kind: fanout.RequestDone, Request: r, Elapsed: time.Millisecond, Done: done})
	}
}

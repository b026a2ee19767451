package metrics

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/fanout"
)

func TestARequestMovesItsRoutesSeries(t *testing.T) {
	t.Parallel()
	m := New()
	route := m.Route("search", nil)
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
	eps := list(t)
	route := m.Route("r", eps)
	r := httptest.NewRequest("GET", "/", nil)
	done := &fanout.Done{Status: 200}
	observe := func() {
		route.Observe(fanout.Event{Kind: fanout.RequestReceived, Request: r})
		route.Observe(fanout.Event{Kind: fanout.AttemptStarted, Request: r})
		route.Observe(fanout.Event{Kind: fanout.HedgeSent, Request: r, Endpoint: eps[1]})
		route.Observe(fanout.Event{Kind: fanout.AttemptAnswered, Request: r, Endpoint: eps[1], Result: fanout.ResultWon, Elapsed: time.Millisecond})
		route.Observe(fanout.Event{Kind: fanout.WinnerChosen, Request: r, Hedge: true})
		route.Observe(fanout.Event{Kind: fanout.AttemptCancelled, Request: r, Endpoint: eps[0], Result: fanout.ResultCancelled})
		route.Observe(fanout.Event{Kind: fanout.RequestDone, Request: r, Elapsed: time.Millisecond, Done: done})
	}
	observe() // the status's series is made once
	assert.Zero(t, testing.AllocsPerRun(100, observe))
}

// list is two endpoints.
func list(t *testing.T) endpoints.List {
	t.Helper()
	l, err := endpoints.Parse("http://one.example,http://two.example")
	require.NoError(t, err)
	return l
}

func TestAttemptsAndHedgesMoveTheirSeries(t *testing.T) {
	t.Parallel()
	m := New()
	eps := list(t)
	route := m.Route("r", eps)
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

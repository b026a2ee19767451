package metrics

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/fanout"
)

func TestARequestMovesItsRoutesSeries(t *testing.T) {
	t.Parallel()
	m := New()
	route := m.Route("search")
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
	route := m.Route("r")
	r := httptest.NewRequest("GET", "/", nil)
	done := &fanout.Done{Status: 200}
	observe := func() {
		route.Observe(fanout.Event{Kind: fanout.RequestReceived, Request: r})
		route.Observe(fanout.Event{Kind: fanout.AttemptStarted, Request: r})
		route.Observe(fanout.Event{Kind: fanout.RequestDone, Request: r, Elapsed: time.Millisecond, Done: done})
	}
	observe() // the status's series is made once
	assert.Zero(t, testing.AllocsPerRun(100, observe))
}

package stats

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/fanout"
	"balancing-reverse-proxy/metrics"
)

// latencyOf is a histogram of the given times, in seconds.
func latencyOf(times ...float64) metrics.Latency {
	l := metrics.Latency{Buckets: make([]uint64, len(metrics.LatencyBounds))}
	for _, v := range times {
		l.Count++
		l.Sum += v
		for i, bound := range metrics.LatencyBounds {
			if v <= bound {
				l.Buckets[i]++
			}
		}
	}
	return l
}

func TestQuantilesInterpolateWithinTheirBucket(t *testing.T) {
	t.Parallel()
	assert.Nil(t, quantileMs(0.5, latencyOf()), "no observation, no quantile")
	// Every time in the first bucket (up to 1 ms): interpolated from 0.
	got := quantileMs(0.5, latencyOf(0.0005, 0.0005))
	require.NotNil(t, got)
	assert.InDelta(t, 0.5, *got, 1e-9)
	// 99 fast, 1 slow: p50 among the fast, p99 at the fast bucket's top.
	times := []float64{2}
	for range 99 {
		times = append(times, 0.0005)
	}
	p50, p99 := quantileMs(0.5, latencyOf(times...)), quantileMs(0.995, latencyOf(times...))
	assert.Less(t, *p50, 1.0)
	assert.Greater(t, *p99, 1000.0, "the slow one's bucket")
	assert.InDelta(t, metrics.LatencyBounds[len(metrics.LatencyBounds)-1]*1000, *quantileMs(0.5, latencyOf(60)), 1e-6,
		"past the last bound, that bound")
}

func TestSparkPointsScaleToTheHighest(t *testing.T) {
	t.Parallel()
	one, two := 1.0, 2.0
	assert.Equal(t, "60.0,12.0 120.0,1.0", sparkPoints([]*float64{nil, &one, &two}), "an interval without answers has no point")
	assert.Empty(t, sparkPoints(nil))
}

func TestTheReportTakesItsWindowFromTheHistory(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	sample := func(at time.Duration, l metrics.Latency) metrics.Snapshot {
		return metrics.Snapshot{Time: start.Add(at), Routes: []metrics.RouteState{{
			Route: "api", Mode: "serial", Requests: float64(l.Count),
			Endpoints: []metrics.EndpointState{{URL: "http://a", State: endpoints.StateUp, Since: start, Won: float64(l.Count), Latency: l}},
		}}}
	}
	// 10 slow answers before the window's start, then 4 fast, then none.
	slow := latencyOf(2, 2, 2, 2, 2, 2, 2, 2, 2, 2)
	fast := latencyOf(2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0.004, 0.004, 0.004, 0.004)
	got := report([]metrics.Snapshot{sample(0, slow), sample(Interval, fast), sample(2*Interval, fast)})
	require.Len(t, got.Routes, 1)
	e := got.Routes[0].Endpoints[0]
	assert.EqualValues(t, 14, e.Attempts, "counts are since start")
	require.NotNil(t, e.P99Ms)
	assert.Less(t, *e.P99Ms, 10.0, "the quantiles are the window's: the slow answers are before it")
	require.Len(t, e.LatencyMs, 2)
	require.NotNil(t, e.LatencyMs[0])
	assert.InDelta(t, 4.0, *e.LatencyMs[0], 1e-9, "the first interval's mean")
	assert.Nil(t, e.LatencyMs[1], "no answer in the second")
	assert.InDelta(t, (2 * Interval).Seconds(), e.SinceSeconds, 1e-9)
}

func TestThePageAndTheJSONShowTheSameFigures(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	list, err := endpoints.Parse("http://one.example,http://two.example")
	require.NoError(t, err)
	proxy := &fanout.Proxy{Route: "api", Endpoints: endpoints.NewPool(list, endpoints.PoolOptions{EjectAfter: 1, EjectBackoff: time.Minute})}
	route := m.Route(proxy)
	m.Serve([]*metrics.Route{route})
	stats := New(m)
	r := httptest.NewRequest("GET", "/", nil)
	for range 3 {
		route.Observe(fanout.Event{Kind: fanout.AttemptAnswered, Request: r, Endpoint: list[0], Status: 200, Elapsed: 3 * time.Millisecond, Result: fanout.ResultWon})
		route.Observe(fanout.Event{Kind: fanout.RequestDone, Request: r, Done: &fanout.Done{Status: 200}})
	}
	route.Observe(fanout.Event{Kind: fanout.AttemptFailed, Request: r, Endpoint: list[1], Result: fanout.ResultFailed})
	proxy.Endpoints.Failed(list[1], errors.New("refused"))

	page := httptest.NewRecorder()
	stats.Page(page, httptest.NewRequest("GET", "/", nil))
	require.Equal(t, http.StatusOK, page.Code)
	assert.Equal(t, "text/html; charset=utf-8", page.Header().Get("Content-Type"))
	js := httptest.NewRecorder()
	stats.JSON(js, httptest.NewRequest("GET", "/stats.json", nil))
	var report Report
	require.NoError(t, json.Unmarshal(js.Body.Bytes(), &report))
	require.Len(t, report.Routes, 1)
	require.Len(t, report.Routes[0].Endpoints, 2)
	one, two := report.Routes[0].Endpoints[0], report.Routes[0].Endpoints[1]
	assert.EqualValues(t, 3, one.Attempts)
	assert.Equal(t, "up", one.State)
	assert.Equal(t, "ejected", two.State)
	assert.EqualValues(t, 1, two.Failures)
	assert.EqualValues(t, 1, two.Ejections)

	html := page.Body.String()
	rows := regexp.MustCompile(`(?s)<tr class="(\w+)" data-e="\d">(.*?)</tr>`).FindAllStringSubmatch(html, -1)
	require.Len(t, rows, 2, html)
	for i, e := range []Endpoint{one, two} {
		assert.Equal(t, e.State, rows[i][1])
		cells := rows[i][2]
		assert.Contains(t, cells, "<td>"+e.URL+"</td>")
		for field, want := range map[string]string{
			"state": e.State, "attempts": itoa(e.Attempts), "failures": itoa(e.Failures), "ejections": itoa(e.Ejections),
			"p50": formatMs(e.P50Ms), "p99": formatMs(e.P99Ms),
		} {
			assert.Contains(t, cells, `data-f="`+field+`">`+want+"<", "%s of %s", field, e.URL)
		}
	}
	assert.Contains(t, html, `data-f="requests">3<`)
	assert.True(t, strings.Contains(html, `data-structure="api|http://one.example|http://two.example|;"`), "the structure the script compares")

	notFound := httptest.NewRecorder()
	stats.Page(notFound, httptest.NewRequest("GET", "/nothing", nil))
	assert.Equal(t, http.StatusNotFound, notFound.Code)
}

func itoa(n uint64) string {
	return strconv.FormatUint(n, 10)
}

func TestRunSamplesUntilItsContextEnds(t *testing.T) {
	defer goleak.VerifyNone(t)
	stats := New(metrics.New())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); stats.Run(ctx) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	stats.mu.Lock()
	defer stats.mu.Unlock()
	assert.Len(t, stats.history, 1, "New's sample")
}

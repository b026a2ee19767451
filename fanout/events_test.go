package fanout

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// seen is what a recorder keeps of an Event.
type seen struct {
	kind     EventKind
	endpoint int
	attempt  int
	status   int
	ending   Ending
	result   Result
	hedge    bool
}

// recorder is an Observer that keeps every event it is told, and closes done
// on RequestDone.
type recorder struct {
	mu     sync.Mutex
	events []seen
	// saved has the Elapsed of each HedgeSaved.
	saved []time.Duration
	done  chan struct{}
}

func newRecorder() *recorder { return &recorder{done: make(chan struct{})} }

func (r *recorder) Observe(e Event) {
	s := seen{kind: e.Kind, endpoint: -1, status: e.Status, result: e.Result, hedge: e.Hedge}
	switch e.Kind {
	case AttemptStarted, AttemptAnswered, AttemptFailed, AttemptCancelled, HedgeSent, WinnerChosen, HedgeSaved:
		s.endpoint, s.attempt = e.Endpoint.Index, e.Attempt
	case RequestDone:
		s.endpoint, s.status, s.ending = e.Done.Endpoint, e.Done.Status, e.Done.Ending
	}
	r.mu.Lock()
	if e.Kind == HedgeSaved {
		r.saved = append(r.saved, e.Elapsed)
	}
	r.events = append(r.events, s)
	r.mu.Unlock()
	if e.Kind == RequestDone {
		close(r.done)
	}
}

// wait returns the events once the request is done.
func (r *recorder) wait(t *testing.T) []seen {
	t.Helper()
	waitFor(t, r.done, "the request's end")
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.events
}

func TestObserversSeeAFailOverInOrder(t *testing.T) {
	t.Parallel()
	good := newBackend(t, answer(http.StatusOK, "ok"))
	rec := newRecorder()
	srv := newProxy(t, Serial(), []string{refusedURL(t), good.srv.URL}, func(p *Proxy) {
		p.Observers = []Observer{RequestLog{}, rec}
	})
	resp, body := get(t, srv.URL+"/x")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "ok", body)
	assert.Equal(t, []seen{
		{kind: RequestReceived, endpoint: -1},
		{kind: AttemptStarted, endpoint: 0, attempt: 1},
		{kind: AttemptFailed, endpoint: 0, attempt: 1, result: ResultFailed},
		{kind: AttemptStarted, endpoint: 1, attempt: 2},
		{kind: AttemptAnswered, endpoint: 1, attempt: 2, status: http.StatusOK, result: ResultWon},
		{kind: WinnerChosen, endpoint: 1, attempt: 2, status: http.StatusOK},
		{kind: RequestDone, endpoint: 1, status: http.StatusOK, ending: Served},
	}, rec.wait(t))
}

func TestObserversSeeAHedgeWinAndItsLoserCancelled(t *testing.T) {
	t.Parallel()
	cancelled := make(chan struct{}, 1)
	slow := newBackend(t, hang(cancelled))
	fast := newBackend(t, answer(http.StatusOK, "fast"))
	rec := newRecorder()
	srv := newProxy(t, hedgedAfter(10*time.Millisecond), []string{slow.srv.URL, fast.srv.URL}, func(p *Proxy) {
		p.Observers = []Observer{rec}
	})
	resp, body := get(t, srv.URL+"/x")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "fast", body)
	assert.Equal(t, []seen{
		{kind: RequestReceived, endpoint: -1},
		{kind: AttemptStarted, endpoint: 0, attempt: 1},
		{kind: HedgeSent, endpoint: 1, attempt: 2},
		{kind: AttemptAnswered, endpoint: 1, attempt: 2, status: http.StatusOK, result: ResultWon},
		{kind: WinnerChosen, endpoint: 1, attempt: 2, status: http.StatusOK, hedge: true},
		{kind: AttemptCancelled, endpoint: 0, attempt: 1, result: ResultCancelled},
		{kind: HedgeSaved, endpoint: 1, attempt: 2},
		{kind: RequestDone, endpoint: 1, status: http.StatusOK, ending: Served},
	}, rec.wait(t))
	waitFor(t, cancelled, "the slow endpoint's cancellation")
	require.Len(t, rec.saved, 1)
	assert.GreaterOrEqual(t, rec.saved[0], time.Duration(0))
}

func TestAHedgesSavingIsHowMuchLongerTheFirstAttemptWaited(t *testing.T) {
	t.Parallel()
	// The first endpoint would answer after 200 ms; the hedge, sent after
	// 20 ms, answers at once. The first attempt had waited at least 20 ms
	// longer than the hedge took when it was cut.
	slow := newBackend(t, slowAnswer(200*time.Millisecond))
	fast := newBackend(t, answer(http.StatusOK, "fast"))
	rec := newRecorder()
	srv := newProxy(t, hedgedAfter(20*time.Millisecond), []string{slow.srv.URL, fast.srv.URL}, func(p *Proxy) {
		p.Observers = []Observer{rec}
	})
	resp, body := get(t, srv.URL+"/x")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "fast", body)
	rec.wait(t)
	require.Len(t, rec.saved, 1)
	assert.GreaterOrEqual(t, rec.saved[0], 19*time.Millisecond)
	assert.Less(t, rec.saved[0], 200*time.Millisecond, "not more than the first attempt could have taken")
}

func TestObserversSeeWhyNoEndpointAnswered(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	srv := newProxy(t, Serial(), []string{refusedURL(t)}, func(p *Proxy) {
		p.Observers = []Observer{rec}
	})
	resp, _ := get(t, srv.URL+"/x")
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.Equal(t, []seen{
		{kind: RequestReceived, endpoint: -1},
		{kind: AttemptStarted, endpoint: 0, attempt: 1},
		{kind: AttemptFailed, endpoint: 0, attempt: 1, result: ResultFailed},
		{kind: RequestDone, endpoint: -1, status: http.StatusBadGateway, ending: NoAnswer},
	}, rec.wait(t))
}

// countingObserver counts the events it is told.
type countingObserver struct{ events int }

func (c *countingObserver) Observe(Event) { c.events++ }

// cannedTransport answers every request with a fresh 200 and a small body,
// on the caller's goroutine, so that allocations can be counted exactly.
type cannedTransport struct{}

func (cannedTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode:    http.StatusOK,
		Header:        http.Header{},
		Body:          io.NopCloser(strings.NewReader("ok")),
		ContentLength: 2,
	}, nil
}

func TestObserversCostNoAllocation(t *testing.T) {
	proxy := buildProxy(t, Serial(), []string{"http://127.0.0.1:1"}, func(p *Proxy) {
		p.Transport = cannedTransport{}
		p.Observers = nil
	})
	serveOnce := func() {
		w := httptest.NewRecorder()
		proxy.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://proxy/x", nil))
		if w.Code != http.StatusOK {
			t.Fatalf("status %d", w.Code)
		}
	}
	// The least of several runs: under the race detector sync.Pool drops
	// some of what it is given, and the copy buffer is then made anew.
	fewest := func() float64 {
		least := math.Inf(1)
		for range 5 {
			least = min(least, testing.AllocsPerRun(100, serveOnce))
		}
		return least
	}
	without := fewest()
	counter := &countingObserver{}
	proxy.Observers = []Observer{counter, &countingObserver{}}
	with := fewest()
	require.Positive(t, counter.events, "the observer was told")
	assert.Equal(t, without, with, "allocations per request without observers and with two")
}

func TestAnAttemptsResultSaysTimeoutAndANonTerminalAnswerFailed(t *testing.T) {
	t.Parallel()
	stalled := make(chan struct{}, 1)
	slow := newBackend(t, hang(stalled))
	failing := newBackend(t, answer(http.StatusInternalServerError, "down"))
	good := newBackend(t, answer(http.StatusOK, "ok"))
	rec := newRecorder()
	srv := newProxy(t, Serial(), []string{slow.srv.URL, failing.srv.URL, good.srv.URL}, func(p *Proxy) {
		p.TryTimeout = 20 * time.Millisecond
		p.Observers = []Observer{rec}
	})
	resp, _ := get(t, srv.URL)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	var results []Result
	for _, e := range rec.wait(t) {
		if e.result != ResultNone {
			results = append(results, e.result)
		}
	}
	assert.Equal(t, []Result{ResultTimeout, ResultFailed, ResultWon}, results)
	assert.Equal(t, "timeout failed won cancelled", strings.Join([]string{ResultTimeout.String(), ResultFailed.String(), ResultWon.String(), ResultCancelled.String()}, " "))
}

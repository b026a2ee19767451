package fanout

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"balancing-reverse-proxy/logging"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/budget"
	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/forward"
	"balancing-reverse-proxy/hedge"
)

// hedgedAfter is hedged mode with a fixed delay.
func hedgedAfter(delay time.Duration) Schedule {
	return Hedged(hedge.NewDelay(hedge.Spec{Fixed: delay}, hedge.Options{}))
}

// withPool gives the proxy a pool of urls with opts.
func withPool(t *testing.T, urls []string, opts endpoints.PoolOptions) func(*Proxy) {
	t.Helper()
	list, err := endpoints.Parse(strings.Join(urls, ","))
	require.NoError(t, err)
	return func(p *Proxy) { p.Endpoints = endpoints.NewPool(list, opts) }
}

func withDebugHeaders(p *Proxy) { p.DebugHeaders = true }

// debug returns the debug headers of resp, in order: endpoint, attempts, and
// the reason for no extra attempt.
func debug(resp *http.Response) []string {
	return []string{resp.Header.Get(EndpointHeader), resp.Header.Get(AttemptsHeader), resp.Header.Get(NoExtraAttemptHeader)}
}

func TestHedgeGoesToTheNextEndpointAfterTheDelay(t *testing.T) {
	t.Parallel()
	cancelled := make(chan struct{}, 1)
	slow := newBackend(t, hang(cancelled))
	fast := newBackend(t, answer(http.StatusOK, "from the hedge"))
	proxy := newProxy(t, hedgedAfter(20*time.Millisecond), []string{slow.srv.URL, fast.srv.URL}, withDebugHeaders)

	resp, body := get(t, proxy.URL)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "from the hedge", body)
	assert.Equal(t, []string{"1", "2", ""}, debug(resp))
	waitFor(t, cancelled, "the cancel of the slow first attempt")
}

func TestNoHedgeWhileTheFirstAnswersInTime(t *testing.T) {
	t.Parallel()
	first := newBackend(t, answer(http.StatusOK, "first"))
	second := newBackend(t, answer(http.StatusOK, "second"))
	proxy := newProxy(t, hedgedAfter(time.Hour), []string{first.srv.URL, second.srv.URL}, withDebugHeaders)

	for range 5 {
		resp, body := get(t, proxy.URL)
		assert.Equal(t, "first", body)
		assert.Equal(t, []string{"0", "1", ""}, debug(resp))
	}
	assert.Zero(t, second.hits.Load())
}

func TestHedgedModeFailsOverAtOnce(t *testing.T) {
	t.Parallel()
	failing := newBackend(t, answer(http.StatusServiceUnavailable, "down"))
	healthy := newBackend(t, answer(http.StatusOK, "up"))
	// With an hour of delay, only the failure can start the second attempt.
	proxy := newProxy(t, hedgedAfter(time.Hour), []string{failing.srv.URL, healthy.srv.URL})

	resp, body := get(t, proxy.URL)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "up", body)
}

func TestHedgesNeverGoTwiceToOneEndpoint(t *testing.T) {
	t.Parallel()
	cancelled := make(chan struct{}, 4)
	a := newBackend(t, hang(cancelled))
	b := newBackend(t, hang(cancelled))
	proxy := newProxy(t, hedgedAfter(time.Millisecond), []string{a.srv.URL, b.srv.URL}, func(p *Proxy) {
		p.Timeout = 300 * time.Millisecond
	}, withDebugHeaders)

	resp, _ := get(t, proxy.URL)
	assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
	assert.Equal(t, "2", resp.Header.Get(AttemptsHeader))
	// The second may be cancelled before it reached b, but none went twice.
	assert.Equal(t, int32(1), a.hits.Load())
	assert.LessOrEqual(t, b.hits.Load(), int32(1))
	for range a.hits.Load() + b.hits.Load() {
		waitFor(t, cancelled, "a cancel")
	}
}

func TestAHedgedWinnersBodyIsNeverCutShort(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	cancelled := make(chan struct{}, 1)
	winner := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "head,")
		w.(http.Flusher).Flush()
		<-release // long after the hedge delay
		_, _ = io.WriteString(w, "tail")
	})
	other := newBackend(t, hang(cancelled))
	proxy := newProxy(t, hedgedAfter(5*time.Millisecond), []string{winner.srv.URL, other.srv.URL})

	resp, err := client(t).Get(proxy.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	head := make([]byte, len("head,"))
	_, err = io.ReadFull(resp.Body, head)
	require.NoError(t, err)
	time.Sleep(30 * time.Millisecond) // several hedge delays: nothing may cut the winner
	close(release)
	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "head,tail", string(head)+string(rest))
	if other.hits.Load() > 0 {
		waitFor(t, cancelled, "the cancel of the loser")
	}
}

func TestAdaptiveDelayIsLearntFromAnswers(t *testing.T) {
	t.Parallel()
	var hangNext atomic.Bool
	cancelled := make(chan struct{}, 2)
	first := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if hangNext.Load() {
			hang(cancelled)(w, r)
			return
		}
		_, _ = io.WriteString(w, "first")
	})
	second := newBackend(t, answer(http.StatusOK, "second"))
	// The learnt delay is held at 20 ms or more: on a busy machine a first
	// attempt that answers at once, or one that stalls, must reach its
	// endpoint before the hedge does.
	delay := hedge.NewDelay(hedge.Spec{Percentile: 50}, hedge.Options{Min: 20 * time.Millisecond, Max: time.Hour, MinSamples: 10})
	proxy := newProxy(t, Hedged(delay), []string{first.srv.URL, second.srv.URL}, func(p *Proxy) {
		p.Timeout = 200 * time.Millisecond
	})

	// Nothing learnt yet: the delay is the max, so a stalled first attempt is
	// not hedged.
	hangNext.Store(true)
	resp, _ := get(t, proxy.URL)
	assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
	assert.Zero(t, second.hits.Load())
	waitFor(t, cancelled, "the cancel of the stalled attempt")

	hangNext.Store(false)
	for range 10 {
		_, body := get(t, proxy.URL)
		require.Equal(t, "first", body)
	}
	require.Less(t, delay.Current(), 100*time.Millisecond, "the answers taught the delay")

	hangNext.Store(true)
	resp, body := get(t, proxy.URL)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "second", body)
	waitFor(t, cancelled, "the cancel of the stalled attempt")
}

func TestBudgetSpentKeepsTheAttemptsARequestHas(t *testing.T) {
	t.Parallel()
	failing := newBackend(t, answer(http.StatusServiceUnavailable, "down"))
	healthy := newBackend(t, answer(http.StatusOK, "up"))
	for _, schedule := range []Schedule{Serial(), FanOut(), hedgedAfter(time.Millisecond)} {
		t.Run(schedule.String(), func(t *testing.T) {
			proxy := newProxy(t, schedule, []string{failing.srv.URL, healthy.srv.URL}, withDebugHeaders, func(p *Proxy) {
				p.Budget = budget.New(0, 0, 0)
			})
			resp, body := get(t, proxy.URL)
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			assert.Equal(t, "down", body)
			assert.Equal(t, []string{"0", "1", "budget spent"}, debug(resp))
		})
	}
	assert.Zero(t, healthy.hits.Load())
}

func TestBudgetHoldsUnderASlowDown(t *testing.T) {
	t.Parallel()
	slow := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		timer := time.NewTimer(20 * time.Millisecond)
		defer timer.Stop()
		select {
		case <-timer.C:
			_, _ = io.WriteString(w, "slow")
		case <-r.Context().Done():
		}
	})
	fast := newBackend(t, answer(http.StatusOK, "fast"))
	const requests, share = 40, 0.1
	proxy := newProxy(t, hedgedAfter(time.Millisecond), []string{slow.srv.URL, fast.srv.URL}, func(p *Proxy) {
		p.Budget = budget.New(share, 0, time.Minute)
	})
	for range requests {
		resp, _ := get(t, proxy.URL)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	// Every request wanted a hedge; the budget allowed one in ten. (A hedged
	// request's first attempt may be cancelled before the slow endpoint got
	// it, so only the others are sure to reach it.)
	assert.Equal(t, int32(requests*share), fast.hits.Load())
	assert.GreaterOrEqual(t, slow.hits.Load(), int32(requests-requests*share))
}

func TestIdempotentOnly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		method   string
		key      string
		schedule Schedule
		first    http.HandlerFunc
		// wantAttempts is 1 when only the first endpoint may get the
		// request, else 2.
		wantAttempts int
		wantStatus   int
		wantReason   string
	}{
		{"POST fan-out goes to one", http.MethodPost, "", FanOut(), answer(http.StatusOK, "one"), 1, http.StatusOK, "method not idempotent"},
		{"POST is not hedged", http.MethodPost, "", hedgedAfter(time.Millisecond), slowAnswer(50 * time.Millisecond), 1, http.StatusOK, "method not idempotent"},
		{"POST after a 5xx stays", http.MethodPost, "", Serial(), answer(http.StatusBadGateway, "no"), 1, http.StatusBadGateway, "method not idempotent"},
		{"POST after a reset once sent stays", http.MethodPost, "", Serial(), resetConnection, 1, http.StatusBadGateway, "method not idempotent"},
		{"PATCH fan-out goes to one", http.MethodPatch, "", FanOut(), answer(http.StatusOK, "one"), 1, http.StatusOK, "method not idempotent"},
		{"POST with an Idempotency-Key fans out", http.MethodPost, "k1", FanOut(), answer(http.StatusOK, "one"), 2, http.StatusOK, ""},
		{"PUT fails over", http.MethodPut, "", Serial(), answer(http.StatusBadGateway, "no"), 2, http.StatusOK, ""},
		{"DELETE fans out", http.MethodDelete, "", FanOut(), answer(http.StatusOK, "one"), 2, http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			first := newBackend(t, tt.first)
			second := newBackend(t, answer(http.StatusOK, "two"))
			proxy := newProxy(t, tt.schedule, []string{first.srv.URL, second.srv.URL}, withDebugHeaders, func(p *Proxy) {
				p.IdempotentOnly = true
			})
			req, err := http.NewRequest(tt.method, proxy.URL, strings.NewReader("order 42"))
			require.NoError(t, err)
			if tt.key != "" {
				req.Header.Set("Idempotency-Key", tt.key)
			}
			resp, err := client(t).Do(req)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			assert.Equal(t, tt.wantStatus, resp.StatusCode)
			assert.Equal(t, tt.wantReason, resp.Header.Get(NoExtraAttemptHeader))
			// A fan-out loser may be cancelled before it was sent, so the
			// attempts launched are what tells.
			assert.Equal(t, strconv.Itoa(tt.wantAttempts), resp.Header.Get(AttemptsHeader))
			if tt.wantAttempts == 1 {
				assert.Zero(t, second.hits.Load())
			}
		})
	}
}

// slowAnswer answers 200 after d, or gives up when its request is cancelled.
func slowAnswer(d time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
			_, _ = io.WriteString(w, "slow")
		case <-r.Context().Done():
		}
	}
}

// resetConnection reads the request and drops the connection unanswered.
func resetConnection(w http.ResponseWriter, _ *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

func TestIdempotentOnlyFailsOverWhenNothingWasSent(t *testing.T) {
	t.Parallel()
	second := newBackend(t, answer(http.StatusOK, "two"))
	proxy := newProxy(t, Serial(), []string{refusedURL(t), second.srv.URL}, func(p *Proxy) {
		p.IdempotentOnly = true
	})
	resp, body := do(t, http.MethodPost, proxy.URL, strings.NewReader("order 43"))
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "two", body)
	assert.Equal(t, "order 43", receive(t, second.bodies))
}

func TestAttemptNumberHeader(t *testing.T) {
	t.Parallel()
	seen := make(chan string, 2)
	record := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			seen <- r.Header.Get(forward.AttemptHeader)
			w.WriteHeader(status)
		}
	}
	first := newBackend(t, record(http.StatusInternalServerError))
	second := newBackend(t, record(http.StatusOK))
	proxy := newProxy(t, Serial(), []string{first.srv.URL, second.srv.URL})
	req, err := http.NewRequest(http.MethodGet, proxy.URL, nil)
	require.NoError(t, err)
	req.Header.Set(forward.AttemptHeader, "7") // a client's value is not passed on
	resp, err := client(t).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "1", <-seen)
	assert.Equal(t, "2", <-seen)
}

func TestCopiesCarryOneRequestID(t *testing.T) {
	t.Parallel()
	ids := make(chan string, 2)
	record := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			ids <- r.Header.Get("X-Request-Id")
			w.WriteHeader(status)
		}
	}
	first := newBackend(t, record(http.StatusInternalServerError))
	second := newBackend(t, record(http.StatusOK))
	proxy := buildProxy(t, Serial(), []string{first.srv.URL, second.srv.URL})
	srv := serve(t, logging.Requests(zerolog.Nop(), "X-Request-Id")(proxy))

	resp, _ := get(t, srv.URL)
	id := resp.Header.Get("X-Request-Id")
	require.NotEmpty(t, id)
	assert.Equal(t, id, <-ids)
	assert.Equal(t, id, <-ids)

	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	req.Header.Set("X-Request-Id", "client-7")
	resp, err = client(t).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "client-7", <-ids, "a client's id travels on")
	assert.Equal(t, "client-7", <-ids)
}

func TestMaxAttempts(t *testing.T) {
	t.Parallel()
	var backends []*backend
	var urls []string
	for range 3 {
		b := newBackend(t, answer(http.StatusBadGateway, "no"))
		backends = append(backends, b)
		urls = append(urls, b.srv.URL)
	}
	proxy := newProxy(t, Serial(), urls, func(p *Proxy) { p.MaxAttempts = 2 })
	resp, _ := get(t, proxy.URL)
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.Equal(t, []int32{1, 1, 0}, []int32{backends[0].hits.Load(), backends[1].hits.Load(), backends[2].hits.Load()})
}

func TestEjectedEndpointIsSkippedUntilItComesBack(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	down.Store(true)
	flaky := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		_, _ = io.WriteString(w, "flaky")
	})
	steady := newBackend(t, answer(http.StatusOK, "steady"))
	urls := []string{flaky.srv.URL, steady.srv.URL}
	proxy := newProxy(t, Serial(), urls, withDebugHeaders, withPool(t, urls, endpoints.PoolOptions{
		EjectAfter: 2, EjectBackoff: 50 * time.Millisecond, EjectBackoffMax: 50 * time.Millisecond,
	}))

	for range 2 {
		resp, _ := get(t, proxy.URL)
		require.Equal(t, "2", resp.Header.Get(AttemptsHeader))
	}
	resp, body := get(t, proxy.URL)
	assert.Equal(t, "steady", body)
	assert.Equal(t, []string{"1", "1", ""}, debug(resp), "the ejected endpoint is skipped")
	assert.Equal(t, int32(2), flaky.hits.Load())

	down.Store(false)
	require.Eventually(t, func() bool {
		_, body := get(t, proxy.URL)
		return body == "flaky"
	}, hangGuard, 10*time.Millisecond, "the endpoint comes back after its back-off")
}

func TestRetryAfterPausesTheEndpoint(t *testing.T) {
	t.Parallel()
	limited := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	other := newBackend(t, answer(http.StatusOK, "other"))
	urls := []string{limited.srv.URL, other.srv.URL}
	proxy := newProxy(t, Serial(), urls, withPool(t, urls, endpoints.PoolOptions{EjectBackoffMax: time.Hour}))

	resp, _ := get(t, proxy.URL)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "a 429 is terminal and passed on")
	_, body := get(t, proxy.URL)
	assert.Equal(t, "other", body)
	assert.Equal(t, int32(1), limited.hits.Load())
}

func TestRetryAfterValues(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		status int
		value  string
		want   time.Duration
		ok     bool
	}{
		{http.StatusServiceUnavailable, "120", 2 * time.Minute, true},
		{http.StatusTooManyRequests, "Mon, 23 Nov 2026 12:00:30 GMT", 30 * time.Second, true},
		{http.StatusTooManyRequests, "99999999", maxRetryAfter, true},
		{http.StatusTooManyRequests, "Mon, 23 Nov 2026 11:00:00 GMT", 0, false},
		{http.StatusTooManyRequests, "soon", 0, false},
		{http.StatusTooManyRequests, "-5", 0, false},
		{http.StatusTooManyRequests, "", 0, false},
		{http.StatusOK, "120", 0, false},
	}
	for _, tt := range tests {
		resp := &http.Response{StatusCode: tt.status, Header: http.Header{"Retry-After": {tt.value}}}
		got, ok := retryAfter(resp, func() time.Time { return now })
		assert.Equal(t, tt.ok, ok, "%d %q", tt.status, tt.value)
		assert.Equal(t, tt.want, got, "%d %q", tt.status, tt.value)
	}
}

func TestMaxInflightSkipsABusyEndpoint(t *testing.T) {
	t.Parallel()
	cancelled := make(chan struct{}, 1)
	started := make(chan struct{}, 1)
	busy := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		hang(cancelled)(w, r)
	})
	free := newBackend(t, answer(http.StatusOK, "free"))
	urls := []string{busy.srv.URL, free.srv.URL}
	proxy := newProxy(t, Serial(), urls, withPool(t, urls, endpoints.PoolOptions{MaxInflight: 1}))

	stop := startRequest(t, proxy.URL)
	waitFor(t, started, "the first request at the busy endpoint")
	_, body := get(t, proxy.URL)
	assert.Equal(t, "free", body, "the endpoint at its cap is skipped")
	assert.Equal(t, int32(1), busy.hits.Load())
	stop()
	waitFor(t, cancelled, "the cancel of the hanging request")
}

func TestEveryEndpointAtItsCapGets503(t *testing.T) {
	t.Parallel()
	cancelled := make(chan struct{}, 1)
	started := make(chan struct{}, 1)
	busy := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		hang(cancelled)(w, r)
	})
	urls := []string{busy.srv.URL}
	proxy := newProxy(t, Serial(), urls, withPool(t, urls, endpoints.PoolOptions{MaxInflight: 1}))

	stop := startRequest(t, proxy.URL)
	waitFor(t, started, "the first request at the busy endpoint")
	resp, body := get(t, proxy.URL)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Contains(t, body, "every endpoint is at --max-inflight")
	stop()
	waitFor(t, cancelled, "the cancel of the hanging request")
}

// startRequest sends a GET to url in the background; the returned function
// cancels it and waits for it to end.
func startRequest(t *testing.T, url string) (stop func()) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	httpClient := client(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := httpClient.Do(req.WithContext(ctx)); err == nil {
			resp.Body.Close()
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

func TestRoundRobinThroughTheProxy(t *testing.T) {
	t.Parallel()
	var urls []string
	for _, name := range []string{"a", "b", "c"} {
		urls = append(urls, newBackend(t, answer(http.StatusOK, name)).srv.URL)
	}
	proxy := newProxy(t, Serial(), urls, withPool(t, urls, endpoints.PoolOptions{Order: endpoints.RoundRobin}))
	var got []string
	for range 4 {
		_, body := get(t, proxy.URL)
		got = append(got, body)
	}
	assert.Equal(t, []string{"a", "b", "c", "a"}, got)
}

func TestDebugHeaders(t *testing.T) {
	t.Parallel()
	spoofing := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(EndpointHeader, "9")
		w.Header().Set(NoExtraAttemptHeader, "made up")
		_, _ = io.WriteString(w, "ok")
	})
	plain := newProxy(t, Serial(), []string{spoofing.srv.URL})
	resp, _ := get(t, plain.URL)
	assert.Empty(t, resp.Header.Get(AttemptsHeader), "off unless asked for")

	debugged := newProxy(t, Serial(), []string{spoofing.srv.URL}, withDebugHeaders)
	resp, _ = get(t, debugged.URL)
	assert.Equal(t, []string{"0", "1", ""}, debug(resp), "the endpoint cannot fake them")

	failing := newProxy(t, Serial(), []string{refusedURL(t)}, withDebugHeaders)
	resp, _ = get(t, failing.URL)
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.Equal(t, []string{"", "1", ""}, debug(resp))
}

func TestABodyOverTheBufferIsNotHedged(t *testing.T) {
	t.Parallel()
	first := newBackend(t, answer(http.StatusOK, "one"))
	second := newBackend(t, answer(http.StatusOK, "two"))
	proxy := newProxy(t, FanOut(), []string{first.srv.URL, second.srv.URL}, withDebugHeaders, func(p *Proxy) {
		p.MaxBodyBuffer = 4
	})
	resp, body := do(t, http.MethodPut, proxy.URL, strings.NewReader("more than four bytes"))
	assert.Equal(t, "one", body)
	assert.Equal(t, []string{"0", "1", "request body over --max-body-buffer"}, debug(resp))
	assert.Equal(t, "more than four bytes", receive(t, first.bodies))
	assert.Zero(t, second.hits.Load())
}

// TestInflightPlaceIsFreeOnceTheAnswerIsOut sends the client's next request
// while the handler of its first one is still busy after the answer (held by
// the log line about its cancelled loser): the winner's in-flight place must
// be free by then, as the client has no way to know the handler is not done.
func TestInflightPlaceIsFreeOnceTheAnswerIsOut(t *testing.T) {
	t.Parallel()
	winner := newBackend(t, answer(http.StatusOK, "ok"))
	loser := newBackend(t, hang(make(chan struct{}, 1)))
	urls := []string{winner.srv.URL, loser.srv.URL}
	proxy := buildProxy(t, FanOut(), urls, withPool(t, urls, endpoints.PoolOptions{MaxInflight: 1}))
	logs := &heldLog{hold: `"attempt":2`, release: make(chan struct{})}
	srv := serve(t, logging.Requests(zerolog.New(logs).Level(zerolog.DebugLevel), "X-Request-Id")(proxy))
	// Runs before the server's Close, which waits for the held handler.
	t.Cleanup(func() { close(logs.release) })

	for range 2 {
		resp, body := get(t, srv.URL)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "ok", body)
	}
	assert.Equal(t, int32(2), winner.hits.Load())
}

// heldLog is a log writer that holds every line containing hold until release
// is closed, and drops all lines.
type heldLog struct {
	hold    string
	release chan struct{}
}

func (l *heldLog) Write(p []byte) (int, error) {
	if strings.Contains(string(p), l.hold) {
		<-l.release
	}
	return len(p), nil
}

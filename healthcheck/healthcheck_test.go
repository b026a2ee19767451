package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"balancing-reverse-proxy/endpoints"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// patience bounds every wait for something that should happen soon; it is only
// reached when the behaviour is broken.
const patience = 10 * time.Second

// never is an Interval long enough that only the first round happens.
const never = time.Hour

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// recorder collects what Report is given, by endpoint index.
type recorder struct {
	mu      sync.Mutex
	reports map[int][]error
}

func newRecorder() *recorder {
	return &recorder{reports: map[int][]error{}}
}

func (r *recorder) report(index int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports[index] = append(r.reports[index], err)
}

func (r *recorder) of(index int) []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.reports[index]...)
}

// first waits for the first report about index and returns it.
func (r *recorder) first(t *testing.T, index int) error {
	t.Helper()
	require.Eventually(t, func() bool { return len(r.of(index)) > 0 }, patience, time.Millisecond,
		"no report for endpoint %d", index)
	return r.of(index)[0]
}

func newServer(t *testing.T, handler http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return srv
}

// newTransport returns a transport of the test's own, so that no idle
// connection outlives the test.
func newTransport(t *testing.T) *http.Transport {
	t.Helper()
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	return transport
}

func parseList(t *testing.T, urls ...string) endpoints.List {
	t.Helper()
	list, err := endpoints.Parse(strings.Join(urls, ","))
	require.NoError(t, err)
	return list
}

// start runs c in the background and returns a function that cancels it and
// waits for Run to return. The function is also run at cleanup.
func start(t *testing.T, c *Checker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(patience):
				t.Errorf("Run did not return within %s of its context ending", patience)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// hangingServer answers no request until the request is cancelled, and counts
// requests.
func hangingServer(t *testing.T) (srv *httptest.Server, requests *atomic.Int64) {
	t.Helper()
	requests = &atomic.Int64{}
	srv = newServer(t, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		<-r.Context().Done()
	})
	return srv, requests
}

// countingServer answers 204 and counts requests.
func countingServer(t *testing.T) (srv *httptest.Server, requests *atomic.Int64) {
	t.Helper()
	requests = &atomic.Int64{}
	srv = newServer(t, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})
	return srv, requests
}

func TestRunJoinsPathUnderPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		prefix string
		path   string
		want   string
	}{
		{name: "no prefix", prefix: "", path: "/healthz", want: "/healthz"},
		{name: "prefix", prefix: "/api", path: "/healthz", want: "/api/healthz"},
		{name: "prefix with trailing slash", prefix: "/api/", path: "/healthz", want: "/api/healthz"},
		{name: "root path", prefix: "/api", path: "/", want: "/api/"},
		{name: "query kept", prefix: "/api", path: "/healthz?full=1&x=%20", want: "/api/healthz?full=1&x=%20"},
		{name: "escaping kept", prefix: "/a%2Fb", path: "/x%2Fy", want: "/a%2Fb/x%2Fy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			type seen struct{ method, uri, agent string }
			got := make(chan seen, 1)
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				select {
				case got <- seen{method: r.Method, uri: r.RequestURI, agent: r.UserAgent()}:
				default:
				}
			})
			rec := newRecorder()
			start(t, &Checker{
				Endpoints: parseList(t, srv.URL+tt.prefix),
				Path:      tt.path,
				Interval:  never,
				Transport: newTransport(t),
				Report:    rec.report,
			})
			select {
			case s := <-got:
				assert.Equal(t, http.MethodGet, s.method)
				assert.Equal(t, tt.want, s.uri)
				assert.Equal(t, "balancing-reverse-proxy-health-check", s.agent)
			case <-time.After(patience):
				t.Fatal("no probe arrived")
			}
			assert.NoError(t, rec.first(t, 0))
		})
	}
}

func TestRunReportsStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		ok     bool
	}{
		{name: "200", status: http.StatusOK, ok: true},
		{name: "204", status: http.StatusNoContent, ok: true},
		{name: "299", status: 299, ok: true},
		{name: "302 is not followed", status: http.StatusFound},
		{name: "404", status: http.StatusNotFound},
		{name: "500", status: http.StatusInternalServerError},
		{name: "503", status: http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/healthz" {
					w.Header().Set("Location", "/elsewhere")
					w.WriteHeader(tt.status)
					_, _ = io.WriteString(w, "some body")
					return
				}
				// Only a followed redirect ends up here.
				w.WriteHeader(http.StatusOK)
			})
			rec := newRecorder()
			start(t, &Checker{
				Endpoints: parseList(t, srv.URL),
				Path:      "/healthz",
				Interval:  never,
				Transport: newTransport(t),
				Report:    rec.report,
			})
			err := rec.first(t, 0)
			if tt.ok {
				assert.NoError(t, err)
				return
			}
			var statusErr *StatusError
			require.ErrorAs(t, err, &statusErr)
			assert.Equal(t, tt.status, statusErr.Code)
			assert.EqualError(t, err, fmt.Sprintf("status %d", tt.status))
		})
	}
}

func TestRunReportsRefusedConnection(t *testing.T) {
	t.Parallel()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := listener.Addr().String()
	require.NoError(t, listener.Close())

	rec := newRecorder()
	start(t, &Checker{
		Endpoints: parseList(t, "http://"+addr),
		Path:      "/healthz",
		Interval:  never,
		Transport: newTransport(t),
		Report:    rec.report,
	})
	err = rec.first(t, 0)
	var opErr *net.OpError
	require.ErrorAs(t, err, &opErr, "got %v", err)
	assert.Equal(t, "dial", opErr.Op)
	var timeoutErr *TimeoutError
	assert.False(t, errors.As(err, &timeoutErr), "a refused connection is not a timeout: %v", err)
}

func TestRunSlowEndpointDelaysNeitherOthersNorOverlaps(t *testing.T) {
	t.Parallel()
	slow, slowRequests := hangingServer(t)
	fast, fastRequests := countingServer(t)
	rec := newRecorder()
	stop := start(t, &Checker{
		Endpoints: parseList(t, slow.URL, fast.URL),
		Path:      "/healthz",
		Interval:  5 * time.Millisecond,
		// Long enough that the slow endpoint's first probe outlasts the test.
		Timeout:   time.Hour,
		Transport: newTransport(t),
		Report:    rec.report,
	})

	require.Eventually(t, func() bool { return fastRequests.Load() >= 5 && len(rec.of(1)) >= 5 },
		patience, time.Millisecond, "the fast endpoint is not probed while the slow one hangs")
	for _, err := range rec.of(1) {
		assert.NoError(t, err)
	}
	// Rounds kept coming due while the first probe hung, and none started.
	assert.Equal(t, int64(1), slowRequests.Load(), "probes of one endpoint overlapped")
	assert.Empty(t, rec.of(0))

	stop()
	assert.Empty(t, rec.of(0), "a probe cut short by the end of Run was reported")
	assert.Equal(t, int64(1), slowRequests.Load())
}

func TestRunReportsTimeoutWhileOthersKeepGoing(t *testing.T) {
	t.Parallel()
	slow, _ := hangingServer(t)
	fast, fastRequests := countingServer(t)
	const timeout = time.Second
	rec := newRecorder()
	var fastAtTimeout atomic.Int64
	fastAtTimeout.Store(-1)
	start(t, &Checker{
		Endpoints: parseList(t, slow.URL, fast.URL),
		Path:      "/healthz",
		Interval:  5 * time.Millisecond,
		Timeout:   timeout,
		Transport: newTransport(t),
		Report: func(index int, err error) {
			if index == 0 {
				fastAtTimeout.CompareAndSwap(-1, fastRequests.Load())
			}
			rec.report(index, err)
		},
	})

	err := rec.first(t, 0)
	var timeoutErr *TimeoutError
	require.ErrorAs(t, err, &timeoutErr, "got %v", err)
	assert.Equal(t, timeout, timeoutErr.Timeout)
	assert.EqualError(t, err, "no answer within 1s")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	// Had the fast endpoint waited for the slow one, it would have been probed
	// once; at one probe per 5ms it gets far more than 3 in a second.
	assert.GreaterOrEqual(t, fastAtTimeout.Load(), int64(3),
		"the fast endpoint was not probed while the slow one hung")
}

func TestRunTimeoutDefaultsToInterval(t *testing.T) {
	t.Parallel()
	slow, _ := hangingServer(t)
	const interval = 20 * time.Millisecond
	rec := newRecorder()
	start(t, &Checker{
		Endpoints: parseList(t, slow.URL),
		Path:      "/healthz",
		Interval:  interval,
		Transport: newTransport(t),
		Report:    rec.report,
	})
	var timeoutErr *TimeoutError
	require.ErrorAs(t, rec.first(t, 0), &timeoutErr)
	assert.Equal(t, interval, timeoutErr.Timeout)
}

func TestRunRepeatsRounds(t *testing.T) {
	t.Parallel()
	first, firstRequests := countingServer(t)
	second, secondRequests := countingServer(t)
	rec := newRecorder()
	start(t, &Checker{
		Endpoints: parseList(t, first.URL, second.URL),
		Path:      "/healthz",
		Interval:  5 * time.Millisecond,
		// Not the default of Interval: a loaded machine can take 5ms to answer.
		Timeout:   patience,
		Transport: newTransport(t),
		Report:    rec.report,
	})
	require.Eventually(t, func() bool {
		return len(rec.of(0)) >= 3 && len(rec.of(1)) >= 3
	}, patience, time.Millisecond, "fewer than 3 rounds")
	assert.GreaterOrEqual(t, firstRequests.Load(), int64(3))
	assert.GreaterOrEqual(t, secondRequests.Load(), int64(3))
	for index := range 2 {
		for _, err := range rec.of(index) {
			assert.NoError(t, err)
		}
	}
}

func TestRunReportsIndexNotPosition(t *testing.T) {
	t.Parallel()
	srv, _ := countingServer(t)
	list := parseList(t, "http://127.0.0.1:1", srv.URL)
	rec := newRecorder()
	start(t, &Checker{
		Endpoints: list[1:],
		Path:      "/healthz",
		Interval:  never,
		Transport: newTransport(t),
		Report:    rec.report,
	})
	assert.NoError(t, rec.first(t, 1))
	assert.Empty(t, rec.of(0))
}

func TestRunReusesConnections(t *testing.T) {
	t.Parallel()
	var newConns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("ok\n", 1000))
	}))
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			newConns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)

	rec := newRecorder()
	stop := start(t, &Checker{
		Endpoints: parseList(t, srv.URL),
		Path:      "/healthz",
		Interval:  5 * time.Millisecond,
		// A timed-out probe would cost a connection too.
		Timeout:   patience,
		Transport: newTransport(t),
		Report:    rec.report,
	})
	require.Eventually(t, func() bool { return len(rec.of(0)) >= 6 }, patience, time.Millisecond)
	stop()
	probes := len(rec.of(0))
	// Each undrained or unclosed body would cost a connection. Not asserting
	// exactly one leaves room for the transport's own reasons to redial.
	assert.LessOrEqual(t, newConns.Load(), int64(2), "%d connections for %d probes", newConns.Load(), probes)
}

func TestRunBoundsTheDrain(t *testing.T) {
	t.Parallel()
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 4096))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	rec := newRecorder()
	start(t, &Checker{
		Endpoints: parseList(t, srv.URL),
		Path:      "/healthz",
		Interval:  never,
		// A drain that read to the end would be stopped only by this.
		Timeout:   time.Hour,
		Transport: newTransport(t),
		Report:    rec.report,
	})
	assert.NoError(t, rec.first(t, 0))
}

func TestRunReturnsWhenCancelledDuringHangingProbe(t *testing.T) {
	t.Parallel()
	slow, slowRequests := hangingServer(t)
	rec := newRecorder()
	stop := start(t, &Checker{
		Endpoints: parseList(t, slow.URL),
		Path:      "/healthz",
		Interval:  5 * time.Millisecond,
		Timeout:   time.Hour,
		Transport: newTransport(t),
		Report:    rec.report,
	})
	require.Eventually(t, func() bool { return slowRequests.Load() == 1 }, patience, time.Millisecond)
	stop() // fails the test if Run does not return
	assert.Empty(t, rec.of(0))
}

// closeRecorder is a response body that records being closed.
type closeRecorder struct {
	io.Reader
	closed *atomic.Bool
}

func (c closeRecorder) Close() error {
	c.closed.Store(true)
	return nil
}

func TestRunWaitsForItsProbes(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int64
	var closed atomic.Bool
	// The probe outlives the context: it answers only when released.
	transport := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if calls.Add(1) == 1 {
			close(entered)
		}
		<-r.Context().Done()
		<-release
		return &http.Response{
			StatusCode: http.StatusOK,
			Body:       closeRecorder{Reader: strings.NewReader("ok"), closed: &closed},
		}, nil
	})
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&Checker{
			Endpoints: parseList(t, "http://127.0.0.1:1"),
			Path:      "/healthz",
			Interval:  never,
			Transport: transport,
			Report:    rec.report,
		}).Run(ctx)
	}()
	select {
	case <-entered:
	case <-time.After(patience):
		t.Fatal("no probe started")
	}

	cancel()
	// Can only pass wrongly (on a very slow machine), never fail wrongly.
	select {
	case <-done:
		t.Fatal("Run returned while a probe was still running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case <-done:
	case <-time.After(patience):
		t.Fatal("Run did not return once its probe had")
	}
	assert.True(t, closed.Load(), "the probe's body was not closed before Run returned")
	assert.Len(t, rec.of(0), 1, "the probe's result was not reported before Run returned")
	assert.Equal(t, int64(1), calls.Load())
}

func TestRunWithoutEndpointsWaitsForContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&Checker{Path: "/healthz", Interval: time.Millisecond, Report: func(int, error) {}}).Run(ctx)
	}()
	select {
	case <-done:
		t.Fatal("Run returned before its context ended")
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	select {
	case <-done:
	case <-time.After(patience):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestRunPanicsOnBadConfiguration(t *testing.T) {
	t.Parallel()
	valid := func() *Checker {
		return &Checker{Path: "/healthz", Interval: time.Second, Report: func(int, error) {}}
	}
	tests := []struct {
		name  string
		spoil func(*Checker)
		want  string
	}{
		{name: "zero interval", spoil: func(c *Checker) { c.Interval = 0 }, want: "Interval 0s is not positive"},
		{name: "negative interval", spoil: func(c *Checker) { c.Interval = -time.Second }, want: "Interval -1s is not positive"},
		{name: "no report", spoil: func(c *Checker) { c.Report = nil }, want: "Report is nil"},
		{name: "bad path", spoil: func(c *Checker) { c.Path = "healthz" }, want: `health path "healthz"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := valid()
			tt.spoil(c)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var got any
			func() {
				defer func() { got = recover() }()
				c.Run(ctx)
			}()
			require.NotNil(t, got, "Run did not panic")
			assert.Contains(t, got, tt.want)
		})
	}
}

func TestCheckPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{name: "healthz", path: "/healthz"},
		{name: "root", path: "/"},
		{name: "nested", path: "/api/v1/health"},
		{name: "query", path: "/health?full=1&verbose"},
		{name: "empty query", path: "/health?"},
		{name: "escaped", path: "/a%2Fb"},
		{name: "double slash", path: "//healthz"},
		{name: "non-ascii", path: "/gesundheit/ü"},
		{name: "empty", path: "", wantErr: "empty path"},
		{name: "relative", path: "healthz", wantErr: `must start with "/"`},
		{name: "full URL", path: "http://h/healthz", wantErr: `must start with "/"`},
		{name: "leading space", path: " /healthz", wantErr: `must start with "/"`},
		{name: "space", path: "/health z", wantErr: "spaces and control characters"},
		{name: "trailing space", path: "/healthz ", wantErr: "spaces and control characters"},
		{name: "tab", path: "/health\tz", wantErr: "spaces and control characters"},
		{name: "newline", path: "/healthz\n", wantErr: "spaces and control characters"},
		{name: "nul", path: "/health\x00", wantErr: "spaces and control characters"},
		{name: "delete", path: "/health\x7f", wantErr: "spaces and control characters"},
		{name: "fragment", path: "/healthz#top", wantErr: "a fragment is not allowed"},
		{name: "bad escape", path: "/health%zz", wantErr: "invalid URL escape"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := CheckPath(tt.path)
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			msg := err.Error()
			assert.Contains(t, msg, tt.wantErr)
			assert.True(t, strings.HasPrefix(msg, `health path "`), "the value is not named first: %s", msg)
			assert.Contains(t, msg, "an absolute path such as /healthz")
			assert.NotContains(t, msg, "\n")
		})
	}
}

// countingTransport counts the requests it sends on.
type countingTransport struct {
	http.RoundTripper
	sent atomic.Int32
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.sent.Add(1)
	return c.RoundTripper.RoundTrip(r)
}

func TestProbesGoAsTheEndpointsAttemptsDo(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.Header.Get("Authorization"):
		default:
		}
	})
	list := parseList(t, srv.URL)
	own := &countingTransport{RoundTripper: newTransport(t)}
	list[0].Header = http.Header{"Authorization": {"Bearer vendor"}}
	list[0].Transport = own
	shared := &countingTransport{RoundTripper: newTransport(t)}
	rec := newRecorder()
	start(t, &Checker{Endpoints: list, Path: "/healthz", Interval: never, Transport: shared, Report: rec.report})
	select {
	case auth := <-got:
		assert.Equal(t, "Bearer vendor", auth, "the endpoint's own headers")
	case <-time.After(patience):
		t.Fatal("no probe arrived")
	}
	assert.NoError(t, rec.first(t, 0))
	assert.Equal(t, int32(1), own.sent.Load(), "through the endpoint's own transport")
	assert.Zero(t, shared.sent.Load())
}

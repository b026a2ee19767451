package fanout

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"balancing-reverse-proxy/logging"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"balancing-reverse-proxy/endpointresponse"
	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/internal/syncbuffer"
	"balancing-reverse-proxy/terminal"
	"balancing-reverse-proxy/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// hangGuard bounds how long a test waits for something that must happen; it is
// a deadlock guard, not a timing assertion.
const hangGuard = 10 * time.Second

// backend is an httptest endpoint that counts its requests and records the
// bodies of the first 16.
type backend struct {
	srv    *httptest.Server
	hits   atomic.Int32
	bodies chan string
}

func newBackend(t *testing.T, handler http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{bodies: make(chan string, 16)}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		select {
		case b.bodies <- string(body):
		default: // tests that send many requests do not read their bodies
		}
		handler(w, r)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// answer returns a handler that replies with status and body.
func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// hang returns a handler that blocks until its request is cancelled and then
// reports it on cancelled.
func hang(cancelled chan<- struct{}) http.HandlerFunc {
	return func(_ http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		cancelled <- struct{}{}
	}
}

// refusedURL returns the URL of a port that refuses connections.
func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	return url
}

// newProxy serves a Proxy in front of urls; configure may adjust it.
func newProxy(t *testing.T, schedule Schedule, urls []string, configure ...func(*Proxy)) *httptest.Server {
	t.Helper()
	return serve(t, buildProxy(t, schedule, urls, configure...))
}

// newLoggedProxy is newProxy with debug logs written to the returned buffer.
// served receives a value each time a request's ServeHTTP has returned, so
// its log line is complete.
func newLoggedProxy(t *testing.T, schedule Schedule, urls []string, configure ...func(*Proxy)) (srv *httptest.Server, logs *syncbuffer.Buffer, served chan struct{}) {
	t.Helper()
	proxy := buildProxy(t, schedule, urls, configure...)
	logs = &syncbuffer.Buffer{}
	served = make(chan struct{}, 16)
	handler := logging.Requests(zerolog.New(logs).Level(zerolog.DebugLevel), "X-Request-Id")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { served <- struct{}{} }()
		proxy.ServeHTTP(w, r)
	}))
	return serve(t, handler), logs, served
}

func buildProxy(t testing.TB, schedule Schedule, urls []string, configure ...func(*Proxy)) *Proxy {
	t.Helper()
	list, err := endpoints.Parse(strings.Join(urls, ","))
	require.NoError(t, err)
	ranges, err := terminal.Parse("100,200,300,400")
	require.NoError(t, err)
	transport := wire.New(wire.Options{MaxIdlePerHost: 8})
	t.Cleanup(transport.CloseIdleConnections)
	proxy := &Proxy{
		Endpoints:     endpoints.NewPool(list, endpoints.PoolOptions{}),
		Terminal:      ranges,
		Schedule:      schedule,
		Transport:     transport,
		MaxBodyBuffer: 1 << 20,
		Observers:     []Observer{RequestLog{}},
	}
	for _, c := range configure {
		c(proxy)
	}
	return proxy
}

func serve(t *testing.T, handler http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return srv
}

// client returns an HTTP client whose connections are closed after the test.
// client returns an HTTP client whose idle connections close with the test.
// Its time-out is a deadlock guard, not a timing assertion: a test whose
// answer never ends fails rather than hangs.
func client(t *testing.T) *http.Client {
	t.Helper()
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: 30 * time.Second}
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	return do(t, http.MethodGet, url, nil)
}

func do(t *testing.T, method, url string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	resp, err := client(t).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(got)
}

// receive returns the next body an endpoint recorded.
func receive(t *testing.T, bodies <-chan string) string {
	t.Helper()
	select {
	case body := <-bodies:
		return body
	case <-time.After(hangGuard):
		t.Fatal("the endpoint got no request")
		return ""
	}
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(hangGuard):
		t.Fatalf("%s did not happen", what)
	}
}

func TestSerialCallsOnlyWhatIsNeeded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		handlers     []http.HandlerFunc
		wantStatus   int
		wantBody     string
		wantHits     []int32
		prependRefer bool
	}{
		{"first answers terminally", []http.HandlerFunc{answer(200, "zero"), answer(200, "one"), answer(200, "two")}, 200, "zero", []int32{1, 0, 0}, false},
		{"a 404 is terminal by default", []http.HandlerFunc{answer(404, "missing"), answer(200, "one")}, 404, "missing", []int32{1, 0}, false},
		{"a 500 moves on", []http.HandlerFunc{answer(500, "broken"), answer(200, "one"), answer(200, "two")}, 200, "one", []int32{1, 1, 0}, false},
		{"a refused connection moves on", []http.HandlerFunc{answer(200, "zero"), answer(200, "one")}, 200, "zero", []int32{1, 0}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var urls []string
			if tt.prependRefer {
				urls = append(urls, refusedURL(t))
			}
			backends := make([]*backend, len(tt.handlers))
			for i, h := range tt.handlers {
				backends[i] = newBackend(t, h)
				urls = append(urls, backends[i].srv.URL)
			}
			proxy := newProxy(t, Serial(), urls)
			resp, body := get(t, proxy.URL+"/")
			assert.Equal(t, tt.wantStatus, resp.StatusCode)
			assert.Equal(t, tt.wantBody, body)
			for i, b := range backends {
				assert.Equal(t, tt.wantHits[i], b.hits.Load(), "hits of endpoint %d", i)
			}
		})
	}
}

func TestSerialCustomTerminalSpec(t *testing.T) {
	t.Parallel()
	partial := newBackend(t, answer(404, "not on this mirror"))
	full := newBackend(t, answer(200, "here"))
	ranges, err := terminal.Parse("2xx,3xx")
	require.NoError(t, err)
	proxy := newProxy(t, Serial(), []string{partial.srv.URL, full.srv.URL}, func(p *Proxy) { p.Terminal = ranges })
	resp, body := get(t, proxy.URL+"/x")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "here", body)
}

func TestFanOutDoesNotWaitForTheSlowest(t *testing.T) {
	t.Parallel()
	cancelled := make(chan struct{}, 1)
	slowHasIt := make(chan struct{})
	slow := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		close(slowHasIt)
		hang(cancelled)(w, r)
	})
	fast := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		// Answer only once the slow endpoint has the request, so that there
		// is an upstream request to cancel.
		<-slowHasIt
		answer(200, "fast")(w, r)
	})
	proxy := newProxy(t, FanOut(), []string{slow.srv.URL, fast.srv.URL})

	// The slow endpoint only returns once cancelled, so the answer can only
	// arrive if the proxy did not wait for it, and the test only ends if the
	// proxy cancelled it.
	resp, body := get(t, proxy.URL+"/")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "fast", body)
	waitFor(t, cancelled, "cancelling the slow endpoint")
}

func TestFanOutFirstTerminalWins(t *testing.T) {
	t.Parallel()
	releaseTerminal := make(chan struct{})
	broken := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		close(releaseTerminal)
	})
	late := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		<-releaseTerminal
		answer(201, "late but good")(w, r)
	})
	proxy := newProxy(t, FanOut(), []string{broken.srv.URL, late.srv.URL})
	resp, body := get(t, proxy.URL+"/")
	assert.Equal(t, 201, resp.StatusCode)
	assert.Equal(t, "late but good", body)
}

func TestFanOutCallsEveryEndpointAtOnce(t *testing.T) {
	t.Parallel()
	const n = 3
	arrived := make(chan struct{}, n)
	release := make(chan struct{})
	var backends []*backend
	var urls []string
	for range n {
		b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			select {
			case <-release:
				w.WriteHeader(200)
			case <-r.Context().Done():
			}
		})
		backends = append(backends, b)
		urls = append(urls, b.srv.URL)
	}
	proxy := newProxy(t, FanOut(), urls)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, _ := get(t, proxy.URL+"/")
		assert.Equal(t, 200, resp.StatusCode)
	}()
	// Every endpoint holds its answer until all have the request: only
	// concurrent attempts get past this.
	for i := range n {
		waitFor(t, arrived, "request reaching endpoint "+string(rune('0'+i)))
	}
	close(release)
	waitFor(t, done, "the answer")
}

func TestRequestBodyReachesEveryAttempt(t *testing.T) {
	t.Parallel()
	payload := strings.Repeat("payload-", 10_000)
	for _, schedule := range []Schedule{Serial(), FanOut()} {
		t.Run(schedule.String(), func(t *testing.T) {
			t.Parallel()
			// The terminal answer waits until both failing endpoints have the
			// body, or fan-out could cancel them before they get it.
			failed := make(chan struct{}, 2)
			failing := func(status int) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					failed <- struct{}{}
					answer(status, "nope")(w, r)
				}
			}
			first := newBackend(t, failing(502))
			second := newBackend(t, failing(503))
			third := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				for range 2 {
					select {
					case <-failed:
					case <-r.Context().Done():
						return
					}
				}
				answer(200, "ok")(w, r)
			})
			proxy := newProxy(t, schedule, []string{first.srv.URL, second.srv.URL, third.srv.URL})
			resp, _ := do(t, http.MethodPost, proxy.URL+"/upload", strings.NewReader(payload))
			assert.Equal(t, 200, resp.StatusCode)
			for i, b := range []*backend{first, second, third} {
				assert.Equal(t, payload, receive(t, b.bodies), "body at endpoint %d", i)
			}
		})
	}
}

func TestChunkedRequestBodyIsReplayed(t *testing.T) {
	t.Parallel()
	first := newBackend(t, answer(500, ""))
	second := newBackend(t, answer(200, "ok"))
	proxy := newProxy(t, Serial(), []string{first.srv.URL, second.srv.URL})
	// An io.Reader of unknown length makes the client send the body chunked.
	body := io.MultiReader(strings.NewReader("chunk one,"), strings.NewReader("chunk two"))
	resp, _ := do(t, http.MethodPut, proxy.URL+"/", body)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "chunk one,chunk two", receive(t, first.bodies))
	assert.Equal(t, "chunk one,chunk two", receive(t, second.bodies))
}

func TestBodyOverTheBufferGetsOneStreamedAttempt(t *testing.T) {
	t.Parallel()
	payload := strings.Repeat("x", 4096)
	tests := []struct {
		name string
		body func() io.Reader
	}{
		{"known length", func() io.Reader { return strings.NewReader(payload) }},
		{"chunked", func() io.Reader {
			return io.MultiReader(strings.NewReader(payload[:100]), strings.NewReader(payload[100:]))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			first := newBackend(t, answer(500, "first failed"))
			second := newBackend(t, answer(200, "second"))
			proxy := newProxy(t, FanOut(), []string{first.srv.URL, second.srv.URL}, func(p *Proxy) { p.MaxBodyBuffer = 1024 })
			resp, body := do(t, http.MethodPost, proxy.URL+"/", tt.body())
			// No replay is possible, so the first endpoint's answer is all there is.
			assert.Equal(t, 500, resp.StatusCode)
			assert.Equal(t, "first failed", body)
			assert.Equal(t, payload, receive(t, first.bodies))
			assert.Equal(t, int32(0), second.hits.Load())
		})
	}
}

func TestNothingTerminal(t *testing.T) {
	t.Parallel()
	t.Run("the last non-terminal answer passes through", func(t *testing.T) {
		t.Parallel()
		first := newBackend(t, answer(500, "first"))
		second := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			answer(503, "second")(w, r)
		})
		proxy := newProxy(t, Serial(), []string{first.srv.URL, second.srv.URL, refusedURL(t)})
		resp, body := get(t, proxy.URL+"/")
		assert.Equal(t, 503, resp.StatusCode)
		assert.Equal(t, "second", body)
		assert.Equal(t, "7", resp.Header.Get("Retry-After"))
	})
	t.Run("no endpoint answered: 502", func(t *testing.T) {
		t.Parallel()
		proxy := newProxy(t, FanOut(), []string{refusedURL(t), refusedURL(t)})
		resp, body := get(t, proxy.URL+"/")
		assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
		assert.Contains(t, body, "no endpoint answered")
	})
	t.Run("the request deadline ran out: 504", func(t *testing.T) {
		t.Parallel()
		cancelled := make(chan struct{}, 2)
		first := newBackend(t, hang(cancelled))
		second := newBackend(t, hang(cancelled))
		proxy := newProxy(t, FanOut(), []string{first.srv.URL, second.srv.URL}, func(p *Proxy) { p.Timeout = 50 * time.Millisecond })
		resp, _ := get(t, proxy.URL+"/")
		assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
		// Every request that reached an endpoint is cancelled (on a busy
		// machine one may not have got there in time).
		for range first.hits.Load() + second.hits.Load() {
			waitFor(t, cancelled, "cancelling an endpoint")
		}
	})
	t.Run("the request deadline ran out in serial mode: 504, the endpoint not ejected", func(t *testing.T) {
		t.Parallel()
		cancelled := make(chan struct{}, 2)
		first := newBackend(t, hang(cancelled))
		second := newBackend(t, answer(http.StatusOK, "never asked"))
		// Serial attempts run inline: the request's deadline, not a select,
		// must cut the first one, and end the request rather than fail over.
		proxy, logs, served := newLoggedProxy(t, Serial(), []string{first.srv.URL, second.srv.URL}, func(p *Proxy) { p.Timeout = 50 * time.Millisecond })
		resp, body := get(t, proxy.URL+"/")
		assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode, body)
		waitFor(t, cancelled, "cancelling the endpoint")
		waitFor(t, served, "the request's end")
		assert.Zero(t, second.hits.Load())
		assert.Contains(t, logs.String(), "no terminal answer within the time-out of 50ms")
	})
	t.Run("every attempt timed out: 504", func(t *testing.T) {
		t.Parallel()
		cancelled := make(chan struct{}, 2)
		first := newBackend(t, hang(cancelled))
		second := newBackend(t, hang(cancelled))
		proxy := newProxy(t, Serial(), []string{first.srv.URL, second.srv.URL}, func(p *Proxy) { p.TryTimeout = 200 * time.Millisecond })
		resp, _ := get(t, proxy.URL+"/")
		assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
		assert.Equal(t, int32(1), second.hits.Load(), "the second endpoint is tried after the first timed out")
	})
}

func TestTryTimeoutMovesOn(t *testing.T) {
	t.Parallel()
	cancelled := make(chan struct{}, 1)
	stalled := newBackend(t, hang(cancelled))
	healthy := newBackend(t, answer(200, "healthy"))
	// The healthy endpoint must answer within the try time-out too, so it is
	// generous; the stalled one never answers at all.
	proxy := newProxy(t, Serial(), []string{stalled.srv.URL, healthy.srv.URL}, func(p *Proxy) { p.TryTimeout = time.Second })
	resp, body := get(t, proxy.URL+"/")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "healthy", body)
	waitFor(t, cancelled, "cancelling the stalled attempt")
}

func TestTryTimeoutDoesNotCutAWinnersBody(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	streaming := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "start,")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "end")
	})
	const timeout = 500 * time.Millisecond
	proxy := newProxy(t, Serial(), []string{streaming.srv.URL}, func(p *Proxy) {
		p.TryTimeout = timeout
		p.Timeout = timeout
	})
	resp, err := client(t).Get(proxy.URL + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	reader := bufio.NewReader(resp.Body)
	start := make([]byte, len("start,"))
	_, err = io.ReadFull(reader, start)
	require.NoError(t, err)
	// Let both time-outs pass (the headers came first); the body must go on.
	time.Sleep(timeout + 100*time.Millisecond)
	close(release)
	rest, err := io.ReadAll(reader)
	require.NoError(t, err)
	assert.Equal(t, "start,end", string(start)+string(rest))
}

func TestClientDisconnectCancelsEveryAttempt(t *testing.T) {
	t.Parallel()
	cancelled := make(chan struct{}, 2)
	arrived := make(chan struct{}, 2)
	handler := func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		hang(cancelled)(w, r)
	}
	first := newBackend(t, handler)
	second := newBackend(t, handler)
	proxy := newProxy(t, FanOut(), []string{first.srv.URL, second.srv.URL})

	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, proxy.URL+"/", nil)
	require.NoError(t, err)
	errs := make(chan error, 1)
	go func() {
		resp, err := client(t).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errs <- err
	}()
	waitFor(t, arrived, "first attempt")
	waitFor(t, arrived, "second attempt")
	cancel()
	require.Error(t, <-errs)
	waitFor(t, cancelled, "cancelling an attempt")
	waitFor(t, cancelled, "cancelling the other attempt")
}

func TestResponsePassesThroughIntact(t *testing.T) {
	t.Parallel()
	upstream := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "must not pass")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"ok":true}`)
		w.Header().Set("X-Checksum", "abc123")
	})
	proxy := newProxy(t, FanOut(), []string{upstream.srv.URL})
	resp, body := get(t, proxy.URL+"/")
	assert.Equal(t, http.StatusAccepted, resp.StatusCode)
	assert.Equal(t, `{"ok":true}`, body)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Equal(t, []string{"a=1", "b=2"}, resp.Header.Values("Set-Cookie"))
	assert.Empty(t, resp.Header.Get("X-Hop"))
	assert.Empty(t, resp.Header.Get("Keep-Alive"))
	assert.Equal(t, "abc123", resp.Trailer.Get("X-Checksum"))
}

func TestRequestReachesEndpointRewritten(t *testing.T) {
	t.Parallel()
	seen := make(chan *http.Request, 1)
	upstream := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r
	})
	proxy := newProxy(t, Serial(), []string{upstream.srv.URL + "/public-apis"})
	req, err := http.NewRequest(http.MethodGet, proxy.URL+"/v1/a%2Fb?q=%20x&y", nil)
	require.NoError(t, err)
	req.Header.Set("Connection", "X-Private")
	req.Header.Set("X-Private", "secret")
	req.Header.Set("X-Kept", "kept")
	resp, err := client(t).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	got := <-seen
	assert.Equal(t, "/public-apis/v1/a%2Fb", got.URL.EscapedPath())
	assert.Equal(t, "q=%20x&y", got.URL.RawQuery)
	assert.Equal(t, strings.TrimPrefix(upstream.srv.URL, "http://"), got.Host)
	assert.Equal(t, "127.0.0.1", got.Header.Get("X-Forwarded-For"))
	assert.Equal(t, strings.TrimPrefix(proxy.URL, "http://"), got.Header.Get("X-Forwarded-Host"))
	assert.Equal(t, "http", got.Header.Get("X-Forwarded-Proto"))
	assert.Empty(t, got.Header.Get("X-Private"))
	assert.Equal(t, "kept", got.Header.Get("X-Kept"))
}

func TestServerSentEventsArriveOneByOne(t *testing.T) {
	t.Parallel()
	next := make(chan struct{})
	upstream := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			_, _ = io.WriteString(w, "data: event "+string(rune('0'+i))+"\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	})
	proxy := newProxy(t, FanOut(), []string{upstream.srv.URL})
	resp, err := client(t).Get(proxy.URL + "/events")
	require.NoError(t, err)
	defer resp.Body.Close()
	reader := bufio.NewReader(resp.Body)
	for i := range 3 {
		// The upstream sends event i+1 only after the client has read event i,
		// so each must have been flushed through on its own.
		line, err := reader.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, "data: event "+string(rune('0'+i))+"\n", line)
		_, err = reader.ReadString('\n')
		require.NoError(t, err)
		next <- struct{}{}
	}
}

func TestWinnerFailingMidBodyAbortsTheClient(t *testing.T) {
	t.Parallel()
	upstream := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "only part of it")
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	other := newBackend(t, answer(200, strings.Repeat("o", 1000)))
	proxy := newProxy(t, Serial(), []string{upstream.srv.URL, other.srv.URL})
	resp, err := client(t).Get(proxy.URL + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	assert.Error(t, err, "a cut body must not look complete")
	assert.Equal(t, "only part of it", string(body))
	assert.Equal(t, int32(0), other.hits.Load())
}

// TestLargeResponseIsStreamed checks that the proxy's memory use does not grow
// with the response: it allocates far less than the body it copies.
func TestLargeResponseIsStreamed(t *testing.T) {
	const size = 256 << 20
	upstream := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "268435456")
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
		for written := 0; written < size; written += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	proxy := newProxy(t, Serial(), []string{upstream.srv.URL})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	resp, err := client(t).Get(proxy.URL + "/big")
	require.NoError(t, err)
	n, err := io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	runtime.ReadMemStats(&after)
	assert.Equal(t, int64(size), n)
	allocated := after.TotalAlloc - before.TotalAlloc
	assert.Less(t, allocated, uint64(size/8), "allocated %d bytes to pass %d", allocated, size)
}

func TestExpectContinueIsAnsweredByTheProxy(t *testing.T) {
	t.Parallel()
	expects := make(chan string, 1)
	upstream := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		expects <- r.Header.Get("Expect")
	})
	proxy := newProxy(t, Serial(), []string{upstream.srv.URL})
	req, err := http.NewRequest(http.MethodPost, proxy.URL+"/", strings.NewReader("body"))
	require.NoError(t, err)
	req.Header.Set("Expect", "100-continue")
	resp, err := client(t).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "body", receive(t, upstream.bodies))
	assert.Empty(t, <-expects, "the endpoint is not asked for 100 Continue again")
}

func TestClientLeavingMidBodyIsLoggedAsSuch(t *testing.T) {
	t.Parallel()
	upstreamCancelled := make(chan struct{}, 1)
	upstream := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "start,")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		upstreamCancelled <- struct{}{}
	})
	proxy, logs, served := newLoggedProxy(t, Serial(), []string{upstream.srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, proxy.URL+"/", nil)
	require.NoError(t, err)
	resp, err := client(t).Do(req)
	require.NoError(t, err)
	_, err = io.ReadFull(resp.Body, make([]byte, len("start,")))
	require.NoError(t, err)
	cancel()
	resp.Body.Close()
	waitFor(t, upstreamCancelled, "cancelling the upstream request")
	waitFor(t, served, "the request's end")
	assert.Contains(t, logs.String(), `"status":499`)
	assert.Contains(t, logs.String(), `"message":"client went away"`)
	assert.NotContains(t, logs.String(), `"level":"warn"`, "a client leaving is not an endpoint failure")
}

func TestFanOutLosersAreLoggedAsCancelled(t *testing.T) {
	t.Parallel()
	slowHasIt := make(chan struct{})
	slow := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		close(slowHasIt)
		<-r.Context().Done()
	})
	fast := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		<-slowHasIt
		answer(200, "fast")(w, r)
	})
	proxy, logs, served := newLoggedProxy(t, FanOut(), []string{fast.srv.URL, slow.srv.URL})
	resp, _ := get(t, proxy.URL+"/")
	assert.Equal(t, 200, resp.StatusCode)
	waitFor(t, served, "the request's end")
	assert.Contains(t, logs.String(), `"endpoint":1,"attempt":2`)
	assert.Contains(t, logs.String(), `"message":"attempt cancelled"`)
}

func TestRequestLineLeavesTheQueryOut(t *testing.T) {
	t.Parallel()
	upstream := newBackend(t, answer(200, "ok"))
	proxy, logs, served := newLoggedProxy(t, Serial(), []string{upstream.srv.URL})
	resp, _ := get(t, proxy.URL+"/v1/data?api_key=secret")
	assert.Equal(t, 200, resp.StatusCode)
	waitFor(t, served, "the request's end")
	assert.Contains(t, logs.String(), `"path":"/v1/data"`)
	assert.NotContains(t, logs.String(), "secret")
}

func TestEndpointBreakingMidBodyIsLoggedAsAborted(t *testing.T) {
	t.Parallel()
	upstream := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = io.WriteString(w, "only part of it")
		w.(http.Flusher).Flush()
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	})
	proxy, logs, served := newLoggedProxy(t, Serial(), []string{upstream.srv.URL})
	resp, err := client(t).Get(proxy.URL + "/")
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Error(t, err)
	waitFor(t, served, "the request's end")
	assert.Contains(t, logs.String(), `"message":"response aborted"`, "the endpoint failed, not the client")
	assert.NotContains(t, logs.String(), `"status":499`)
}

func TestStreamedBodyIsLogged(t *testing.T) {
	t.Parallel()
	upstream := newBackend(t, answer(200, "ok"))
	proxy, logs, served := newLoggedProxy(t, Serial(), []string{upstream.srv.URL}, func(p *Proxy) { p.MaxBodyBuffer = 4 })
	resp, _ := do(t, http.MethodPost, proxy.URL+"/", strings.NewReader("longer than four bytes"))
	assert.Equal(t, 200, resp.StatusCode)
	waitFor(t, served, "the request's end")
	assert.Contains(t, logs.String(), `"body":"over --max-body-buffer: streamed to one endpoint, no other attempt"`)
}

func TestClientLeavingDuringItsUploadIsLoggedAsSuch(t *testing.T) {
	t.Parallel()
	upstream := newBackend(t, answer(200, "ok"))
	proxy, logs, served := newLoggedProxy(t, Serial(), []string{upstream.srv.URL})
	conn, err := net.Dial("tcp", strings.TrimPrefix(proxy.URL, "http://"))
	require.NoError(t, err)
	_, err = io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
	require.NoError(t, err)
	require.NoError(t, conn.Close())
	waitFor(t, served, "the request's end")
	assert.Contains(t, logs.String(), `"status":499`)
	assert.Contains(t, logs.String(), `"message":"client went away"`)
	assert.Equal(t, int32(0), upstream.hits.Load(), "a cut-short body is not sent on")
}

func TestWinnerStallingMidBodyIsCutAfterTheIdleTimeout(t *testing.T) {
	t.Parallel()
	cancelled := make(chan struct{}, 1)
	upstream := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = io.WriteString(w, "part")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		cancelled <- struct{}{}
	})
	proxy, logs, served := newLoggedProxy(t, Serial(), []string{upstream.srv.URL}, func(p *Proxy) {
		p.ResponseIdleTimeout = 50 * time.Millisecond
	})
	resp, err := client(t).Get(proxy.URL + "/")
	require.NoError(t, err, "the headers arrive before the stall")
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Error(t, err, "a cut body must not look complete")
	assert.Equal(t, "part", string(body))
	waitFor(t, cancelled, "the stalled endpoint's cancellation")
	waitFor(t, served, "the request's end")
	assert.Contains(t, logs.String(), endpointresponse.ErrResponseIdle.Error())
	assert.Contains(t, logs.String(), `"message":"response aborted"`)
}

func TestSlowButSteadyBodyIsNotCut(t *testing.T) {
	t.Parallel()
	upstream := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		for i := range 12 {
			fmt.Fprintf(w, "event %d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	})
	// Each pause is a tenth of the idle time-out, the whole body longer.
	proxy := newProxy(t, Serial(), []string{upstream.srv.URL}, func(p *Proxy) { p.ResponseIdleTimeout = time.Second })
	resp, body := get(t, proxy.URL+"/")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, 12, strings.Count(body, "event "), body)
}

func TestAClientThatLeftGetsNoMadeUpAnswer(t *testing.T) {
	t.Parallel()
	upstream := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	tests := []struct{ name, raw string }{
		{"while its attempt waits", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"during its upload", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			proxy, logs, served := newLoggedProxy(t, Serial(), []string{upstream.srv.URL})
			conn, err := net.Dial("tcp", strings.TrimPrefix(proxy.URL, "http://"))
			require.NoError(t, err)
			defer conn.Close()
			require.NoError(t, conn.SetDeadline(time.Now().Add(hangGuard)))
			_, err = io.WriteString(conn, tt.raw)
			require.NoError(t, err)
			// Half-closed: the server takes the client for gone, though it
			// could still read an answer.
			require.NoError(t, conn.(*net.TCPConn).CloseWrite())
			got, err := io.ReadAll(conn)
			require.NoError(t, err)
			assert.Empty(t, string(got), "an answer the proxy never had, such as an empty 200")
			waitFor(t, served, "the request's end")
			assert.Contains(t, logs.String(), `"status":499`)
		})
	}
}

package endpointresponse

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/forward"
	"balancing-reverse-proxy/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// countingBody is a response body that counts its closes.
type countingBody struct {
	io.Reader
	closes atomic.Int32
}

func (b *countingBody) Close() error {
	b.closes.Add(1)
	return nil
}

// failingBody yields data and then err.
type failingBody struct {
	data []byte
	err  error
}

func (b *failingBody) Read(p []byte) (int, error) {
	if len(b.data) == 0 {
		return 0, b.err
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}

func (*failingBody) Close() error { return nil }

// trailerAtEOF fills resp.Trailer when the body hits EOF, as the transport does.
type trailerAtEOF struct {
	io.Reader
	resp    *http.Response
	trailer http.Header
}

func (b *trailerAtEOF) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err == io.EOF {
		if b.resp.Trailer == nil {
			b.resp.Trailer = http.Header{}
		}
		for name, values := range b.trailer {
			b.resp.Trailer[name] = values
		}
	}
	return n, err
}

func (*trailerAtEOF) Close() error { return nil }

// chunkReader yields its data a few bytes per Read, so a copy takes several
// writes.
type chunkReader struct {
	data string
	size int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.data == "" {
		return 0, io.EOF
	}
	n := copy(p, c.data[:min(c.size, len(c.data))])
	c.data = c.data[n:]
	return n, nil
}

// eventRecorder is a ResponseRecorder that logs body writes and flushes in order.
type eventRecorder struct {
	*httptest.ResponseRecorder
	events []string
}

func (r *eventRecorder) Write(p []byte) (int, error) {
	r.events = append(r.events, "write")
	return r.ResponseRecorder.Write(p)
}

func (r *eventRecorder) Flush() {
	r.events = append(r.events, "flush")
	r.ResponseRecorder.Flush()
}

// flushedEachWrite reports whether every write was followed by a flush before
// the next write.
func (r *eventRecorder) flushedEachWrite() bool {
	for i, event := range r.events {
		if event == "write" && (i+1 == len(r.events) || r.events[i+1] != "flush") {
			return false
		}
	}
	return true
}

// flushedMidBody reports whether a flush came between two writes.
func (r *eventRecorder) flushedMidBody() bool {
	first, last := -1, -1
	for i, event := range r.events {
		if event == "write" {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	for i := first + 1; first >= 0 && i < last; i++ {
		if r.events[i] == "flush" {
			return true
		}
	}
	return false
}

// failingWriter is a ResponseWriter whose body writes or flushes fail.
type failingWriter struct {
	header    http.Header
	status    int
	writeErr  error
	flushErr  error // once some body is written
	written   int
	allowance int // bytes accepted before writeErr applies
}

func (w *failingWriter) Header() http.Header { return w.header }

func (w *failingWriter) WriteHeader(status int) { w.status = status }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.writeErr == nil {
		w.written += len(p)
		return len(p), nil
	}
	n := min(len(p), w.allowance-w.written)
	w.written += n
	if n < len(p) {
		return n, w.writeErr
	}
	return n, nil
}

func (w *failingWriter) FlushError() error {
	if w.written == 0 {
		return nil
	}
	return w.flushErr
}

func endpointAt(t *testing.T, raw string, index int) endpoints.Endpoint {
	t.Helper()
	list, err := endpoints.Parse(raw)
	require.NoError(t, err)
	require.Len(t, list, 1)
	e := list[0]
	e.Index = index
	return e
}

func TestOutcomeStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		outcome Outcome
		want    int
	}{
		{name: "zero", outcome: Outcome{}, want: 0},
		{name: "failed", outcome: Outcome{Err: errors.New("dial refused")}, want: 0},
		{name: "ok", outcome: Outcome{Response: &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}}, want: 200},
		{name: "not found", outcome: Outcome{Response: &http.Response{StatusCode: http.StatusNotFound, Body: http.NoBody}}, want: 404},
		{name: "bad gateway", outcome: Outcome{Response: &http.Response{StatusCode: http.StatusBadGateway, Body: http.NoBody}}, want: 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, tt.outcome.Status())
		})
	}
}

func TestOutcomeClose(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		hasBody    bool
		err        error
		closeCalls int
		wantCloses int32
	}{
		{name: "once", hasBody: true, closeCalls: 1, wantCloses: 1},
		{name: "twice closes the body once", hasBody: true, closeCalls: 2, wantCloses: 1},
		{name: "three times closes the body once", hasBody: true, closeCalls: 3, wantCloses: 1},
		{name: "failed outcome", err: errors.New("boom"), closeCalls: 2},
		{name: "zero outcome", closeCalls: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := &countingBody{Reader: strings.NewReader("x")}
			outcome := &Outcome{Err: tt.err}
			if tt.hasBody {
				outcome.Response = &http.Response{StatusCode: http.StatusOK, Body: body}
			}
			for range tt.closeCalls {
				assert.NotPanics(t, outcome.Close)
			}
			assert.Equal(t, tt.wantCloses, body.closes.Load())
		})
	}
}

func TestCopyToRecorder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		status        int
		header        http.Header
		body          string
		contentLength int64
		trailer       http.Header // announced before the body, values at EOF
		lateTrailer   http.Header // not announced, appears at EOF
		wantHeader    http.Header
		wantAbsent    []string
		wantTrailer   http.Header
		// wantStreamed: flushed write by write, else never between writes.
		wantStreamed bool
	}{
		{
			name:          "status headers and body",
			status:        http.StatusCreated,
			header:        http.Header{"Content-Type": {"application/json"}, "Set-Cookie": {"a=1", "b=2"}, "Content-Length": {"11"}},
			body:          `{"ok":true}`,
			contentLength: 11,
			wantHeader:    http.Header{"Content-Type": {"application/json"}, "Set-Cookie": {"a=1", "b=2"}, "Content-Length": {"11"}},
		},
		{
			name:   "hop-by-hop response headers dropped",
			status: http.StatusOK,
			header: http.Header{
				"Connection":         {"keep-alive, X-Secret"},
				"X-Secret":           {"s"},
				"Keep-Alive":         {"timeout=5"},
				"Proxy-Connection":   {"keep-alive"},
				"Proxy-Authenticate": {"Basic"},
				"Transfer-Encoding":  {"chunked"},
				"Upgrade":            {"h2c"},
				"Te":                 {"trailers"},
				"Trailer":            {"X-Bogus"},
				"Etag":               {`"v1"`},
			},
			body:          "hello",
			contentLength: 5,
			wantHeader:    http.Header{"Etag": {`"v1"`}},
			wantAbsent:    []string{"Connection", "X-Secret", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Transfer-Encoding", "Upgrade", "Te", "Trailer"},
		},
		{
			name:          "no content",
			status:        http.StatusNoContent,
			header:        http.Header{},
			contentLength: 0,
		},
		{
			name:          "unknown length is flushed",
			status:        http.StatusOK,
			header:        http.Header{"Content-Type": {"application/octet-stream"}},
			body:          "streamed",
			contentLength: -1,
			wantStreamed:  true,
		},
		{
			name:          "event stream with a length is flushed",
			status:        http.StatusOK,
			header:        http.Header{"Content-Type": {"Text/Event-Stream; charset=utf-8"}},
			body:          "data: 1\n\n",
			contentLength: 9,
			wantStreamed:  true,
		},
		{
			name:          "known length is not flushed",
			status:        http.StatusOK,
			header:        http.Header{"Content-Type": {"text/plain"}},
			body:          "plain",
			contentLength: 5,
			wantStreamed:  false,
		},
		{
			name:          "announced trailer",
			status:        http.StatusOK,
			header:        http.Header{"Content-Type": {"text/plain"}},
			body:          "body",
			contentLength: -1,
			trailer:       http.Header{"X-Checksum": {"abc123"}},
			wantTrailer:   http.Header{"X-Checksum": {"abc123"}},
			wantStreamed:  true,
		},
		{
			name:          "unannounced trailer",
			status:        http.StatusOK,
			header:        http.Header{},
			body:          "body",
			contentLength: -1,
			lateTrailer:   http.Header{"X-Late": {"v"}},
			wantTrailer:   http.Header{"X-Late": {"v"}},
			wantStreamed:  true,
		},
		{
			name:          "announced and unannounced trailers",
			status:        http.StatusOK,
			header:        http.Header{},
			body:          "body",
			contentLength: -1,
			trailer:       http.Header{"X-Checksum": {"abc123"}},
			lateTrailer:   http.Header{"X-Late": {"v"}},
			wantTrailer:   http.Header{"X-Checksum": {"abc123"}, "X-Late": {"v"}},
			wantStreamed:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := &http.Response{
				StatusCode:    tt.status,
				Header:        tt.header,
				ContentLength: tt.contentLength,
			}
			atEOF := http.Header{}
			if tt.trailer != nil {
				// The transport knows announced names before the body, and
				// their values only at its end.
				resp.Trailer = http.Header{}
				for name, values := range tt.trailer {
					resp.Trailer[name] = nil
					atEOF[name] = values
				}
			}
			for name, values := range tt.lateTrailer {
				atEOF[name] = values
			}
			body := &countingBody{Reader: &trailerAtEOF{Reader: &chunkReader{data: tt.body, size: 3}, resp: resp, trailer: atEOF}}
			resp.Body = body
			outcome := &Outcome{Endpoint: endpointAt(t, "http://127.0.0.1:9", 2), Attempt: 1, Response: resp}

			rec := &eventRecorder{ResponseRecorder: httptest.NewRecorder()}
			n, err := outcome.Copy(rec, 0)
			require.NoError(t, err)
			assert.Equal(t, int64(len(tt.body)), n)
			assert.Zero(t, body.closes.Load(), "Copy leaves closing to Close")

			got := rec.Result()
			t.Cleanup(func() { got.Body.Close() })
			assert.Equal(t, tt.status, got.StatusCode)
			assert.Equal(t, tt.body, rec.Body.String())
			for name, values := range tt.wantHeader {
				assert.Equal(t, values, got.Header[name], "header %s", name)
			}
			for _, name := range tt.wantAbsent {
				assert.NotContains(t, got.Header, name)
			}
			if tt.wantStreamed {
				assert.True(t, rec.flushedEachWrite(), "write by write: %v", rec.events)
			} else {
				assert.False(t, rec.flushedMidBody(), "not flushed between writes: %v", rec.events)
			}

			if tt.wantTrailer == nil {
				assert.Empty(t, got.Trailer)
			} else {
				assert.Equal(t, tt.wantTrailer, got.Trailer)
			}
			var announced []string
			for name := range tt.trailer {
				announced = append(announced, name)
			}
			assert.ElementsMatch(t, announced, got.Header.Values("Trailer"), "only announced trailers are announced")
		})
	}
}

func TestCopyErrors(t *testing.T) {
	t.Parallel()
	readErr := errors.New("connection reset by upstream")
	writeErr := errors.New("broken pipe")
	flushErr := errors.New("flush failed")
	tests := []struct {
		name          string
		body          io.ReadCloser
		contentLength int64
		writer        *failingWriter
		wantWritten   int64
		wantIs        error
		wantClient    bool
		wantIn        string
	}{
		{
			name:          "endpoint read fails mid-body",
			body:          &failingBody{data: []byte("partial"), err: readErr},
			contentLength: 100,
			writer:        &failingWriter{header: http.Header{}},
			wantWritten:   7,
			wantIs:        readErr,
			wantIn:        "endpoint 3",
		},
		{
			name:          "endpoint read fails at once",
			body:          &failingBody{err: io.ErrUnexpectedEOF},
			contentLength: 100,
			writer:        &failingWriter{header: http.Header{}},
			wantWritten:   0,
			wantIs:        io.ErrUnexpectedEOF,
			wantIn:        "endpoint 3",
		},
		{
			name:          "client write fails",
			body:          io.NopCloser(strings.NewReader("0123456789")),
			contentLength: 10,
			writer:        &failingWriter{header: http.Header{}, writeErr: writeErr, allowance: 4},
			wantWritten:   4,
			wantIs:        writeErr,
			wantClient:    true,
		},
		{
			name:          "client flush fails mid-stream",
			body:          io.NopCloser(strings.NewReader("data: 1\n\n")),
			contentLength: -1,
			writer:        &failingWriter{header: http.Header{}, flushErr: flushErr},
			wantWritten:   9,
			wantIs:        flushErr,
			wantClient:    true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := &http.Response{
				StatusCode:    http.StatusOK,
				Header:        http.Header{"Content-Type": {"text/plain"}},
				Body:          tt.body,
				ContentLength: tt.contentLength,
				Trailer:       http.Header{"X-Checksum": {"never"}},
			}
			outcome := &Outcome{Endpoint: endpointAt(t, "http://127.0.0.1:9", 3), Attempt: 2, Response: resp}
			n, err := outcome.Copy(tt.writer, 0)
			require.Error(t, err)
			assert.Equal(t, tt.wantWritten, n)
			assert.Equal(t, http.StatusOK, tt.writer.status, "the status went out before the body")
			assert.ErrorIs(t, err, tt.wantIs)
			assert.Equal(t, tt.wantClient, errors.Is(err, ErrClientWrite), "ErrClientWrite in %v", err)
			if tt.wantIn != "" {
				assert.Contains(t, err.Error(), tt.wantIn)
			}
			assert.Empty(t, tt.writer.header.Get("X-Checksum"), "no trailers after a failed copy")
		})
	}
}

// copyResult is what the proxy-side handler reports about one Copy.
type copyResult struct {
	written int64
	err     error
}

// newCopyProxy starts a server that forwards each request to upstream, as one
// attempt, and copies the outcome to its client with Copy. Each Copy's result
// is sent on the returned channel.
func newCopyProxy(t *testing.T, upstream string) (*httptest.Server, <-chan copyResult) {
	t.Helper()
	endpoint := endpointAt(t, upstream, 5)
	transport := wire.New(wire.Options{MaxIdlePerHost: 4})
	t.Cleanup(transport.CloseIdleConnections)
	results := make(chan copyResult, 8)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := outgoing(r.Context(), r, endpoint)
		resp, err := transport.RoundTrip(out)
		outcome := &Outcome{Endpoint: endpoint, Attempt: 1, Response: resp, Err: err}
		defer outcome.Close()
		if err != nil {
			results <- copyResult{err: err}
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		n, err := outcome.Copy(w, 0)
		results <- copyResult{written: n, err: err}
		if err != nil {
			panic(http.ErrAbortHandler)
		}
	}))
	t.Cleanup(proxy.Close)
	return proxy, results
}

func newUpstream(t *testing.T, handler http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	require.True(t, strings.HasPrefix(srv.URL, "http://127.0.0.1:"), "upstream on loopback: %s", srv.URL)
	return srv
}

func TestCopyThroughServers(t *testing.T) {
	t.Parallel()
	upstream := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Custom", "kept")
		h.Add("Set-Cookie", "a=1")
		h.Add("Set-Cookie", "b=2")
		h.Set("Connection", "X-Secret")
		h.Set("X-Secret", "dropped")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set("Trailer", "X-Checksum")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "hello, ")
		_, _ = io.WriteString(w, "world\n")
		h.Set("X-Checksum", "sum-42")
		h.Set(http.TrailerPrefix+"X-Unannounced", "late")
	})
	proxy, results := newCopyProxy(t, upstream.URL)

	resp, err := proxy.Client().Get(proxy.URL + "/any")
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })

	assert.Equal(t, http.StatusAccepted, resp.StatusCode)
	assert.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Equal(t, "kept", resp.Header.Get("X-Custom"))
	assert.Equal(t, []string{"a=1", "b=2"}, resp.Header.Values("Set-Cookie"))
	for _, name := range []string{"X-Secret", "Keep-Alive", "Proxy-Authenticate"} {
		assert.NotContains(t, resp.Header, name)
	}
	assert.NotContains(t, resp.Header.Values("Connection"), "X-Secret")
	assert.Contains(t, resp.Trailer, "X-Checksum", "the trailer is announced before the body")
	assert.NotContains(t, resp.Trailer, "X-Unannounced")

	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "hello, world\n", string(body))
	assert.Equal(t, "sum-42", resp.Trailer.Get("X-Checksum"))
	assert.Equal(t, "late", resp.Trailer.Get("X-Unannounced"))

	result := <-results
	require.NoError(t, result.err)
	assert.Equal(t, int64(len("hello, world\n")), result.written)
}

// TestCopyStreams proves flushing without timing: the upstream sends event 1
// and then waits until the client has read it through the proxy before it sends
// event 2.
func TestCopyStreams(t *testing.T) {
	t.Parallel()
	const first, second = "data: one\n\n", "data: two\n\n"
	tests := []struct {
		name        string
		contentType string
		// setLength makes the upstream declare the full length, so only the
		// content type says to stream.
		setLength bool
	}{
		{name: "event stream of unknown length", contentType: "text/event-stream"},
		{name: "event stream of known length", contentType: "text/event-stream; charset=utf-8", setLength: true},
		{name: "other content of unknown length", contentType: "application/octet-stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			var releaseOnce sync.Once
			unblock := func() { releaseOnce.Do(func() { close(release) }) }
			upstream := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				if tt.setLength {
					w.Header().Set("Content-Length", strconv.Itoa(len(first)+len(second)))
				}
				_, _ = io.WriteString(w, first)
				if err := http.NewResponseController(w).Flush(); err != nil {
					return
				}
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				_, _ = io.WriteString(w, second)
			})
			// Registered after the upstream, so it runs first and lets a stuck
			// handler finish before the server closes.
			t.Cleanup(unblock)
			proxy, results := newCopyProxy(t, upstream.URL)

			resp, err := proxy.Client().Get(proxy.URL + "/events")
			require.NoError(t, err)
			t.Cleanup(func() { resp.Body.Close() })
			require.Equal(t, http.StatusOK, resp.StatusCode)

			reader := bufio.NewReader(resp.Body)
			got := make(chan string, 1)
			go func() {
				buf := make([]byte, len(first))
				n, _ := io.ReadFull(reader, buf)
				got <- string(buf[:n])
			}()
			select {
			case event := <-got:
				assert.Equal(t, first, event)
			case <-time.After(30 * time.Second):
				// A deadlock guard, not a timing assertion: without a flush the
				// first event never arrives while the upstream holds back the
				// second.
				unblock()
				t.Fatal("the first event did not reach the client before the second was sent")
			}

			unblock()
			rest, err := io.ReadAll(reader)
			require.NoError(t, err)
			assert.Equal(t, second, string(rest))

			result := <-results
			require.NoError(t, result.err)
			assert.Equal(t, int64(len(first)+len(second)), result.written)
		})
	}
}

// TestCopySendsHeadersFirst has an endpoint send its status line and then hold
// back a body of known length: the client must see the status before the body
// is released.
func TestCopySendsHeadersFirst(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	upstream := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "5")
		w.WriteHeader(http.StatusTeapot)
		if err := http.NewResponseController(w).Flush(); err != nil {
			return
		}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "hello")
	})
	t.Cleanup(unblock)
	proxy, results := newCopyProxy(t, upstream.URL)

	type answer struct {
		resp *http.Response
		err  error
	}
	answers := make(chan answer, 1)
	go func() {
		resp, err := proxy.Client().Get(proxy.URL + "/slow-body")
		answers <- answer{resp, err}
	}()
	var got answer
	select {
	case got = <-answers:
	case <-time.After(30 * time.Second):
		// A deadlock guard, not a timing assertion.
		unblock()
		t.Fatal("the status did not reach the client before the body was sent")
	}
	require.NoError(t, got.err)
	t.Cleanup(func() { got.resp.Body.Close() })
	assert.Equal(t, http.StatusTeapot, got.resp.StatusCode)
	assert.Equal(t, int64(5), got.resp.ContentLength)

	unblock()
	body, err := io.ReadAll(got.resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(body))
	result := <-results
	require.NoError(t, result.err)
	assert.Equal(t, int64(5), result.written)
}

// patternReader yields n deterministic bytes without holding them.
type patternReader struct {
	off, n int64
}

func (p *patternReader) Read(buf []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	buf = buf[:min(int64(len(buf)), p.n-p.off)]
	for i := range buf {
		x := p.off + int64(i)
		buf[i] = byte(x*31 + x>>13)
	}
	p.off += int64(len(buf))
	return len(buf), nil
}

func TestCopyLargeBody(t *testing.T) {
	t.Parallel()
	const size = 64 << 20
	want := sha256.New()
	_, err := io.Copy(want, &patternReader{n: size})
	require.NoError(t, err)
	wantSum := fmt.Sprintf("%x", want.Sum(nil))

	tests := []struct {
		name      string
		setLength bool
	}{
		{name: "known length", setLength: true},
		{name: "unknown length", setLength: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			upstream := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/octet-stream")
				if tt.setLength {
					w.Header().Set("Content-Length", strconv.Itoa(size))
				}
				_, _ = io.Copy(w, &patternReader{n: size})
			})
			proxy, results := newCopyProxy(t, upstream.URL)

			resp, err := proxy.Client().Get(proxy.URL + "/big")
			require.NoError(t, err)
			t.Cleanup(func() { resp.Body.Close() })
			require.Equal(t, http.StatusOK, resp.StatusCode)
			if tt.setLength {
				assert.Equal(t, int64(size), resp.ContentLength)
			} else {
				assert.Equal(t, int64(-1), resp.ContentLength)
			}

			got := sha256.New()
			n, err := io.Copy(got, resp.Body)
			require.NoError(t, err)
			assert.Equal(t, int64(size), n)
			assert.Equal(t, wantSum, fmt.Sprintf("%x", got.Sum(nil)))

			result := <-results
			require.NoError(t, result.err)
			assert.Equal(t, int64(size), result.written)
		})
	}
}

// TestCopyUpstreamCutOff has a real endpoint promise more than it sends, then
// drop the connection.
func TestCopyUpstreamCutOff(t *testing.T) {
	t.Parallel()
	upstream := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = io.WriteString(w, "only ten b")
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	})
	transport := wire.New(wire.Options{MaxIdlePerHost: 1})
	t.Cleanup(transport.CloseIdleConnections)
	endpoint := endpointAt(t, upstream.URL, 4)
	in := httptest.NewRequest(http.MethodGet, "/cut", nil)
	resp, err := transport.RoundTrip(outgoing(t.Context(), in, endpoint))
	require.NoError(t, err)
	outcome := &Outcome{Endpoint: endpoint, Attempt: 1, Response: resp}
	t.Cleanup(outcome.Close)

	rec := httptest.NewRecorder()
	n, err := outcome.Copy(rec, 0)
	require.Error(t, err)
	assert.Equal(t, int64(10), n)
	assert.Equal(t, "only ten b", rec.Body.String())
	assert.Contains(t, err.Error(), "endpoint 4")
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.NotErrorIs(t, err, ErrClientWrite)
}

// handRolled returns a response with body and a known length, as an endpoint
// would send it.
func handRolled(body io.ReadCloser, length int64, trailer http.Header) *http.Response {
	header := http.Header{"Content-Length": {strconv.FormatInt(length, 10)}}
	return &http.Response{StatusCode: http.StatusOK, Header: header, ContentLength: length, Body: body, Trailer: trailer}
}

// TestFlushSendsTheWholeAnswer has the handler go on after Copy and Flush, as
// a fan-out handler does while it reads out the losers: the client must have
// the whole answer by then.
func TestFlushSendsTheWholeAnswer(t *testing.T) {
	t.Parallel()
	clientDone := make(chan struct{})
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o := &Outcome{Response: handRolled(io.NopCloser(strings.NewReader("hello")), 5, nil)}
		if _, err := o.Copy(w, 0); err != nil {
			return
		}
		if err := Flush(w); err != nil {
			return
		}
		select {
		case <-clientDone:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(server.Close)
	t.Cleanup(func() { close(clientDone) })
	client := server.Client()
	client.Timeout = 30 * time.Second // a deadlock guard, not a timing assertion
	resp, err := client.Get(server.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "the body arrives while the handler is still running")
	assert.Equal(t, "hello", string(body))
}

// eofAfter is a body whose end comes a pause after its bytes, so that the
// head timer fires around the time Copy sets the trailers.
type eofAfter struct {
	io.Reader
	pause time.Duration
	ended bool
}

func (b *eofAfter) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err == io.EOF && !b.ended {
		b.ended = true
		time.Sleep(b.pause)
	}
	return n, err
}

// TestCopyTrailersOverHTTP2 sends small answers with a trailer, as gRPC does,
// over HTTP/2, where the head timer's flush reads the header map the
// trailers go into: the race detector finds the two at once if Copy lets
// them overlap.
func TestCopyTrailersOverHTTP2(t *testing.T) {
	t.Parallel()
	server := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := &eofAfter{Reader: strings.NewReader("ok"), pause: headFlushDelay + headFlushDelay/2}
		o := &Outcome{Response: handRolled(io.NopCloser(body), 2, http.Header{"Grpc-Status": {"0"}})}
		_, _ = o.Copy(w, 0)
	}))
	server.EnableHTTP2 = true
	server.StartTLS()
	t.Cleanup(server.Close)
	client := server.Client()
	for range 30 {
		resp, err := client.Get(server.URL)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, "ok", string(body))
		assert.Equal(t, 2, resp.ProtoMajor)
		assert.Equal(t, "0", resp.Trailer.Get("Grpc-Status"))
	}
}

// TestCopySaysAKnownLength copies answers whose length is known but not in
// their header, as from an HTTP/2 endpoint that ends the stream with its
// headers: the client gets the length, not a chunked body.
func TestCopySaysAKnownLength(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		answer     *http.Response
		wantLength int64
		wantChunks bool
	}{
		{name: "empty", answer: &http.Response{StatusCode: http.StatusOK, ContentLength: 0}, wantLength: 0},
		{name: "sized", answer: &http.Response{StatusCode: http.StatusOK, ContentLength: 5}, wantLength: 5},
		{name: "unknown", answer: &http.Response{StatusCode: http.StatusOK, ContentLength: -1}, wantLength: -1, wantChunks: true},
		{name: "no content", answer: &http.Response{StatusCode: http.StatusNoContent, ContentLength: 0}, wantLength: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := strings.Repeat("x", int(max(tt.answer.ContentLength, 0)))
			server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				answer := *tt.answer
				answer.Header = http.Header{}
				answer.Body = io.NopCloser(strings.NewReader(body))
				if _, err := (&Outcome{Response: &answer}).Copy(w, 0); err == nil {
					_ = Flush(w)
				}
			}))
			t.Cleanup(server.Close)
			resp, err := server.Client().Get(server.URL)
			require.NoError(t, err)
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, body, string(got))
			assert.Equal(t, tt.wantLength, resp.ContentLength)
			assert.Equal(t, tt.wantChunks, slices.Contains(resp.TransferEncoding, "chunked"))
		})
	}
}

// outgoing is the request of the only attempt for in to endpoint, without a
// body.
func outgoing(ctx context.Context, in *http.Request, endpoint endpoints.Endpoint) *http.Request {
	prepared := forward.Prepare(in, forward.Options{})
	return prepared.To(ctx, endpoint, 1, nil, 0)
}

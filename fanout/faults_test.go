package fanout

// Endpoint-side faults: fake endpoints on bare TCP listeners write the bytes a
// broken endpoint would, which httptest cannot, and the tests check what the
// proxy makes of them. Some of this is net/http's Transport's doing; the tests
// pin it all the same, because the proxy's answer depends on it.

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawConn is one connection to a rawEndpoint, as its handler sees it.
type rawConn struct {
	net.Conn
	// number counts the endpoint's connections, from 1.
	number int32
	// reader reads from the connection; requests are read through it.
	reader *bufio.Reader
	// done is closed when the test ends, for handlers that wait on something.
	done <-chan struct{}
}

// readRequest reads one request, body included, and reports whether there was
// one.
func (c *rawConn) readRequest() bool {
	req, err := http.ReadRequest(c.reader)
	if err != nil {
		return false
	}
	_, err = io.Copy(io.Discard, req.Body)
	return err == nil
}

// rawEndpoint is a fake endpoint on a bare TCP listener.
type rawEndpoint struct {
	url string
	// accepted counts the connections accepted.
	accepted atomic.Int32
}

// newRawEndpoint listens on 127.0.0.1 and hands each accepted connection to
// handle, which writes whatever bytes it likes; the connection is closed when
// handle returns. When the test ends, the listener and every connection are
// closed and every handler has returned.
func newRawEndpoint(t *testing.T, handle func(c *rawConn)) *rawEndpoint {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	e := &rawEndpoint{url: "http://" + ln.Addr().String()}
	done := make(chan struct{})
	var (
		handlers sync.WaitGroup
		connsMu  sync.Mutex
		conns    []net.Conn
		closed   bool
	)
	handlers.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			if closed {
				// Accepted while the test was ending: nobody will answer.
				conn.Close()
			}
			conns = append(conns, conn)
			connsMu.Unlock()
			c := &rawConn{Conn: conn, number: e.accepted.Add(1), reader: bufio.NewReader(conn), done: done}
			handlers.Go(func() {
				defer conn.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		close(done)
		ln.Close()
		connsMu.Lock()
		closed = true
		for _, conn := range conns {
			conn.Close()
		}
		connsMu.Unlock()
		handlers.Wait()
	})
	return e
}

// cleanAnswer is what a faultyEndpoint sends to every request but the faulty
// one.
const cleanAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean"

// ending is what a faulty endpoint does with its connection after its fault.
type ending int

const (
	// keepOpen goes on reading requests, so a reuse of the connection shows.
	keepOpen ending = iota
	// closeConn closes the connection.
	closeConn
	// resetConn resets the connection (TCP RST).
	resetConn
	// neverAnswer keeps the connection open and silent.
	neverAnswer
)

// fault is one way for an endpoint to fail a request.
type fault struct {
	name string
	// reply is what the endpoint writes once it has read the request.
	reply  string
	ending ending
	// refuse makes the endpoint refuse connections instead.
	refuse bool
}

// faultyEndpoint fails the first request of its first connection with a fault
// and answers every other request with cleanAnswer.
type faultyEndpoint struct {
	url string
	// raw is the endpoint's listener; nil for one that refuses connections.
	raw *rawEndpoint
	// faulted is closed once the fault was sent (for a refusing endpoint, at
	// once).
	faulted chan struct{}
	// reused records a request after the fault on the faulty connection.
	reused atomic.Bool
}

func newFaultyEndpoint(t *testing.T, f fault) *faultyEndpoint {
	t.Helper()
	e := &faultyEndpoint{faulted: make(chan struct{})}
	if f.refuse {
		e.url = refusedURL(t)
		close(e.faulted)
		return e
	}
	e.raw = newRawEndpoint(t, func(c *rawConn) {
		for served := 0; c.readRequest(); served++ {
			if c.number > 1 || served > 0 {
				if c.number == 1 {
					e.reused.Store(true)
				}
				if _, err := io.WriteString(c, cleanAnswer); err != nil {
					return
				}
				continue
			}
			_, _ = io.WriteString(c, f.reply)
			switch f.ending {
			case closeConn:
				c.Close()
			case resetConn:
				_ = c.Conn.(*net.TCPConn).SetLinger(0)
				c.Close()
			case neverAnswer:
				close(e.faulted)
				// Until the proxy gives up and closes the connection.
				_, _ = io.Copy(io.Discard, c.reader)
				return
			}
			close(e.faulted)
		}
	})
	e.url = e.raw.url
	return e
}

// tryTimeoutForSilence lets the proxy give up on an endpoint that never
// answers. It is configuration, not a measurement: a healthy endpoint answers
// well within it.
const tryTimeoutForSilence = 2 * time.Second

// endpointFaults are the ways an endpoint can fail a request before the proxy
// has an answer it can use. Each is a failure of its attempt.
var endpointFaults = []fault{
	{name: "connection refused", refuse: true},
	{name: "reset before the response", ending: resetConn},
	{name: "closed before the response", ending: closeConn},
	{name: "accepted and never answered", ending: neverAnswer},
	{name: "invalid status line", reply: "HTTP/1.1 2x0 OK\r\nContent-Length: 6\r\n\r\nfaulty"},
	{name: "junk bytes", reply: "\x16\x03\x01 these bytes are no HTTP response\r\n\r\n"},
	{name: "only 103 Early Hints, then close", reply: "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n", ending: closeConn},
	{name: "two different Content-Lengths", reply: "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Length: 12\r\n\r\nfaulty"},
	{name: "Content-Length with chunked", reply: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfaulty\r\n0\r\n\r\n"},
	{name: "Content-Length with chunked, after a 103", reply: "HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n6\r\nfaulty\r\n0\r\n\r\n"},
}

// configure gives the proxy what it needs to give up on f.
func (f fault) configure(p *Proxy) {
	if f.ending == neverAnswer {
		p.TryTimeout = tryTimeoutForSilence
	}
}

func TestEndpointFaultsAreFailures(t *testing.T) {
	t.Parallel()
	schedules := []struct {
		name     string
		schedule func() Schedule
	}{
		{"serial fails over", Serial},
		{"fan-out takes the other answer", FanOut},
		// The delay is never reached: only the failure can start the hedge.
		{"hedged fails over", func() Schedule { return hedgedAfter(time.Hour) }},
	}
	for _, f := range endpointFaults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			t.Run("alone it fails the request, and its connection is not reused", func(t *testing.T) {
				t.Parallel()
				faulty := newFaultyEndpoint(t, f)
				proxy := newProxy(t, Serial(), []string{faulty.url}, f.configure)
				want := http.StatusBadGateway
				if f.ending == neverAnswer {
					want = http.StatusGatewayTimeout
				}
				resp, body := get(t, proxy.URL)
				assert.Equal(t, want, resp.StatusCode)
				assert.NotContains(t, body, "faulty")
				if f.refuse {
					return
				}
				resp, body = get(t, proxy.URL)
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				assert.Equal(t, "clean", body, "the next request gets a clean answer")
				assert.Equal(t, int32(2), faulty.raw.accepted.Load(), "the next request goes over a new connection")
				assert.False(t, faulty.reused.Load(), "the faulty connection was used again")
			})
			for _, s := range schedules {
				t.Run(s.name, func(t *testing.T) {
					t.Parallel()
					faulty := newFaultyEndpoint(t, f)
					// In fan-out, the healthy endpoint answers only after the
					// fault, so the fault had every chance to be taken.
					healthy := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
						select {
						case <-faulty.faulted:
							answer(http.StatusOK, "healthy")(w, r)
						case <-r.Context().Done():
						}
					})
					proxy := newProxy(t, s.schedule(), []string{faulty.url, healthy.srv.URL}, f.configure)
					resp, body := get(t, proxy.URL)
					assert.Equal(t, http.StatusOK, resp.StatusCode)
					assert.Equal(t, "healthy", body)
					assert.Equal(t, int32(1), healthy.hits.Load())
				})
			}
		})
	}
}

// TestExtraBytesAfterTheBodyNeverBecomeAnAnswer: bytes after a declared body
// cannot fail their attempt, whose answer may already be on its way; but they
// must not be read as the answer to the next request on that connection.
func TestExtraBytesAfterTheBodyNeverBecomeAnAnswer(t *testing.T) {
	t.Parallel()
	faulty := newFaultyEndpoint(t, fault{
		reply: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" +
			"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
	})
	proxy := newProxy(t, Serial(), []string{faulty.url})
	resp, body := get(t, proxy.URL)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "hello", body)
	resp, body = get(t, proxy.URL)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "clean", body)
	assert.Equal(t, int32(2), faulty.raw.accepted.Load(), "the next request goes over a new connection")
	assert.False(t, faulty.reused.Load(), "the connection with extra bytes was used again")
}

// TestRepeatedIdenticalContentLengthIsAnAnswer: RFC 9110, section 8.6, lets a
// recipient take a Content-Length repeated with one value as that value, and
// Go's Transport does.
func TestRepeatedIdenticalContentLengthIsAnAnswer(t *testing.T) {
	t.Parallel()
	faulty := newFaultyEndpoint(t, fault{reply: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"})
	proxy := newProxy(t, Serial(), []string{faulty.url})
	resp, body := get(t, proxy.URL)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "hello", body)
	assert.Equal(t, []string{"5"}, resp.Header.Values("Content-Length"))
	resp, body = get(t, proxy.URL)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "clean", body)
}

func TestWinnerBreakingMidBodyIsCutNotPatched(t *testing.T) {
	t.Parallel()
	const (
		lengthHead  = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
		chunkedHead = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
		// otherBody is the other endpoint's, recognisable anywhere.
		otherBody = "OTHER-ENDPOINT-BODY"
	)
	tests := []struct {
		name    string
		head    string
		partial string
		// tail is written once the client has the head; then the endpoint
		// closes the connection.
		tail string
	}{
		{"Content-Length, connection closed", lengthHead, "partial-", ""},
		{"chunked, connection closed", chunkedHead, "8\r\npartial-\r\n", ""},
		{"chunked, malformed chunk", chunkedHead, "8\r\npartial-\r\n", "zz\r\nnot a chunk\r\n0\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cut := make(chan struct{})
			broken := newRawEndpoint(t, func(c *rawConn) {
				if !c.readRequest() {
					return
				}
				if _, err := io.WriteString(c, tt.head+tt.partial); err != nil {
					return
				}
				select {
				case <-cut:
					_, _ = io.WriteString(c, tt.tail)
				case <-c.done:
				}
			})
			// The other endpoint has its answer ready by the time the winner
			// breaks, unless the proxy cancelled it first, as it should.
			other := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-cut:
					answer(http.StatusOK, strings.Repeat(otherBody, 100))(w, r)
				case <-r.Context().Done():
				}
			})
			proxy := newProxy(t, FanOut(), []string{broken.url, other.srv.URL})

			conn, err := net.Dial("tcp", strings.TrimPrefix(proxy.URL, "http://"))
			require.NoError(t, err)
			t.Cleanup(func() { conn.Close() })
			require.NoError(t, conn.SetDeadline(time.Now().Add(hangGuard)))
			_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: proxy\r\n\r\n")
			require.NoError(t, err)
			// Everything the proxy sends, as sent, to look for what must not be.
			var raw bytes.Buffer
			reader := bufio.NewReader(io.TeeReader(conn, &raw))
			resp, err := http.ReadResponse(reader, nil)
			require.NoError(t, err)
			// The head is out, so the broken endpoint won; now it breaks.
			close(cut)
			body, err := io.ReadAll(resp.Body)
			assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "a cut body must not look complete")
			assert.Equal(t, "partial-", string(body))
			// Up to the proxy's closing the connection.
			_, err = io.Copy(io.Discard, reader)
			require.NoError(t, err)
			assert.NotContains(t, raw.String(), otherBody[:5], "another endpoint's bytes reached the client")
			assert.NotContains(t, raw.String(), "\r\n0\r\n", "the body ends with a last chunk")
		})
	}
}

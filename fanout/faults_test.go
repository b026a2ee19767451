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
	"testing"
	"time"

	"balancing-reverse-proxy/internal/faults"
	"balancing-reverse-proxy/internal/rawendpoint"

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

// rawEndpoint is a fake endpoint on a bare TCP listener, whose handler writes
// the bytes.
type rawEndpoint = rawendpoint.Endpoint

// newRawEndpoint listens on 127.0.0.1 and hands each accepted connection to
// handle, which writes whatever bytes it likes; the connection is closed when
// handle returns. When the test ends, the listener and every connection are
// closed and every handler has returned.
func newRawEndpoint(t *testing.T, handle func(c *rawConn)) *rawEndpoint {
	t.Helper()
	return rawendpoint.Handle(t, nil, func(conn net.Conn, number int32, done <-chan struct{}) {
		handle(&rawConn{Conn: conn, number: number, reader: bufio.NewReader(conn), done: done})
	})
}

// fault is one way for an endpoint to fail a request.
type fault = faults.Fault

// tryTimeoutForSilence lets the proxy give up on an endpoint that never
// answers. It is configuration, not a measurement: a healthy endpoint answers
// well within it.
const tryTimeoutForSilence = 2 * time.Second

// endpointFaults are the ways an endpoint can fail a request before the proxy
// has an answer it can use. Each is a failure of its attempt.
var endpointFaults = faults.BeforeAnswer

// configuring returns what gives the proxy what it needs to give up on f.
func configuring(f fault) func(p *Proxy) {
	return func(p *Proxy) {
		if f.Ending == faults.NeverAnswer {
			p.TryTimeout = tryTimeoutForSilence
		}
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
		t.Run(f.Name, func(t *testing.T) {
			t.Parallel()
			t.Run("alone it fails the request, and its connection is not reused", func(t *testing.T) {
				t.Parallel()
				faulty := faults.Serve(t, f)
				proxy := newProxy(t, Serial(), []string{faulty.URL}, configuring(f))
				want := http.StatusBadGateway
				if f.Ending == faults.NeverAnswer {
					want = http.StatusGatewayTimeout
				}
				resp, body := get(t, proxy.URL)
				assert.Equal(t, want, resp.StatusCode)
				assert.NotContains(t, body, "faulty")
				if f.Refuse {
					return
				}
				resp, body = get(t, proxy.URL)
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				assert.Equal(t, "clean", body, "the next request gets a clean answer")
				assert.Equal(t, int32(2), faulty.Connections(), "the next request goes over a new connection")
				assert.False(t, faulty.Reused(), "the faulty connection was used again")
			})
			for _, s := range schedules {
				t.Run(s.name, func(t *testing.T) {
					t.Parallel()
					faulty := faults.Serve(t, f)
					// In fan-out, the healthy endpoint answers only after the
					// fault, so the fault had every chance to be taken.
					healthy := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
						select {
						case <-faulty.Faulted:
							answer(http.StatusOK, "healthy")(w, r)
						case <-r.Context().Done():
						}
					})
					proxy := newProxy(t, s.schedule(), []string{faulty.URL, healthy.srv.URL}, configuring(f))
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
	faulty := faults.Serve(t, fault{
		Reply: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" +
			"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
	})
	proxy := newProxy(t, Serial(), []string{faulty.URL})
	resp, body := get(t, proxy.URL)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "hello", body)
	resp, body = get(t, proxy.URL)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "clean", body)
	assert.Equal(t, int32(2), faulty.Connections(), "the next request goes over a new connection")
	assert.False(t, faulty.Reused(), "the connection with extra bytes was used again")
}

// TestRepeatedIdenticalContentLengthIsAnAnswer: RFC 9110, section 8.6, lets a
// recipient take a Content-Length repeated with one value as that value, and
// Go's Transport does.
func TestRepeatedIdenticalContentLengthIsAnAnswer(t *testing.T) {
	t.Parallel()
	faulty := faults.Serve(t, fault{Reply: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"})
	proxy := newProxy(t, Serial(), []string{faulty.URL})
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
			proxy := newProxy(t, FanOut(), []string{broken.URL, other.srv.URL})

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

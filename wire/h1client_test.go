package wire

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"balancing-reverse-proxy/internal/rawendpoint"
	"balancing-reverse-proxy/internal/testcert"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// get sends a GET to url through transport and returns the answer's
// protocol and body.
func get(t *testing.T, transport *Transport, url string) (proto, body string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := transport.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.Proto, string(got)
}

// idleOwn counts the idle connections of transport's own client.
func idleOwn(transport *Transport) int {
	transport.fast.mu.Lock()
	defer transport.fast.mu.Unlock()
	n := 0
	for _, conns := range transport.fast.idle {
		n += len(conns)
	}
	return n
}

func TestOwnClientSpeaksHTTP1OverTLSAndLeavesHTTP2ToGo(t *testing.T) {
	t.Parallel()
	answer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "hello") })
	for _, c := range []struct {
		name  string
		http2 bool
	}{{"an endpoint of HTTP/1.1 only", false}, {"an endpoint that negotiates HTTP/2", true}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			server := httptest.NewUnstartedServer(answer)
			server.EnableHTTP2 = c.http2
			server.StartTLS()
			defer server.Close()
			roots := server.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
			transport := New(Options{TLS: &tls.Config{RootCAs: roots}})
			defer transport.CloseIdleConnections()
			for range 2 {
				proto, body := get(t, transport, server.URL)
				assert.Equal(t, "hello", body)
				if c.http2 {
					assert.Equal(t, "HTTP/2.0", proto)
					assert.Zero(t, idleOwn(transport), "HTTP/2 is Go's to speak")
				} else {
					assert.Equal(t, "HTTP/1.1", proto)
					assert.Equal(t, 1, idleOwn(transport), "the own client keeps the connection")
				}
			}
		})
	}
}

func TestTheRecordOfHTTP2FollowsTheLastConnection(t *testing.T) {
	t.Parallel()
	var record alpnRecord
	assert.False(t, record.has("a:443"))
	record.note("a:443", true)
	assert.True(t, record.has("a:443"))
	assert.False(t, record.has("b:443"))
	record.note("a:443", false)
	assert.False(t, record.has("a:443"), "an endpoint that stopped speaking HTTP/2 is the own client's again")
}

// heldConn holds its writes, while hold is set, to send them in one: two
// TLS records then arrive together.
type heldConn struct {
	net.Conn
	hold bool
	held []byte
}

func (c *heldConn) Write(p []byte) (int, error) {
	if c.hold {
		c.held = append(c.held, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *heldConn) flush() error {
	c.hold = false
	_, err := c.Conn.Write(c.held)
	c.held = nil
	return err
}

func TestOwnClientNeverReusesATLSConnectionWithBytesLeftInTLS(t *testing.T) {
	t.Parallel()
	cert := testcert.New(t)
	// On the first connection, the answer and an answer nobody asked for go
	// in two records of one write: the second is then read off the socket with the first, and
	// waits in TLS's buffer, where only TLS can show it.
	endpoint := rawendpoint.Handle(t, nil, func(conn net.Conn, number int32, _ <-chan struct{}) {
		held := &heldConn{Conn: conn}
		secure := tls.Server(held, &tls.Config{Certificates: []tls.Certificate{cert.TLS}})
		reader := bufio.NewReader(secure)
		for served := 0; ; served++ {
			if _, err := http.ReadRequest(reader); err != nil {
				return
			}
			if number > 1 || served > 0 {
				_, _ = io.WriteString(secure, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean")
				continue
			}
			held.hold = true
			_, _ = io.WriteString(secure, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
			_, _ = io.WriteString(secure, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
			if held.flush() != nil {
				return
			}
		}
	})
	url := "https" + endpoint.URL[len("http"):]
	transport := New(Options{TLS: &tls.Config{RootCAs: cert.Pool}})
	defer transport.CloseIdleConnections()
	_, body := get(t, transport, url)
	assert.Equal(t, "first", body)
	_, body = get(t, transport, url)
	assert.Equal(t, "clean", body, "the bytes past the first answer are no answer to the second request")
	assert.EqualValues(t, 2, endpoint.Connections(), "the connection with bytes left was not used again")
}

// nextAfterFirst starts an endpoint that has first answer the first request
// of its first connection, and answers every other request "next" at once.
func nextAfterFirst(t *testing.T, first func(conn net.Conn, done <-chan struct{})) *rawendpoint.Endpoint {
	return rawendpoint.Handle(t, nil, func(conn net.Conn, number int32, done <-chan struct{}) {
		br := bufio.NewReader(conn)
		for request := 1; ; request++ {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if number == 1 && request == 1 {
				first(conn, done)
				continue
			}
			_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
		}
	})
}

// TestOwnClientSalvagesTheConnectionOfACancelledRequest cancels a request
// while its endpoint is slow to answer: an answer that comes soon after, and
// is small and whole, is read out and its connection carries the next
// request; one that comes too late, or that the connection cannot be kept
// for, leaves the next request a new connection.
func TestOwnClientSalvagesTheConnectionOfACancelledRequest(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		delay     time.Duration
		late      string
		wantConns int
	}{
		{"a small answer soon after", 20 * time.Millisecond, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate", 1},
		{"an answer without a body", 20 * time.Millisecond, "HTTP/1.1 204 No Content\r\n\r\n", 1},
		{"an answer after the salvage's wait", 4 * salvageWait, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate", 2},
		{"a chunked answer", 20 * time.Millisecond, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nlate\r\n0\r\n\r\n", 2},
		{"an answer that closes", 20 * time.Millisecond, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 4\r\n\r\nlate", 2},
		{"bytes past the answer", 20 * time.Millisecond, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlateHTTP/1.1 200 OK\r\n\r\n", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			endpoint := nextAfterFirst(t, func(conn net.Conn, done <-chan struct{}) {
				select {
				case <-time.After(c.delay):
					_, _ = io.WriteString(conn, c.late)
				case <-done:
				}
			})
			transport := New(Options{})
			defer transport.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint.URL, nil)
			require.NoError(t, err)
			_, err = transport.RoundTrip(req)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			// The salvage, if any, ends within its wait.
			time.Sleep(c.delay + salvageWait)
			_, body := get(t, transport, endpoint.URL)
			require.Equal(t, "next", body)
			require.Equal(t, c.wantConns, endpoint.Connections())
		})
	}
}

// TestOwnClientKeepsTheConnectionOfAnAnswerReadWholeAfterItsCancel: a loser
// cancelled once its answer has arrived is read out from the buffer, and its
// connection carries the next request; one cancelled with its body still
// to come is cut.
func TestOwnClientKeepsTheConnectionOfAnAnswerReadWholeAfterItsCancel(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		answer    string
		wantErr   bool
		wantConns int
	}{
		{"the body arrived with the head", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody", false, 1},
		{"the body still to come", "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nbody", true, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			endpoint := nextAfterFirst(t, func(conn net.Conn, _ <-chan struct{}) { _, _ = io.WriteString(conn, c.answer) })
			transport := New(Options{})
			defer transport.CloseIdleConnections()
			ctx, cancel := context.WithCancel(t.Context())
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint.URL, nil)
			require.NoError(t, err)
			resp, err := transport.RoundTrip(req)
			require.NoError(t, err)
			// The whole of the first answer is in the client's buffer.
			time.Sleep(20 * time.Millisecond)
			cancel()
			_, err = io.ReadAll(resp.Body)
			require.Equal(t, c.wantErr, err != nil, "%v", err)
			require.NoError(t, resp.Body.Close())
			_, body := get(t, transport, endpoint.URL)
			require.Equal(t, "next", body)
			require.Equal(t, c.wantConns, endpoint.Connections())
		})
	}
}

// TestOwnClientPoolsTheDialOfACancelledRequest: a request cancelled while
// its connection is being dialled returns at once, and the connection,
// once made, carries the next request.
func TestOwnClientPoolsTheDialOfACancelledRequest(t *testing.T) {
	t.Parallel()
	endpoint := nextAfterFirst(t, func(conn net.Conn, _ <-chan struct{}) {
		_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
	})
	transport := New(Options{})
	defer transport.CloseIdleConnections()
	const dialTime = 100 * time.Millisecond
	transport.fast.dialer.Control = func(string, string, syscall.RawConn) error {
		time.Sleep(dialTime)
		return nil
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint.URL, nil)
	require.NoError(t, err)
	start := time.Now()
	_, err = transport.RoundTrip(req)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), dialTime, "the cancelled request waited for the dial")
	require.Eventually(t, func() bool { return idleOwn(transport) == 1 }, 5*time.Second, 10*time.Millisecond)
	_, body := get(t, transport, endpoint.URL)
	require.Equal(t, "next", body)
	require.Equal(t, 1, endpoint.Connections())
}

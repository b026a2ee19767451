// Package rawendpoint provides, for tests, an HTTP endpoint that writes its
// answers as raw bytes: what no well-behaved server would send (bytes past an
// answer, a broken head) reaches the proxy as it is, each answer in one write.
package rawendpoint

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
)

// Endpoint is a raw endpoint on a loopback TCP listener, closed with its
// connections when the test ends.
type Endpoint struct {
	// URL is the endpoint's base URL, http://127.0.0.1:port.
	URL string
	// connections counts the connections accepted.
	connections atomic.Int32
}

// New starts an endpoint that answers each request it reads with
// answer(request), in one write; an empty answer closes the connection
// instead.
func New(tb testing.TB, answer func(*http.Request) string) *Endpoint {
	tb.Helper()
	return start(tb, nil, answer)
}

// NewTLS is New over TLS with config (its certificates, and the protocols it
// offers by ALPN); its URL is https://.
func NewTLS(tb testing.TB, config *tls.Config, answer func(*http.Request) string) *Endpoint {
	tb.Helper()
	return start(tb, config, answer)
}

func start(tb testing.TB, config *tls.Config, answer func(*http.Request) string) *Endpoint {
	tb.Helper()
	return Handle(tb, config, func(conn net.Conn, _ int32, _ <-chan struct{}) { serve(conn, answer) })
}

// Handle starts an endpoint (over TLS with config, if not nil) that hands
// each connection it accepts to handle, with the connection's number, from
// 1, and a channel closed when the test ends, for handlers that wait on
// something. The connection is closed when handle returns. When the test
// ends, the listener and every connection are closed and every handler has
// returned.
func Handle(tb testing.TB, config *tls.Config, handle func(conn net.Conn, number int32, done <-chan struct{})) *Endpoint {
	tb.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	e := &Endpoint{URL: "http://" + listener.Addr().String()}
	if config != nil {
		listener = tls.NewListener(listener, config)
		e.URL = "https://" + listener.Addr().String()
	}
	done := make(chan struct{})
	var (
		handlers sync.WaitGroup
		mu       sync.Mutex
		conns    []net.Conn
		closed   bool
	)
	handlers.Go(func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				// Accepted while the test was ending: nobody will answer.
				conn.Close()
			}
			conns = append(conns, conn)
			mu.Unlock()
			number := e.connections.Add(1)
			handlers.Go(func() {
				defer conn.Close()
				handle(conn, number, done)
			})
		}
	})
	tb.Cleanup(func() {
		close(done)
		listener.Close()
		mu.Lock()
		closed = true
		for _, conn := range conns {
			conn.Close()
		}
		mu.Unlock()
		handlers.Wait()
	})
	return e
}

// Connections returns how many connections the endpoint accepted.
func (e *Endpoint) Connections() int {
	return int(e.connections.Load())
}

// serve answers the requests on conn until it closes or an answer is empty.
func serve(conn net.Conn, answer func(*http.Request) string) {
	defer conn.Close()
	reader := bufio.NewReader(conn)
	for {
		req, err := http.ReadRequest(reader)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		reply := answer(req)
		if reply == "" {
			return
		}
		if _, err := io.WriteString(conn, reply); err != nil {
			return
		}
	}
}

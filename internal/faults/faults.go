// Package faults lists, for tests, the ways an endpoint can answer wrongly,
// as the bytes it writes and what it then does with its connection: the
// reliability suite of the proxy (fanout) and the differential test of its
// HTTP/1 client (wire) go through the same list.
package faults

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"balancing-reverse-proxy/internal/rawendpoint"
)

// Ending is what a faulty endpoint does with its connection after its fault.
type Ending int

const (
	// KeepOpen goes on reading requests, so a reuse of the connection shows.
	KeepOpen Ending = iota
	// Close closes the connection.
	Close
	// Reset resets the connection (TCP RST).
	Reset
	// NeverAnswer keeps the connection open and silent.
	NeverAnswer
)

// Fault is one way for an endpoint to answer a request wrongly.
type Fault struct {
	Name string
	// Reply is what the endpoint writes once it has read the request.
	Reply  string
	Ending Ending
	// Refuse makes the endpoint refuse connections instead.
	Refuse bool
}

// BeforeAnswer are the faults that leave the proxy without an answer it can
// use: each fails its attempt.
var BeforeAnswer = []Fault{
	{Name: "connection refused", Refuse: true},
	{Name: "reset before the response", Ending: Reset},
	{Name: "closed before the response", Ending: Close},
	{Name: "accepted and never answered", Ending: NeverAnswer},
	{Name: "invalid status line", Reply: "HTTP/1.1 2x0 OK\r\nContent-Length: 6\r\n\r\nfaulty"},
	{Name: "junk bytes", Reply: "\x16\x03\x01 these bytes are no HTTP response\r\n\r\n"},
	{Name: "only 103 Early Hints, then close", Reply: "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n", Ending: Close},
	{Name: "two different Content-Lengths", Reply: "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Length: 12\r\n\r\nfaulty"},
	{Name: "Content-Length with chunked", Reply: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfaulty\r\n0\r\n\r\n"},
	{Name: "Content-Length with chunked, after a 103", Reply: "HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n6\r\nfaulty\r\n0\r\n\r\n"},
}

// InAnswer are the faults that come with or after an answer's head: bytes
// past the answer, a body cut short or broken. The head may be on its way
// to the client by then, so the answer is cut, never patched.
var InAnswer = []Fault{
	{Name: "bytes past the answer", Reply: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"},
	{Name: "bytes past a chunked answer", Reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"},
	{Name: "bytes past an answer to HEAD-like 204", Reply: "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"},
	{Name: "the same Content-Length twice", Reply: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"},
	{Name: "half the promised body, then close", Reply: "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial-", Ending: Close},
	{Name: "half the promised body, then reset", Reply: "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial-", Ending: Reset},
	{Name: "a chunked body cut short", Reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\npartial-\r\n", Ending: Close},
	{Name: "a malformed chunk", Reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\npartial-\r\nzz\r\nnot a chunk\r\n0\r\n\r\n"},
	{Name: "headers, then silence", Reply: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Ending: NeverAnswer},
	{Name: "a body that ends with the connection", Reply: "HTTP/1.1 200 OK\r\n\r\nuntil the end", Ending: Close},
	{Name: "an unsupported transfer coding", Reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
}

// CleanReply is what an Endpoint answers to every request but the faulty
// one.
const CleanReply = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean"

// Endpoint is a fake endpoint on a loopback listener that answers the first
// request of its first connection with a fault and every other request with
// CleanReply.
type Endpoint struct {
	// URL is the endpoint's base URL, http://127.0.0.1:port (https://
	// over TLS).
	URL string
	// Faulted is closed once the fault was sent (for a refusing endpoint, at
	// once); First then has the faulty request as the endpoint read it.
	Faulted chan struct{}
	First   *http.Request
	// FirstBody is the faulty request's body.
	FirstBody string
	raw       *rawendpoint.Endpoint
	reused    atomic.Bool
}

// Connections returns how many connections the endpoint accepted.
func (e *Endpoint) Connections() int32 {
	if e.raw == nil {
		return 0
	}
	return int32(e.raw.Connections())
}

// Reused reports whether a request came after the fault on its connection.
func (e *Endpoint) Reused() bool { return e.reused.Load() }

// Serve starts an Endpoint with the fault f, closed with its connections
// when the test ends.
func Serve(tb testing.TB, f Fault) *Endpoint {
	tb.Helper()
	return ServeTLS(tb, f, nil)
}

// ServeTLS is Serve over TLS with config (its certificates, and the
// protocols it offers by ALPN), or without TLS if config is nil.
func ServeTLS(tb testing.TB, f Fault, config *tls.Config) *Endpoint {
	tb.Helper()
	e := &Endpoint{Faulted: make(chan struct{})}
	if f.Refuse {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		e.URL = "http://" + ln.Addr().String()
		if config != nil {
			e.URL = "https://" + ln.Addr().String()
		}
		ln.Close()
		close(e.Faulted)
		return e
	}
	e.raw = rawendpoint.Handle(tb, config, func(conn net.Conn, number int32, _ <-chan struct{}) {
		e.serve(conn, number == 1, f)
	})
	e.URL = e.raw.URL
	return e
}

// serve answers the requests on conn; first is set for the endpoint's first
// connection, whose first request gets the fault.
func (e *Endpoint) serve(conn net.Conn, first bool, f Fault) {
	reader := bufio.NewReader(conn)
	for served := 0; ; served++ {
		req, err := http.ReadRequest(reader)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		if !first || served > 0 {
			if first {
				e.reused.Store(true)
			}
			if _, err := io.WriteString(conn, CleanReply); err != nil {
				return
			}
			continue
		}
		e.First, e.FirstBody = req, string(body)
		_, _ = io.WriteString(conn, f.Reply)
		switch f.Ending {
		case Reset, Close:
			if f.Ending == Reset {
				tcp := conn
				if secure, ok := conn.(*tls.Conn); ok {
					tcp = secure.NetConn()
				}
				_ = tcp.(*net.TCPConn).SetLinger(0)
			}
			conn.Close()
			close(e.Faulted)
			return
		case NeverAnswer:
			close(e.Faulted)
			// Until the client gives up and closes the connection.
			_, _ = io.Copy(io.Discard, reader)
			return
		}
		close(e.Faulted)
	}
}

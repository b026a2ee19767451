package wire

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"balancing-reverse-proxy/internal/faults"
	"balancing-reverse-proxy/internal/rawendpoint"
	"balancing-reverse-proxy/internal/testcert"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The differential test of h1Client: the same requests and the same raw
// endpoint answers, every fault of the reliability suite among them, go
// through the proxy's own client and through Go's Transport (with the
// framing checks of framingConn, the reference), and what the caller gets
// must be the same, down to the endpoint's view of the request and whether
// the connection was used again.

// recordedRequests are requests as the engine sends them: no body, a small
// one in memory, odd targets and fields.
var recordedRequests = []struct {
	name, method, target string
	header               http.Header
	body                 string
}{
	{name: "GET", method: http.MethodGet, target: "/"},
	{name: "HEAD", method: http.MethodHead, target: "/head"},
	{name: "POST with a body", method: http.MethodPost, target: "/p?q=1", header: http.Header{"Content-Type": {"text/plain"}}, body: "payload"},
	{name: "PUT without one", method: http.MethodPut, target: "/empty"},
	{name: "DELETE", method: http.MethodDelete, target: "/d"},
	{name: "escaped target", method: http.MethodGet, target: "/a%20b/c%2Fd;p?x=a+b&y=%zz&z"},
	{name: "odd fields", method: http.MethodGet, target: "/fields", header: http.Header{
		"X-Many": {"one", "two"}, "X-Empty": {""}, "User-Agent": {""}, "X-Padded": {"  padded\t "},
		"Idempotency-Key": {"k"}, "X-Proxy-Attempt": {"1"},
	}},
}

// headVariants are answers that are no fault, but that a parser could read
// wrongly.
var headVariants = []faults.Fault{
	{Name: "plain", Reply: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{Name: "bare LF", Reply: "HTTP/1.1 200 OK\nContent-Length: 2\nX-A: b\n\nok"},
	{Name: "folded field", Reply: "HTTP/1.1 200 OK\r\nX-Folded: one\r\n  two\r\n\tthree\r\nContent-Length: 2\r\n\r\nok"},
	{Name: "space before a colon", Reply: "HTTP/1.1 200 OK\r\nContent-Length : 7\r\nContent-Length: 2\r\n\r\nok"},
	{Name: "lower-case and repeated fields", Reply: "HTTP/1.1 201 Created\r\ncontent-type: a/b\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\ncontent-length: 2\r\n\r\nok"},
	{Name: "Pragma: no-cache", Reply: "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 2\r\n\r\nok"},
	{Name: "Connection: close", Reply: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"},
	{Name: "HTTP/1.0 kept alive", Reply: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"},
	{Name: "HTTP/1.0 closed", Reply: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{Name: "HTTP/1.0 with chunked", Reply: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", Ending: faults.Close},
	{Name: "chunked with trailers", Reply: "HTTP/1.1 200 OK\r\nTrailer: X-Sum, X-Other\r\nTransfer-Encoding: Chunked\r\n\r\n2;ext=1\r\nok\r\n 3 \r\n!!!\r\n0\r\nX-Sum: 5\r\nX-Unannounced: u\r\n\r\n"},
	{Name: "a bad trailer key", Reply: "HTTP/1.1 200 OK\r\nTrailer: Content-Length\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{Name: "Trailer without chunks", Reply: "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nContent-Length: 2\r\n\r\nok"},
	{Name: "103 then 200", Reply: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{Name: "101 without an upgrade asked", Reply: "HTTP/1.1 101 Switching Protocols\r\n\r\n"},
	{Name: "204 and 304", Reply: "HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n"},
	{Name: "304 with a length", Reply: "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"},
	{Name: "a status without a reason", Reply: "HTTP/1.1 404\r\nContent-Length: 2\r\n\r\nno"},
	{Name: "a status of 600", Reply: "HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok"},
	{Name: "a bad Content-Length", Reply: "HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok"},
	{Name: "an empty Content-Length", Reply: "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\nok"},
	{Name: "a signed Content-Length", Reply: "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok"},
	{Name: "a field without a colon", Reply: "HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 2\r\n\r\nok"},
	{Name: "a field with a control byte", Reply: "HTTP/1.1 200 OK\r\nX-Bad: a\x01b\r\nContent-Length: 2\r\n\r\nok"},
	{Name: "a field name with a slash", Reply: "HTTP/1.1 200 OK\r\nX/Bad: a\r\nContent-Length: 2\r\n\r\nok"},
	{Name: "a first field line folded", Reply: "HTTP/1.1 200 OK\r\n X-Folded: a\r\nContent-Length: 2\r\n\r\nok"},
	{Name: "HTTP/2.0 status line", Reply: "HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{Name: "too many fields", Reply: "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Many: 1\r\n", 40) + "Content-Length: 2\r\n\r\nok"},
	{Name: "a head over the cap", Reply: "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 5<<10) + "\r\nContent-Length: 2\r\n\r\nok"},
	{Name: "a long body", Reply: "HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n" + strings.Repeat("0123456789", 2000)},
}

// seen is a request as the endpoint read it.
type seen struct {
	Method, URI, Host, Body string
	Header                  http.Header
	ContentLength           int64
	TransferEncoding        []string
	Close                   bool
}

// clientView is what a caller of a transport gets from one exchange, and
// what the endpoint saw of it.
type clientView struct {
	parsed
	NotSent, Ambiguous, TooManyFields bool
	// Next is the body of the answer to a GET after it, and Connections
	// how many connections the endpoint had by then.
	Next        string
	Connections int32
	Seen        seen
}

// memoryBody is a request body in memory, as the engine makes them.
type memoryBody struct{ *bytes.Reader }

func (memoryBody) Close() error { return nil }

// exchangeThrough sends the request and the one after it through transport
// to an endpoint that answers with f (over TLS with secure, if not nil), and
// returns what the caller got.
func exchangeThrough(t *testing.T, transport *Transport, secure *tls.Config, method, target string, header http.Header, body string, f faults.Fault) clientView {
	t.Helper()
	e := faults.ServeTLS(t, f, secure)
	defer transport.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	var reqBody io.Reader
	if body != "" {
		reqBody = memoryBody{bytes.NewReader([]byte(body))}
	}
	req, err := http.NewRequestWithContext(ctx, method, e.URL+target, reqBody)
	require.NoError(t, err)
	// As the engine sends a body it holds.
	req.ContentLength = int64(len(body))
	for name, values := range header {
		req.Header[name] = values
	}
	if transport.fast != nil {
		require.True(t, transport.fast.takes(req), "the request goes through the proxy's own client")
	}
	var view clientView
	resp, err := transport.RoundTrip(req)
	if err != nil {
		view.Failed, view.NotSent = true, NotSent(err)
		view.Ambiguous, view.TooManyFields = errors.Is(err, ErrAmbiguousFraming), errors.Is(err, ErrResponseHeaders)
	} else {
		view.parsed = readAnswer(resp)
		resp.Body.Close()
	}
	if !f.Refuse {
		select {
		case <-e.Faulted:
		case <-time.After(5 * time.Second):
			t.Fatal("the endpoint never saw the request")
		}
		r := e.First
		view.Seen = seen{r.Method, r.RequestURI, r.Host, e.FirstBody, r.Header, r.ContentLength, r.TransferEncoding, r.Close}
	}
	// An endpoint that went silent after a whole answer holds the next
	// request as it did the first.
	nextCtx, cancelNext := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancelNext()
	next, err := http.NewRequestWithContext(nextCtx, http.MethodGet, e.URL+"/next", nil)
	require.NoError(t, err)
	if resp, err := transport.RoundTrip(next); err != nil {
		view.Next = "failed"
	} else {
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		view.Next = string(got)
	}
	view.Connections = e.Connections()
	// Each transport has an endpoint of its own.
	view.Seen.Host = strings.Replace(view.Seen.Host, e.URL[strings.Index(e.URL, "://")+3:], "endpoint", 1)
	return view
}

// referenceTransport is Transport with Go's client for every request, the
// reference h1Client is held to.
func referenceTransport(opts Options) *Transport {
	t := New(opts)
	t.fast = nil
	return t
}

func TestOwnClientAnswersAsGoTransportDoes(t *testing.T) {
	t.Parallel()
	cert := testcert.New(t)
	// An endpoint that offers no protocol by ALPN speaks HTTP/1.1.
	secure := &tls.Config{Certificates: []tls.Certificate{cert.TLS}}
	answers := append(append(append([]faults.Fault{}, faults.BeforeAnswer...), faults.InAnswer...), headVariants...)
	for _, over := range []struct {
		name   string
		secure *tls.Config
	}{{"plain", nil}, {"TLS", secure}} {
		t.Run(over.name, func(t *testing.T) {
			t.Parallel()
			opts := Options{MaxIdlePerHost: 2, MaxResponseHeaders: 30, MaxResponseHeaderBytes: 4 << 10, TLS: &tls.Config{RootCAs: cert.Pool}}
			for _, r := range recordedRequests {
				t.Run(r.name, func(t *testing.T) {
					t.Parallel()
					for _, f := range answers {
						t.Run(f.Name, func(t *testing.T) {
							t.Parallel()
							own := New(opts)
							require.NotNil(t, own.fast)
							want := exchangeThrough(t, referenceTransport(opts), over.secure, r.method, r.target, r.header, r.body, f)
							got := exchangeThrough(t, own, over.secure, r.method, r.target, r.header, r.body, f)
							assert.Equal(t, want, got)
						})
					}
				})
			}
		})
	}
}

func TestOwnClientTellsWhenABodyHasArrived(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	endpoint := rawendpoint.Handle(t, nil, func(conn net.Conn, _ int32, done <-chan struct{}) {
		reader := bufio.NewReader(conn)
		for served := 0; ; served++ {
			if _, err := http.ReadRequest(reader); err != nil {
				return
			}
			if served == 0 {
				_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nwhole")
				continue
			}
			_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npa")
			select {
			case <-release:
			case <-done:
				return
			}
			_, _ = io.WriteString(conn, "rt")
		}
	})
	transport := New(Options{MaxIdlePerHost: 1})
	defer transport.CloseIdleConnections()
	arrived := func(partial bool) (bool, string) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, endpoint.URL, nil)
		require.NoError(t, err)
		resp, err := transport.RoundTrip(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		// The head and what came with it are read; give the rest of the
		// write time to land, as it would if it were on its way.
		time.Sleep(20 * time.Millisecond)
		body, ok := resp.Body.(interface{ Arrived() bool })
		require.True(t, ok)
		whole := body.Arrived()
		if partial {
			close(release)
		}
		got, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return whole, string(got)
	}
	whole, body := arrived(false)
	assert.True(t, whole, "a body that came with its head has arrived")
	assert.Equal(t, "whole", body)
	whole, body = arrived(true)
	assert.False(t, whole, "a body still on its way has not")
	assert.Equal(t, "part", body)
}

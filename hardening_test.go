package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"balancing-reverse-proxy/internal/conncap"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countingBackend is an endpoint that counts the requests it gets and
// answers each with its method, URI and Host.
type countingBackend struct {
	*httptest.Server
	requests atomic.Int64
}

func newCountingBackend(t *testing.T) *countingBackend {
	t.Helper()
	b := &countingBackend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.requests.Add(1)
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s host=%s body=%s", r.Method, r.RequestURI, r.Host, body)
	}))
	t.Cleanup(b.Close)
	return b
}

// rawExchange sends raw on a new connection to address and returns all that
// came back until the proxy closed the connection; it fails the test if the
// proxy kept the connection open.
func rawExchange(t *testing.T, address, raw string) string {
	t.Helper()
	conn, err := net.Dial("tcp", address)
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, raw)
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(hangGuard)))
	got, err := io.ReadAll(conn)
	var netErr net.Error
	require.False(t, errors.As(err, &netErr) && netErr.Timeout(), "the proxy kept the connection open after %q", got)
	return string(got)
}

// statusOf returns the status code of the first response in raw, or 0.
func statusOf(raw string) int {
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestMalformedRequestsNeverReachAnEndpoint(t *testing.T) {
	t.Parallel()
	backend := newCountingBackend(t)
	p := startProxy(t, nil, "-e", backend.URL, "-max-headers", "20", "-max-header-bytes", "4KiB", "-max-body", "100")
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	tests := []struct {
		name   string
		raw    string
		status int
	}{
		{"Content-Length and Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"duplicate identical Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc" + smuggled, 400},
		{"duplicate different Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd" + smuggled, 400},
		{"signed Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", 400},
		{"Content-Length list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400},
		{"gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"chunked, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 501},
		{"identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n", 501},
		{"chunked in HTTP/1.0", "POST / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400},
		{"chunk shorter than its size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc\r\n0\r\n\r\n", 400},
		{"chunk line with a bare LF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", 400},
		{"NUL in a header name", "GET / HTTP/1.1\r\nHost: a\r\nX-\x00A: 1\r\n\r\n", 400},
		{"space in a header name", "GET / HTTP/1.1\r\nHost: a\r\nX A: 1\r\n\r\n", 400},
		{"space before the colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A : 1\r\n\r\n", 400},
		{"control byte in a value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x01\r\n\r\n", 400},
		{"bare CR", "GET / HTTP/1.1\r\nHost: a\rX-A: 1\r\n\r\n", 400},
		{"missing Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"duplicate Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400},
		{"asterisk form with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"HTTP/0.9", "GET /\r\n\r\n", 400},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"request head over --max-header-bytes", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 16<<10) + "\r\n\r\n", 431},
		{"more fields than --max-headers", "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-Many: 1\r\n", 21) + "\r\n", 431},
		{"Content-Length over --max-body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n" + strings.Repeat("x", 101), 413},
		{"chunked body crossing --max-body", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + strings.Repeat("x", 64) + "\r\n40\r\n" + strings.Repeat("x", 64) + "\r\n0\r\n\r\n", 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := rawExchange(t, p.address, tt.raw)
			assert.Equal(t, tt.status, statusOf(got), "%q", got)
			assert.NotContains(t, got, "smuggled")
		})
	}
	t.Cleanup(func() {
		assert.Zero(t, backend.requests.Load(), "no endpoint saw any of these requests")
	})
}

func TestTheProxyOnlyCallsItsEndpoints(t *testing.T) {
	t.Parallel()
	backend := newCountingBackend(t)
	p := startProxy(t, nil, "-e", backend.URL+"/prefix")
	endpointHost := strings.TrimPrefix(backend.URL, "http://")
	// An absolute-form target naming another host is still sent to the
	// endpoint, under its prefix and with its Host: the proxy is not an open
	// forward proxy.
	got := rawExchange(t, p.address, "GET http://evil.example:9999/x?y=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n")
	assert.Equal(t, 200, statusOf(got), "%q", got)
	assert.Contains(t, got, "GET /prefix/x?y=1 host="+endpointHost)
	assert.Equal(t, int64(1), backend.requests.Load())
}

func TestLimitsAreMetBeforeTheEndpoint(t *testing.T) {
	t.Parallel()
	backend := newCountingBackend(t)
	p := startProxy(t, nil, "-e", backend.URL, "-max-body", "100", "-body-read-timeout", "100ms", "-max-body-buffer", "10")

	t.Run("a body that stalls gets 408", func(t *testing.T) {
		got := rawExchange(t, p.address, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234")
		assert.Equal(t, http.StatusRequestTimeout, statusOf(got), "%q", got)
	})
	t.Run("a streamed body crossing --max-body gets 413", func(t *testing.T) {
		// Over --max-body-buffer, the body streams to the endpoint as it
		// arrives; the proxy still answers 413 when it crosses the cap.
		got := rawExchange(t, p.address, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n"+
			strings.Repeat("x", 64)+"\r\n40\r\n"+strings.Repeat("x", 64)+"\r\n0\r\n\r\n")
		assert.Equal(t, http.StatusRequestEntityTooLarge, statusOf(got), "%q", got)
	})
	t.Run("a body within the limits passes", func(t *testing.T) {
		got := rawExchange(t, p.address, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
		assert.Equal(t, http.StatusOK, statusOf(got), "%q", got)
		assert.Contains(t, got, "body=hello")
	})
}

func TestConnectionCap(t *testing.T) {
	t.Parallel()
	backend := newCountingBackend(t)
	p := startProxy(t, nil, "-e", backend.URL, "-max-connections", "1")
	conncap.CheckOne(t, p.address, func() int { return int(backend.requests.Load()) })
}

func TestForwardingHeadersCannotBeSpoofed(t *testing.T) {
	t.Parallel()
	seen := make(chan http.Header, 2)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
	}))
	defer backend.Close()
	spoof := "GET /?q=a%2Fb&&x= HTTP/1.1\r\nHost: front.example\r\nX-Forwarded-For: 203.0.113.66\r\nX-Real-Ip: 203.0.113.66\r\n" +
		"Forwarded: for=203.0.113.66\r\nConnection: close, X-Forwarded-For, X-Forwarded-Host, Forwarded\r\n\r\n"

	p := startProxy(t, nil, "-e", backend.URL)
	rawExchange(t, p.address, spoof)
	header := <-seen
	assert.Equal(t, "127.0.0.1", header.Get("X-Forwarded-For"), "the client's claim is replaced, and cannot strip the proxy's")
	assert.Equal(t, "front.example", header.Get("X-Forwarded-Host"))
	assert.Equal(t, "for=127.0.0.1;host=front.example;proto=http", header.Get("Forwarded"))
	assert.Empty(t, header.Get("X-Real-Ip"))

	trusting := startProxy(t, nil, "-e", backend.URL, "-trusted-proxies", "127.0.0.0/8")
	rawExchange(t, trusting.address, strings.Replace(spoof, "Connection: close, X-Forwarded-For, X-Forwarded-Host, Forwarded", "Connection: close", 1))
	header = <-seen
	assert.Equal(t, "203.0.113.66, 127.0.0.1", header.Get("X-Forwarded-For"), "a trusted proxy's chain is extended")
	assert.Equal(t, "for=203.0.113.66, for=127.0.0.1;host=front.example;proto=http", header.Get("Forwarded"))
}

func TestTunnelThroughTheProxyEndsWhenItStops(t *testing.T) {
	t.Parallel()
	backendDone := make(chan struct{}, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		_, _ = io.Copy(conn, rw)
		backendDone <- struct{}{}
	}))
	defer backend.Close()
	p := startProxy(t, nil, "-e", backend.URL, "-shutdown-timeout", "30s")

	conn, err := net.Dial("tcp", p.address)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(hangGuard)))
	_, err = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	require.NoError(t, err)
	reader := bufio.NewReader(conn)
	resp, err := http.ReadResponse(reader, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	// Bytes that the request checks would refuse pass through a tunnel.
	frame := "X: 1\r\n folded\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
	_, err = io.WriteString(conn, frame)
	require.NoError(t, err)
	echoed := make([]byte, len(frame))
	_, err = io.ReadFull(reader, echoed)
	require.NoError(t, err)
	assert.Equal(t, frame, string(echoed))

	// Stopping the proxy tears the tunnel down at once, not after the drain.
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	_, err = io.ReadAll(reader)
	require.NoError(t, err, "the client's side of the tunnel is closed")
	select {
	case <-backendDone:
	case <-time.After(hangGuard):
		t.Fatal("the endpoint's side of the tunnel was not closed")
	}
	code, _ := p.wait(t)
	assert.Equal(t, 0, code)
}

func TestReplayMemoryCapThroughTheProxy(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}, 1), make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/hold" {
			entered <- struct{}{}
			<-release
		}
	}))
	defer backend.Close()
	defer close(release)
	// Two endpoints, so that bodies are kept for a replay.
	p := startProxy(t, nil, "-e", backend.URL+","+backend.URL+"/spare", "-max-body-buffer", "1KiB", "-max-replay-memory", "1KiB")
	held := make(chan error, 1)
	go func() {
		resp, err := http.Post("http://"+p.address+"/hold", "text/plain", strings.NewReader(strings.Repeat("a", 800)))
		if err == nil {
			resp.Body.Close()
		}
		held <- err
	}()
	select {
	case <-entered:
	case <-time.After(hangGuard):
		t.Fatal("the first request did not reach the endpoint")
	}
	got := rawExchange(t, p.address, "POST /next HTTP/1.1\r\nHost: a\r\nContent-Length: 500\r\nConnection: close\r\n\r\n"+strings.Repeat("b", 500))
	assert.Equal(t, http.StatusServiceUnavailable, statusOf(got), "%q", got)
	assert.Contains(t, got, "Retry-After: 1")
	release <- struct{}{}
	require.NoError(t, <-held)
}

package h1server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// After an error response Go's server half-closes the connection and
	// waits half a second before closing it; its Close does not end that
	// wait, where the Server's does.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("net/http.(*conn).closeWriteAndWait"))
}

// serve runs a Server in front of fallback and returns its address; it is
// closed at the test's end.
func serve(t *testing.T, fallback *http.Server) (string, *Server) {
	t.Helper()
	s := New(fallback)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		_ = s.Close()
		require.ErrorIs(t, <-served, http.ErrServerClosed)
	})
	return l.Addr().String(), s
}

// client is one connection to a server, read response by response.
type client struct {
	net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &client{Conn: c, br: bufio.NewReader(c)}
}

func (c *client) send(t *testing.T, raw string) {
	t.Helper()
	_, err := io.WriteString(c, raw)
	require.NoError(t, err)
}

// answer reads the next final response and returns it with its body.
func (c *client) answer(t *testing.T) (*http.Response, string) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	resp, err := http.ReadResponse(c.br, nil)
	for err == nil && resp.StatusCode < 200 {
		resp, err = http.ReadResponse(c.br, nil)
	}
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

// closedWithin reports whether the server closes c, with nothing more
// sent, within d.
func (c *client) closedWithin(d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, err := c.br.Read(make([]byte, 1))
	return n == 0 && err == io.EOF
}

// servedBy names the server that gave the handler its ResponseWriter.
func servedBy(w http.ResponseWriter) string {
	if _, ok := w.(*response); ok {
		return "own"
	}
	return "go"
}

func TestServesPlainRequestsAndHandsTheRestToGo(t *testing.T) {
	addr, _ := serve(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, _ = fmt.Fprintf(w, "%s %s %s", servedBy(w), r.URL.Path, body)
	})})
	for _, tc := range []struct{ requests, want string }{
		{"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", "own /a "},
		{"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", "own /b hi"},
		{"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", "go /c hi"},
		{"POST /d HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", "go /d hi"},
		{"GET /e HTTP/1.0\r\n\r\n", "go /e "},
		// Not waited on for a CRLF that will not come.
		{"GET /bare HTTP/1.1\nHost: x\n\n", "go /bare "},
		{"GET /f HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", "go /f "},
		{"GET /g HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("v", headBufferSize) + "\r\n\r\n", "go /g "},
	} {
		c := dial(t, addr)
		c.send(t, tc.requests)
		resp, body := c.answer(t)
		require.Equal(t, http.StatusOK, resp.StatusCode, tc.requests)
		require.Equal(t, tc.want, body)
	}

	// A connection handed over in its middle: Go's server goes on from
	// the bytes the Server had read, pipelined ones included.
	c := dial(t, addr)
	c.send(t, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST /2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"+
		"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"own /1 ", "go /2 z", "go /3 "} {
		_, body := c.answer(t)
		require.Equal(t, want, body)
	}
}

func TestCancelsTheRequestWhenTheClientLeaves(t *testing.T) {
	for _, tc := range []struct {
		request string
		// idle is how long the server has been idle before: long enough,
		// and its sweep sleeps until a request wakes it.
		idle time.Duration
	}{
		{request: "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n"},
		{request: "POST /wait HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"},
		{request: "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n", idle: (idleSweeps + 20) * sweepTick},
	} {
		cancelled := make(chan error, 1)
		addr, _ := serve(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.ReadAll(r.Body)
			select {
			case <-r.Context().Done():
				cancelled <- r.Context().Err()
			case <-time.After(10 * time.Second):
				cancelled <- nil
			}
		})})
		time.Sleep(tc.idle)
		c := dial(t, addr)
		c.send(t, tc.request)
		time.Sleep(50 * time.Millisecond)
		require.NoError(t, c.Close())
		require.ErrorIs(t, <-cancelled, context.Canceled, tc.request)
	}
}

func TestCancelsTheRequestWhenTheHandlerPanics(t *testing.T) {
	cancelled := make(chan error, 1)
	addr, _ := serve(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		go func() {
			select {
			case <-r.Context().Done():
				cancelled <- r.Context().Err()
			case <-time.After(10 * time.Second):
				cancelled <- nil
			}
		}()
		panic(http.ErrAbortHandler)
	})})
	c := dial(t, addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.ErrorIs(t, <-cancelled, context.Canceled)
	require.True(t, c.closedWithin(3*time.Second), "the connection of a handler that panicked")
}

func TestKeepsTheNextRequestThatArrivesWhileItWatches(t *testing.T) {
	addr, _ := serve(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(20 * sweepTick)
		}
		_, _ = fmt.Fprintf(w, "%s %s %v", r.Method, r.URL.Path, r.Context().Err())
	})})
	c := dial(t, addr)
	c.send(t, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	// Sent while the watch reads: its first byte goes to the watch.
	time.Sleep(8 * sweepTick)
	c.send(t, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	_, body := c.answer(t)
	require.Equal(t, "GET /slow <nil>", body)
	_, body = c.answer(t)
	require.Equal(t, "GET /next <nil>", body)
}

func TestClosesAConnectionSlowToSendItsHeadOrIdle(t *testing.T) {
	addr, _ := serve(t, &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			_, _ = fmt.Fprintf(w, "%s %v", body, err)
		}),
		ReadHeaderTimeout: 200 * time.Millisecond,
		IdleTimeout:       300 * time.Millisecond,
	})
	slow := dial(t, addr)
	slow.send(t, "GET / HTTP/1.1\r\nHost:")
	require.True(t, slow.closedWithin(3*time.Second), "a head not sent within ReadHeaderTimeout")

	idle := dial(t, addr)
	idle.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, _ := idle.answer(t)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, idle.closedWithin(3*time.Second), "a connection idle for IdleTimeout")

	// The body has no time limit, as with Go's server.
	bodySlow := dial(t, addr)
	bodySlow.send(t, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\na")
	time.Sleep(400 * time.Millisecond)
	bodySlow.send(t, "b")
	_, body := bodySlow.answer(t)
	require.Equal(t, "ab <nil>", body)
}

func TestAWaitRenewedInTimeIsNotEnded(t *testing.T) {
	addr, _ := serve(t, &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				// Longer than both timeouts: they do not apply to a request
				// being served.
				time.Sleep(250 * time.Millisecond)
			}
			_, _ = io.WriteString(w, r.URL.Path)
		}),
		ReadHeaderTimeout: 100 * time.Millisecond,
		IdleTimeout:       150 * time.Millisecond,
	})
	c := dial(t, addr)
	for i := range 8 {
		path := fmt.Sprintf("/%d", i)
		if i == 4 {
			path = "/slow"
		}
		// Each head comes in two parts, within the header timeout, each
		// request within the idle timeout of the one before.
		c.send(t, "GET "+path+" HTTP/1.1\r\n")
		time.Sleep(50 * time.Millisecond)
		c.send(t, "Host: x\r\n\r\n")
		resp, body := c.answer(t)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, path, body)
		time.Sleep(60 * time.Millisecond)
	}
}

func TestAHandlersReadDeadlineIsNotTheNextRequests(t *testing.T) {
	addr, _ := serve(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, http.NewResponseController(w).SetReadDeadline(time.Now().Add(50*time.Millisecond)))
		_, _ = io.WriteString(w, r.URL.Path)
	})})
	c := dial(t, addr)
	c.send(t, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
	_, body := c.answer(t)
	require.Equal(t, "/first", body)
	time.Sleep(150 * time.Millisecond)
	c.send(t, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
	_, body = c.answer(t)
	require.Equal(t, "/second", body)
}

func TestExpiryTickIsATwentiethOfTheShorterTimeout(t *testing.T) {
	require.Equal(t, 500*time.Millisecond, expiryTick(10*time.Second, 120*time.Second))
	require.Equal(t, 500*time.Millisecond, expiryTick(0, 10*time.Second), "no header timeout")
	require.Equal(t, 5*time.Millisecond, expiryTick(20*time.Millisecond, 0), "at least 5 ms")
	require.Equal(t, time.Second, expiryTick(time.Hour, time.Hour), "at most 1 s")
	require.Equal(t, time.Duration(0), expiryTick(0, 0), "no timeouts, no pass")
}

func TestShutdownClosesIdleConnectionsAndLetsRequestsFinish(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	addr, s := serve(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			close(started)
			<-release
		}
		_, _ = io.WriteString(w, r.URL.Path)
	})})
	idle := dial(t, addr)
	idle.send(t, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
	idle.answer(t)
	busy := dial(t, addr)
	busy.send(t, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	require.True(t, idle.closedWithin(3*time.Second), "an idle connection at shutdown")
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	resp, body := busy.answer(t)
	require.Equal(t, "/hold", body)
	require.True(t, resp.Close, "the last response closes its connection")
	require.NoError(t, <-shut)
	_, err := net.Dial("tcp", addr)
	require.Error(t, err, "no longer accepting")
}

func TestServeAfterShutdownReturnsAtOnce(t *testing.T) {
	s := New(&http.Server{Handler: http.NotFoundHandler()})
	require.NoError(t, s.Shutdown(context.Background()))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	select {
	case err := <-served:
		require.ErrorIs(t, err, http.ErrServerClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Serve after Shutdown still serves")
	}
	_, err = net.Dial("tcp", l.Addr().String())
	require.Error(t, err, "its listener is closed")
}

func TestCloseCancelsTheRequestsInFlight(t *testing.T) {
	started := make(chan struct{})
	cancelled := make(chan error, 1)
	addr, s := serve(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
			cancelled <- r.Context().Err()
		case <-time.After(10 * time.Second):
			cancelled <- nil
		}
	})})
	c := dial(t, addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	require.NoError(t, s.Close())
	require.ErrorIs(t, <-cancelled, context.Canceled)
}

func TestShutdownGivesUpAtItsContextsEnd(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{})
	addr, s := serve(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
	})})
	busy := dial(t, addr)
	busy.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, s.Shutdown(ctx), context.DeadlineExceeded)
}

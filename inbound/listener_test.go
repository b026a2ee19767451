package inbound

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"balancing-reverse-proxy/h1server"
	"balancing-reverse-proxy/internal/conncap"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// After an error response Go's server half-closes the connection and
	// waits half a second before closing it (against a reset that would
	// lose the response); Server.Close does not wait for that goroutine.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("net/http.(*conn).closeWriteAndWait"))
}

// hangGuard bounds waits for things that must happen; it is a deadlock
// guard, not a timing assertion.
const hangGuard = 10 * time.Second

// rejection is one request refused by a Listener.
type rejection struct {
	remote net.Addr
	reason string
}

// checkedServer is an http.Server behind a Listener whose handler reports
// each request it gets.
type checkedServer struct {
	addr     string
	requests chan string
	rejected chan rejection
}

func newCheckedServer(t *testing.T, opts ListenerOptions, handler http.HandlerFunc) *checkedServer {
	t.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &checkedServer{addr: tcp.Addr().String(), requests: make(chan string, 100), rejected: make(chan rejection, 100)}
	opts.OnReject = func(remote net.Addr, reason string) { s.rejected <- rejection{remote, reason} }
	if handler == nil {
		handler = func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			s.requests <- r.Method + " " + r.RequestURI + " " + string(body)
			_, _ = io.WriteString(w, "ok")
		}
	}
	listener := NewListener(tcp, opts)
	// As the proxy serves plain HTTP/1: the own server in front of Go's,
	// which takes the connections handed over with the bytes read so far.
	server := h1server.New(&http.Server{Handler: handler, ReadHeaderTimeout: hangGuard, MaxHeaderBytes: 1024, ConnState: listener.ConnState})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = server.Serve(listener)
	}()
	t.Cleanup(func() {
		_ = server.Close()
		<-served
	})
	return s
}

// exchange sends raw on a new connection and returns all the server wrote
// until it closed the connection.
func (s *checkedServer) exchange(t *testing.T, raw string) string {
	t.Helper()
	conn, err := net.Dial("tcp", s.addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, raw)
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(hangGuard)))
	got, err := io.ReadAll(conn)
	var netErr net.Error
	require.False(t, errors.As(err, &netErr) && netErr.Timeout(), "the server kept the connection open; it wrote %q", got)
	return string(got)
}

// requestsSeen drains the requests the handler reported.
func (s *checkedServer) requestsSeen() []string {
	var seen []string
	for {
		select {
		case r := <-s.requests:
			seen = append(seen, r)
		default:
			return seen
		}
	}
}

// bothChecks runs test with the check from each connection's first byte,
// and from the first request the own server hands over (as the proxy runs).
func bothChecks(t *testing.T, test func(t *testing.T, opts ListenerOptions)) {
	for _, fromUnread := range []bool{false, true} {
		t.Run(map[bool]string{false: "checked from the start", true: "checked from the hand-over"}[fromUnread], func(t *testing.T) {
			t.Parallel()
			test(t, ListenerOptions{CheckFromUnread: fromUnread})
		})
	}
}

func TestListenerRefusesSmuggledRequests(t *testing.T) {
	t.Parallel()
	bothChecks(t, testListenerRefusesSmuggledRequests)
}

func testListenerRefusesSmuggledRequests(t *testing.T, opts ListenerOptions) {
	s := newCheckedServer(t, opts, nil)
	first := "GET /first HTTP/1.1\r\nHost: a\r\n\r\n"
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	tests := []struct{ name, raw, reason string }{
		{"CL.TE", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, reasonLengthAndChunked},
		{"TE.CL", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n" + smuggled + "\r\n0\r\n\r\n", reasonLengthAndChunked},
		{"duplicate Content-Length", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n" + smuggled, reasonDuplicateLength},
		{"chunked HTTP/1.0", "POST /x HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, reasonChunkedHTTP10},
		{"obs-fold", "GET /x HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n" + smuggled, reasonObsFold},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.exchange(t, first+tt.raw)
			assert.Equal(t, []string{"GET /first "}, s.requestsSeen(), "the request before is served, nothing after")
			assert.Equal(t, 1, strings.Count(got, "HTTP/1.1 200 OK"), "%q", got)
			assert.Contains(t, got, "HTTP/1.1 400 Bad Request")
			select {
			case r := <-s.rejected:
				assert.Equal(t, tt.reason, r.reason)
				assert.NotNil(t, r.remote)
			case <-time.After(hangGuard):
				t.Fatal("the rejection was not reported")
			}
		})
	}
}

func TestListenerServesPipelinedRequests(t *testing.T) {
	t.Parallel()
	bothChecks(t, testListenerServesPipelinedRequests)
}

func testListenerServesPipelinedRequests(t *testing.T, opts ListenerOptions) {
	s := newCheckedServer(t, opts, nil)
	raw := "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
		"POST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n" +
		"GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
	got := s.exchange(t, raw)
	assert.Equal(t, 3, strings.Count(got, "HTTP/1.1 200 OK"), "%q", got)
	assert.Equal(t, []string{"POST /1 hello", "POST /2 abc", "GET /3 "}, s.requestsSeen())
}

func TestListenerLetsTheServerAnswer431(t *testing.T) {
	t.Parallel()
	s := newCheckedServer(t, ListenerOptions{CheckFromUnread: true}, nil)
	got := s.exchange(t, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: "+strings.Repeat("a", 8<<10)+"\r\n\r\n")
	assert.True(t, strings.HasPrefix(got, "HTTP/1.1 431 "), "%q", got)
	assert.Empty(t, s.requestsSeen())
}

func TestListenerCapsConnections(t *testing.T) {
	t.Parallel()
	s := newCheckedServer(t, ListenerOptions{MaxConnections: 1, CheckFromUnread: true}, nil)
	served := 0
	conncap.CheckOne(t, s.addr, func() int {
		served += len(s.requestsSeen())
		return served
	})
}

func TestStopCheckingPassesTunnelledBytes(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	s := newCheckedServer(t, ListenerOptions{CheckFromUnread: true}, func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		StopChecking(conn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
			// Echo what follows, which would be refused as HTTP.
			buf := make([]byte, 64)
			n, _ := io.ReadAtLeast(rw, buf, len("X: 1\r\n 2\r\n\r\n"))
			_, _ = conn.Write(buf[:n])
		}()
	})
	t.Cleanup(wg.Wait)
	got := s.exchange(t, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nX: 1\r\n 2\r\n\r\n")
	assert.True(t, strings.HasSuffix(got, "\r\n\r\nX: 1\r\n 2\r\n\r\n"), "%q", got)
	select {
	case r := <-s.rejected:
		t.Fatalf("tunnelled bytes were checked as HTTP: %s", r.reason)
	default:
	}
}

func TestCloseWakesAnAcceptWaitingForASlot(t *testing.T) {
	t.Parallel()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	listener := NewListener(tcp, ListenerOptions{MaxConnections: 1})
	client, err := net.Dial("tcp", tcp.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	held, err := listener.Accept()
	require.NoError(t, err)
	defer held.Close()

	// The cap is reached: the next Accept waits for a slot, until Close.
	accepted := make(chan error, 1)
	go func() {
		_, err := listener.Accept()
		accepted <- err
	}()
	require.NoError(t, listener.Close())
	select {
	case err := <-accepted:
		assert.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(hangGuard):
		t.Fatal("Accept still waits for a slot after Close, so a server's Shutdown would hang")
	}
}

func TestHeaderTimeoutHoldsOnKeepAliveConnections(t *testing.T) {
	t.Parallel()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan string, 4)
	listener := NewListener(tcp, ListenerOptions{})
	server := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			served <- r.URL.Path
		}),
		ReadHeaderTimeout: 100 * time.Millisecond,
		IdleTimeout:       time.Hour,
		ConnState:         listener.ConnState,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = server.Serve(listener)
	}()
	t.Cleanup(func() {
		_ = server.Close()
		<-done
	})
	conn, err := net.Dial("tcp", tcp.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	reader := bufio.NewReader(conn)
	_, err = io.WriteString(conn, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(reader, nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "/first", <-served)

	// The next request's head starts, then stalls: the header time-out, not
	// the hour-long idle time-out, must end it, though the checker holds
	// back the end of the head.
	_, err = io.WriteString(conn, "GET /second HTTP/1.1\r\nHost: a\r\n")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(hangGuard)))
	_, err = io.ReadAll(reader)
	var netErr net.Error
	require.False(t, errors.As(err, &netErr) && netErr.Timeout(), "the stalled head was not timed out")
	assert.Empty(t, served)
}

func TestListenerKeepsARequestAliveWhenWhatFollowsIsRefused(t *testing.T) {
	t.Parallel()
	kept := make(chan bool, 10)
	s := newCheckedServer(t, ListenerOptions{CheckFromUnread: true}, func(w http.ResponseWriter, r *http.Request) {
		// The request's context ends when the server takes the client for
		// gone. This can only miss a wrong end on a very slow machine, never
		// fail a working listener.
		select {
		case <-r.Context().Done():
			kept <- false
			return
		case <-time.After(100 * time.Millisecond):
		}
		kept <- true
		_, _ = io.WriteString(w, "answered")
	})
	followUps := []string{
		"hello\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
	}
	for _, followUp := range followUps {
		got := s.exchange(t, "GET /one HTTP/1.1\r\nHost: a\r\n\r\n"+followUp)
		assert.True(t, <-kept, "the request before %q was cancelled", followUp)
		assert.True(t, strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n"), "%q", got)
		assert.Contains(t, got, "\r\n\r\nansweredHTTP/1.1 400 Bad Request\r\n", "its answer, then the refusal")
	}
}

func TestListenerChecksWhatFollowsAnUpgradeThatDidNotSwitch(t *testing.T) {
	t.Parallel()
	s := newCheckedServer(t, ListenerOptions{CheckFromUnread: true}, nil)
	const upgrade = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n"
	got := s.exchange(t, upgrade+"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"+
		"POST /smuggled HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	assert.Equal(t, []string{"GET /ws ", "GET /next "}, s.requestsSeen())
	assert.Equal(t, 2, strings.Count(got, "HTTP/1.1 200 OK"), "%q", got)
	assert.Contains(t, got, "HTTP/1.1 400 Bad Request")
	select {
	case r := <-s.rejected:
		assert.Equal(t, reasonLengthAndChunked, r.reason)
	case <-time.After(hangGuard):
		t.Fatal("the rejection was not reported")
	}
}

func TestListenerEndsAConnectionThatSendsTooMuchBehindAnUpgrade(t *testing.T) {
	t.Parallel()
	answered := make(chan struct{})
	s := newCheckedServer(t, ListenerOptions{CheckFromUnread: true}, func(w http.ResponseWriter, r *http.Request) {
		// An answer that never comes while the client floods; once the
		// client counts as gone, the connection is cut, as the proxy does.
		<-r.Context().Done()
		close(answered)
		panic(http.ErrAbortHandler)
	})
	got := s.exchange(t, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n"+strings.Repeat("x", maxHeld+1))
	assert.Empty(t, got)
	select {
	case <-answered:
	case <-time.After(hangGuard):
		t.Fatal("the request was not ended")
	}
	select {
	case r := <-s.rejected:
		assert.Equal(t, reasonHeldTooMuch, r.reason)
	case <-time.After(hangGuard):
		t.Fatal("the rejection was not reported")
	}
}

// deferredConn returns a connection with its check deferred to Unread, over
// which the client sends sent and closes.
func deferredConn(t *testing.T, h2c bool, sent string) *conn {
	t.Helper()
	client, server := net.Pipe()
	t.Cleanup(func() { _ = server.Close() })
	go func() {
		_, _ = io.WriteString(client, sent)
		_ = client.Close()
	}()
	return (&Listener{}).checked(server, h2c, true)
}

func TestACheckDeferredStartsWithTheBytesGivenBack(t *testing.T) {
	t.Parallel()
	smuggling := "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"
	c := deferredConn(t, false, smuggling)
	read, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, smuggling, string(read), "before the hand-over, the server in front reads the bytes as they came")

	c.Unread(read)
	checked, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n"+string(rejectedLine), string(checked),
		"the bytes given back are checked as a request")
	assert.Equal(t, reasonDuplicateLength, c.check.reason)
}

func TestACheckDeferredToNothingGivenBackChecksFromThere(t *testing.T) {
	t.Parallel()
	c := deferredConn(t, false, "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n")
	c.Unread(nil)
	checked, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n"+string(rejectedLine), string(checked))
	assert.Equal(t, reasonObsFold, c.check.reason)
}

func TestAnHTTP2PrefaceHandedOverOnlyOpensAConnection(t *testing.T) {
	t.Parallel()
	preface := prefaceLine + prefaceRest + "frames"
	first := deferredConn(t, true, preface)
	read := make([]byte, len(preface))
	_, err := io.ReadFull(first, read)
	require.NoError(t, err)
	first.Unread(read)
	got, err := io.ReadAll(first)
	require.NoError(t, err)
	assert.Equal(t, preface, string(got), "the connection's first bytes: HTTP/2, unchecked")

	served := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	later := deferredConn(t, true, served+preface)
	read = make([]byte, len(served+preface))
	_, err = io.ReadFull(later, read)
	require.NoError(t, err)
	later.Unread(read[len(served):])
	got, err = io.ReadAll(later)
	require.NoError(t, err)
	assert.Equal(t, prefaceLine+"\r\n", string(got), "after a request served in front, a preface is a head for the server to refuse, and nothing after it passes")
}

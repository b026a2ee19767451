package inbound

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// limitedServer serves behind limits; its handler reads the body and reports
// what it read, or the read error, on seen.
type limitedServer struct {
	*httptest.Server
	seen chan error
}

func newLimitedServer(t *testing.T, limits Limits, afterBody func(r *http.Request)) *limitedServer {
	t.Helper()
	s := &limitedServer{seen: make(chan error, 10)}
	s.Server = httptest.NewServer(limits.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		s.seen <- err
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if afterBody != nil {
			afterBody(r)
		}
		_, _ = io.WriteString(w, "ok")
	})))
	t.Cleanup(s.Close)
	return s
}

func (s *limitedServer) exchange(t *testing.T, raw string) string {
	t.Helper()
	conn, err := net.Dial("tcp", s.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, raw)
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(hangGuard)))
	got, err := io.ReadAll(conn)
	var netErr net.Error
	require.False(t, errors.As(err, &netErr) && netErr.Timeout(), "the connection was kept open after %q", got)
	return string(got)
}

func (s *limitedServer) handlerCalls() int {
	return len(s.seen)
}

func TestLimitsRefuseBeforeTheHandler(t *testing.T) {
	t.Parallel()
	headers := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "X-H: %d\r\n", i)
		}
		return b.String()
	}
	tests := []struct {
		name, raw string
		status    int
	}{
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", http.StatusBadRequest},
		{"asterisk form with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", http.StatusBadRequest},
		{"too many header fields", "GET / HTTP/1.1\r\nHost: a\r\n" + headers(11) + "\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"Content-Length over the cap", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newLimitedServer(t, Limits{MaxHeaders: 10, MaxBody: 10}, nil)
			got := s.exchange(t, tt.raw)
			assert.True(t, strings.HasPrefix(got, fmt.Sprintf("HTTP/1.1 %d ", tt.status)), "%q", got)
			assert.Contains(t, got, "Connection: close")
			assert.Zero(t, s.handlerCalls())
		})
	}
}

func TestLimitsLetThroughWhatFits(t *testing.T) {
	t.Parallel()
	s := newLimitedServer(t, Limits{MaxHeaders: 3, MaxBody: 10}, nil)
	got := s.exchange(t, "POST / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789")
	assert.True(t, strings.HasPrefix(got, "HTTP/1.1 200 "), "%q", got)
	require.NoError(t, <-s.seen)
}

func TestLimitsCutAChunkedBodyAtTheCap(t *testing.T) {
	t.Parallel()
	s := newLimitedServer(t, Limits{MaxBody: 10}, nil)
	got := s.exchange(t, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n6\r\n6789ab\r\n0\r\n\r\n")
	assert.True(t, strings.HasPrefix(got, "HTTP/1.1 400 "), "%q", got)
	var tooLarge *http.MaxBytesError
	assert.ErrorAs(t, <-s.seen, &tooLarge)
	assert.Contains(t, got, "Connection: close", "the rest of the body is not read")
}

func TestLimitsTimeAStalledBodyOut(t *testing.T) {
	t.Parallel()
	s := newLimitedServer(t, Limits{BodyReadTimeout: 50 * time.Millisecond}, nil)
	conn, err := net.Dial("tcp", s.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	// Half the body, then nothing.
	_, err = io.WriteString(conn, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234")
	require.NoError(t, err)
	select {
	case err := <-s.seen:
		assert.ErrorIs(t, err, ErrBodyReadTimeout)
	case <-time.After(hangGuard):
		t.Fatal("the stalled body was not timed out")
	}
}

func TestLimitsBodyTimeoutEndsWithTheBody(t *testing.T) {
	t.Parallel()
	const timeout = 50 * time.Millisecond
	wasCancelled := make(chan bool, 1)
	s := newLimitedServer(t, Limits{BodyReadTimeout: timeout}, func(r *http.Request) {
		// Well past the body's time-out, the request must still be alive:
		// the server's watch for the client leaving starts at the end of
		// the body and would take a leftover deadline for a leaving client.
		select {
		case <-r.Context().Done():
			wasCancelled <- true
		case <-time.After(6 * timeout):
			wasCancelled <- false
		}
	})
	resp, err := http.Post(s.URL, "text/plain", strings.NewReader("0123456789"))
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.False(t, <-wasCancelled)
}

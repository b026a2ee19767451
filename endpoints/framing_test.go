package endpoints

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hangGuard bounds the wait for something that must happen; it is a deadlock
// guard, not a timing assertion.
const hangGuard = 10 * time.Second

func TestFramingConnChecksTheFinalHead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		response  string
		ambiguous bool
	}{
		{"Content-Length then Transfer-Encoding", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", true},
		{"Transfer-Encoding then Content-Length", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", true},
		{"names in any case", "HTTP/1.1 200 OK\r\ncontent-length: 3\r\nTRANSFER-ENCODING: chunked\r\n\r\n", true},
		{"lines ended by a bare LF", "HTTP/1.1 200 OK\nContent-Length: 3\nTransfer-Encoding: chunked\n\n", true},
		{"after a 103", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", true},
		{"Content-Length only", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", false},
		{"chunked only", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", false},
		{"a value naming the other header", "HTTP/1.1 200 OK\r\nX-Note: Content-Length\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"a body that looks like a head", "HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"101 is a final head", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", false},
	}
	for _, tt := range tests {
		for _, split := range []bool{false, true} {
			name := tt.name
			if split {
				name += ", a byte at a time"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				conn, other := net.Pipe()
				t.Cleanup(func() { other.Close() })
				c := &framingConn{Conn: conn}
				c.arm(t.Context())
				if split {
					for i := range len(tt.response) {
						c.check([]byte(tt.response[i : i+1]))
					}
				} else {
					c.check([]byte(tt.response))
				}
				if !tt.ambiguous {
					assert.NoError(t, c.verdict())
					conn.Close()
					return
				}
				assert.ErrorIs(t, c.verdict(), ErrAmbiguousFraming)
				// A hang guard: on an open pipe, the read would block for ever.
				_ = conn.SetReadDeadline(time.Now().Add(hangGuard))
				_, err := conn.Read(make([]byte, 1))
				assert.ErrorIs(t, err, io.ErrClosedPipe, "the connection is closed")
				c.arm(t.Context())
				assert.ErrorIs(t, c.verdict(), ErrAmbiguousFraming, "the verdict stays")
			})
		}
	}
}

// rawServer answers each request on its connections with replies[i], i the
// number of requests answered so far, and counts the connections.
func rawServer(t *testing.T, replies ...string) (url string, accepted *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted = &atomic.Int32{}
	var (
		served   atomic.Int32
		handlers sync.WaitGroup
		connsMu  sync.Mutex
		conns    []net.Conn
	)
	handlers.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			connsMu.Lock()
			conns = append(conns, conn)
			connsMu.Unlock()
			handlers.Go(func() {
				defer conn.Close()
				reader := bufio.NewReader(conn)
				for {
					req, err := http.ReadRequest(reader)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					i := int(served.Add(1)) - 1
					if i >= len(replies) {
						return
					}
					if _, err := io.WriteString(conn, replies[i]); err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		connsMu.Lock()
		for _, conn := range conns {
			conn.Close()
		}
		connsMu.Unlock()
		handlers.Wait()
	})
	return "http://" + ln.Addr().String(), accepted
}

// roundTrip sends a GET to url through transport with its framing watched,
// and returns the answer's body or the framing's verdict.
func roundTrip(t *testing.T, transport *Transport, url string) (string, error) {
	t.Helper()
	watch, ctx := NewWatch(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := transport.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.True(t, watch.Wrote())
	if err := watch.Verdict(); err != nil {
		return "", err
	}
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(body), nil
}

func TestWatch(t *testing.T) {
	t.Parallel()
	const clean = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean"
	ambiguous := []struct{ name, reply string }{
		{"with a body", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfaulty\r\n0\r\n\r\n"},
		// Go reads no body after a 204, so closing the body would not close
		// the connection; the check has to.
		{"without a body", "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"},
	}
	for _, tt := range ambiguous {
		t.Run("an ambiguous head "+tt.name+" fails, and its connection is never reused", func(t *testing.T) {
			t.Parallel()
			url, accepted := rawServer(t, tt.reply, clean)
			transport := NewTransport(1)
			t.Cleanup(transport.CloseIdleConnections)
			_, err := roundTrip(t, transport, url)
			assert.ErrorIs(t, err, ErrAmbiguousFraming)
			body, err := roundTrip(t, transport, url)
			require.NoError(t, err)
			assert.Equal(t, "clean", body)
			assert.Equal(t, int32(2), accepted.Load())
		})
	}
	t.Run("clean heads keep their connection", func(t *testing.T) {
		t.Parallel()
		url, accepted := rawServer(t, clean, clean)
		transport := NewTransport(1)
		t.Cleanup(transport.CloseIdleConnections)
		for range 2 {
			body, err := roundTrip(t, transport, url)
			require.NoError(t, err)
			assert.Equal(t, "clean", body)
		}
		assert.Equal(t, int32(1), accepted.Load())
	})
	t.Run("a TLS connection is not checked and still works", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "secure")
		}))
		t.Cleanup(srv.Close)
		transport := NewTransport(1)
		transport.http1.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
		t.Cleanup(transport.CloseIdleConnections)
		body, err := roundTrip(t, transport, srv.URL)
		require.NoError(t, err)
		assert.Equal(t, "secure", body)
	})
}

func TestCancelledRequestResetsItsConnection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		cancel    bool
		wantReset bool
	}{
		{"a cancelled request's connection is reset", true, true},
		{"an idle connection closes gracefully, though its last request's context ended", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			listener, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			t.Cleanup(func() { listener.Close() })
			// The endpoint's view of the connection's end.
			ended, gotRequest := make(chan error, 1), make(chan struct{})
			go func() {
				conn, err := listener.Accept()
				if err != nil {
					ended <- err
					return
				}
				defer conn.Close()
				reader := bufio.NewReader(conn)
				if _, err := http.ReadRequest(reader); err != nil {
					ended <- err
					return
				}
				close(gotRequest)
				if !tt.cancel {
					_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
				_ = conn.SetReadDeadline(time.Now().Add(hangGuard))
				_, err = reader.ReadByte()
				ended <- err
			}()
			transport := NewTransport(1)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			_, ctx = NewWatch(ctx)
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+listener.Addr().String()+"/", nil)
			require.NoError(t, err)
			if tt.cancel {
				done := make(chan error, 1)
				go func() {
					_, err := transport.RoundTrip(req)
					done <- err
				}()
				// Cancel once the endpoint has the request; it never answers.
				<-gotRequest
				cancel()
				require.ErrorIs(t, <-done, context.Canceled)
			} else {
				resp, err := transport.RoundTrip(req)
				require.NoError(t, err)
				_, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				// As the engine does once a request is over, winner or not.
				cancel()
				transport.CloseIdleConnections()
			}
			err = <-ended
			if tt.wantReset {
				assert.ErrorIs(t, err, syscall.ECONNRESET, "reset, so that no TIME_WAIT is left behind")
			} else {
				assert.ErrorIs(t, err, io.EOF, "closed gracefully")
			}
		})
	}
}

package wire

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/internal/rawendpoint"
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
				c.arm(t.Context(), false)
				if split {
					for i := range len(tt.response) {
						c.follow([]byte(tt.response[i : i+1]))
					}
				} else {
					c.follow([]byte(tt.response))
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
				c.arm(t.Context(), false)
				assert.ErrorIs(t, c.verdict(), ErrAmbiguousFraming, "the verdict stays")
			})
		}
	}
}

// rawServer answers each request on its connections with replies[i], i the
// number of requests answered so far, and closes the connection once they
// are all sent.
func rawServer(t *testing.T, replies ...string) *rawendpoint.Endpoint {
	t.Helper()
	var served atomic.Int32
	return rawendpoint.New(t, func(*http.Request) string {
		if i := int(served.Add(1)) - 1; i < len(replies) {
			return replies[i]
		}
		return ""
	})
}

// roundTrip sends a GET to url through transport and returns the answer's
// body, or the error of the round trip.
func roundTrip(t *testing.T, transport *Transport, url string) (string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := transport.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(body), nil
}

func TestTransportChecksHeads(t *testing.T) {
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
			endpoint := rawServer(t, tt.reply, clean)
			transport := New(Options{MaxIdlePerHost: 1})
			t.Cleanup(transport.CloseIdleConnections)
			_, err := roundTrip(t, transport, endpoint.URL)
			assert.ErrorIs(t, err, ErrAmbiguousFraming)
			body, err := roundTrip(t, transport, endpoint.URL)
			require.NoError(t, err)
			assert.Equal(t, "clean", body)
			assert.Equal(t, 2, endpoint.Connections())
		})
	}
	t.Run("clean heads keep their connection", func(t *testing.T) {
		t.Parallel()
		endpoint := rawServer(t, clean, clean)
		transport := New(Options{MaxIdlePerHost: 1})
		t.Cleanup(transport.CloseIdleConnections)
		for range 2 {
			body, err := roundTrip(t, transport, endpoint.URL)
			require.NoError(t, err)
			assert.Equal(t, "clean", body)
		}
		assert.Equal(t, 1, endpoint.Connections())
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
			transport := New(Options{MaxIdlePerHost: 1})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
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

// request sends method to url through transport and returns the answer's
// status and body.
func request(t *testing.T, transport *Transport, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	require.NoError(t, err)
	resp, err := transport.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestTransportCutsAnswersAtTheirFraming(t *testing.T) {
	t.Parallel()
	const (
		next = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"
		fake = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON"
	)
	tests := []struct {
		name, method, reply string
		status              int
		body                string
		// reused: the answer ended where its framing says, so its
		// connection may carry the next request.
		reused bool
	}{
		{"Content-Length, then more bytes", http.MethodGet, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789" + "0123456789", 200, "0123456789", false},
		{"Content-Length, then a whole answer", http.MethodGet, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789" + fake, 200, "0123456789", false},
		{"chunked, then bytes after the last chunk", http.MethodGet, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + fake, 200, "abc", false},
		{"chunked with a trailer, then more", http.MethodGet, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\nPOISON", 200, "abc", false},
		{"a HEAD answer with a body", http.MethodHead, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON", 200, "", false},
		{"a 204 with a body", http.MethodGet, "HTTP/1.1 204 No Content\r\n\r\nPOISON", 204, "", false},
		{"a 304 with a body", http.MethodGet, "HTTP/1.1 304 Not Modified\r\nContent-Length: 6\r\n\r\nPOISON", 304, "", false},
		{"a 103, then an answer and more bytes", http.MethodGet, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + fake, 200, "ok", false},
		{"Content-Length, exactly", http.MethodGet, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, "ok", true},
		{"chunked, exactly", http.MethodGet, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n", 200, "abc0123456789abcdef", true},
		{"a head of lines ended by a bare LF", http.MethodGet, "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", 200, "ok", true},
		{"a HEAD answer with a length and no body", http.MethodHead, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n", 200, "", true},
		{"a 204", http.MethodGet, "HTTP/1.1 204 No Content\r\n\r\n", 204, "", true},
		{"an empty body", http.MethodGet, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 200, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			endpoint := rawServer(t, tt.reply, next)
			transport := New(Options{MaxIdlePerHost: 1})
			t.Cleanup(transport.CloseIdleConnections)
			status, body := request(t, transport, tt.method, endpoint.URL)
			assert.Equal(t, tt.status, status)
			assert.Equal(t, tt.body, body, "the answer is cut at its framing")
			status, body = request(t, transport, http.MethodGet, endpoint.URL)
			assert.Equal(t, 200, status)
			assert.Equal(t, "next", body, "the next request gets its own answer")
			connections := 2
			if tt.reused {
				connections = 1
			}
			assert.Equal(t, connections, endpoint.Connections(), "a connection that showed bytes past an answer is not reused")
		})
	}
}

func TestTransportCapsResponseHeads(t *testing.T) {
	t.Parallel()
	manyFields := "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Many: 1\r\n", 11) + "Content-Length: 2\r\n\r\nok"
	bigField := "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 2<<10) + "\r\nContent-Length: 2\r\n\r\nok"
	tests := []struct {
		name, reply string
		want        error
	}{
		{"more fields than the cap", manyFields, ErrResponseHeaders},
		{"a head over the cap", bigField, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			endpoint := rawServer(t, tt.reply)
			transport := New(Options{MaxIdlePerHost: 1, MaxResponseHeaders: 10, MaxResponseHeaderBytes: 1 << 10})
			t.Cleanup(transport.CloseIdleConnections)
			_, err := roundTrip(t, transport, endpoint.URL)
			require.Error(t, err)
			if tt.want != nil {
				assert.ErrorIs(t, err, tt.want)
				assert.Contains(t, err.Error(), "12, over --max-response-headers 10")
			} else {
				assert.Contains(t, err.Error(), "exceeded 1024 bytes")
			}
		})
	}
	t.Run("heads within the caps pass", func(t *testing.T) {
		t.Parallel()
		endpoint := rawServer(t, "HTTP/1.1 200 OK\r\n"+strings.Repeat("X-Many: 1\r\n", 9)+"Content-Length: 2\r\n\r\nok")
		transport := New(Options{MaxIdlePerHost: 1, MaxResponseHeaders: 10, MaxResponseHeaderBytes: 1 << 10})
		t.Cleanup(transport.CloseIdleConnections)
		body, err := roundTrip(t, transport, endpoint.URL)
		require.NoError(t, err)
		assert.Equal(t, "ok", body)
	})
}

func TestTransportTellsWhatWasNotSent(t *testing.T) {
	t.Parallel()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	address := listener.Addr().String()
	require.NoError(t, listener.Close())
	transport := New(Options{MaxIdlePerHost: 1})
	_, err = roundTrip(t, transport, "http://"+address)
	require.Error(t, err)
	assert.True(t, NotSent(err), "a refused connection sent nothing: %v", err)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "the failure reads as it is")

	endpoint := rawServer(t, "junk\r\n\r\n")
	_, err = roundTrip(t, transport, endpoint.URL)
	require.Error(t, err)
	assert.False(t, NotSent(err), "the request was written: %v", err)
}

func TestFramingConnFindsTheEndOfAnAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, answer, after string
		head                bool
	}{
		{name: "Content-Length", answer: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", after: "0123456789"},
		{name: "chunked", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", after: "HTTP/1.1 200 OK\r\n"},
		{name: "chunked with extensions and a trailer", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3 ;a=b\r\nabc\r\n0\r\nX-T: 1\r\n\r\n", after: "x"},
		{name: "a HEAD answer", head: true, answer: "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n", after: "POISON"},
		{name: "204", answer: "HTTP/1.1 204 No Content\r\nContent-Length: 6\r\n\r\n", after: "POISON"},
		{name: "304", answer: "HTTP/1.1 304 Not Modified\r\n\r\n", after: "POISON"},
		{name: "a field longer than what is kept of a line", answer: "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 2*maxKeptLine) + "\r\nContent-Length: 2\r\n\r\nok", after: "POISON"},
		{name: "100 Continue, then the answer", answer: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", after: "\r\n"},
	}
	for _, tt := range tests {
		for _, whole := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s, whole %t", tt.name, whole), func(t *testing.T) {
				t.Parallel()
				c := &framingConn{}
				c.arm(t.Context(), tt.head)
				stream := []byte(tt.answer + tt.after)
				end := 0
				if whole {
					end = c.follow(stream)
				} else {
					for end < len(stream) && c.follow(stream[end:end+1]) == 1 {
						end++
					}
				}
				assert.Equal(t, len(tt.answer), end, "the answer ends at %q", stream[end:])
				assert.Equal(t, idle, c.phase)
			})
		}
	}
	notFollowed := []struct{ name, stream string }{
		{"a body that ends with the connection", "HTTP/1.1 200 OK\r\n\r\nall of it"},
		{"a switch of protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nanything"},
		{"a chunk size Go refuses", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nanything"},
		{"a chunk-size line longer than Go takes", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + strings.Repeat("x", maxKeptLine) + "\r\nanything"},
		{"a Content-Length that cannot be read whole", "HTTP/1.1 200 OK\r\nContent-Length: " + strings.Repeat(" ", maxKeptLine) + "2\r\n\r\nok"},
	}
	for _, tt := range notFollowed {
		t.Run(tt.name+" is not followed", func(t *testing.T) {
			t.Parallel()
			c := &framingConn{}
			c.arm(t.Context(), false)
			assert.Equal(t, len(tt.stream), c.follow([]byte(tt.stream)))
			assert.Equal(t, unframed, c.phase)
		})
	}
}

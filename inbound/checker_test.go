package inbound

import (
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkAll feeds raw to a new checker in pieces of size step (0: all at once)
// and returns what goes on to the server and the rejection reason.
func checkAll(raw string, step int) (string, string) {
	return checkStream(newChecker(false, false), raw, step)
}

// checkStream is checkAll with the checker c.
func checkStream(c *checker, raw string, step int) (string, string) {
	var out []byte
	in := []byte(raw)
	for len(in) > 0 {
		n := len(in)
		if step > 0 {
			n = min(step, n)
		}
		piece := append([]byte(nil), in[:n]...)
		pass, queued := c.feed(piece, nil)
		out = append(out, piece[:pass]...)
		out = append(out, queued...)
		in = in[n:]
	}
	return string(out), c.reason
}

func TestCheckerPassesValidRequests(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, raw string }{
		{"get", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"pipelined gets", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"content-length body with a head inside", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 36\r\n\r\nGET /x HTTP/1.1\r\nContent-Length: 1\r\n\r\n" +
			"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"chunked body with extensions and trailers", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n" +
			"3;x=y\r\nabc\r\n0A \r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"chunked body holding a folded line", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"8\r\nX: 1\r\n 2\r\n0\r\n\r\n"},
		{"bare LF head", "GET / HTTP/1.1\nHost: a\nContent-Length: 2\n\nabGET /2 HTTP/1.1\nHost: a\n\n"},
		{"http/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n"},
		{"CRLF after a POST", "POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\na\r\nGET /2 HTTP/1.1\r\n\r\n"},
		{"incomplete head", "GET / HTTP/1.1\r\nHost: a\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, step := range []int{0, 1, 2, 3, 7} {
				out, reason := checkAll(tt.raw, step)
				assert.Empty(t, reason, "step %d", step)
				assert.Equal(t, tt.raw, out, "step %d", step)
			}
		})
	}
}

func TestCheckerRejectsAmbiguousFraming(t *testing.T) {
	t.Parallel()
	first := "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n"
	tests := []struct{ name, raw, reason string }{
		{"content-length and chunked", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", reasonLengthAndChunked},
		{"chunked and content-length", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 0\r\n\r\n", reasonLengthAndChunked},
		{"two identical content-lengths", "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", reasonDuplicateLength},
		{"two different content-lengths", "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", reasonDuplicateLength},
		{"signed content-length", "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc", reasonInvalidLength},
		{"content-length list", "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc", reasonInvalidLength},
		{"empty content-length", "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", reasonInvalidLength},
		{"chunked in http/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n3\r\nabc\r\n0\r\n\r\n", reasonChunkedHTTP10},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n", reasonObsFold},
		{"obs-fold with a tab", "GET / HTTP/1.1\r\nX-A: one\r\n\ttwo\r\n\r\n", reasonObsFold},
		{"obs-fold in a trailer", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-T: 1\r\n 2\r\n\r\n", reasonObsFold},
		{"bare LF in a trailer", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-T: 1\n\r\n", reasonTrailerLF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, step := range []int{0, 1, 5} {
				out, reason := checkAll(first+tt.raw+first, step)
				assert.Equal(t, tt.reason, reason, "step %d", step)
				assert.True(t, strings.HasPrefix(out, first), "step %d: the request before goes on: %q", step, out)
				assert.True(t, strings.HasSuffix(out, string(rejectedLine)), "step %d: the rejection ends the stream: %q", step, out)
				assert.Equal(t, 1, strings.Count(out, "GET /ok"), "step %d: nothing after the rejected request goes on: %q", step, out)
			}
		})
	}
}

func TestCheckerLetsGoRejectWhatItRejects(t *testing.T) {
	t.Parallel()
	// Go's server refuses these heads (or bodies) and closes the connection;
	// the checker passes them up to where it can no longer follow, and
	// nothing after, whatever the server does.
	after := "GET /after HTTP/1.1\r\nX: 1\r\n 2\r\n\r\n"
	tests := []struct{ name, passed string }{
		{"gzip, chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"},
		{"two Transfer-Encoding fields", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"bad chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"},
		{"bare LF chunk line", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\n"},
		{"http/2 preface", "PRI * HTTP/2.0\r\n\r\n"},
		{"no version", "GET /\r\n\r\n"},
		{"a field line without a colon", "GET / HTTP/1.1\r\nNoColon\r\n\r\n"},
		{"leading empty line", "\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, step := range []int{0, 1, 3} {
				out, reason := checkAll(tt.passed+after, step)
				assert.Empty(t, reason, "step %d", step)
				assert.Equal(t, tt.passed, out, "step %d", step)
			}
		})
	}
}

func TestCheckerLetsHTTP2GoOnlyAfterItsWholePreface(t *testing.T) {
	t.Parallel()
	frames := "\x00\x00\x00\x04\x00\x00\x00\x00\x00 anything\r\n 1\r\n"
	smuggled := "Host: a\r\nContent-Length: 5\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"
	tests := []struct {
		name, raw, passed string
		h2c               bool
	}{
		{name: "the preface, then frames", h2c: true, raw: prefaceLine + prefaceRest + frames, passed: prefaceLine + prefaceRest + frames},
		{name: "its first line, then fields", h2c: true, raw: prefaceLine + smuggled, passed: prefaceLine},
		{name: "part of the rest", h2c: true, raw: prefaceLine + "\r\nSM\r\nX: 1\r\n\r\n", passed: prefaceLine + "\r\nSM\r\n"},
		{name: "a bare LF first line", h2c: true, raw: "PRI * HTTP/2.0\n" + prefaceRest + frames, passed: "PRI * HTTP/2.0\n\r\n"},
		{name: "not the first request", h2c: true, raw: "GET / HTTP/1.1\r\n\r\n" + prefaceLine + prefaceRest + frames,
			passed: "GET / HTTP/1.1\r\n\r\n" + prefaceLine + "\r\n"},
		{name: "without h2c", raw: prefaceLine + prefaceRest + frames, passed: prefaceLine + "\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, step := range []int{0, 1, 3} {
				out, reason := checkStream(newChecker(tt.h2c, false), tt.raw, step)
				assert.Empty(t, reason, "step %d", step)
				assert.Equal(t, tt.passed, out, "step %d", step)
			}
		})
	}
}

// recordingServer is a Go http.Server that records, per client connection,
// the requests it serves (method, target, body, a header and a trailer),
// for comparing what it makes of raw bytes with and without the checker.
type recordingServer struct {
	addr string
	mu   sync.Mutex
	seen map[string][]string
}

func newRecordingServer(tb testing.TB, checked bool) *recordingServer {
	tb.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	s := &recordingServer{addr: tcp.Addr().String(), seen: map[string][]string{}}
	var listener net.Listener = tcp
	server := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				body = []byte("body error")
			}
			s.mu.Lock()
			s.seen[r.RemoteAddr] = append(s.seen[r.RemoteAddr], r.Method+" "+r.RequestURI+" "+string(body)+" "+r.Header.Get("X")+" "+r.Trailer.Get("X"))
			s.mu.Unlock()
		}),
		// Small, so that heads around the limit are exercised.
		MaxHeaderBytes:    1 << 10,
		ReadHeaderTimeout: 2 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	if checked {
		checking := NewListener(tcp, ListenerOptions{})
		listener, server.ConnState = checking, checking.ConnState
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = server.Serve(listener)
	}()
	tb.Cleanup(func() {
		_ = server.Close()
		<-served
	})
	return s
}

// serve sends raw on a new connection, ends the client's side, reads until
// the server closes and returns the requests the server served on it.
func (s *recordingServer) serve(tb testing.TB, raw []byte) []string {
	tb.Helper()
	conn, err := net.Dial("tcp", s.addr)
	require.NoError(tb, err)
	defer conn.Close()
	require.NoError(tb, conn.SetDeadline(time.Now().Add(hangGuard)))
	_, _ = conn.Write(raw)
	_ = conn.(*net.TCPConn).CloseWrite()
	_, _ = io.Copy(io.Discard, conn)
	s.mu.Lock()
	defer s.mu.Unlock()
	key := conn.LocalAddr().String()
	seen := s.seen[key]
	delete(s.seen, key)
	return seen
}

// FuzzChecker feeds raw client bytes to the checker in pieces, checking that
// the pieces do not matter, and to two real Go servers, one behind the
// checking Listener: the checked server must serve the same requests as the
// other, up to a rejection, and none after it.
//
//	go test -run XXX -fuzz FuzzChecker -fuzztime 5m ./inbound/
func FuzzChecker(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"), uint8(0))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /s HTTP/1.1\r\n\r\n"), uint8(1))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;e\r\nabc\r\n0\r\nX: 1\r\n\r\nGET /2 HTTP/1.1\nHost: a\nX: 2\n\n"), uint8(3))
	f.Add([]byte("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\nGET /s HTTP/1.1\r\n\r\n"), uint8(2))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"), uint8(7))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nabGET /s HTTP/1.1\r\nHost: a\r\n\r\n"), uint8(4))
	f.Add([]byte("POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /s HTTP/1.1\r\nHost: a\r\n\r\n"), uint8(5))
	f.Add([]byte("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nX: "+strings.Repeat("a", 1500)+"\r\n\r\nGET /s HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"), uint8(9))
	raw, checked := newRecordingServer(f, false), newRecordingServer(f, true)
	f.Fuzz(func(t *testing.T, input []byte, step uint8) {
		whole, wholeReason := checkAll(string(input), 0)
		pieces, piecesReason := checkAll(string(input), int(step%16)+1)
		require.Equal(t, whole, pieces, "the pieces a stream arrives in change nothing")
		require.Equal(t, wholeReason, piecesReason)

		original := raw.serve(t, input)
		seen := checked.serve(t, input)
		require.LessOrEqual(t, len(seen), len(original), "the checker adds no request: %q then %q", seen, original)
		for i := range seen {
			if wholeReason != "" && i == len(seen)-1 && strings.Contains(seen[i], " body error ") {
				// Rejected in its trailer: the request's body fails.
				continue
			}
			require.Equal(t, original[i], seen[i], "requests the checker passes are served as they would be")
		}
		if wholeReason != "" {
			return
		}
		// Without a rejection, the checker may only stop where the server
		// refuses anyway.
		require.Equal(t, len(original), len(seen), "a request was lost without a rejection")
	})
}

func TestCheckerHoldsWhatFollowsAnUpgradeRequest(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, upgrade string }{
		{"no body", "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n"},
		{"a Content-Length body", "POST /ws HTTP/1.1\r\nHost: a\r\nUpgrade: x\r\nconnection: upgrade\r\nContent-Length: 3\r\n\r\nabc"},
		{"a chunked body", "POST /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"},
		{"a Connection line too long to read whole", "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: x\r\nConnection: " + strings.Repeat("a,", maxFieldLine) + "\r\n\r\n"},
	}
	const next = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
	// Refused as a request, for its obs-fold.
	behind := "GET /x HTTP/1.1\r\nX: 1\r\n 2\r\n\r\n"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, step := range []int{0, 1, 4} {
				c := newChecker(false, false)
				out, reason := checkStream(c, tt.upgrade+behind, step)
				assert.Empty(t, reason)
				assert.Equal(t, tt.upgrade, out, "step %d: nothing behind the upgrade goes on before its answer", step)
				assert.Equal(t, behind, string(c.held))

				// Not switched: what was held is the next request.
				c = newChecker(false, false)
				out, _ = checkStream(c, tt.upgrade+next+behind, step)
				require.Equal(t, tt.upgrade, out)
				pass, queued := c.resume()
				assert.Equal(t, next+"GET /x HTTP/1.1\r\nX: 1\r\n"+string(rejectedLine), string(pass)+string(queued), "step %d: checked as requests again", step)
				assert.Equal(t, reasonObsFold, c.reason)
			}
		})
	}
	t.Run("not an upgrade", func(t *testing.T) {
		t.Parallel()
		for _, raw := range []string{
			"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n" + next,
			"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgraded\r\nUpgrade: x\r\n\r\n" + next,
		} {
			out, reason := checkAll(raw, 0)
			assert.Empty(t, reason)
			assert.Equal(t, raw, out, "Upgrade alone, or without the token in Connection, switches nothing")
		}
	})
	t.Run("too much held", func(t *testing.T) {
		t.Parallel()
		c := newChecker(false, false)
		out, reason := checkStream(c, tests[0].upgrade+strings.Repeat("x", maxHeld+1), 1000)
		assert.Equal(t, tests[0].upgrade, out)
		assert.Equal(t, reasonHeldTooMuch, reason)
		assert.Equal(t, cut, c.phase)
		assert.Empty(t, c.held)
	})
}

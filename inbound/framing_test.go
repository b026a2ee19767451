package inbound

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testMaxHead is the checker's head limit in these tests.
const testMaxHead = 1 << 10

// checkAll feeds raw to a new checker in pieces of size step (0: all at once)
// and returns what goes on to the server and the rejection reason.
func checkAll(raw string, step int) (string, string) {
	c := newChecker(testMaxHead)
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
			"9\r\nX: 1\r\n 2\r\n0\r\n\r\n"},
		{"bare LF head", "GET / HTTP/1.1\nHost: a\nContent-Length: 2\n\nabGET /2 HTTP/1.1\nHost: a\n\n"},
		{"http/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n"},
		{"incomplete head", "GET / HTTP/1.1\r\nHost: a\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, step := range []int{0, 1, 2, 3, 7} {
				out, reason := checkAll(tt.raw, step)
				assert.Empty(t, reason, "step %d", step)
				if strings.HasSuffix(tt.raw, "\n\n") || strings.HasSuffix(tt.raw, "\r\n\r\n") || !strings.HasPrefix(tt.name, "incomplete") {
					assert.Equal(t, tt.raw, out, "step %d", step)
				} else {
					assert.Empty(t, out, "an incomplete head is held back (step %d)", step)
				}
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
				if strings.Contains(tt.name, "trailer") {
					// The head went on before the trailer was seen; the
					// trailer is replaced, so the body fails.
					assert.True(t, strings.HasSuffix(out, string(rejectedHead)), "step %d: %q", step, out)
					continue
				}
				assert.Equal(t, first+string(rejectedHead), out, "step %d: nothing of the request, nor after it, goes on", step)
			}
		})
	}
}

func TestCheckerLetsGoRejectWhatItRejects(t *testing.T) {
	t.Parallel()
	// Go's server refuses these and closes the connection; the checker lets
	// them through unchanged and stops following the stream.
	tests := []struct{ name, raw string }{
		{"gzip, chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\nGET /x HTTP/1.1\r\nX: 1\r\n 2\r\n\r\n"},
		{"bad chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /x HTTP/1.1\r\nX: 1\r\n 2\r\n\r\n"},
		{"bare LF chunk line", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\na\r\n0\r\n\r\n"},
		{"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04"},
		{"head over the limit", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", testMaxHead) + "\r\n\r\nGET /x HTTP/1.1\r\nX: 1\r\n 2\r\n\r\n"},
		{"no version", "GET /\r\n\r\nGET /x HTTP/1.1\r\nX: 1\r\n 2\r\n\r\n"},
		{"leading empty line", "\r\nGET / HTTP/1.1\r\nX: 1\r\n 2\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, step := range []int{0, 1, 3} {
				out, reason := checkAll(tt.raw, step)
				assert.Empty(t, reason, "step %d", step)
				assert.Equal(t, tt.raw, out, "step %d", step)
			}
		})
	}
}

// parseRequests parses raw as a server would, request by request with their
// bodies, until the bytes end or fail to parse, and returns a line per request.
func parseRequests(raw []byte) []string {
	r := bufio.NewReader(bytes.NewReader(raw))
	var seen []string
	for len(seen) < 100 {
		req, err := http.ReadRequest(r)
		if err != nil {
			return seen
		}
		body, err := io.ReadAll(req.Body)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return seen
		}
		seen = append(seen, req.Method+" "+req.RequestURI+" "+string(body)+" "+req.Header.Get("X")+" "+req.Trailer.Get("X"))
	}
	return seen
}

// FuzzChecker feeds raw client bytes to the checker in pieces and checks
// that the pieces do not matter, and that the server parses the checked
// bytes into the same requests as the raw ones, up to a rejection, and none
// after it.
func FuzzChecker(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"), uint8(0))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /s HTTP/1.1\r\n\r\n"), uint8(1))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;e\r\nabc\r\n0\r\nX: 1\r\n\r\nGET /2 HTTP/1.1\nX: 2\n\n"), uint8(3))
	f.Add([]byte("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\nGET /s HTTP/1.1\r\n\r\n"), uint8(2))
	f.Add([]byte("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), uint8(7))
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nabGET /s HTTP/1.1\r\n\r\n"), uint8(4))
	f.Fuzz(func(t *testing.T, raw []byte, step uint8) {
		whole, wholeReason := checkAll(string(raw), 0)
		pieces, piecesReason := checkAll(string(raw), int(step%16)+1)
		require.Equal(t, whole, pieces, "the pieces a stream arrives in change nothing")
		require.Equal(t, wholeReason, piecesReason)

		checked := parseRequests([]byte(whole))
		original := parseRequests(raw)
		if wholeReason == "" && !strings.Contains(whole, string(rejectedHead)) {
			require.Equal(t, original, checked, "checked bytes parse as the raw ones")
			return
		}
		require.LessOrEqual(t, len(checked), len(original), "a rejection adds no request")
		for i := range checked {
			require.Equal(t, original[i], checked[i], "requests before a rejection are unchanged")
		}
	})
}

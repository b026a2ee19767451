package endpoints

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/internal/rawendpoint"
)

// FuzzParse checks that whatever an endpoint list and a request path are,
// Parse either refuses the list with a one-line error or accepts only http(s)
// URLs with a host, and Outgoing builds a request for that host whose path
// starts with the endpoint's prefix.
func FuzzParse(f *testing.F) {
	seeds := []struct{ list, path string }{
		{"http://127.0.0.1:8000", "/"},
		{"https://two.com/public-apis", "/v1/x?a=1"},
		{"http://a,https://b/c/", "/a%2Fb?q=%20"},
		{"localhost:8000", "/"},
		{"http://[::1]:80/p", "/x"},
		{"ftp://x", "/"},
		{"http://", ""},
		{"http://u:p@h", "/"},
	}
	for _, seed := range seeds {
		f.Add(seed.list, seed.path)
	}
	f.Fuzz(func(t *testing.T, list, path string) {
		parsed, err := Parse(list)
		if err != nil {
			assert.NotContains(t, err.Error(), "\n")
			assert.Contains(t, err.Error(), "accepted:")
			return
		}
		in, err := http.NewRequest(http.MethodGet, "http://client.example"+path, nil)
		if err != nil || !strings.HasPrefix(path, "/") {
			return
		}
		in.RemoteAddr = "192.0.2.1:1234"
		for i, e := range parsed {
			require.Equal(t, i, e.Index)
			require.Contains(t, []string{"http", "https"}, e.URL.Scheme)
			require.NotEmpty(t, e.URL.Hostname())
			out := e.Outgoing(context.Background(), in, nil, 0, nil)
			assert.Equal(t, e.URL.Host, out.URL.Host)
			assert.Equal(t, e.URL.Host, out.Host)
			assert.True(t, strings.HasPrefix(out.URL.Path, strings.TrimSuffix(e.URL.Path, "/")), "path %q outside prefix %q", out.URL.Path, e.URL.Path)
			assert.Equal(t, in.URL.RawQuery, out.URL.RawQuery)
		}
	})
}

// answerKinds are answers an endpoint may give, each naming the request it
// answers (uri) in X-Answer-To, and in its body where it has one.
var answerKinds = []struct {
	method string
	answer func(uri string) string
	// body is set when the answer has a body, the uri.
	body bool
}{
	{http.MethodGet, func(uri string) string {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Answer-To: %s\r\nContent-Length: %d\r\n\r\n%s", uri, len(uri), uri)
	}, true},
	{http.MethodGet, func(uri string) string {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Answer-To: %s\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", uri, len(uri), uri)
	}, true},
	{http.MethodHead, func(uri string) string {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Answer-To: %s\r\nContent-Length: %d\r\n\r\n", uri, len(uri))
	}, false},
	{http.MethodGet, func(uri string) string {
		return fmt.Sprintf("HTTP/1.1 204 No Content\r\nX-Answer-To: %s\r\n\r\n", uri)
	}, false},
	{http.MethodGet, func(uri string) string {
		return fmt.Sprintf("HTTP/1.1 304 Not Modified\r\nX-Answer-To: %s\r\nContent-Length: 6\r\n\r\n", uri)
	}, false},
}

// FuzzAnswersStayWithTheirRequests has an endpoint answer every request with
// one of answerKinds followed by raw bytes, and sends requests through the
// Transport from several goroutines at once: every answer that arrives must
// be its own request's, and carry its body exactly. (A request may fail: the
// bytes can be anything.)
//
//	go test -run XXX -fuzz FuzzAnswersStayWithTheirRequests -fuzztime 5m ./endpoints/
func FuzzAnswersStayWithTheirRequests(f *testing.F) {
	f.Add(uint8(0), []byte("0123456789"))
	f.Add(uint8(0), []byte("HTTP/1.1 200 OK\r\nX-Answer-To: POISON\r\nContent-Length: 6\r\n\r\nPOISON"))
	f.Add(uint8(1), []byte("HTTP/1.1 200 OK\r\nX-Answer-To: POISON\r\nContent-Length: 6\r\n\r\nPOISON"))
	f.Add(uint8(1), []byte("\r\n"))
	f.Add(uint8(2), []byte("/head"))
	f.Add(uint8(3), []byte("POISON"))
	f.Add(uint8(4), []byte("POISON"))
	f.Add(uint8(0), []byte(""))
	f.Fuzz(func(t *testing.T, kind uint8, surplus []byte) {
		answer := answerKinds[int(kind)%len(answerKinds)]
		endpoint := rawendpoint.New(t, func(req *http.Request) string {
			return answer.answer(req.URL.RequestURI()) + string(surplus)
		})
		transport := NewTransport(TransportOptions{MaxIdlePerHost: 2})
		defer transport.CloseIdleConnections()
		var clients sync.WaitGroup
		for client := range 3 {
			clients.Go(func() {
				for round := range 5 {
					uri := fmt.Sprintf("/?client=%d&round=%d", client, round)
					req, err := http.NewRequest(answer.method, endpoint.URL+uri, nil)
					if err != nil {
						t.Error(err)
						return
					}
					resp, err := transport.RoundTrip(req)
					if err != nil {
						continue
					}
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					want := ""
					if answer.body {
						want = uri
					}
					if got := resp.Header.Get("X-Answer-To"); got != uri {
						t.Errorf("%s got the answer to %q", uri, got)
					} else if err == nil && string(body) != want {
						t.Errorf("%s got the body %q, not %q", uri, body, want)
					}
				}
			})
		}
		clients.Wait()
	})
}

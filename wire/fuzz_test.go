package wire

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"balancing-reverse-proxy/internal/rawendpoint"
)

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
//	go test -run XXX -fuzz FuzzAnswersStayWithTheirRequests -fuzztime 5m ./wire/
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
		transport := New(Options{MaxIdlePerHost: 2})
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

package fanout

import (
	"bufio"
	"bytes"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"balancing-reverse-proxy/inbound"
	"balancing-reverse-proxy/internal/syncbuffer"
)

// FuzzRequestPath sends raw client bytes, behind a good request, through the
// whole request path (the inbound listener's framing checks, the limits, the
// engine) to an endpoint, over real sockets, and checks that nothing panics,
// that the good request gets the endpoint's answer first, that the proxy
// never answers 500 nor makes up a 200, and that what reaches the endpoint is
// a clean request: only its own forwarding headers, no hop-by-hop header, no
// framing of the client's.
//
//	go test -run XXX -fuzz FuzzRequestPath -fuzztime 5m ./fanout/
func FuzzRequestPath(f *testing.F) {
	seeds := []string{
		"GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /s HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: X-Forwarded-For, Upgrade\r\nUpgrade: h2c\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
		"GET http://evil/x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00",
	}
	for _, seed := range seeds {
		f.Add([]byte(seed))
	}

	var seen struct {
		sync.Mutex
		problems []string
	}
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var problems []string
		upgrade := r.Header.Get("Connection") == "Upgrade" && r.Header.Get("Upgrade") != ""
		for _, name := range hopByHopNames {
			if upgrade && (name == "Connection" || name == "Upgrade") {
				// The one hop-by-hop pair the proxy sends itself, to upgrade.
				continue
			}
			if _, ok := r.Header[name]; ok {
				problems = append(problems, "hop-by-hop header reached the endpoint: "+name)
			}
		}
		if got := r.Header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
			problems = append(problems, "X-Forwarded-For is not the client's alone: "+strings.Join(got, "|"))
		}
		if r.ContentLength >= 0 && len(r.TransferEncoding) > 0 {
			problems = append(problems, "both a length and a transfer encoding")
		}
		seen.Lock()
		seen.problems = append(seen.problems, problems...)
		seen.Unlock()
		w.Header().Set("X-Endpoint", "yes")
		_, _ = io.WriteString(w, "ok")
	}))
	f.Cleanup(endpoint.Close)
	proxy := buildProxy(f, Serial(), []string{endpoint.URL}, func(p *Proxy) {
		p.MaxBodyBuffer, p.MaxReplayMemory = 1<<10, 1<<20
	})
	limits := inbound.Limits{MaxHeaders: 50, MaxBody: 1 << 12, BodyReadTimeout: time.Second}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	var serverLog syncbuffer.Buffer
	listener := inbound.NewListener(tcp, inbound.ListenerOptions{})
	server := &http.Server{
		ConnState:         listener.ConnState,
		Handler:           limits.Handler(proxy),
		ReadHeaderTimeout: time.Second,
		MaxHeaderBytes:    4 << 10,
		ErrorLog:          log.New(&serverLog, "", 0),
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = server.Serve(listener)
	}()
	f.Cleanup(func() {
		_ = server.Close()
		<-served
	})

	const first = "GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
	f.Fuzz(func(t *testing.T, raw []byte) {
		conn, err := net.Dial("tcp", tcp.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		_, _ = conn.Write(append([]byte(first), raw...))
		reader := bufio.NewReader(conn)
		resp, err := http.ReadResponse(reader, nil)
		if err != nil {
			t.Fatalf("no answer to the request before %q: %v", raw, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != "ok" {
			t.Fatalf("the request before %q got %d %q (%v), not the endpoint's answer", raw, resp.StatusCode, body, err)
		}
		// The end of the client's bytes ends any request left incomplete.
		_ = conn.(*net.TCPConn).CloseWrite()
		answer, _ := io.ReadAll(reader)
		if bytes.Contains(answer, []byte(" 500 Internal Server Error")) {
			t.Fatalf("the proxy answered 500 to %q: %q", raw, answer)
		}
		if madeUp(answer) {
			t.Fatalf("the proxy answered %q with a 200 the endpoint never sent: %q", raw, answer)
		}
		if strings.Contains(serverLog.String(), "panic") {
			t.Fatalf("the server logged a panic for %q: %s", raw, serverLog.String())
		}
		seen.Lock()
		problems := seen.problems
		seen.problems = nil
		seen.Unlock()
		if len(problems) > 0 {
			t.Fatalf("for %q: %s", raw, strings.Join(problems, "; "))
		}
	})
}

// endpointMark is a header every answer of the fuzzers' endpoint carries.
const endpointMark = "\r\nX-Endpoint: yes"

// madeUp reports whether answers, the bytes a client got, hold a 200 that is
// not the endpoint's.
func madeUp(answers []byte) bool {
	const ok = "HTTP/1.1 200 OK\r\n"
	for {
		at := bytes.Index(answers, []byte(ok))
		if at < 0 {
			return false
		}
		answers = answers[at+len(ok):]
		head, _, _ := bytes.Cut(answers, []byte("\r\n\r\n"))
		if !bytes.Contains(append([]byte("\r\n"), head...), []byte(endpointMark)) {
			return true
		}
	}
}

// hopByHopNames are the headers no endpoint may get from a client.
var hopByHopNames = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Trailer", "Transfer-Encoding", "Upgrade"}

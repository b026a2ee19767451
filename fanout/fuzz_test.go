package fanout

import (
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
)

// FuzzRequestPath sends raw client bytes through the whole request path (the
// inbound listener's framing checks, the limits, the engine) to an endpoint,
// over real sockets, and checks that nothing panics, that the proxy never
// answers 500, and that what reaches the endpoint is a clean request: only
// its own forwarding headers, no hop-by-hop header, no framing of the
// client's.
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
		_, _ = io.WriteString(w, "ok")
	}))
	f.Cleanup(endpoint.Close)
	proxy := buildProxy(f, Serial(), []string{endpoint.URL}, func(p *Proxy) {
		p.MaxBodyBuffer, p.MaxReplayMemory = 1<<10, 1<<20
	})
	limits := inbound.Limits{MaxHeaders: 50, MaxBody: 1 << 12, BodyReadTimeout: time.Second}
	var serverLog syncBuffer
	server := &http.Server{
		Handler:           limits.Handler(proxy),
		ReadHeaderTimeout: time.Second,
		MaxHeaderBytes:    4 << 10,
		ErrorLog:          log.New(&serverLog, "", 0),
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = server.Serve(inbound.NewListener(tcp, inbound.ListenerOptions{}))
	}()
	f.Cleanup(func() {
		_ = server.Close()
		<-served
	})

	f.Fuzz(func(t *testing.T, raw []byte) {
		conn, err := net.Dial("tcp", tcp.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		_, _ = conn.Write(raw)
		// The end of the client's bytes ends any request left incomplete.
		_ = conn.(*net.TCPConn).CloseWrite()
		answer, _ := io.ReadAll(conn)
		if bytes.Contains(answer, []byte(" 500 Internal Server Error")) {
			t.Fatalf("the proxy answered 500 to %q: %q", raw, answer)
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

// hopByHopNames are the headers no endpoint may get from a client.
var hopByHopNames = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Trailer", "Transfer-Encoding", "Upgrade"}

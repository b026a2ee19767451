package fanout

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/h1server"
	"balancing-reverse-proxy/logging"
)

// BenchmarkProxy measures one GET with a 1 KiB answer through the proxy over
// loopback, in each mode, against the endpoint called directly ("direct"), so
// that the proxy's cost is the difference; fan-out to 1, 2 and 3 endpoints
// shows the cost of each extra endpoint, over HTTP/1 and HTTP/2 (h2c), and
// "hedged" the cost of the hedging machinery when no hedge is sent. Run:
//
//	go test -run XXX -bench Proxy -benchmem -count 5 ./fanout/
func BenchmarkProxy(b *testing.B) {
	body := strings.Repeat("x", 1024)
	answer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, body)
	})
	var urls, h2cURLs []string
	for range 3 {
		endpoint := httptest.NewServer(answer)
		b.Cleanup(endpoint.Close)
		urls = append(urls, endpoint.URL)
		h2c := httptest.NewUnstartedServer(answer)
		h2c.Config.Protocols = new(http.Protocols)
		h2c.Config.Protocols.SetUnencryptedHTTP2(true)
		h2c.Start()
		b.Cleanup(h2c.Close)
		h2cURLs = append(h2cURLs, "h2c://"+strings.TrimPrefix(h2c.URL, "http://"))
	}
	targets := []struct {
		name string
		url  func(b *testing.B) string
		// h2c has the client speak HTTP/2 without TLS to the proxy.
		h2c bool
	}{
		{name: "direct", url: func(*testing.B) string { return urls[0] }},
		{name: "serial", url: func(b *testing.B) string { return serveBench(b, Serial(), urls, false) }},
		{name: "hedged", url: func(b *testing.B) string { return serveBench(b, hedgedAfter(time.Second), urls, false) }},
		{name: "fan-out-1", url: func(b *testing.B) string { return serveBench(b, FanOut(), urls[:1], false) }},
		{name: "fan-out-2", url: func(b *testing.B) string { return serveBench(b, FanOut(), urls[:2], false) }},
		{name: "fan-out-3", url: func(b *testing.B) string { return serveBench(b, FanOut(), urls, false) }},
		{name: "fan-out-3-h2c-endpoints", url: func(b *testing.B) string { return serveBench(b, FanOut(), h2cURLs, false) }},
		{name: "serial-h2c-client", url: func(b *testing.B) string { return serveBench(b, Serial(), urls, true) }, h2c: true},
	}
	for _, target := range targets {
		b.Run(target.name, func(b *testing.B) {
			url := target.url(b) + "/bench"
			transport := &http.Transport{MaxIdleConnsPerHost: 1}
			if target.h2c {
				transport.Protocols = new(http.Protocols)
				transport.Protocols.SetUnencryptedHTTP2(true)
			}
			b.Cleanup(transport.CloseIdleConnections)
			client := &http.Client{Transport: transport}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, resp.Body); err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
	}
}

// serveBench serves a proxy with schedule in front of urls, over HTTP/2
// without TLS too when h2c, and returns its URL.
func serveBench(b *testing.B, schedule Schedule, urls []string, h2c bool) string {
	b.Helper()
	// As the proxy serves: its own HTTP/1.1 server in front of Go's, which
	// takes h2c.
	server := &http.Server{Handler: logging.Requests(zerolog.Nop(), "X-Request-Id")(buildProxy(b, schedule, urls))}
	if h2c {
		server.Protocols = new(http.Protocols)
		server.Protocols.SetHTTP1(true)
		server.Protocols.SetUnencryptedHTTP2(true)
	}
	front := h1server.New(server)
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	served := make(chan error, 1)
	go func() { served <- front.Serve(listener) }()
	b.Cleanup(func() {
		_ = front.Close()
		<-served
	})
	return "http://" + listener.Addr().String()
}

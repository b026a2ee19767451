package fanout

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkProxy measures one GET with a 1 KiB answer through the proxy over
// loopback, in each mode, against the endpoint called directly ("direct"), so
// that the proxy's cost is the difference. Run:
//
//	go test -run XXX -bench Proxy -benchmem -count 5 ./fanout/
func BenchmarkProxy(b *testing.B) {
	body := strings.Repeat("x", 1024)
	var urls []string
	for range 3 {
		endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, body)
		}))
		b.Cleanup(endpoint.Close)
		urls = append(urls, endpoint.URL)
	}
	targets := []struct {
		name string
		url  func(b *testing.B) string
	}{
		{"direct", func(*testing.B) string { return urls[0] }},
		{"serial", func(b *testing.B) string { return serveBench(b, Serial(), urls) }},
		{"fan-out-1", func(b *testing.B) string { return serveBench(b, FanOut(), urls[:1]) }},
		{"fan-out-3", func(b *testing.B) string { return serveBench(b, FanOut(), urls) }},
	}
	for _, target := range targets {
		b.Run(target.name, func(b *testing.B) {
			url := target.url(b) + "/bench"
			transport := &http.Transport{MaxIdleConnsPerHost: 1}
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

func serveBench(b *testing.B, schedule Schedule, urls []string) string {
	b.Helper()
	srv := httptest.NewServer(buildProxy(b, schedule, urls))
	b.Cleanup(srv.Close)
	return srv.URL
}

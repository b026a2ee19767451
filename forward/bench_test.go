package forward

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkPrepare prepares a browser-like request from an untrusted client.
func BenchmarkPrepare(b *testing.B) {
	in := httptest.NewRequest(http.MethodGet, "http://proxy.example/a/b?c=d", nil)
	in.RemoteAddr = "192.0.2.7:51234"
	for name, value := range map[string]string{
		"Accept": "text/html", "Accept-Encoding": "gzip, br", "Accept-Language": "en", "Cookie": "a=b",
		"User-Agent": "Mozilla/5.0", "Connection": "keep-alive", "X-Forwarded-For": "203.0.113.1",
	} {
		in.Header.Set(name, value)
	}
	b.ReportAllocs()
	for b.Loop() {
		Prepare(in, Options{RequestID: "d0jq6bbu2d2f3l1pfrq0"})
	}
}

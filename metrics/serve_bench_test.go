package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/fanout"
	"balancing-reverse-proxy/terminal"
	"balancing-reverse-proxy/wire"
)

// BenchmarkServeWithMetrics measures one GET with a 1 KiB answer through a
// serial proxy over loopback, without metrics and with them (the observer of
// a route in force, as an admin listener sets up), so that the difference is
// what the metrics cost a request. Run:
//
//	go test -run XXX -bench ServeWithMetrics -benchmem -count 6 ./metrics/
func BenchmarkServeWithMetrics(b *testing.B) {
	body := strings.Repeat("x", 1024)
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, body)
	}))
	b.Cleanup(endpoint.Close)
	for _, withMetrics := range []bool{false, true} {
		name := "serial"
		if withMetrics {
			name = "serial-metrics"
		}
		b.Run(name, func(b *testing.B) {
			list, err := endpoints.Parse(endpoint.URL)
			require.NoError(b, err)
			ranges, err := terminal.Parse(terminal.Default)
			require.NoError(b, err)
			transport := wire.New(wire.Options{MaxIdlePerHost: 8})
			b.Cleanup(transport.CloseIdleConnections)
			proxy := &fanout.Proxy{Endpoints: endpoints.NewPool(list, endpoints.PoolOptions{}), Terminal: ranges,
				Transport: transport, MaxBodyBuffer: 1 << 20, Observers: []fanout.Observer{fanout.RequestLog{}}}
			if withMetrics {
				m := New()
				route := m.Route(proxy)
				m.Serve([]*Route{route})
				proxy.Observers = append(proxy.Observers, route)
			}
			srv := httptest.NewServer(proxy)
			b.Cleanup(srv.Close)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Get(srv.URL + "/bench")
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

package fanout

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/endpointresponse"
	"balancing-reverse-proxy/endpoints"
)

func TestDrainSmallKeepsALosersConnection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      string
		stall     bool
		wantReuse bool
	}{
		{"a small body is read out and the connection reused", "loser", false, true},
		{"a large body is not read", strings.Repeat("x", smallAnswer+1), false, false},
		{"a body that stalls is cut", "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var connections atomic.Int32
			release := make(chan struct{})
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.stall && r.URL.Path == "/first" {
					w.Header().Set("Content-Length", "10")
					w.(http.Flusher).Flush()
					select {
					case <-release:
					case <-r.Context().Done():
					}
					return
				}
				_, _ = w.Write([]byte(tt.body))
			}))
			srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
				if state == http.StateNew {
					connections.Add(1)
				}
			}
			srv.Start()
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(release) })
			transport := endpoints.NewTransport(4)
			t.Cleanup(transport.CloseIdleConnections)

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/first", nil)
			require.NoError(t, err)
			resp, err := transport.RoundTrip(req)
			require.NoError(t, err)
			outcome := &endpointresponse.Outcome{Response: resp, Cancel: cancel}
			drainSmall(outcome)
			outcome.Close()

			req, err = http.NewRequest(http.MethodGet, srv.URL+"/second", nil)
			require.NoError(t, err)
			resp, err = transport.RoundTrip(req)
			require.NoError(t, err)
			resp.Body.Close()
			want := int32(2)
			if tt.wantReuse {
				want = 1
			}
			assert.Equal(t, want, connections.Load())
		})
	}
}

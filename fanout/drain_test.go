package fanout

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/endpointresponse"
	"balancing-reverse-proxy/wire"
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
			transport := wire.New(wire.Options{MaxIdlePerHost: 4})
			t.Cleanup(transport.CloseIdleConnections)

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/first", nil)
			require.NoError(t, err)
			resp, err := transport.RoundTrip(req)
			require.NoError(t, err)
			outcome := &endpointresponse.Outcome{Response: resp, Cancel: cancel}
			var l losers
			l.drain(outcome)

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

// readCounter counts the reads of a body that never ends.
type readCounter struct{ reads atomic.Int32 }

func (r *readCounter) Read(p []byte) (int, error) {
	r.reads.Add(1)
	return 0, nil
}

func TestDrainSmallStopsAtTheSharedDeadline(t *testing.T) {
	t.Parallel()
	body := &readCounter{}
	var cancelled atomic.Bool
	resp := &http.Response{ContentLength: 10, Body: io.NopCloser(body)}
	outcome := &endpointresponse.Outcome{Response: resp, Cancel: func() { cancelled.Store(true) }}
	spent := losers{drainBy: time.Now().Add(-time.Millisecond)}
	spent.drain(outcome)
	assert.Zero(t, body.reads.Load(), "the time for reading out losers was spent by the ones before")
	assert.False(t, cancelled.Load(), "finish cancels it with the rest")
}

// TestLosersDoNotOutlastASlowSmallAnswer has the winner's endpoint send half
// of a small body and the rest only once the loser's request is cancelled:
// the losers may outlast a small answer's copy for drainWait, not for as long
// as it takes.
func TestLosersDoNotOutlastASlowSmallAnswer(t *testing.T) {
	t.Parallel()
	loserCancelled := make(chan struct{})
	winner := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "4")
		_, _ = io.WriteString(w, "ab")
		w.(http.Flusher).Flush()
		select {
		case <-loserCancelled:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "cd")
	}))
	loser := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		close(loserCancelled)
	}))
	proxy := serve(t, buildProxy(t, FanOut(), []string{winner.URL, loser.URL}))
	_, body := get(t, proxy.URL)
	assert.Equal(t, "abcd", body)
}

func TestCancelUnansweredLeavesAnsweredLosers(t *testing.T) {
	t.Parallel()
	var cancelled [4]atomic.Bool
	var l losers
	for i := range cancelled {
		l.add(func() { cancelled[i].Store(true) })
	}
	l.markAnswered(2) // attempts 2 and 3 have their headers
	l.markAnswered(3)
	l.cancelUnanswered(&endpointresponse.Outcome{Attempt: 3})
	assert.False(t, cancelled[2].Load(), "the winner")
	assert.False(t, cancelled[1].Load(), "an answered loser, for finish to read out")
	assert.True(t, cancelled[0].Load(), "a loser waiting for its headers")
	assert.True(t, cancelled[3].Load(), "a loser waiting for its headers")
}

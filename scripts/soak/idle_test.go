package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// connStates counts a server's connections by state.
type connStates struct {
	mu     sync.Mutex
	states map[net.Conn]http.ConnState
}

func (c *connStates) track(conn net.Conn, state http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.states[conn] = state
}

func (c *connStates) count(state http.ConnState) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.states {
		if s == state {
			n++
		}
	}
	return n
}

func TestOpenIdleConns(t *testing.T) {
	t.Parallel()
	states := &connStates{states: make(map[net.Conn]http.ConnState)}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("hello"))
	}))
	srv.Config.ConnState = states.track
	srv.Start()
	t.Cleanup(srv.Close)

	conns, err := openIdleConns(context.Background(), srv.Listener.Addr().String(), 30, 4)

	require.NoError(t, err)
	require.Len(t, conns, 30)
	for i, c := range conns {
		assert.NotNil(t, c, "connection %d", i)
	}
	assert.Eventually(t, func() bool { return states.count(http.StateIdle) == 30 }, 10*time.Second, 10*time.Millisecond,
		"every connection answered and kept open, idle")
	closeAll(conns)
	assert.Eventually(t, func() bool { return states.count(http.StateClosed) == 30 }, 10*time.Second, 10*time.Millisecond)
}

func TestOpenIdleConnsFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{
			name:    "an error status",
			handler: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusBadGateway) },
			want:    "answer 502 Bad Gateway, closing false: want 200 on a connection kept open",
		},
		{
			name: "a connection the server closes",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Connection", "close")
				_, _ = w.Write([]byte("bye"))
			},
			want: "answer 200 OK, closing true",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(srv.Close)

			conns, err := openIdleConns(context.Background(), srv.Listener.Addr().String(), 10, 3)

			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Nil(t, conns)
		})
	}
}

func TestOpenIdleConnsToNothing(t *testing.T) {
	t.Parallel()
	port, err := freePort()
	require.NoError(t, err)

	_, err = openIdleConns(context.Background(), localAddr(port), 5, 2)

	require.Error(t, err)
	assert.Contains(t, err.Error(), "connection refused")
}

func TestIdleCostPrint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		afterKB int64
		held    int
		want    []string
		ok      bool
	}{
		{
			name: "within the target", afterKB: 20000 + 250000, held: 10000, ok: true,
			want: []string{
				"idle keep-alive client connections: 10000 (the proxy holds 10000)",
				"proxy RSS: 20000 kB before, 270000 kB after: 25.0 kB per connection",
				"heap in use 10.0 kB, goroutine stacks 8.0 kB per connection",
				"goroutines: 10 before, 10010 after (1.00 per connection)",
				"PASS: 25.0 kB per idle connection (target: at most 50 kB), 10000 of 10000 connections held",
			},
		},
		{
			name: "over the target", afterKB: 20000 + 510000, held: 10000,
			want: []string{"FAIL: 51.0 kB per idle connection"},
		},
		{
			name: "connections the proxy dropped", afterKB: 20000, held: 9000,
			want: []string{"FAIL: 0.0 kB per idle connection (target: at most 50 kB), 9000 of 10000 connections held"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cost := idleCost{
				n:          10000,
				before:     sample{Goroutines: 10, FDs: 12, RSSKB: 20000},
				after:      sample{Goroutines: 10010, FDs: 10012, RSSKB: tt.afterKB, ClientConns: tt.held},
				heapBefore: 1 << 20, heapAfter: 1<<20 + 10000*10<<10,
				stackBefore: 64 << 10, stackAfter: 64<<10 + 10000*8<<10,
			}
			var out bytes.Buffer

			ok := cost.print(&out)

			assert.Equal(t, tt.ok, ok)
			for _, want := range tt.want {
				assert.Contains(t, out.String(), want)
			}
		})
	}
}

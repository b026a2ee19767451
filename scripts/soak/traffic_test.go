package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testTiming keeps the slow and leaving clients short.
var testTiming = timing{
	request:          10 * time.Second,
	leaveBefore:      20 * time.Millisecond,
	leaveBeforeDelay: time.Hour,
	slowGap:          10 * time.Millisecond,
	// Ten times the stand-in's header time-out: on a busy machine the
	// server may start reading late, and must still see the headers stall.
	slowHeaders: 2 * time.Second,
}

// dummyStandIn answers like dummy-http-server: the hello line and the echoed
// body, after ?delay=, with ?fault=stall-after-headers stalling until the
// client leaves. lie, if set, replaces the body.
func dummyStandIn(lie string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if delay, err := time.ParseDuration(r.URL.Query().Get("delay")); err == nil {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		text := fmt.Sprintf("Hello from stand-in: %s %s after 0s\n", r.Method, r.URL.RequestURI())
		if len(body) > 0 {
			text += fmt.Sprintf("received %d bytes\n", len(body)) + string(body)
		}
		if lie != "" {
			text = lie
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(text)))
		if r.URL.Query().Get("fault") == "stall-after-headers" {
			w.WriteHeader(http.StatusOK)
			_ = http.NewResponseController(w).Flush()
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, text)
	})
}

// startStandIn serves h like the proxy would, with a short header time-out
// for the slow-headers clients, and returns its clients.
func startStandIn(t *testing.T, h http.Handler) *traffic {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadHeaderTimeout = 200 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	clients := newTraffic(srv.Listener.Addr().String(), 8, testTiming)
	t.Cleanup(clients.closeIdle)
	return clients
}

func TestClientKinds(t *testing.T) {
	t.Parallel()
	clients := startStandIn(t, dummyStandIn(""))

	want := map[string]string{
		"get":          outcomeOK,
		"get-new-conn": outcomeOK,
		"post-1KiB":    outcomeOK,
		"post-1MiB":    outcomeOK,
		"post-9MiB":    outcomeOK,
		"leave-before": outcomeLeft,
		"leave-during": outcomeLeft,
		"slow-headers": outcomeError, // cut by the server's header time-out
		"slow-upload":  outcomeOK,
		"slow-reader":  outcomeOK,
	}
	for _, kind := range clientKinds {
		if kind.name == "malformed" {
			continue
		}
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			// Two ids: leave-during does one thing for even ids and another
			// for odd ones.
			for _, id := range []int64{1, 2} {
				ctx, cancel := context.WithTimeout(context.Background(), testTiming.request)
				defer cancel()
				assert.Equal(t, want[kind.name], kind.do(clients, ctx, id), "request %d", id)
			}
		})
	}
}

func TestMalformedRequestsGetRejected(t *testing.T) {
	t.Parallel()
	clients := startStandIn(t, dummyStandIn(""))
	// A Go server lets these two through; the proxy decides what to do.
	passed := map[int]bool{7: true, 11: true}

	for i := range malformedRequests {
		ctx, cancel := context.WithTimeout(context.Background(), testTiming.request)
		got := clients.malformed(ctx, int64(i))
		cancel()
		if passed[i] {
			assert.Equal(t, outcomeOK, got, "request %d: %.60q", i, malformedRequests[i])
		} else {
			assert.Equal(t, outcomeNon2xx, got, "request %d: %.60q", i, malformedRequests[i])
		}
	}
}

func TestClientKindsSeeCorruptAnswers(t *testing.T) {
	t.Parallel()
	clients := startStandIn(t, dummyStandIn("Hello from stand-in: GET /soak/get/999 after 0s\n"))

	for _, name := range []string{"get", "get-new-conn", "post-1KiB", "slow-upload", "slow-reader"} {
		ctx, cancel := context.WithTimeout(context.Background(), testTiming.request)
		assert.Equal(t, outcomeCorrupt, kindNamed(t, name).do(clients, ctx, 1), name)
		cancel()
	}
}

// kindNamed returns the client kind called name.
func kindNamed(t *testing.T, name string) clientKind {
	t.Helper()
	for _, k := range clientKinds {
		if k.name == name {
			return k
		}
	}
	t.Fatalf("no client kind %q", name)
	return clientKind{}
}

func TestClientKindsSeeErrorStatuses(t *testing.T) {
	t.Parallel()
	clients := startStandIn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		http.Error(w, "no endpoint answered", http.StatusBadGateway)
	}))

	for _, name := range []string{"get", "post-1MiB", "leave-during", "slow-reader"} {
		ctx, cancel := context.WithTimeout(context.Background(), testTiming.request)
		assert.Equal(t, outcomeNon2xx, kindNamed(t, name).do(clients, ctx, 1), name)
		cancel()
	}
}

func TestClientKindsSeeCutBodies(t *testing.T) {
	t.Parallel()
	// Half the promised body, then the connection closed: what the proxy
	// does when its winning endpoint breaks mid-body.
	clients := startStandIn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, strings.Repeat("x", 50))
		panic(http.ErrAbortHandler)
	}))

	for _, name := range []string{"get", "get-new-conn", "post-9MiB", "slow-reader"} {
		ctx, cancel := context.WithTimeout(context.Background(), testTiming.request)
		assert.Equal(t, outcomeError, kindNamed(t, name).do(clients, ctx, 1), name)
		cancel()
	}
}

func TestPickKind(t *testing.T) {
	t.Parallel()
	total := 0
	for _, k := range clientKinds {
		total += k.weight
	}
	require.Equal(t, 100, total, "weights are percentages")

	counts := map[string]int{}
	for draw := range 100 {
		counts[pickKind(draw).name]++
	}
	for _, k := range clientKinds {
		assert.Equal(t, k.weight, counts[k.name], k.name)
	}
}

func TestPayloadAndHelloMatches(t *testing.T) {
	t.Parallel()
	sent := payload(42, 100)
	require.Len(t, sent, 100)
	assert.True(t, strings.HasPrefix(string(sent), "soak request 42\nsoak request 42\n"))
	assert.NotEqual(t, sent, payload(43, 100), "each request's payload is its own")

	tests := []struct {
		name string
		body string
		sent []byte
		want bool
	}{
		{"get", "Hello from soak-1: GET /soak/get/7 after 2ms\n", nil, true},
		{"get with a body left over", "Hello from soak-1: GET /soak/get/7 after 2ms\nextra", nil, false},
		{"another request's answer", "Hello from soak-1: GET /soak/get/8 after 2ms\n", nil, false},
		{"another method", "Hello from soak-1: POST /soak/get/7 after 2ms\n", nil, false},
		{"not a hello", "<html>oops</html>\n", nil, false},
		{"post", "Hello from soak-2: POST /soak/get/7 after 0s\nreceived 5 bytes\nhello", []byte("hello"), true},
		{"post with a wrong echo", "Hello from soak-2: POST /soak/get/7 after 0s\nreceived 5 bytes\nhellO", []byte("hello"), false},
		{"post with a wrong length", "Hello from soak-2: POST /soak/get/7 after 0s\nreceived 6 bytes\nhello", []byte("hello"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			method := http.MethodGet
			if tt.sent != nil {
				method = http.MethodPost
			}
			assert.Equal(t, tt.want, helloMatches([]byte(tt.body), method, "/soak/get/7", tt.sent))
		})
	}
}

func TestTrafficRunIsBounded(t *testing.T) {
	t.Parallel()
	// Every request hangs until the client gives up, so with one slot the
	// requests due while one is out are dropped.
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	tm := testTiming
	// Far longer than the run, however slow the machine: the one request
	// holds its slot to the end.
	tm.request = 2 * time.Second
	clients := newTraffic(srv.Listener.Addr().String(), 1, tm)
	t.Cleanup(clients.closeIdle)
	stats := newTrafficStats()

	clients.run(context.Background(), 100, 1, 200*time.Millisecond, stats)
	close(release)

	// A request of a kind that ends at once (a malformed one, a client that
	// leaves) frees its slot early, so how many are sent varies; every due
	// request is either sent or dropped, and most are dropped.
	assert.Equal(t, int64(20), stats.total("")+stats.dropped, "every one of the 20 due is sent or dropped")
	assert.Greater(t, stats.dropped, stats.total(""), "with one slot, most are dropped")
}

func TestTrafficRunStopsWithItsContext(t *testing.T) {
	t.Parallel()
	clients := startStandIn(t, dummyStandIn(""))
	stats := newTrafficStats()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	clients.run(ctx, 100, 4, time.Hour, stats)

	assert.Equal(t, int64(0), stats.total(""))
}

func TestRawOutcome(t *testing.T) {
	t.Parallel()
	tests := []struct {
		answer string
		want   string
	}{
		{"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", outcomeNon2xx},
		{"HTTP/1.1 204 No Content\r\n\r\n", outcomeOK},
		{"", outcomeError},
		{"junk\r\n\r\n", outcomeError},
	}
	for _, tt := range tests {
		server, client := net.Pipe()
		go func() {
			_, _ = io.WriteString(server, tt.answer)
			server.Close()
		}()
		assert.Equal(t, tt.want, rawOutcome(client), "%q", tt.answer)
		client.Close()
	}
}

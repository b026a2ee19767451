package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/internal/syncbuffer"
)

// redisServer is a redis-server process started by a test on a loopback port.
type redisServer struct {
	port   int
	cmd    *exec.Cmd
	exited chan struct{}
}

// startRedis starts redis-server on port (a free one if 0), with nothing
// saved to disk, and waits until it answers.
func startRedis(t *testing.T, port int) *redisServer {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	require.NoError(t, err, "the session replica tests need redis-server: apt-get install redis-server (scripts/test.sh does)")
	for attempt := 1; ; attempt++ {
		p := port
		if p == 0 {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			p = ln.Addr().(*net.TCPAddr).Port
			require.NoError(t, ln.Close())
		}
		r := &redisServer{port: p, exited: make(chan struct{})}
		r.cmd = exec.Command(path, "--port", strconv.Itoa(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
		require.NoError(t, r.cmd.Start())
		go func() { _ = r.cmd.Wait(); close(r.exited) }()
		t.Cleanup(r.stop)
		if r.answers() {
			return r
		}
		// Another test may have taken the free port meanwhile.
		require.True(t, port == 0 && attempt < 5, "redis-server did not start on port %d", p)
	}
}

// answers waits until the server answers PING, and reports whether it did
// before it exited or hangGuard passed.
func (r *redisServer) answers() bool {
	deadline := time.Now().Add(hangGuard)
	for time.Now().Before(deadline) {
		select {
		case <-r.exited:
			return false
		default:
		}
		conn, err := net.DialTimeout("tcp", r.address(), time.Second)
		if err == nil {
			_, _ = conn.Write([]byte("PING\r\n"))
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			line, _ := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if strings.HasPrefix(line, "+PONG") {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func (r *redisServer) address() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *redisServer) url() string { return redisURL(r.port) }

// redisURL is the store URL of a Redis server on port of the loopback.
func redisURL(port int) string { return "redis://127.0.0.1:" + strconv.Itoa(port) + "/0" }

// stop kills the server, if it still runs, and waits for it.
func (r *redisServer) stop() {
	_ = r.cmd.Process.Signal(syscall.SIGCONT) // a stopped process ends only once continued
	_ = r.cmd.Process.Kill()
	<-r.exited
}

// sessionEndpoints are endpoints that record, for each session id they are
// sent, which of them saw it.
type sessionEndpoints struct {
	urls []string
	mu   sync.Mutex
	seen map[string]map[int]bool
}

func newSessionEndpoints(t *testing.T, n int) *sessionEndpoints {
	t.Helper()
	e := &sessionEndpoints{seen: map[string]map[int]bool{}}
	for i := range n {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if id := r.Header.Get("X-Session-ID"); id != "" {
				e.mu.Lock()
				if e.seen[id] == nil {
					e.seen[id] = map[int]bool{}
				}
				e.seen[id][i] = true
				e.mu.Unlock()
			}
			fmt.Fprintf(w, "%d", i)
		}))
		t.Cleanup(srv.Close)
		e.urls = append(e.urls, srv.URL)
	}
	return e
}

// seenBy returns, for each id, the endpoints that saw it.
func (e *sessionEndpoints) seenBy() map[string][]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string][]int{}
	for id, endpoints := range e.seen {
		for i := range endpoints {
			out[id] = append(out[id], i)
		}
	}
	return out
}

// startReplica starts a proxy in front of eps whose pins are in the Redis at
// storeURL, trying endpoints round-robin so that, without the shared pins,
// replicas would send one id to different endpoints. Its log lines go to the
// returned buffer.
func startReplica(t *testing.T, eps *sessionEndpoints, storeURL string, extra ...string) (*proxyProcess, *syncbuffer.Buffer) {
	t.Helper()
	args := append([]string{"-e", strings.Join(eps.urls, ","), "-order", "round-robin",
		"-session-header", "X-Session-ID", "-session-store", storeURL}, extra...)
	p := startProxy(t, nil, args...)
	return p, collectLines(p)
}

// storeDownLine is the warning of a session store going down.
const storeDownLine = "WRN session store unavailable"

// sessionClient sends requests with a deadlock guard.
var sessionClient = &http.Client{Timeout: hangGuard}

// sendSession sends a GET with id to the proxy at address and returns the
// status, or 0 when the request failed.
func sendSession(address, id string) int {
	req, err := http.NewRequest(http.MethodGet, "http://"+address+"/", nil)
	if err != nil {
		return 0
	}
	if id != "" {
		req.Header.Set("X-Session-ID", id)
	}
	resp, err := sessionClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = bufio.NewReader(resp.Body).WriteTo(discard{})
	return resp.StatusCode
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestReplicasRouteEverySessionAlike(t *testing.T) {
	t.Parallel()
	redis := startRedis(t, 0)
	eps := newSessionEndpoints(t, 3)
	a, _ := startReplica(t, eps, redis.url())
	b, _ := startReplica(t, eps, redis.url())
	for i := range 20 {
		id := fmt.Sprintf("id-%d", i)
		for round := range 6 {
			replica := a
			if round%2 == 1 {
				replica = b
			}
			require.Equal(t, http.StatusOK, sendSession(replica.address, id))
		}
	}
	seen := eps.seenBy()
	require.Len(t, seen, 20)
	for id, endpoints := range seen {
		assert.Len(t, endpoints, 1, "%s seen by %v", id, endpoints)
	}
}

func TestConcurrentFirstRequestsAcrossReplicasLandOnOneEndpoint(t *testing.T) {
	t.Parallel()
	redis := startRedis(t, 0)
	eps := newSessionEndpoints(t, 3)
	replicas := []*proxyProcess{}
	for range 2 {
		p, _ := startReplica(t, eps, redis.url())
		replicas = append(replicas, p)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			assert.Equal(t, http.StatusOK, sendSession(replicas[i%2].address, "shared-new-id"))
		})
	}
	wg.Wait()
	assert.Len(t, eps.seenBy()["shared-new-id"], 1, "%v", eps.seenBy())
}

func TestAReplicaKilledLeavesEverySessionOnItsEndpoint(t *testing.T) {
	t.Parallel()
	redis := startRedis(t, 0)
	eps := newSessionEndpoints(t, 3)
	a, _ := startReplica(t, eps, redis.url())
	b, _ := startReplica(t, eps, redis.url())
	const clients = 8
	var killed atomic.Bool
	var afterKill atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for n := 0; n < 2000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("client-%d-%d", c, n%5)
				replica := a
				if killed.Load() || n%2 == 1 {
					replica = b
				}
				status := sendSession(replica.address, id)
				switch {
				case replica == b:
					assert.Equal(t, http.StatusOK, status, "the surviving replica serves every session")
					if killed.Load() {
						afterKill.Add(1)
					}
				case status != 0:
					assert.Equal(t, http.StatusOK, status)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGKILL))
	killed.Store(true)
	require.Eventually(t, func() bool { return afterKill.Load() >= 200 }, hangGuard, 10*time.Millisecond, "load goes on through the survivor")
	close(stop)
	wg.Wait()
	seen := eps.seenBy()
	assert.Len(t, seen, clients*5)
	for id, endpoints := range seen {
		assert.Len(t, endpoints, 1, "%s seen by %v", id, endpoints)
	}
}

// sessionLoad sends rounds pairs of requests from each of clients at once
// to the proxy at address, one with a session id and one without, and
// checks that the first gets withID, the second is served, and neither hangs.
func sessionLoad(t *testing.T, address string, clients, rounds, withID int, phase string) {
	t.Helper()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range rounds {
				started := time.Now()
				assert.Equal(t, withID, sendSession(address, fmt.Sprintf("s-%d-%d", c, i%5)), "%s: client %d, request %d", phase, c, i)
				assert.Equal(t, http.StatusOK, sendSession(address, ""), "%s: a request without a session is served", phase)
				// A deadlock guard: the store's bound is 100ms.
				assert.Less(t, time.Since(started), 5*time.Second, "%s: client %d, request %d hung", phase, c, i)
			}
		})
	}
	wg.Wait()
}

// waitServed sends requests with a session, one at a time, until one is
// served; the proxy must recover by itself within hangGuard.
func waitServed(t *testing.T, address string) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for sendSession(address, "recovery") != http.StatusOK {
		require.True(t, time.Now().Before(deadline), "the proxy did not recover by itself")
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRedisHungKilledAndBackUnderLoad(t *testing.T) {
	t.Parallel()
	redis := startRedis(t, 0)
	eps := newSessionEndpoints(t, 2)
	p, logs := startReplica(t, eps, redis.url(), "-session-store-timeout", "100ms")
	sessionLoad(t, p.address, 4, 50, http.StatusOK, "Redis up")

	// Hung: every call waits for the bound.
	require.NoError(t, redis.cmd.Process.Signal(syscall.SIGSTOP))
	sessionLoad(t, p.address, 4, 5, http.StatusServiceUnavailable, "Redis hung")
	require.NoError(t, redis.cmd.Process.Signal(syscall.SIGCONT))
	waitServed(t, p.address)
	sessionLoad(t, p.address, 4, 50, http.StatusOK, "Redis continued")

	// Killed: every call is refused at once; then a new server on its port.
	redis.stop()
	sessionLoad(t, p.address, 4, 20, http.StatusServiceUnavailable, "Redis killed")
	redis = startRedis(t, redis.port)
	waitServed(t, p.address)
	sessionLoad(t, p.address, 4, 50, http.StatusOK, "Redis back")

	require.Eventually(t, func() bool { return strings.Count(logs.String(), "session store back") == 2 }, hangGuard, 10*time.Millisecond, logs.String())
	assert.Equal(t, 2, strings.Count(logs.String(), storeDownLine), "once per change, not per request:\n%s", logs.String())
}

func TestRedisPinsSlideAndExpire(t *testing.T) {
	t.Parallel()
	redis := startRedis(t, 0)
	eps := newSessionEndpoints(t, 2)
	p, _ := startReplica(t, eps, redis.url(), "-session-ttl", "2s")
	client := goredis.NewClient(&goredis.Options{Addr: redis.address()})
	defer client.Close()
	require.Equal(t, http.StatusOK, sendSession(p.address, "sliding"))
	key := "brp:session:sliding"
	for range 3 {
		time.Sleep(time.Second)
		require.Equal(t, http.StatusOK, sendSession(p.address, "sliding"))
		ttl, err := client.PTTL(t.Context(), key).Result()
		require.NoError(t, err)
		assert.Greater(t, ttl, 1500*time.Millisecond, "each use refreshes the TTL, 3s after the pin was set")
	}
	pin, err := client.Get(t.Context(), key).Result()
	require.NoError(t, err)
	assert.Contains(t, eps.urls, pin, "the value is the endpoint's URL")
	time.Sleep(2500 * time.Millisecond)
	_, err = client.Get(t.Context(), key).Result()
	assert.ErrorIs(t, err, goredis.Nil, "expired 2s after its last use")
}

func TestRedisUnreachableAtStartIsLoggedNotFatal(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	eps := newSessionEndpoints(t, 1)
	p, logs := startReplica(t, eps, redisURL(port))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), storeDownLine) }, hangGuard, 10*time.Millisecond)
	assert.Equal(t, http.StatusServiceUnavailable, sendSession(p.address, "s"))
	assert.Equal(t, http.StatusOK, sendSession(p.address, ""))
	startRedis(t, port)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "session store back") }, hangGuard, 10*time.Millisecond,
		"noticed with no request")
	assert.Equal(t, http.StatusOK, sendSession(p.address, "s"))
}

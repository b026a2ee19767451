package fanout

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/internal/fakeclock"
	"balancing-reverse-proxy/session"
)

const sessionHeader = "X-Session-ID"

// modes are the three schedules every session rule is tested in.
func modes() map[string]Schedule {
	return map[string]Schedule{"serial": Serial(), "fan-out": FanOut(), "hedged": hedgedAfter(5 * time.Millisecond)}
}

// sessionStore is a memory store that can be made to fail, so that tests see
// the store's pins and its going down.
type sessionStore struct {
	*session.Memory
	failing atomic.Bool
}

var errStoreDown = errors.New("connection refused")

func (s *sessionStore) Lookup(ctx context.Context, id string) (string, error) {
	if s.failing.Load() {
		return "", errStoreDown
	}
	return s.Memory.Lookup(ctx, id)
}

func (s *sessionStore) Claim(ctx context.Context, id, endpoint string) (string, error) {
	if s.failing.Load() {
		return "", errStoreDown
	}
	return s.Memory.Claim(ctx, id, endpoint)
}

// pinOf returns the endpoint id is pinned to, "" if none.
func (s *sessionStore) pinOf(t *testing.T, id string) string {
	t.Helper()
	pin, err := s.Memory.Lookup(t.Context(), id)
	require.NoError(t, err)
	return pin
}

// withSessions gives the proxy session affinity with opts (the header
// X-Session-ID unless opts names one) over a new store, which it returns.
func withSessions(opts session.Options, store **sessionStore) func(*Proxy) {
	return func(p *Proxy) {
		if opts.Header == "" && opts.Cookie == "" {
			opts.Header = sessionHeader
		}
		if opts.Unknown == "" {
			opts.Unknown = session.Pin
		}
		if opts.Failover == "" {
			opts.Failover = session.Repin
		}
		opts.Timeout = time.Second
		s := &sessionStore{Memory: session.NewMemory(time.Hour, nil)}
		*store = s
		p.Sessions = session.New(s, opts)
		p.DebugHeaders = true
	}
}

// withSession sends a request with id (if any) in the session header, and
// returns its answer and body.
func withSession(t *testing.T, method, url, id string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	if id != "" {
		req.Header.Set(sessionHeader, id)
	}
	resp, err := client(t).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	return resp, readAll(t, resp)
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

// named returns a handler that answers 200 with name.
func named(name string) http.HandlerFunc { return answer(http.StatusOK, name) }

// namedBackends returns n backends that answer with their index.
func namedBackends(t *testing.T, n int) []*backend {
	t.Helper()
	backends := make([]*backend, n)
	for i := range backends {
		backends[i] = newBackend(t, named(fmt.Sprint(i)))
	}
	return backends
}

// inEveryMode runs test in parallel subtests, one per mode.
func inEveryMode(t *testing.T, test func(t *testing.T, schedule Schedule)) {
	t.Helper()
	for mode, schedule := range modes() {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			test(t, schedule)
		})
	}
}

func TestPinnedRequestGoesToItsEndpointAlone(t *testing.T) {
	t.Parallel()
	inEveryMode(t, func(t *testing.T, schedule Schedule) {
		backends := namedBackends(t, 3)
		var store *sessionStore
		srv := newProxy(t, schedule, urlsOf(backends), withSessions(session.Options{}, &store))
		_, err := store.Claim(t.Context(), "s1", backends[2].srv.URL)
		require.NoError(t, err)
		for range 5 {
			resp, body := withSession(t, http.MethodGet, srv.URL+"/x", "s1")
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "2", body)
			assert.Equal(t, []string{"2", "1", ""}, debug(resp), "one attempt, at the pinned endpoint")
		}
		assert.Equal(t, []int32{0, 0, 5}, hits(backends))
	})
}

func TestNewClientChosenIDIsPinnedBeforeSending(t *testing.T) {
	t.Parallel()
	inEveryMode(t, func(t *testing.T, schedule Schedule) {
		var store *sessionStore
		backends := make([]*backend, 3)
		for i := range backends {
			backends[i] = newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				pin, _ := store.Memory.Lookup(context.Background(), r.Header.Get(sessionHeader))
				assert.Equal(t, backends[i].srv.URL, pin, "pinned before it was sent")
				named(fmt.Sprint(i))(w, r)
			})
		}
		srv := newProxy(t, schedule, urlsOf(backends), withSessions(session.Options{}, &store),
			withPool(t, urlsOf(backends), endpoints.PoolOptions{Order: endpoints.RoundRobin}))
		// Round-robin: the three new ids go to three endpoints, and each
		// id's later requests follow its pin.
		seen := map[string]string{}
		for _, id := range []string{"a", "b", "c"} {
			resp, body := withSession(t, http.MethodGet, srv.URL, id)
			assert.Equal(t, []string{body, "1", ""}, debug(resp), "one attempt")
			seen[id] = body
			assert.Equal(t, backends[body[0]-'0'].srv.URL, store.pinOf(t, id))
		}
		assert.ElementsMatch(t, []string{"0", "1", "2"}, []string{seen["a"], seen["b"], seen["c"]})
		for range 3 {
			for _, id := range []string{"a", "b", "c"} {
				_, body := withSession(t, http.MethodGet, srv.URL, id)
				assert.Equal(t, seen[id], body, id)
			}
		}
		assert.Equal(t, []int32{4, 4, 4}, hits(backends))
	})
}

func TestNewIDSkipsEndpointsEjectedOrAtTheirCap(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	busy := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		held <- struct{}{}
		<-release
		named("busy")(w, r)
	})
	dead := refusedURL(t)
	free := newBackend(t, named("free"))
	urls := []string{dead, busy.srv.URL, free.srv.URL}
	var store *sessionStore
	srv := newProxy(t, Serial(), urls, withSessions(session.Options{}, &store),
		withPool(t, urls, endpoints.PoolOptions{MaxInflight: 1, EjectAfter: 1, EjectBackoff: time.Hour}))
	// A request with no session ejects the dead endpoint, fails over to the
	// busy one and holds its one in-flight place.
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, body := get(t, srv.URL)
		assert.Equal(t, "busy", body)
	}()
	waitFor(t, held, "the busy endpoint's request")
	resp, body := withSession(t, http.MethodGet, srv.URL, "new")
	assert.Equal(t, "free", body)
	assert.Equal(t, []string{"2", "1", ""}, debug(resp))
	assert.Equal(t, free.srv.URL, store.pinOf(t, "new"))
	close(release)
	<-done
}

func TestUnknownIDIsRejectedWithoutCallingAnEndpoint(t *testing.T) {
	t.Parallel()
	inEveryMode(t, func(t *testing.T, schedule Schedule) {
		backends := namedBackends(t, 2)
		var store *sessionStore
		srv := newProxy(t, schedule, urlsOf(backends), withSessions(session.Options{Unknown: session.Reject}, &store))
		resp, body := withSession(t, http.MethodGet, srv.URL, "nope")
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
		assert.Equal(t, "404 Not Found: unknown session id in the header \"X-Session-ID\"; start a new session\n", body)
		assert.Equal(t, []int32{0, 0}, hits(backends))
		assert.Empty(t, store.pinOf(t, "nope"), "a rejected id is not pinned")
	})
}

func TestMissingIDIsRefusedOnlyWhenRequired(t *testing.T) {
	t.Parallel()
	inEveryMode(t, func(t *testing.T, schedule Schedule) {
		backends := namedBackends(t, 2)
		var store *sessionStore
		required := newProxy(t, schedule, urlsOf(backends),
			withSessions(session.Options{Header: sessionHeader, Cookie: "sid", Required: true}, &store))
		resp, body := withSession(t, http.MethodGet, required.URL, "")
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.Equal(t, "400 Bad Request: no session id in the header \"X-Session-ID\" or cookie \"sid\"\n", body)
		assert.Equal(t, []int32{0, 0}, hits(backends))

		resp, body = withSession(t, http.MethodGet, required.URL, strings.Repeat("x", session.MaxIDBytes+1))
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.Equal(t, "400 Bad Request: the session id in the header \"X-Session-ID\" or cookie \"sid\" is over 1024 bytes\n", body)
		assert.Equal(t, []int32{0, 0}, hits(backends))
		assert.Equal(t, 0, store.Len(), "no pin for a refused id")

		optional := newProxy(t, schedule, urlsOf(backends), withSessions(session.Options{}, &store))
		resp, body = withSession(t, http.MethodGet, optional.URL, "")
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Contains(t, []string{"0", "1"}, body, "routed as usual")
	})
}

func TestAnIDTheWinnerGivesOutIsPinnedToIt(t *testing.T) {
	t.Parallel()
	for mode, schedule := range modes() {
		for _, by := range []string{"header", "cookie"} {
			t.Run(mode+"/"+by, func(t *testing.T) {
				t.Parallel()
				failing := newBackend(t, answer(http.StatusInternalServerError, "down"))
				giving := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
					if by == "header" {
						w.Header().Set("Mcp-Session-Id", "m1")
					} else {
						http.SetCookie(w, &http.Cookie{Name: "sid", Value: "m1", Path: "/"})
					}
					named("giving")(w, r)
				})
				var store *sessionStore
				srv := newProxy(t, schedule, []string{failing.srv.URL, giving.srv.URL},
					withSessions(session.Options{Header: "Mcp-Session-Id", Cookie: "sid", Unknown: session.Reject}, &store))
				resp, body := get(t, srv.URL+"/initialize")
				require.Equal(t, http.StatusOK, resp.StatusCode)
				assert.Equal(t, "giving", body)
				assert.Equal(t, giving.srv.URL, store.pinOf(t, "m1"))

				for range 3 {
					req, err := http.NewRequest(http.MethodGet, srv.URL+"/call", nil)
					require.NoError(t, err)
					if by == "header" {
						req.Header.Set("Mcp-Session-Id", "m1")
					} else {
						req.AddCookie(&http.Cookie{Name: "sid", Value: "m1"})
					}
					resp, err := client(t).Do(req)
					require.NoError(t, err)
					assert.Equal(t, "giving", readAll(t, resp))
					resp.Body.Close()
					assert.Equal(t, []string{"1", "1", ""}, debug(resp), "the session's requests go to its endpoint alone")
				}
			})
		}
	}
}

func TestAGivenIDIsPinnedBeforeTheAnswersHeadersGoOut(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	giving := newBackend(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Mcp-Session-Id", "m1")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-release
	})
	var store *sessionStore
	srv := newProxy(t, Serial(), []string{giving.srv.URL}, withSessions(session.Options{Header: "Mcp-Session-Id"}, &store))
	resp, err := client(t).Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, "m1", resp.Header.Get("Mcp-Session-Id"))
	assert.Equal(t, giving.srv.URL, store.pinOf(t, "m1"), "pinned by the time the client has the headers")
	close(release)
}

func TestPinnedEndpointFailingFailsOverAndRepins(t *testing.T) {
	t.Parallel()
	inEveryMode(t, func(t *testing.T, schedule Schedule) {
		failing := newBackend(t, answer(http.StatusInternalServerError, "down"))
		backends := []*backend{failing, newBackend(t, named("1")), newBackend(t, named("2"))}
		var store *sessionStore
		srv := newProxy(t, schedule, urlsOf(backends), withSessions(session.Options{}, &store))
		_, err := store.Claim(t.Context(), "s", failing.srv.URL)
		require.NoError(t, err)
		resp, body := withSession(t, http.MethodGet, srv.URL, "s")
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "1", body)
		assert.Equal(t, []string{"1", "2", ""}, debug(resp), "the pinned endpoint, then the next, one at a time")
		assert.Equal(t, backends[1].srv.URL, store.pinOf(t, "s"), "re-pinned to the one that answered")
		resp, body = withSession(t, http.MethodGet, srv.URL, "s")
		assert.Equal(t, "1", body)
		assert.Equal(t, []string{"1", "1", ""}, debug(resp))
		assert.Equal(t, []int32{1, 2, 0}, hits(backends))
	})
}

func TestPinToAnEndpointThisProxyLacksFailsOver(t *testing.T) {
	t.Parallel()
	backends := namedBackends(t, 2)
	var store *sessionStore
	srv, logs, served := newLoggedProxy(t, hedgedAfter(5*time.Millisecond), urlsOf(backends), withSessions(session.Options{}, &store))
	_, err := store.Claim(t.Context(), "s", "http://elsewhere.example")
	require.NoError(t, err)
	resp, body := withSession(t, http.MethodGet, srv.URL, "s")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "0", body)
	assert.Equal(t, backends[0].srv.URL, store.pinOf(t, "s"))
	waitFor(t, served, "the request's end")
	assert.Contains(t, logs.String(), "session pinned to an endpoint this proxy does not have")
	assert.Contains(t, logs.String(), `"session":"repinned"`)
}

func TestPinnedEndpointFailingGets503WhenFailoverIsFail(t *testing.T) {
	t.Parallel()
	inEveryMode(t, func(t *testing.T, schedule Schedule) {
		failing := newBackend(t, answer(http.StatusInternalServerError, "down"))
		other := newBackend(t, named("other"))
		var store *sessionStore
		srv := newProxy(t, schedule, []string{failing.srv.URL, other.srv.URL}, withSessions(session.Options{Failover: session.Fail}, &store))
		_, err := store.Claim(t.Context(), "s", failing.srv.URL)
		require.NoError(t, err)
		resp, body := withSession(t, http.MethodGet, srv.URL, "s")
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		assert.Equal(t, "1", resp.Header.Get("Retry-After"))
		assert.Equal(t, "503 Service Unavailable: the session's endpoint is unavailable; try again later\n", body)
		assert.Equal(t, int32(0), other.hits.Load(), "no other endpoint is called")
		assert.Equal(t, failing.srv.URL, store.pinOf(t, "s"), "the pin stays")
	})
}

func TestEjectedPinnedEndpoint(t *testing.T) {
	t.Parallel()
	for mode, schedule := range modes() {
		for _, failover := range []session.Failover{session.Repin, session.Fail} {
			t.Run(mode+"/"+string(failover), func(t *testing.T) {
				t.Parallel()
				dead := refusedURL(t)
				other := newBackend(t, named("other"))
				list, err := endpoints.Parse(dead + "," + other.srv.URL)
				require.NoError(t, err)
				pool := endpoints.NewPool(list, endpoints.PoolOptions{EjectAfter: 1, EjectBackoff: time.Minute})
				var store *sessionStore
				srv := newProxy(t, schedule, []string{dead, other.srv.URL}, withSessions(session.Options{Failover: failover}, &store),
					func(p *Proxy) { p.Endpoints = pool })
				// Ejected as its refused connection would: under fan-out a
				// request's attempt there may be cut by the winner first.
				pool.Failed(list[0], errors.New("connection refused"))
				require.Positive(t, pool.RetryIn(list[0]))
				hitsBefore := other.hits.Load()
				_, err = store.Claim(t.Context(), "s", dead)
				require.NoError(t, err)
				resp, body := withSession(t, http.MethodGet, srv.URL, "s")
				if failover == session.Fail {
					assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
					assert.Equal(t, "60", resp.Header.Get("Retry-After"), "until the ejection ends")
					assert.Equal(t, []string{"", "0", ""}, debug(resp), "no attempt")
					assert.Equal(t, hitsBefore, other.hits.Load())
					assert.Equal(t, dead, store.pinOf(t, "s"))
					return
				}
				assert.Equal(t, "other", body)
				assert.Equal(t, []string{"1", "1", ""}, debug(resp), "the ejected endpoint is not tried")
				assert.Equal(t, other.srv.URL, store.pinOf(t, "s"))
			})
		}
	}
}

func TestDeleteOfAPinnedSessionForgetsItWhenTheEndpointAgrees(t *testing.T) {
	t.Parallel()
	for mode, schedule := range modes() {
		for status, forgotten := range map[int]bool{http.StatusNoContent: true, http.StatusNotFound: true, http.StatusForbidden: false} {
			t.Run(fmt.Sprint(mode, "/", status), func(t *testing.T) {
				t.Parallel()
				b := newBackend(t, answer(status, ""))
				other := newBackend(t, named("other"))
				var store *sessionStore
				srv := newProxy(t, schedule, []string{other.srv.URL, b.srv.URL}, withSessions(session.Options{}, &store))
				_, err := store.Claim(t.Context(), "s", b.srv.URL)
				require.NoError(t, err)
				resp, _ := withSession(t, http.MethodDelete, srv.URL, "s")
				assert.Equal(t, status, resp.StatusCode)
				assert.Equal(t, int32(0), other.hits.Load(), "the DELETE goes to the session's endpoint alone")
				if forgotten {
					assert.Empty(t, store.pinOf(t, "s"))
				} else {
					assert.Equal(t, b.srv.URL, store.pinOf(t, "s"))
				}
			})
		}
	}
}

func TestABusyPinnedEndpointKeepsItsSession(t *testing.T) {
	t.Parallel()
	inEveryMode(t, func(t *testing.T, schedule Schedule) {
		release := make(chan struct{})
		held := make(chan struct{}, 1)
		busy := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			held <- struct{}{}
			<-release
			named("busy")(w, r)
		})
		other := newBackend(t, named("other"))
		urls := []string{busy.srv.URL, other.srv.URL}
		var store *sessionStore
		srv := newProxy(t, schedule, urls, withSessions(session.Options{}, &store),
			withPool(t, urls, endpoints.PoolOptions{MaxInflight: 1}))
		_, err := store.Claim(t.Context(), "s", busy.srv.URL)
		require.NoError(t, err)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, body := withSession(t, http.MethodGet, srv.URL, "s")
			assert.Equal(t, "busy", body)
		}()
		waitFor(t, held, "the first request of the session")
		resp, body := withSession(t, http.MethodGet, srv.URL, "s")
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "its endpoint is at --max-inflight: the session is not moved")
		assert.Equal(t, "1", resp.Header.Get("Retry-After"))
		assert.Equal(t, "503 Service Unavailable: the session's endpoint is unavailable; try again later\n", body)
		assert.Equal(t, int32(0), other.hits.Load())
		assert.Equal(t, busy.srv.URL, store.pinOf(t, "s"))
		close(release)
		<-done
	})
}

func TestADeleteAnsweredByAnotherEndpointMovesThePin(t *testing.T) {
	t.Parallel()
	failing := newBackend(t, answer(http.StatusInternalServerError, "down"))
	other := newBackend(t, answer(http.StatusNotFound, ""))
	var store *sessionStore
	srv := newProxy(t, Serial(), []string{failing.srv.URL, other.srv.URL}, withSessions(session.Options{}, &store))
	_, err := store.Claim(t.Context(), "s", failing.srv.URL)
	require.NoError(t, err)
	resp, _ := withSession(t, http.MethodDelete, srv.URL, "s")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Equal(t, other.srv.URL, store.pinOf(t, "s"), "only the session's own endpoint ends it; the other one now holds the pin")
}

func TestStoreDownRefusesOnlyRequestsThatNeedAPin(t *testing.T) {
	t.Parallel()
	inEveryMode(t, func(t *testing.T, schedule Schedule) {
		backends := namedBackends(t, 2)
		var store *sessionStore
		srv := newProxy(t, schedule, urlsOf(backends), withSessions(session.Options{}, &store))
		store.failing.Store(true)
		resp, body := withSession(t, http.MethodGet, srv.URL, "s")
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		assert.Equal(t, "1", resp.Header.Get("Retry-After"))
		assert.Equal(t, "503 Service Unavailable: session store unavailable\n", body, "the store's error is the log's, not the client's")
		resp, body = withSession(t, http.MethodGet, srv.URL, "")
		assert.Equal(t, http.StatusOK, resp.StatusCode, "a request with no session is served")
		assert.Contains(t, []string{"0", "1"}, body)
		store.failing.Store(false)
		resp, _ = withSession(t, http.MethodGet, srv.URL, "s")
		assert.Equal(t, http.StatusOK, resp.StatusCode, "back by itself")
	})
}

func TestConcurrentFirstRequestsOfOneIDLandOnOneEndpoint(t *testing.T) {
	t.Parallel()
	inEveryMode(t, func(t *testing.T, schedule Schedule) {
		backends := namedBackends(t, 3)
		var store *sessionStore
		srv := newProxy(t, schedule, urlsOf(backends), withSessions(session.Options{}, &store),
			withPool(t, urlsOf(backends), endpoints.PoolOptions{Order: endpoints.RoundRobin}))
		const requests = 50
		var wg sync.WaitGroup
		for range requests {
			wg.Go(func() {
				resp, _ := withSession(t, http.MethodGet, srv.URL, "one")
				assert.Equal(t, http.StatusOK, resp.StatusCode)
			})
		}
		wg.Wait()
		counts := hits(backends)
		assert.ElementsMatch(t, []int32{0, 0, requests}, counts, "all on one endpoint: %v", counts)
	})
}

func TestAPinUnusedForItsTTLIsForgotten(t *testing.T) {
	t.Parallel()
	inEveryMode(t, func(t *testing.T, schedule Schedule) {
		clock := &fakeclock.Clock{}
		b := newBackend(t, named("0"))
		store := session.NewMemory(time.Minute, clock.Now)
		srv := newProxy(t, schedule, []string{b.srv.URL}, func(p *Proxy) {
			p.Sessions = session.New(store, session.Options{Header: sessionHeader, Unknown: session.Reject, Failover: session.Repin, Timeout: time.Second})
		})
		_, err := store.Claim(t.Context(), "s", b.srv.URL)
		require.NoError(t, err)
		for range 3 {
			clock.Advance(50 * time.Second)
			resp, _ := withSession(t, http.MethodGet, srv.URL, "s")
			assert.Equal(t, http.StatusOK, resp.StatusCode, "each use refreshes the pin")
		}
		clock.Advance(time.Minute)
		resp, _ := withSession(t, http.MethodGet, srv.URL, "s")
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, "forgotten after a TTL unused")
	})
}

func urlsOf(backends []*backend) []string {
	urls := make([]string, len(backends))
	for i, b := range backends {
		urls[i] = b.srv.URL
	}
	return urls
}

func hits(backends []*backend) []int32 {
	counts := make([]int32, len(backends))
	for i, b := range backends {
		counts[i] = b.hits.Load()
	}
	return counts
}

package session

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/internal/syncbuffer"
)

func TestIDIsReadFromTheHeaderFirst(t *testing.T) {
	t.Parallel()
	a := New(NewMemory(ttl, nil), Options{Header: "X-Session-ID", Cookie: "sid"})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	assert.Empty(t, a.ID(r))
	r.AddCookie(&http.Cookie{Name: "sid", Value: "from-cookie"})
	assert.Equal(t, "from-cookie", a.ID(r))
	r.Header.Set("X-Session-ID", "from-header")
	assert.Equal(t, "from-header", a.ID(r))

	headerOnly := New(NewMemory(ttl, nil), Options{Header: "X-Session-ID"})
	r = httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: "sid", Value: "from-cookie"})
	assert.Empty(t, headerOnly.ID(r), "a cookie is not read unless named")
}

func TestGivenIsReadFromTheHeaderOrASetCookie(t *testing.T) {
	t.Parallel()
	a := New(NewMemory(ttl, nil), Options{Header: "Mcp-Session-Id", Cookie: "sid"})
	assert.Empty(t, a.Given(http.Header{}))
	assert.Equal(t, "m1", a.Given(http.Header{"Mcp-Session-Id": {"m1"}}))
	h := http.Header{}
	h.Add("Set-Cookie", "other=x; Path=/")
	h.Add("Set-Cookie", "sid=c1; Path=/; HttpOnly")
	assert.Equal(t, "c1", a.Given(h))
	for _, deleted := range []string{"sid=; Path=/", "sid=c1; Max-Age=0", "sid=c1; Expires=Thu, 01 Jan 1970 00:00:00 GMT"} {
		assert.Empty(t, a.Given(http.Header{"Set-Cookie": {deleted}}), deleted)
	}
}

func TestWhereNamesTheHeaderAndTheCookie(t *testing.T) {
	t.Parallel()
	assert.Equal(t, `header "X-Session-ID"`, New(nil, Options{Header: "X-Session-ID"}).Where())
	assert.Equal(t, `cookie "sid"`, New(nil, Options{Cookie: "sid"}).Where())
	assert.Equal(t, `header "X-Session-ID" or cookie "sid"`, New(nil, Options{Header: "X-Session-ID", Cookie: "sid"}).Where())
}

// flakyStore is a Memory store that fails every call while failing is set.
type flakyStore struct {
	*Memory
	failing atomic.Bool
	pings   atomic.Int32
}

var errFlaky = errors.New("connection refused")

func (f *flakyStore) Lookup(ctx context.Context, id string) (string, error) {
	if f.failing.Load() {
		return "", errFlaky
	}
	return f.Memory.Lookup(ctx, id)
}

func (f *flakyStore) Ping(context.Context) error {
	f.pings.Add(1)
	if f.failing.Load() {
		return errFlaky
	}
	return nil
}

func TestStoreDownAndBackIsLoggedOncePerChange(t *testing.T) {
	t.Parallel()
	logs := &syncbuffer.Buffer{}
	store := &flakyStore{Memory: NewMemory(ttl, nil)}
	a := New(store, Options{Header: "X-Session-ID", Timeout: time.Second, Log: zerolog.New(logs)})
	_, err := a.Lookup("a")
	require.NoError(t, err)
	store.failing.Store(true)
	for range 5 {
		_, err = a.Lookup("a")
		require.ErrorIs(t, err, ErrStoreUnavailable)
		assert.ErrorIs(t, err, errFlaky)
	}
	store.failing.Store(false)
	for range 5 {
		_, err = a.Lookup("a")
		require.NoError(t, err)
	}
	assert.Equal(t, 1, strings.Count(logs.String(), "session store unavailable"), logs.String())
	assert.Equal(t, 1, strings.Count(logs.String(), "session store back"), logs.String())
}

func TestWatchNoticesTheStoreComingBack(t *testing.T) {
	t.Parallel()
	logs := &syncbuffer.Buffer{}
	store := &flakyStore{Memory: NewMemory(ttl, nil)}
	store.failing.Store(true)
	a := New(store, Options{Header: "X-Session-ID", Timeout: time.Second, Log: zerolog.New(logs)})
	ctx, cancel := context.WithCancel(t.Context())
	watched := make(chan struct{})
	go func() { defer close(watched); a.Watch(ctx, time.Millisecond) }()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "session store unavailable") },
		10*time.Second, time.Millisecond, "a store down at start-up is logged")
	store.failing.Store(false)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "session store back") },
		10*time.Second, time.Millisecond, "and its coming back, with no request")
	pings := store.pings.Load()
	time.Sleep(20 * time.Millisecond)
	assert.Equal(t, pings, store.pings.Load(), "no pings while the store is up")
	cancel()
	<-watched
}

func TestUnknownAndFailoverParseTheirValuesOnly(t *testing.T) {
	t.Parallel()
	var u Unknown
	require.NoError(t, u.UnmarshalText([]byte("reject")))
	assert.Equal(t, Reject, u)
	assert.ErrorContains(t, u.UnmarshalText([]byte("maybe")), `"maybe": accepted: pin or reject`)
	var f Failover
	require.NoError(t, f.UnmarshalText([]byte("fail")))
	assert.Equal(t, Fail, f)
	assert.ErrorContains(t, f.UnmarshalText([]byte("retry")), `"retry": accepted: repin or fail`)
}

func TestPinsCountsTheMemoryStoresOnly(t *testing.T) {
	t.Parallel()
	a := New(NewMemory(ttl, nil), Options{Header: "X-Session-ID"})
	_, err := a.Claim("one", "http://a")
	require.NoError(t, err)
	_, err = a.Claim("two", "http://b")
	require.NoError(t, err)
	pins, ok := a.Pins()
	assert.True(t, ok)
	assert.Equal(t, 2, pins)

	_, ok = New(&flakyStore{Memory: NewMemory(ttl, nil)}, Options{Header: "X-Session-ID"}).Pins()
	assert.False(t, ok, "another store cannot say")
}

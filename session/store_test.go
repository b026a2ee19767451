package session

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"balancing-reverse-proxy/internal/fakeclock"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	one = "http://one.example/api"
	two = "http://two.example/api"
	ttl = time.Minute
)

// storeUnderTest is a store and the way to move its clock.
type storeUnderTest struct {
	store   Store
	advance func(time.Duration)
}

// stores returns one of each kind of store, empty, with a one-minute TTL:
// memory, and Redis (miniredis, whose clock the test moves).
func stores(t *testing.T) map[string]storeUnderTest {
	t.Helper()
	clock := &fakeclock.Clock{}
	mr := miniredis.RunT(t)
	redisStore, err := NewRedis("redis://"+mr.Addr()+"/0", DefaultPrefix, ttl, time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, redisStore.Close()) })
	return map[string]storeUnderTest{
		"memory": {store: NewMemory(ttl, clock.Now), advance: clock.Advance},
		"redis":  {store: redisStore, advance: mr.FastForward},
	}
}

func TestStoresKeepOnePinPerID(t *testing.T) {
	t.Parallel()
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			pin, err := s.store.Lookup(ctx, "a")
			require.NoError(t, err)
			assert.Empty(t, pin, "no pin yet")

			owner, err := s.store.Claim(ctx, "a", one)
			require.NoError(t, err)
			assert.Equal(t, one, owner, "the first claim pins")
			owner, err = s.store.Claim(ctx, "a", two)
			require.NoError(t, err)
			assert.Equal(t, one, owner, "a later claim gets the first one's pin")
			pin, err = s.store.Lookup(ctx, "a")
			require.NoError(t, err)
			assert.Equal(t, one, pin)

			owner, err = s.store.Repin(ctx, "a", two, two)
			require.NoError(t, err)
			assert.Equal(t, one, owner, "a re-pin from an endpoint the pin no longer names changes nothing")
			owner, err = s.store.Repin(ctx, "a", one, two)
			require.NoError(t, err)
			assert.Equal(t, two, owner, "a re-pin from the pinned endpoint moves the pin")
			pin, err = s.store.Lookup(ctx, "a")
			require.NoError(t, err)
			assert.Equal(t, two, pin)

			require.NoError(t, s.store.Forget(ctx, "a", one))
			pin, err = s.store.Lookup(ctx, "a")
			require.NoError(t, err)
			assert.Equal(t, two, pin, "forgetting a pin to another endpoint keeps it")
			require.NoError(t, s.store.Forget(ctx, "a", two))
			pin, err = s.store.Lookup(ctx, "a")
			require.NoError(t, err)
			assert.Empty(t, pin, "forgotten")

			owner, err = s.store.Repin(ctx, "gone", one, two)
			require.NoError(t, err)
			assert.Equal(t, two, owner, "a re-pin of a pin that expired meanwhile sets it")
			require.NoError(t, s.store.Ping(ctx))
		})
	}
}

func TestStoresForgetPinsUnusedForTheirTTL(t *testing.T) {
	t.Parallel()
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			_, err := s.store.Claim(ctx, "a", one)
			require.NoError(t, err)
			_, err = s.store.Claim(ctx, "b", one)
			require.NoError(t, err)
			// Each use of a refreshes it: 40s + 40s is past the TTL of b,
			// claimed at the same time and not used since.
			for range 2 {
				s.advance(40 * time.Second)
				pin, err := s.store.Lookup(ctx, "a")
				require.NoError(t, err)
				assert.Equal(t, one, pin, "a use refreshes the pin")
			}
			pin, err := s.store.Lookup(ctx, "b")
			require.NoError(t, err)
			assert.Empty(t, pin, "a pin unused for its TTL is gone")

			s.advance(ttl)
			pin, err = s.store.Lookup(ctx, "a")
			require.NoError(t, err)
			assert.Empty(t, pin, "expired after its last use")
			owner, err := s.store.Claim(ctx, "a", two)
			require.NoError(t, err)
			assert.Equal(t, two, owner, "an expired id can be pinned anew")
		})
	}
}

func TestStoresGiveConcurrentFirstClaimsOneEndpoint(t *testing.T) {
	t.Parallel()
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			const claims = 50
			owners := make([]string, claims)
			var wg sync.WaitGroup
			for i := range claims {
				wg.Go(func() {
					owner, err := s.store.Claim(context.Background(), "new", fmt.Sprintf("http://e%d.example", i))
					assert.NoError(t, err)
					owners[i] = owner
				})
			}
			wg.Wait()
			for i := range claims {
				assert.Equal(t, owners[0], owners[i], "claim %d", i)
			}
		})
	}
}

func TestMemoryLenLeavesExpiredPinsOut(t *testing.T) {
	t.Parallel()
	clock := &fakeclock.Clock{}
	m := NewMemory(ttl, clock.Now)
	for i := range 10 {
		_, err := m.Claim(t.Context(), fmt.Sprint(i), one)
		require.NoError(t, err)
	}
	assert.Equal(t, 10, m.Len())
	clock.Advance(ttl / 2)
	_, err := m.Lookup(t.Context(), "3")
	require.NoError(t, err)
	clock.Advance(ttl / 2)
	assert.Equal(t, 1, m.Len(), "only the pin used since is left")
}

func TestRedisKeysArePrefixedAndHoldTheEndpointURL(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	s, err := NewRedis("redis://"+mr.Addr(), "test:", ttl, time.Second)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Claim(t.Context(), "abc", one)
	require.NoError(t, err)
	got, err := mr.Get("test:abc")
	require.NoError(t, err)
	assert.Equal(t, one, got)
	assert.Equal(t, ttl, mr.TTL("test:abc"))
}

func TestRedisURLErrorsNameTheURLWithoutItsPassword(t *testing.T) {
	t.Parallel()
	_, err := NewRedis("redis://user:secret@localhost:6379/notanumber", DefaultPrefix, ttl, time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "redis://user:xxxxx@localhost:6379/notanumber")
	assert.NotContains(t, err.Error(), "secret")
	_, err = NewRedis("http://localhost:6379", DefaultPrefix, ttl, time.Second)
	assert.ErrorContains(t, err, `"http://localhost:6379"`)
}

func TestAStoreThatDoesNotAnswerIsAnErrorAtTheTimeout(t *testing.T) {
	t.Parallel()
	// A server that accepts and never answers, as a Redis that hangs does.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var held sync.WaitGroup
	held.Go(func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	})
	defer held.Wait()
	defer ln.Close()
	s, err := NewRedis("redis://"+ln.Addr().String(), DefaultPrefix, ttl, 100*time.Millisecond)
	require.NoError(t, err)
	defer s.Close()
	for _, call := range []func() error{
		func() error { _, err := s.Lookup(t.Context(), "a"); return err },
		func() error { _, err := s.Claim(t.Context(), "a", one); return err },
		func() error { _, err := s.Repin(t.Context(), "a", one, two); return err },
		func() error { return s.Forget(t.Context(), "a", one) },
	} {
		started := time.Now()
		require.Error(t, call())
		// Far above the 100ms bound and far below go-redis's own 3s read
		// time-out and its retries, which a call without the bound would wait.
		assert.Less(t, time.Since(started), 2*time.Second)
	}
}

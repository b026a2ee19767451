package endpoints

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"balancing-reverse-proxy/internal/fakeclock"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestPool(t *testing.T, n int, opts PoolOptions) (*Pool, *fakeclock.Clock) {
	t.Helper()
	urls := make([]string, n)
	for i := range urls {
		urls[i] = "http://127.0.0.1:" + string(rune('1'+i)) + "000"
	}
	list, err := Parse(strings.Join(urls, ","))
	require.NoError(t, err)
	pool := NewPool(list, opts)
	clock := &fakeclock.Clock{}
	pool.now = clock.Now
	return pool, clock
}

func indexes(plan List) []int {
	var got []int
	for _, e := range plan {
		got = append(got, e.Index)
	}
	return got
}

func TestPlanOrders(t *testing.T) {
	t.Parallel()
	priority, _ := newTestPool(t, 3, PoolOptions{})
	for range 3 {
		assert.Equal(t, []int{0, 1, 2}, indexes(priority.Plan()))
	}

	roundRobin, _ := newTestPool(t, 3, PoolOptions{Order: RoundRobin})
	var firsts []int
	for range 4 {
		plan := indexes(roundRobin.Plan())
		firsts = append(firsts, plan[0])
		assert.ElementsMatch(t, []int{0, 1, 2}, plan, "every endpoint stays in the plan")
	}
	assert.Equal(t, []int{0, 1, 2, 0}, firsts)
	assert.Equal(t, []int{1, 2, 0}, indexes(roundRobin.Plan()), "the rest follow in list order")
}

func TestFastestPutsTheLowestLatencyFirst(t *testing.T) {
	t.Parallel()
	pool, clock := newTestPool(t, 2, PoolOptions{Order: Fastest})
	e := pool.list
	pool.Answered(e[0], 50*time.Millisecond)
	pool.Answered(e[1], 5*time.Millisecond)
	clock.Advance(10 * time.Millisecond)
	assert.Equal(t, []int{1, 0}, indexes(pool.Plan()))

	// Endpoint 1 slows down: samples over a few decay times move its average.
	for range 100 {
		clock.Advance(100 * time.Millisecond)
		pool.Answered(e[1], 200*time.Millisecond)
		pool.Answered(e[0], 50*time.Millisecond)
	}
	assert.Equal(t, []int{0, 1}, indexes(pool.Plan()))

	// A loser cut short after waiting counts as at least that slow.
	for range 100 {
		clock.Advance(100 * time.Millisecond)
		pool.Outpaced(e[0], 400*time.Millisecond)
		pool.Answered(e[1], 200*time.Millisecond)
	}
	assert.Equal(t, []int{1, 0}, indexes(pool.Plan()))
}

func TestFastestWeighsAttemptsInFlight(t *testing.T) {
	t.Parallel()
	pool, _ := newTestPool(t, 2, PoolOptions{Order: Fastest})
	e := pool.list
	pool.Answered(e[0], 10*time.Millisecond)
	pool.Answered(e[1], 15*time.Millisecond)
	require.Equal(t, []int{0, 1}, indexes(pool.Plan()))
	require.True(t, pool.Acquire(e[0]))
	assert.Equal(t, []int{1, 0}, indexes(pool.Plan()), "10ms with one in flight costs more than 15ms with none")
	pool.Release(e[0])
	assert.Equal(t, []int{0, 1}, indexes(pool.Plan()))
}

func TestFastestSpreadsOverMoreThanTwo(t *testing.T) {
	t.Parallel()
	pool, _ := newTestPool(t, 4, PoolOptions{Order: Fastest})
	for i, e := range pool.list {
		pool.Answered(e, time.Duration(i+1)*time.Millisecond)
	}
	firsts := map[int]int{}
	for range 400 {
		plan := indexes(pool.Plan())
		require.ElementsMatch(t, []int{0, 1, 2, 3}, plan)
		firsts[plan[0]]++
	}
	// The better of two random picks: the slowest is never first, the fastest
	// most often, but not always.
	assert.Zero(t, firsts[3])
	assert.Greater(t, firsts[0], firsts[1])
	assert.Greater(t, firsts[1], 0)
}

func TestEjectionBacksOffAndResets(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	pool, clock := newTestPool(t, 2, PoolOptions{
		EjectAfter: 2, EjectBackoff: time.Second, EjectBackoffMax: 3 * time.Second,
		Log: zerolog.New(&logs),
	})
	e := pool.list[0]
	failure := errors.New("connection refused")

	pool.Failed(e, failure)
	assert.Equal(t, []int{0, 1}, indexes(pool.Plan()), "one failure is not enough")
	pool.Failed(e, failure)
	assert.Equal(t, []int{1}, indexes(pool.Plan()), "ejected after two in a row")
	assert.Equal(t, 1, strings.Count(logs.String(), "endpoint ejected"))
	pool.Failed(e, failure) // from an attempt that started earlier: no news
	assert.Equal(t, 1, strings.Count(logs.String(), "endpoint ejected"))

	clock.Advance(time.Second)
	assert.Equal(t, []int{0, 1}, indexes(pool.Plan()), "back after the back-off")
	pool.Failed(e, failure)
	assert.Equal(t, []int{1}, indexes(pool.Plan()), "one more failure ejects it again")
	clock.Advance(time.Second)
	assert.Equal(t, []int{1}, indexes(pool.Plan()), "for twice as long")
	clock.Advance(time.Second)
	assert.Equal(t, []int{0, 1}, indexes(pool.Plan()))
	pool.Failed(e, failure)
	clock.Advance(3 * time.Second)
	assert.Equal(t, []int{0, 1}, indexes(pool.Plan()), "the back-off stops growing at the max")

	pool.Answered(e, time.Millisecond)
	assert.Equal(t, 1, strings.Count(logs.String(), "endpoint back"))
	pool.Failed(e, failure)
	assert.Equal(t, []int{0, 1}, indexes(pool.Plan()), "an answer resets the count")
	pool.Failed(e, failure)
	assert.Equal(t, []int{1}, indexes(pool.Plan()))
	clock.Advance(time.Second)
	assert.Equal(t, []int{0, 1}, indexes(pool.Plan()), "and the back-off")
}

func TestEveryEndpointEjectedTriesAll(t *testing.T) {
	t.Parallel()
	pool, _ := newTestPool(t, 2, PoolOptions{EjectAfter: 1, EjectBackoff: time.Minute})
	pool.Failed(pool.list[0], errors.New("down"))
	assert.Equal(t, []int{1}, indexes(pool.Plan()))
	pool.Failed(pool.list[1], errors.New("down"))
	assert.Equal(t, []int{0, 1}, indexes(pool.Plan()))
}

func TestZeroEjectAfterNeverEjects(t *testing.T) {
	t.Parallel()
	pool, _ := newTestPool(t, 2, PoolOptions{})
	for range 100 {
		pool.Failed(pool.list[0], errors.New("down"))
	}
	assert.Equal(t, []int{0, 1}, indexes(pool.Plan()))
}

func TestPauseSkipsForRetryAfter(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	pool, clock := newTestPool(t, 2, PoolOptions{EjectBackoffMax: time.Minute, Log: zerolog.New(&logs)})
	e := pool.list[0]
	pool.Pause(e, 10*time.Second)
	pool.Pause(e, 5*time.Second) // shorter: changes nothing
	assert.Equal(t, []int{1}, indexes(pool.Plan()))
	assert.Equal(t, 1, strings.Count(logs.String(), "endpoint paused by Retry-After"))
	pool.Answered(e, time.Millisecond) // a late answer does not lift the pause
	assert.Equal(t, []int{1}, indexes(pool.Plan()))
	clock.Advance(10 * time.Second)
	assert.Equal(t, []int{0, 1}, indexes(pool.Plan()))

	pool.Pause(e, 24*time.Hour)
	clock.Advance(time.Minute)
	assert.Equal(t, []int{0, 1}, indexes(pool.Plan()), "capped at --eject-backoff-max")
}

func TestProbesEjectAndBringBack(t *testing.T) {
	t.Parallel()
	pool, _ := newTestPool(t, 2, PoolOptions{EjectAfter: 2, EjectBackoff: time.Hour})
	pool.Probed(0, errors.New("status 503"))
	pool.Probed(0, errors.New("status 503"))
	assert.Equal(t, []int{1}, indexes(pool.Plan()), "failed probes count")
	pool.Probed(0, nil)
	assert.Equal(t, []int{0, 1}, indexes(pool.Plan()), "a passed probe brings it back before the back-off ends")

	pool.Pause(pool.list[1], time.Minute)
	pool.Probed(1, nil)
	assert.Equal(t, []int{0}, indexes(pool.Plan()), "a Retry-After pause is kept")
}

func TestAcquireHoldsTheCap(t *testing.T) {
	t.Parallel()
	pool, _ := newTestPool(t, 1, PoolOptions{MaxInflight: 3})
	e := pool.list[0]
	var held, most atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if !pool.Acquire(e) {
					continue
				}
				n := held.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				held.Add(-1)
				pool.Release(e)
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, most.Load(), int64(3))
	assert.Positive(t, most.Load())

	for range 3 {
		require.True(t, pool.Acquire(e))
	}
	assert.False(t, pool.Acquire(e))
	pool.Release(e)
	assert.True(t, pool.Acquire(e))

	uncapped, _ := newTestPool(t, 1, PoolOptions{})
	for range 1000 {
		require.True(t, uncapped.Acquire(uncapped.list[0]))
	}
}

func TestOrderUnmarshalText(t *testing.T) {
	t.Parallel()
	var order Order
	for _, want := range []Order{Priority, RoundRobin, Fastest, Weighted} {
		require.NoError(t, order.UnmarshalText([]byte(want)))
		assert.Equal(t, want, order)
	}
	err := order.UnmarshalText([]byte("random"))
	require.Error(t, err)
	assert.Equal(t, `unknown order "random"; accepted: priority, round-robin, fastest or weighted`, err.Error())
}

func TestFindByTheURLAsConfigured(t *testing.T) {
	t.Parallel()
	pool, _ := newTestPool(t, 3, PoolOptions{})
	for _, e := range pool.list {
		found, ok := pool.Find(e.String())
		assert.True(t, ok)
		assert.Equal(t, e.Index, found.Index)
	}
	_, ok := pool.Find("http://elsewhere.example")
	assert.False(t, ok)
}

func TestHasRoomFollowsTheCap(t *testing.T) {
	t.Parallel()
	pool, _ := newTestPool(t, 1, PoolOptions{MaxInflight: 1})
	e := pool.list[0]
	assert.True(t, pool.HasRoom(e))
	require.True(t, pool.Acquire(e))
	assert.False(t, pool.HasRoom(e))
	pool.Release(e)
	assert.True(t, pool.HasRoom(e))
	uncapped, _ := newTestPool(t, 1, PoolOptions{})
	require.True(t, uncapped.Acquire(uncapped.list[0]))
	assert.True(t, uncapped.HasRoom(uncapped.list[0]), "no cap")
}

func TestRetryInIsWhatIsLeftOfAnEjectionOrAPause(t *testing.T) {
	t.Parallel()
	pool, clock := newTestPool(t, 1, PoolOptions{EjectAfter: 1, EjectBackoff: 10 * time.Second, EjectBackoffMax: time.Minute})
	e := pool.list[0]
	assert.Zero(t, pool.RetryIn(e))
	pool.Failed(e, errors.New("refused"))
	clock.Advance(4 * time.Second)
	assert.Equal(t, 6*time.Second, pool.RetryIn(e))
	pool.Pause(e, 30*time.Second)
	assert.Equal(t, 30*time.Second, pool.RetryIn(e), "the later of the two")
	clock.Advance(time.Minute)
	assert.Zero(t, pool.RetryIn(e))
}

// weightedPool is a pool of three endpoints with the weights given, in the
// weighted order.
func weightedPool(t *testing.T, weights ...int) (*Pool, *fakeclock.Clock) {
	t.Helper()
	pool, clock := newTestPool(t, len(weights), PoolOptions{Order: Weighted, EjectAfter: 1, EjectBackoff: time.Minute})
	for i, w := range weights {
		pool.list[i].Weight = w
	}
	return pool, clock
}

func TestWeightedIsSmooth(t *testing.T) {
	t.Parallel()
	pool, _ := weightedPool(t, 5, 1, 1)
	var firsts []int
	for range 14 {
		firsts = append(firsts, pool.Plan()[0].Index)
	}
	// nginx's sequence for 5:1:1, a a b a c a a, twice.
	assert.Equal(t, []int{0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0}, firsts)
}

func TestWeightedSplitsByWeight(t *testing.T) {
	t.Parallel()
	pool, _ := weightedPool(t, 3, 2, 1)
	counts := make([]int, 3)
	for range 1200 {
		plan := pool.Plan()
		require.Len(t, plan, 3)
		counts[plan[0].Index]++
	}
	assert.Equal(t, []int{600, 400, 200}, counts)
}

func TestWeightedFollowsWithItsNextPicks(t *testing.T) {
	t.Parallel()
	pool, _ := weightedPool(t, 5, 1, 1)
	// The first request: a, then among b and c the one it would pick next.
	assert.Equal(t, []int{0, 1, 2}, indexes(pool.Plan()))
	// The rest of a plan is not a pick: the next request still starts with a.
	assert.Equal(t, 0, pool.Plan()[0].Index)
	assert.Equal(t, 1, pool.Plan()[0].Index)
}

func TestWeightedSkipsEjectedEndpoints(t *testing.T) {
	t.Parallel()
	pool, _ := weightedPool(t, 5, 1, 1)
	pool.Failed(pool.list[0], errors.New("refused"))
	counts := make([]int, 3)
	for range 100 {
		plan := pool.Plan()
		require.Len(t, plan, 2)
		counts[plan[0].Index]++
	}
	assert.Equal(t, []int{0, 50, 50}, counts)
}

func TestAnEndpointsOwnInflightCap(t *testing.T) {
	t.Parallel()
	pool, _ := newTestPool(t, 2, PoolOptions{MaxInflight: 1})
	pool.list[1].MaxInflight = 2
	a, b := pool.list[0], pool.list[1]
	require.True(t, pool.Acquire(a))
	assert.False(t, pool.Acquire(a), "the pool's cap")
	require.True(t, pool.Acquire(b))
	require.True(t, pool.Acquire(b), "its own, higher")
	assert.False(t, pool.Acquire(b))
	assert.False(t, pool.HasRoom(b))
}

func TestStatusFollowsEjectionsPausesAndReturns(t *testing.T) {
	t.Parallel()
	pool, clock := newTestPool(t, 1, PoolOptions{EjectAfter: 2, EjectBackoff: 10 * time.Second, EjectBackoffMax: time.Minute})
	e := pool.list[0]
	start := clock.Now()
	require.True(t, pool.Acquire(e))
	status := pool.Status(0)
	assert.Equal(t, StateUp, status.State)
	assert.EqualValues(t, 1, status.InFlight)
	pool.Release(e)

	pool.Failed(e, errors.New("refused"))
	assert.Equal(t, StateUp, pool.Status(0).State, "one failure of two")
	clock.Advance(time.Second)
	pool.Failed(e, errors.New("refused"))
	status = pool.Status(0)
	assert.Equal(t, StateEjected, status.State)
	assert.EqualValues(t, 1, status.Ejections)
	assert.Equal(t, start.Add(time.Second), status.Since)

	clock.Advance(10 * time.Second)
	status = pool.Status(0)
	assert.Equal(t, StateUp, status.State, "the back-off is over")
	assert.Equal(t, start.Add(11*time.Second), status.Since, "its end is the change")

	clock.Advance(time.Second)
	pool.Pause(e, 5*time.Second)
	status = pool.Status(0)
	assert.Equal(t, StatePaused, status.State)
	assert.Equal(t, start.Add(12*time.Second), status.Since)
	assert.EqualValues(t, 1, status.Ejections, "a pause is no ejection")

	clock.Advance(5 * time.Second)
	pool.Failed(e, errors.New("refused"))
	pool.Failed(e, errors.New("refused"))
	clock.Advance(time.Second)
	pool.Answered(e, time.Millisecond)
	status = pool.Status(0)
	assert.Equal(t, StateUp, status.State, "an answer brings it back")
	assert.EqualValues(t, 2, status.Ejections)
	assert.Equal(t, start.Add(18*time.Second), status.Since)
}

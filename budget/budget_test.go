package budget

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"balancing-reverse-proxy/internal/fakeclock"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newTestBudget returns a Budget on a fake clock.
func newTestBudget(t *testing.T, share, floorPerSecond float64, window time.Duration) (*Budget, *fakeclock.Clock) {
	t.Helper()
	clock := &fakeclock.Clock{}
	return newBudget(share, floorPerSecond, window, clock.Now), clock
}

// drain withdraws until the budget refuses, and returns how many it allowed.
func drain(t *testing.T, b *Budget) int {
	t.Helper()
	for allowed := 0; ; allowed++ {
		if !b.Withdraw() {
			return allowed
		}
		require.Less(t, allowed, 1_000_000, "the budget never runs out")
	}
}

func deposit(b *Budget, n int) {
	for range n {
		b.Deposit()
	}
}

func TestBudgetAllows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		share    float64
		floor    float64
		window   time.Duration
		deposits int
		want     int
	}{
		{name: "5% of 1000", share: 0.05, floor: 0, deposits: 1000, want: 50},
		{name: "floor is not added to the share", share: 0.05, floor: DefaultFloor, deposits: 1000, want: 50},
		{name: "0.5% of 1000", share: 0.005, deposits: 1000, want: 5},
		{name: "29% of 100 despite float rounding", share: 0.29, deposits: 100, want: 29},
		{name: "share rounds down", share: 0.05, deposits: 39, want: 1},
		{name: "100%", share: 1, deposits: 100, want: 100},
		{name: "quiet proxy gets the floor", share: 0.05, floor: DefaultFloor, deposits: 3, want: 10},
		{name: "floor scales with the window", share: 0.05, floor: DefaultFloor, window: 30 * time.Second, deposits: 3, want: 30},
		{name: "fractional floor", share: 0.05, floor: 0.5, deposits: 3, want: 5},
		{name: "floor without requests", share: 0.05, floor: DefaultFloor, deposits: 0, want: 10},
		{name: "0% with floor 0 allows none", share: 0, floor: 0, deposits: 1000, want: 0},
		{name: "0% still gets the floor", share: 0, floor: DefaultFloor, deposits: 1000, want: 10},
		{name: "negative share and floor allow none", share: -1, floor: -1, deposits: 1000, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, _ := newTestBudget(t, tt.share, tt.floor, tt.window)
			deposit(b, tt.deposits)
			assert.Equal(t, tt.want, drain(t, b))
		})
	}
}

func TestBudgetWindowAgeing(t *testing.T) {
	t.Parallel()
	const window = 10 * time.Second
	b, clock := newTestBudget(t, 0.05, 0, window)

	// Spend 2 of the 5 that 100 requests earn.
	deposit(b, 100)
	require.True(t, b.Withdraw())
	require.True(t, b.Withdraw())

	clock.Advance(window)
	assert.False(t, b.Withdraw(), "old requests no longer earn extra attempts")

	deposit(b, 100)
	assert.Equal(t, 5, drain(t, b), "old extra attempts no longer count against the budget")
}

func TestBudgetSlidingBuckets(t *testing.T) {
	t.Parallel()
	const window = 10 * time.Second
	b, clock := newTestBudget(t, 0.05, 0, window)

	deposit(b, 100) // at 0s
	clock.Advance(window / 2)
	deposit(b, 100) // at 5s
	assert.Equal(t, 10, drain(t, b), "both halves of the window count")

	clock.Advance(window/2 - time.Nanosecond)
	assert.False(t, b.Withdraw(), "the requests at 0s count until they are a window old")

	clock.Advance(time.Nanosecond)
	deposit(b, 200) // at 10s, when the requests at 0s have aged out
	// 300 requests in the window earn 15, 10 of which were spent at 5s.
	assert.Equal(t, 5, drain(t, b))

	clock.Advance(window / 2)
	// Now only the 200 requests at 10s count, against the 5 spent at 10s.
	assert.Equal(t, 5, drain(t, b))
}

func TestBudgetSteadyState(t *testing.T) {
	t.Parallel()
	const (
		requests = 10_000
		share    = 0.05
		window   = 10 * time.Second
		interval = 10 * time.Millisecond // 100 requests per second: 10 windows in all
	)
	b, clock := newTestBudget(t, share, DefaultFloor, window)
	allowed := 0
	for range requests {
		b.Deposit()
		if b.Withdraw() {
			allowed++
		}
		clock.Advance(interval)
	}
	// A sum of share and floor would allow about 10 more per window (some 600).
	assert.LessOrEqual(t, allowed, int(share*requests+DefaultFloor*window.Seconds()))
	assert.GreaterOrEqual(t, allowed, int(0.9*share*requests), "the share is actually spent")
}

func TestBudgetConcurrent(t *testing.T) {
	t.Parallel()
	const goroutines = 8
	b, clock := newTestBudget(t, 0.05, DefaultFloor, 10*time.Second)

	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() { deposit(b, 1000) })
	}
	wg.Wait()

	var allowed atomic.Int64
	for range goroutines {
		wg.Go(func() {
			for range 100 {
				if b.Withdraw() {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(400), allowed.Load(), "5% of 8000, not one more")

	// Everything at once, while time passes.
	for g := range goroutines {
		wg.Go(func() {
			for i := range 1000 {
				b.Deposit()
				b.Withdraw()
				if g == 0 && i%10 == 0 {
					clock.Advance(100 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkBudget(b *testing.B) {
	budget := New(0.05, DefaultFloor, 0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			budget.Deposit()
			budget.Withdraw()
		}
	})
}

func TestBalanceIsWhatIsSpentOfWhatIsAllowed(t *testing.T) {
	t.Parallel()
	b, clock := newTestBudget(t, 0.1, 0, 10*time.Second)
	deposit(b, 100)
	spent, allowed := b.Balance()
	assert.InDelta(t, 0.0, spent, 1e-9)
	assert.InDelta(t, 10.0, allowed, 1e-9)
	for range 4 {
		require.True(t, b.Withdraw())
	}
	spent, allowed = b.Balance()
	assert.InDelta(t, 4.0, spent, 1e-9)
	assert.InDelta(t, 10.0, allowed, 1e-9)
	clock.Advance(11 * time.Second)
	spent, allowed = b.Balance()
	assert.InDelta(t, 0.0, spent+allowed, 1e-9, "the window has passed")
}

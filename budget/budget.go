// Package budget owns the budget for extra attempts: every attempt after a
// request's first, whether a hedge or a fail-over, must be allowed by one
// Budget, so that extra load on the endpoints stays at a known share of the
// traffic.
package budget

import (
	"math"
	"sync"
	"time"
)

// DefaultFloor is the default number of extra attempts per second that are
// always allowed, whatever the traffic. Without a floor, a quiet proxy (a few
// requests per minute) would earn no budget at all and could never fail over
// to the next endpoint when the first one breaks.
const DefaultFloor = 1.0

// defaultWindow is the window of a Budget made with a zero window.
const defaultWindow = 10 * time.Second

// buckets is how many buckets a window is counted in.
const buckets = 10

// slack forgives float rounding when comparing counts with a share of them:
// 0.29 * 100 is 28.999999999999996, which must still allow 29.
const slack = 1e-9

// Budget allows extra attempts of at most a share of recent requests, or of a
// floor per second when that is more, so that a quiet proxy can still fail
// over. It is safe for concurrent use and starts no goroutines.
//
// Within a sliding window, an extra attempt is allowed when the extra
// attempts already allowed, plus this one, are at most
//
//	max(share × requests in the window, floorPerSecond × window in seconds)
//
// The floor is not added to the share: it only counts when the share would
// allow fewer. So once traffic is above floorPerSecond/share requests per
// second (20/s for a 5% budget and the default floor), extra attempts stay at
// or under the share of requests. The floor is a count per window, so a quiet
// proxy may spend it in one burst.
//
// The window is counted in ten buckets of window/10 each. A bucket's requests
// and extra attempts stop counting together once the bucket began a whole
// window ago, so the window in effect is nine to ten tenths of window long.
type Budget struct {
	share float64
	// floor is the extra attempts allowed per window whatever the traffic.
	floor float64
	width time.Duration // of one bucket
	now   func() time.Time
	// start is when the Budget was made; bucketEnd is an offset from it, so
	// it uses the monotonic clock.
	start time.Time

	// mu guards the fields below.
	mu          sync.Mutex
	deposits    [buckets]int64 // requests, per bucket of the ring
	withdrawals [buckets]int64 // extra attempts allowed, per bucket of the ring
	bucket      int            // the bucket being filled
	bucketEnd   time.Duration
}

// New returns a Budget that allows extra attempts of share (0.05 for 5%) of
// the requests in the last window, or floorPerSecond extra attempts per
// second, whichever is more. If window is zero or negative, it is 10s. A
// negative share or floor counts as zero; a share of zero and a floor of zero
// allow no extra attempts at all.
func New(share float64, floorPerSecond float64, window time.Duration) *Budget {
	return newBudget(share, floorPerSecond, window, time.Now)
}

// newBudget is New with a clock that tests control.
func newBudget(share float64, floorPerSecond float64, window time.Duration, now func() time.Time) *Budget {
	if window <= 0 {
		window = defaultWindow
	}
	// max(x, 0) is NaN for a NaN x, which would refuse everything; !(x > 0)
	// catches NaN too.
	if !(share > 0) {
		share = 0
	}
	if !(floorPerSecond > 0) {
		floorPerSecond = 0
	}
	// A window under 10ns would make zero-width buckets.
	width := max(window/buckets, time.Nanosecond)
	return &Budget{
		share:     share,
		floor:     floorPerSecond * window.Seconds(),
		width:     width,
		now:       now,
		start:     now(),
		bucketEnd: width,
	}
}

// Deposit counts one client request. Call it once per request, before the
// request's first attempt.
func (b *Budget) Deposit() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance()
	b.deposits[b.bucket]++
}

// Withdraw asks for one extra attempt: every attempt after a request's first.
// It reports whether the attempt is allowed, and counts it if so.
func (b *Budget) Withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	spent, allowed := b.balance()
	if spent+1 > allowed+slack {
		return false
	}
	b.withdrawals[b.bucket]++
	return true
}

// Balance returns the extra attempts spent within the window and the number
// allowed, as the admin listener shows them.
func (b *Budget) Balance() (spent, allowed float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.balance()
}

// balance is Balance with b.mu held; it moves the ring to now.
func (b *Budget) balance() (spent, allowed float64) {
	b.advance()
	var deposited, withdrawn int64
	for i := range buckets {
		deposited += b.deposits[i]
		withdrawn += b.withdrawals[i]
	}
	return float64(withdrawn), math.Max(b.share*float64(deposited), b.floor)
}

// advance moves the ring to now, emptying the buckets that have become a
// whole window old. b.mu must be held.
func (b *Budget) advance() {
	elapsed := b.now().Sub(b.start)
	if elapsed < b.bucketEnd {
		return
	}
	steps := (elapsed-b.bucketEnd)/b.width + 1
	for range min(int(steps), buckets) {
		b.bucket = (b.bucket + 1) % buckets
		b.deposits[b.bucket] = 0
		b.withdrawals[b.bucket] = 0
	}
	b.bucketEnd += steps * b.width
}

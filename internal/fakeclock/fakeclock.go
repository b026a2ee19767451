// Package fakeclock provides, for tests, a clock that only moves when the
// test moves it, for code that takes its time from a func() time.Time.
package fakeclock

import (
	"sync/atomic"
	"time"
)

// Clock is a clock that starts at a fixed instant and moves only by Advance.
// It is safe for concurrent use. The zero value is ready.
type Clock struct {
	elapsed atomic.Int64
}

// start is the instant every Clock starts at.
var start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	return start.Add(time.Duration(c.elapsed.Load()))
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.elapsed.Add(int64(d))
}

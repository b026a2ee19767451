// Package coarsetimer has timers that fire late by up to a twentieth of
// their duration, but at most 50 ms (and up to 1 ms for those under 20 ms),
// never early, all of a group by one pass
// over them, for deadlines that are nearly always stopped long before they
// come, such as an attempt's wait for its headers. A runtime timer per
// deadline (time.AfterFunc, then Stop) costs an allocation and a push into
// and removal from the runtime's timer heap under its locks, about 3% of the
// proxy's CPU per request; a coarse timer costs one allocation, an append
// under the group's lock and a compare-and-swap to stop.
package coarsetimer

import (
	"sync"
	"sync/atomic"
	"time"
)

// maxSlack bounds how late a timer may fire, and so how long a stopped
// timer stays in its group's list (and keeps its function alive).
const maxSlack = 50 * time.Millisecond

// minSlack is the least slack: a pass at most once a millisecond.
const minSlack = time.Millisecond

// The states of a Timer.
const (
	pending int32 = iota
	stopped
	fired
)

// Group runs the timers made by its AfterFunc. Its zero value is ready.
type Group struct {
	mu     sync.Mutex
	timers []*Timer
	// pass is the runtime timer of the next pass, armed for passAt (on the
	// monotonic clock since started) while timers is not empty.
	pass    *time.Timer
	passAt  time.Duration
	started time.Time
}

// Timer is one call of a function after a duration, as time.AfterFunc's.
type Timer struct {
	f     func()
	state atomic.Int32
	// at is when f is due, latest when it must have run, on the group's
	// clock.
	at, latest time.Duration
}

// AfterFunc calls f on a goroutine of its own once d has passed, up to a
// twentieth of d later (see the package comment), unless the timer is
// stopped first.
func (g *Group) AfterFunc(d time.Duration, f func()) *Timer {
	t := &Timer{f: f}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.started.IsZero() {
		g.started = time.Now()
	}
	now := time.Since(g.started)
	t.at = now + d
	t.latest = t.at + min(max(d/20, minSlack), maxSlack)
	g.timers = append(g.timers, t)
	// The pass comes by the earliest timer's latest time, and every
	// maxSlack at most, to drop the timers stopped meanwhile.
	g.armBy(min(t.latest, now+maxSlack), now)
	return t
}

// Stop prevents the timer from firing. It reports whether it did so: false
// when the function has run or is running, as time.Timer.Stop.
func (t *Timer) Stop() bool {
	return t.state.CompareAndSwap(pending, stopped)
}

// armBy makes sure a pass comes by at; now is the group's clock. It runs
// under g.mu.
func (g *Group) armBy(at, now time.Duration) {
	switch {
	case g.pass == nil:
		g.pass = time.AfterFunc(at-now, g.run)
	case g.passAt != 0 && g.passAt <= at:
		return
	default:
		g.pass.Reset(at - now)
	}
	g.passAt = at
}

// run is a pass: it fires the timers due, drops the stopped ones and arms
// the next pass while any are left.
func (g *Group) run() {
	var due []*Timer
	g.mu.Lock()
	now := time.Since(g.started)
	left := g.timers[:0]
	next := time.Duration(0)
	for _, t := range g.timers {
		switch {
		case t.state.Load() != pending:
		case t.at <= now:
			if t.state.CompareAndSwap(pending, fired) {
				due = append(due, t)
			}
		default:
			left = append(left, t)
			if next == 0 || t.latest < next {
				next = t.latest
			}
		}
	}
	clear(g.timers[len(left):])
	g.timers = left
	g.passAt = 0
	if len(left) > 0 {
		g.armBy(min(next, now+maxSlack), now)
	}
	g.mu.Unlock()
	for _, t := range due {
		go t.f()
	}
}

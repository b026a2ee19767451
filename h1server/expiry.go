package h1server

import (
	"time"
)

// A connection's waits for its client (the idle time before a request, the
// header time of a head) end by the server's expiry pass, not by a deadline
// set on the connection for each: Go's server sets two a request, and each
// moves a runtime timer, which wakes the runtime's poller. Here a wait costs
// an atomic store, and ends up to an expiry tick late.

// expired is the expiresAt of a connection whose wait the expiry pass ended.
const expired = -1

// expiryTick returns the period of the expiry pass for the timeouts: a
// twentieth of the shorter, from 5 ms to 1 s; 0 when there is none.
func expiryTick(timeouts ...time.Duration) time.Duration {
	var shortest time.Duration
	for _, d := range timeouts {
		if d > 0 && (shortest == 0 || d < shortest) {
			shortest = d
		}
	}
	if shortest == 0 {
		return 0
	}
	return min(max(shortest/20, 5*time.Millisecond), time.Second)
}

// clock is the server's time for the expiry pass: how long it has been up,
// by the monotonic clock (a step of the wall clock must not end every wait
// at once, nor none for an hour), from 1.
func (s *Server) clock() int64 { return int64(time.Since(s.started)) + 1 }

// wait starts the connection's wait of d for its client (none when d is 0),
// in place of the one before. It reports false when the expiry pass ended
// that one: the connection is to close.
func (c *conn) wait(d time.Duration) bool {
	var at int64
	if d > 0 {
		at = c.server.clock() + int64(d)
	}
	old := c.expiresAt.Load()
	// Only the expiry pass changes expiresAt beside this goroutine, and only
	// to expired.
	return old != expired && c.expiresAt.CompareAndSwap(old, at)
}

// expireIfDue ends the connection's wait if its time is up at now (see
// Server.clock): the read waiting on the client returns a timeout error.
func (c *conn) expireIfDue(now int64) {
	at := c.expiresAt.Load()
	if at <= 0 || now < at {
		return
	}
	if c.expiresAt.CompareAndSwap(at, expired) {
		_ = c.raw.SetReadDeadline(longAgo)
	}
}

// runExpiry runs the expiry pass every tick until the sweep ends.
func (sw *sweep) runExpiry(tick time.Duration) {
	defer sw.running.Done()
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	for {
		select {
		case <-sw.stop:
			return
		case <-ticker.C:
			now := sw.server.clock()
			sw.server.mu.Lock()
			for c := range sw.server.conns {
				c.expireIfDue(now)
			}
			sw.server.mu.Unlock()
		}
	}
}

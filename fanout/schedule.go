package fanout

import (
	"time"

	"balancing-reverse-proxy/hedge"
)

// Schedule decides when the engine starts the next attempt while the earlier
// ones are still pending. Whatever the schedule, an attempt that fails starts the
// next one at once.
type Schedule struct {
	mode mode
	// delay is the hedge delay, for hedged mode.
	delay *hedge.Delay
}

type mode int

const (
	serial mode = iota
	fanOut
	hedged
)

// Serial starts attempt i+1 only when attempt i has failed, so an endpoint is
// called only when every endpoint before it failed. It is the default.
func Serial() Schedule {
	return Schedule{}
}

// FanOut starts every attempt at once; the first terminal answer wins.
func FanOut() Schedule {
	return Schedule{mode: fanOut}
}

// Hedged starts the next attempt when the pending ones have not answered
// within delay's current value of the last start (or at once when one fails);
// the first terminal answer wins. The engine feeds delay the latency of the
// attempts it sees, so that an adaptive delay follows the endpoints.
func Hedged(delay *hedge.Delay) Schedule {
	return Schedule{mode: hedged, delay: delay}
}

// String names the schedule, for logs.
func (s Schedule) String() string {
	switch s.mode {
	case fanOut:
		return "fan-out"
	case hedged:
		return "hedged"
	}
	return "serial"
}

// wait returns how long the next attempt waits for the pending ones, and false
// when it waits for a failure only.
func (s Schedule) wait() (time.Duration, bool) {
	switch s.mode {
	case fanOut:
		return 0, true
	case hedged:
		return s.delay.Current(), true
	}
	return 0, false
}

// observe feeds the hedge delay one attempt's time to its answer, or a lower
// bound of it for an attempt cut short by a winner or a time-out.
func (s Schedule) observe(latency time.Duration) {
	if s.delay != nil {
		s.delay.Observe(latency)
	}
}

// HedgeDelay returns the hedge delay in force, and false for a schedule that
// does not hedge.
func (s Schedule) HedgeDelay() (time.Duration, bool) {
	if s.mode != hedged {
		return 0, false
	}
	return s.delay.Current(), true
}

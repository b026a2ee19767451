package fanout

// Schedule decides when the engine starts the next attempt while the earlier
// ones are still pending. Whatever the schedule, an attempt that fails starts the
// next one at once.
type Schedule struct {
	// parallel means the next attempt does not wait for the pending ones.
	parallel bool
}

// Serial starts attempt i+1 only when attempt i has failed, so an endpoint is
// called only when every endpoint before it failed. It is the default.
func Serial() Schedule {
	return Schedule{}
}

// FanOut starts every attempt at once; the first terminal answer wins.
func FanOut() Schedule {
	return Schedule{parallel: true}
}

// String names the schedule, for logs.
func (s Schedule) String() string {
	if s.parallel {
		return "fan-out"
	}
	return "serial"
}

package fanout

import (
	"net/http"
	"time"

	"balancing-reverse-proxy/endpointresponse"
	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/internal/canonical"
)

// Refusal is why a request got no extra attempt when it wanted one.
type Refusal uint8

// The refusals; NotRefused is none.
const (
	NotRefused Refusal = iota
	// RefusedBody: the request body was over --max-body-buffer.
	RefusedBody
	// RefusedMethod: the method is not idempotent (--idempotent-only).
	RefusedMethod
	// RefusedBudget: the budget of extra attempts was spent.
	RefusedBudget
	// RefusedAtCap: the other endpoints were at their in-flight cap.
	RefusedAtCap
)

// Refusals lists every refusal, for metrics that count each.
var Refusals = [...]Refusal{RefusedBody, RefusedMethod, RefusedBudget, RefusedAtCap}

// String says why, as NoExtraAttemptHeader and the log give it.
func (r Refusal) String() string {
	return [...]string{"", "request body over --max-body-buffer", "method not idempotent", "budget spent", "other endpoints at --max-inflight"}[r]
}

// Label names the refusal as the metrics' reason label has it.
func (r Refusal) Label() string {
	return [...]string{"", "body_over_replay_cap", "not_idempotent", "budget_spent", "endpoints_at_cap"}[r]
}

// plan is what one request may do, decided before its first attempt: the
// endpoints it may try, in order; when it starts the next one; how many it
// may make; until when it waits; and which extra attempts its body and method
// allow. The attempt loop only carries it out.
type plan struct {
	// candidates are the endpoints to try, in order.
	candidates endpoints.List
	// schedule says when the next attempt starts while others are pending.
	schedule Schedule
	// inline is set when no attempt ever waits for another (the serial
	// schedule): each runs on the request's own goroutine.
	inline bool
	// maxAttempts caps the attempts.
	maxAttempts int
	// deadline is when the wait for a terminal answer's headers ends, zero
	// for never.
	deadline time.Time
	// upgrade is the protocol the request switches its connection to, or "".
	upgrade string
	// replayable is set when every attempt can send the body.
	replayable bool
	// onlyIfNotSent is set when the request may not be repeated (its method
	// under --idempotent-only): an extra attempt may only follow one that
	// sent nothing.
	onlyIfNotSent bool
	// pinnedFirst is set when the first candidate is a session's endpoint:
	// at its in-flight cap, it is not skipped for the next, which would move
	// the session; the request gets no attempt instead.
	pinnedFirst bool
}

// plan decides r's plan. body is r's captured body; upgrade is the protocol r
// switches its connection to, or "": such a request goes to one endpoint at
// a time, since a tunnel joins one, as does one with a session pin, whose
// candidates pin decided.
func (p *Proxy) plan(r *http.Request, body *requestBody, upgrade string, pin *pinning) plan {
	candidates := pin.candidates
	if candidates == nil {
		candidates = p.Endpoints.Plan()
	}
	pl := plan{
		candidates:    candidates,
		schedule:      p.Schedule,
		maxAttempts:   len(candidates),
		upgrade:       upgrade,
		replayable:    body.replayable,
		onlyIfNotSent: p.IdempotentOnly && !repeatable(r),
		pinnedFirst:   pin.pinnedFirst,
	}
	if p.MaxAttempts > 0 {
		pl.maxAttempts = min(pl.maxAttempts, p.MaxAttempts)
	}
	if upgrade != "" || pin.candidates != nil {
		pl.schedule = Serial()
	}
	_, hedges := pl.schedule.wait()
	pl.inline = !hedges
	if p.Timeout > 0 {
		pl.deadline = time.Now().Add(p.Timeout)
	}
	return pl
}

// refusal says why the plan allows no extra attempt after failed (nil: one
// that the schedule wants, a hedge), or NotRefused when it allows one.
func (pl *plan) refusal(failed *endpointresponse.Outcome) Refusal {
	switch {
	case !pl.replayable:
		return RefusedBody
	case pl.onlyIfNotSent && (failed == nil || !failed.NotSent):
		// Nothing reached the endpoint of an attempt that failed before
		// sending, so the next one cannot duplicate it.
		return RefusedMethod
	}
	return NotRefused
}

// headerTimeout is how long an attempt started at now may wait for its
// headers: tryTimeout (zero for no bound), and no later than the deadline,
// in which case atDeadline is set.
func (pl *plan) headerTimeout(tryTimeout time.Duration, now time.Time) (timeout time.Duration, atDeadline bool) {
	if pl.deadline.IsZero() {
		return tryTimeout, false
	}
	left := max(pl.deadline.Sub(now), time.Nanosecond)
	if tryTimeout == 0 || left < tryTimeout {
		return left, true
	}
	return tryTimeout, false
}

// expired reports whether the deadline has passed.
func (pl *plan) expired() bool {
	return !pl.deadline.IsZero() && !time.Now().Before(pl.deadline)
}

// repeatable reports whether r may be sent more than once: its method is
// idempotent (RFC 9110, section 9.2.2) or it carries an Idempotency-Key.
func repeatable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete, http.MethodTrace:
		return true
	}
	return canonical.Get(r.Header, "Idempotency-Key") != ""
}

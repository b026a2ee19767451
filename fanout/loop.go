package fanout

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"balancing-reverse-proxy/endpointresponse"
	"balancing-reverse-proxy/forward"
	"balancing-reverse-proxy/scope"
)

// exchange is one request on its way through the engine: its plan, the
// state of its attempt loop, its losers and how it ended.
type exchange struct {
	proxy *Proxy
	in    *http.Request
	body  *requestBody
	plan  plan
	// forwarded is in, prepared once for every attempt.
	forwarded forward.Request

	// results carries the outcomes of attempts sent aside; sized to the
	// plan's attempts, so that no attempt blocks on sending. An inline plan
	// has none (a channel costs two allocations and a lock per operation):
	// its attempt's outcome waits in inlineOutcome to be taken in.
	results       chan *endpointresponse.Outcome
	inlineOutcome *endpointresponse.Outcome
	// running counts the attempts whose goroutine has not returned.
	running sync.WaitGroup
	// next is the first candidate not tried yet; tried holds those tried,
	// in the order of their attempts.
	next       int
	tried      []int
	triedArray [3]int
	// pending counts the attempts started whose outcome is not taken in.
	pending    int
	lastLaunch time.Time
	// noHedges is set once the request may start no more hedges, its body or
	// method refusing them; a failure may still be followed by another
	// attempt where the plan allows. (The request may start no more attempts
	// at all once next is past the candidates; see canStart and stop.)
	noHedges bool
	// fallback is the last non-terminal answer, kept open in case nothing
	// better comes; winner is the answer chosen for the client.
	fallback, winner *endpointresponse.Outcome
	// givenBack is the number of the attempt whose in-flight place went back
	// before the end, 0 if none.
	givenBack int
	losers    losers
	// pinning is the request's session and its pin (see Proxy.Sessions).
	pinning pinning
	// hedges has bit n-1 set when attempt n was a hedge (attempts past the
	// 64th are not marked); settling is set once finish has begun, when an
	// answer taken in is a loser's.
	hedges   uint64
	settling bool
	// reason, if set, replaces the ending's reason in the error body;
	// retryAfter is the Retry-After, in seconds, of PinnedEndpointDown.
	reason     string
	retryAfter int
	done       Done
}

// loopEnd says how the attempt loop ended.
type loopEnd int

const (
	// terminalAnswer: an attempt answered with a terminal status.
	terminalAnswer loopEnd = iota
	// lastAnswer: every attempt is done (or the deadline passed) and at
	// least one answered, none terminally; the last answer is passed through.
	lastAnswer
	// allFailed: every attempt is done and none answered.
	allFailed
	// deadlineExpired: Proxy.Timeout ran out before any answer.
	deadlineExpired
	// clientGone: the client went away.
	clientGone
	// noEndpointFree: every endpoint was at its in-flight cap, so nothing was
	// sent.
	noEndpointFree
)

// run starts attempts by the plan until one is terminal, all are done, the
// deadline passes or the client leaves, and sets the winner: the terminal
// answer, or the last non-terminal one (nil if none). Every schedule runs
// through it: serial never starts one attempt while another is pending,
// fan-out waits zero, hedged waits the hedge delay. An inline plan's
// attempt has answered or failed by the time the loop takes it in, so such a
// plan sees its client leave through the attempt's cancellation (the ending
// is then ClientGone, see failureEnding), not in the select.
func (x *exchange) run() loopEnd {
	if !x.start(false) {
		return noEndpointFree
	}
	var hedgeTimer *time.Timer
	defer func() {
		if hedgeTimer != nil {
			hedgeTimer.Stop()
		}
	}()
	for x.pending > 0 {
		if outcome := x.inlineOutcome; outcome != nil {
			x.inlineOutcome = nil
			if end, over := x.handle(outcome); over {
				return end
			}
			continue
		}
		var hedge <-chan time.Time
		if wait, ok := x.plan.schedule.wait(); ok && x.canStart() && !x.noHedges {
			if wait -= time.Since(x.lastLaunch); wait <= 0 {
				x.extend(nil)
				continue
			}
			if hedgeTimer == nil {
				hedgeTimer = time.NewTimer(wait)
			} else {
				hedgeTimer.Reset(wait)
			}
			hedge = hedgeTimer.C
		}
		select {
		case outcome := <-x.results:
			if end, over := x.handle(outcome); over {
				return end
			}
		case <-hedge:
			// The delay has passed: the next pass starts the hedge.
		case <-x.in.Context().Done():
			return clientGone
		}
	}
	return x.passLast(allFailed)
}

// handle takes in an attempt's outcome and, unless it ends the loop (over,
// with end), starts the next attempt the plan allows.
func (x *exchange) handle(outcome *endpointresponse.Outcome) (end loopEnd, over bool) {
	if x.takeIn(outcome) {
		x.winner = outcome
		return terminalAnswer, true
	}
	if x.plan.expired() {
		x.done.Failures = append(x.done.Failures, fmt.Errorf("no terminal answer within the time-out of %s", x.proxy.Timeout))
		return x.passLast(deadlineExpired), true
	}
	// A failure that is only the client's leaving must not start another.
	if x.in.Context().Err() == nil {
		x.extend(outcome)
	}
	return 0, false
}

// takeIn handles an attempt's outcome as it comes in: it tells the observers
// and the pool, and keeps a non-terminal answer as the fallback. It reports
// whether the outcome is terminal, the request's answer.
func (x *exchange) takeIn(outcome *endpointresponse.Outcome) bool {
	x.pending--
	terminal := x.note(outcome)
	switch {
	case terminal:
		return true
	case outcome.Err == nil:
		x.done.Failures = append(x.done.Failures, fmt.Errorf("endpoint %d: non-terminal status %d", outcome.Endpoint.Index, outcome.Status()))
		if x.fallback != nil {
			x.fallback.Close()
		}
		x.fallback = outcome
	case !cutShort(outcome):
		x.done.Failures = append(x.done.Failures, outcome.Err)
	}
	return false
}

// isTerminal reports whether outcome ends the request: a terminal status,
// or the switch an upgrade asked for, whatever the terminal statuses are.
func (x *exchange) isTerminal(outcome *endpointresponse.Outcome) bool {
	status := outcome.Status()
	return outcome.Err == nil && (x.proxy.Terminal.Contains(status) ||
		(x.plan.upgrade != "" && status == http.StatusSwitchingProtocols))
}

// passLast makes the last non-terminal answer, if any, the winner once no
// terminal one can be had; otherwise the loop ends as end says.
func (x *exchange) passLast(end loopEnd) loopEnd {
	if x.fallback == nil {
		return end
	}
	x.winner, x.fallback = x.fallback, nil
	return lastAnswer
}

// extend starts an extra attempt, after failed failed or because the schedule
// says so (failed nil), if the plan, the budget and the endpoints allow it.
// This is the one place that decides whether the request gets another
// attempt; why it did not is kept for the log and the debug headers.
func (x *exchange) extend(failed *endpointresponse.Outcome) {
	if !x.canStart() {
		return
	}
	if reason := x.plan.refusal(failed); reason != NotRefused {
		x.done.NoExtraAttempt = reason
		x.noHedges = x.noHedges || failed == nil
		return
	}
	x.start(failed == nil)
}

// canStart reports whether the request may still start an attempt: it has
// candidates left and attempts to spend.
func (x *exchange) canStart() bool {
	return x.next < len(x.plan.candidates) && x.done.Attempts < x.plan.maxAttempts
}

// stop leaves the request no more attempts, for reason.
func (x *exchange) stop(reason Refusal) {
	x.next = len(x.plan.candidates)
	x.done.NoExtraAttempt = reason
}

// start starts an attempt at the next candidate that has room for it, paid
// for from the budget unless it is the first (hedge says it is a hedge). It
// reports whether one started.
func (x *exchange) start(hedge bool) bool {
	index, ok := x.acquireNext()
	if !ok {
		if x.done.Attempts > 0 {
			x.stop(RefusedAtCap)
		}
		return false
	}
	endpoint := x.plan.candidates[index]
	if x.done.Attempts > 0 && x.proxy.Budget != nil && !x.proxy.Budget.Withdraw() {
		x.proxy.Endpoints.Release(endpoint)
		// The request keeps the attempts it has: a slow-down must not turn
		// into a storm of extra ones.
		x.stop(RefusedBudget)
		return false
	}
	x.tried = append(x.tried, index)
	x.done.Attempts++
	x.pending++
	x.lastLaunch = time.Now()
	ctx := scope.New(x.in.Context())
	cancel := ctx.Cancel
	x.losers.add(cancel)
	body, length := x.body.forAttempt()
	a := attempt{endpoint: endpoint, number: x.done.Attempts, cancel: cancel, started: x.lastLaunch}
	a.request = x.forwarded.To(ctx, endpoint, a.number, body, length)
	a.headerTimeout, a.atDeadline = x.plan.headerTimeout(x.proxy.TryTimeout, a.started)
	kind := AttemptStarted
	if hedge {
		kind = HedgeSent
		if a.number <= 64 {
			x.hedges |= 1 << (a.number - 1)
		}
	}
	x.proxy.observe(Event{Kind: kind, Request: x.in, Endpoint: endpoint, Attempt: a.number})
	if x.plan.inline {
		x.inlineOutcome = a.send(x.proxy.Transport, &x.proxy.headerTimers)
		return true
	}
	x.running.Add(1)
	go x.sendAside(a)
	return true
}

// wasHedge reports whether attempt number was a hedge.
func (x *exchange) wasHedge(number int) bool {
	return number >= 1 && number <= 64 && x.hedges&(1<<(number-1)) != 0
}

// sendAside sends a on a goroutine of its own, which it takes part in
// running's count of.
func (x *exchange) sendAside(a attempt) {
	defer x.running.Done()
	outcome := a.send(x.proxy.Transport, &x.proxy.headerTimers)
	if outcome.Response != nil {
		x.losers.markAnswered(a.number)
	}
	x.results <- outcome
}

// acquireNext takes the next candidate that is under its in-flight cap,
// skipping those at it (but a session's own endpoint), and returns its place
// in the plan.
func (x *exchange) acquireNext() (int, bool) {
	for x.next < len(x.plan.candidates) {
		index := x.next
		x.next++
		if x.proxy.Endpoints.Acquire(x.plan.candidates[index]) {
			return index, true
		}
		if index == 0 && x.plan.pinnedFirst {
			x.next = len(x.plan.candidates)
		}
	}
	return 0, false
}

package fanout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/rs/zerolog/hlog"

	"balancing-reverse-proxy/endpointresponse"
	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/forward"
	"balancing-reverse-proxy/wire"
)

// race is the state of one request's attempts.
type race struct {
	proxy *Proxy
	// schedule is the proxy's, or serial for an upgrade.
	schedule Schedule
	// protocol is the protocol the request upgrades to, or "".
	protocol string
	in       *http.Request
	body     *requestBody
	// forwarded is in, prepared once for every attempt.
	forwarded forward.Request
	// plan is the endpoints this request may try, in order; next is the
	// first not tried yet.
	plan        endpoints.List
	next        int
	maxAttempts int
	// inline is set when attempts run one at a time on the request's own
	// goroutine (the serial schedule: none ever waits for another), so a
	// request costs no goroutine of its own.
	inline bool
	// deadline is when the request's time-out ends the wait for a terminal
	// answer's headers; inline, each attempt's wait for its headers is cut
	// there (no select watches it), zero when there is no time-out.
	deadline time.Time
	// results is sized to maxAttempts, so no attempt blocks on sending.
	results chan *endpointresponse.Outcome
	cancels []context.CancelFunc
	tried   []endpoints.Endpoint
	// cancelsArray and triedArray back cancels and tried for requests with
	// few attempts, saving two allocations each.
	cancelsArray [3]context.CancelFunc
	triedArray   [3]endpoints.Endpoint
	attempts     sync.WaitGroup
	launched     int
	// lastLaunch is when the latest attempt started, for the hedge delay.
	lastLaunch time.Time
	// heldBack says why an extra attempt that was wanted was not made.
	heldBack string
	// scheduleRefused is set when the request may not get the extra attempts
	// its schedule wants (its body or method), and stopped when it may get no
	// more attempts at all (the budget is spent, or no endpoint has room).
	scheduleRefused bool
	stopped         bool
	failures        []error
	ended           raceOutcome
	// fallback is the last non-terminal answer, kept open in case nothing
	// better comes.
	fallback *endpointresponse.Outcome
	chosen   *endpointresponse.Outcome
	// loserCut cancels the losers still waiting for their headers when a
	// small answer's copy, which they may outlast, takes longer than
	// drainWait; answered has bit n-1 set once attempt n has its headers
	// (attempts past the 64th are never marked, and so always cut).
	loserCut *time.Timer
	answered atomic.Uint64
	// givenBack is the number of the attempt whose in-flight place giveBack
	// gave back, 0 if none.
	givenBack int
	log       *zerolog.Logger
}

// newRace prepares in's attempts. protocol, if not empty, is the protocol in
// asks to upgrade its connection to: its attempts go one after another (a
// tunnel joins one endpoint) and carry the upgrade.
func newRace(p *Proxy, in *http.Request, body *requestBody, protocol string, log *zerolog.Logger) *race {
	plan := p.Endpoints.Plan()
	maxAttempts := len(plan)
	if p.MaxAttempts > 0 {
		maxAttempts = min(maxAttempts, p.MaxAttempts)
	}
	schedule := p.Schedule
	if protocol != "" {
		schedule = Serial()
	}
	_, hedges := schedule.wait()
	var deadline time.Time
	if p.Timeout > 0 {
		deadline = time.Now().Add(p.Timeout)
	}
	rc := &race{
		log:         log,
		proxy:       p,
		schedule:    schedule,
		protocol:    protocol,
		inline:      !hedges,
		deadline:    deadline,
		in:          in,
		body:        body,
		plan:        plan,
		maxAttempts: maxAttempts,
		results:     make(chan *endpointresponse.Outcome, maxAttempts),
	}
	rc.cancels, rc.tried = rc.cancelsArray[:0], rc.triedArray[:0]
	options := forward.Options{Trusted: p.TrustedProxies, Upgrade: protocol, BodyRead: body.replayable}
	if id, ok := hlog.IDFromRequest(in); ok {
		options.RequestID = id.String()
	}
	rc.forwarded = forward.Prepare(in, options)
	return rc
}

// run starts attempts on the proxy's schedule until one is terminal, all are
// done, the deadline passes or the client leaves. It returns the outcome to send
// to the client (the winner, or the last non-terminal answer), or nil.
func (rc *race) run() (*endpointresponse.Outcome, raceOutcome) {
	rc.chosen, rc.ended = rc.runUntilDecided()
	return rc.chosen, rc.ended
}

func (rc *race) runUntilDecided() (*endpointresponse.Outcome, raceOutcome) {
	var deadline <-chan time.Time
	if rc.proxy.Timeout > 0 && !rc.inline {
		timer := time.NewTimer(rc.proxy.Timeout)
		defer timer.Stop()
		deadline = timer.C
	}
	if !rc.launch() {
		return nil, noEndpointFree
	}
	var hedgeTimer *time.Timer
	defer func() {
		if hedgeTimer != nil {
			hedgeTimer.Stop()
		}
	}()
	for pending := 1; pending > 0; {
		var hedge <-chan time.Time
		if wait, ok := rc.schedule.wait(); ok && rc.hasRoom() && !rc.scheduleRefused {
			wait -= time.Since(rc.lastLaunch)
			if wait <= 0 {
				if rc.extend(nil) {
					pending++
				}
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
		case outcome := <-rc.results:
			pending--
			logAttempt(rc.log, outcome)
			rc.report(outcome)
			if rc.isTerminal(outcome) {
				return outcome, terminalAnswer
			}
			rc.recordFailure(outcome)
			if rc.deadlinePassed() {
				rc.failures = append(rc.failures, fmt.Errorf("no terminal answer within the time-out of %s", rc.proxy.Timeout))
				return rc.chooseFallback(deadlineExpired)
			}
			// A failure that is only the client's leaving must not start another.
			if rc.in.Context().Err() == nil && rc.extend(outcome) {
				pending++
			}
		case <-hedge:
			// The delay has passed: the next pass starts the hedge.
		case <-deadline:
			rc.failures = append(rc.failures, fmt.Errorf("no terminal answer within the time-out of %s", rc.proxy.Timeout))
			return rc.chooseFallback(deadlineExpired)
		case <-rc.in.Context().Done():
			return nil, clientGone
		}
	}
	return rc.chooseFallback(allFailed)
}

// isTerminal reports whether outcome ends the request: a terminal status,
// or the switch an upgrade asked for, whatever the terminal statuses are.
func (rc *race) isTerminal(outcome *endpointresponse.Outcome) bool {
	status := outcome.Status()
	return outcome.Err == nil && (rc.proxy.Terminal.Contains(status) ||
		(rc.protocol != "" && status == http.StatusSwitchingProtocols))
}

// deadlinePassed reports whether the request's deadline has passed while
// attempts run inline (otherwise a select watches it).
func (rc *race) deadlinePassed() bool {
	return rc.inline && !rc.deadline.IsZero() && !time.Now().Before(rc.deadline) && rc.in.Context().Err() == nil
}

// headerTimeout is how long an attempt may wait for its headers: the try
// time-out, and inline also no later than the request's deadline; zero for
// no bound.
func (rc *race) headerTimeout() time.Duration {
	timeout := rc.proxy.TryTimeout
	if rc.inline && !rc.deadline.IsZero() {
		left := max(time.Until(rc.deadline), time.Nanosecond)
		if timeout == 0 || left < timeout {
			timeout = left
		}
	}
	return timeout
}

// hasRoom reports whether the request could still get another attempt.
func (rc *race) hasRoom() bool {
	return !rc.stopped && rc.launched < rc.maxAttempts && rc.next < len(rc.plan)
}

// extend starts an extra attempt, after failed failed or because the schedule
// says so (failed nil), if the request's body and method allow it. It reports
// whether it started one.
func (rc *race) extend(failed *endpointresponse.Outcome) bool {
	if !rc.hasRoom() {
		return false
	}
	if reason := rc.refusal(failed); reason != "" {
		rc.heldBack = reason
		rc.scheduleRefused = rc.scheduleRefused || failed == nil
		return false
	}
	return rc.launch()
}

// refusal says why the request may not have an extra attempt after failed
// (nil: one the schedule wants), or "" when it may.
func (rc *race) refusal(failed *endpointresponse.Outcome) string {
	switch {
	case !rc.body.replayable:
		return heldBackBody
	case rc.proxy.IdempotentOnly && !repeatable(rc.in) && (failed == nil || !failed.NotSent):
		// Nothing reached the endpoint of an attempt that failed before
		// sending, so the next one cannot duplicate it.
		return heldBackMethod
	}
	return ""
}

// launch starts an attempt at the next endpoint of the plan that has room for
// it. Every attempt but the first must be paid for from the budget. It
// reports whether an attempt started.
func (rc *race) launch() bool {
	endpoint, ok := rc.acquireNext()
	if !ok {
		if rc.launched > 0 {
			rc.heldBack, rc.stopped = heldBackMaxInflight, true
		}
		return false
	}
	if rc.launched > 0 && rc.proxy.Budget != nil && !rc.proxy.Budget.Withdraw() {
		rc.proxy.Endpoints.Release(endpoint)
		// The request keeps the attempts it has: a slow-down must not turn
		// into a storm of extra ones.
		rc.heldBack, rc.stopped = heldBackBudget, true
		return false
	}
	rc.tried = append(rc.tried, endpoint)
	number := rc.launched + 1
	ctx, cancel := context.WithCancel(rc.in.Context())
	rc.cancels = append(rc.cancels, cancel)
	rc.launched++
	rc.lastLaunch = time.Now()
	body, length := rc.body.forAttempt()
	outgoing := rc.forwarded.To(ctx, endpoint, number, body, length)
	headerTimeout := rc.headerTimeout()
	if rc.inline {
		// results has room for every attempt, so this does not block.
		rc.results <- rc.proxy.attempt(outgoing, cancel, endpoint, number, headerTimeout)
		return true
	}
	rc.attempts.Add(1)
	go func() {
		defer rc.attempts.Done()
		outcome := rc.proxy.attempt(outgoing, cancel, endpoint, number, headerTimeout)
		if outcome.Response != nil && number <= 64 {
			rc.answered.Or(1 << (number - 1))
		}
		rc.results <- outcome
	}()
	return true
}

// acquireNext takes the next endpoint of the plan that is under its in-flight
// cap, skipping those at it.
func (rc *race) acquireNext() (endpoints.Endpoint, bool) {
	for rc.next < len(rc.plan) {
		endpoint := rc.plan[rc.next]
		rc.next++
		if rc.proxy.Endpoints.Acquire(endpoint) {
			return endpoint, true
		}
	}
	return endpoints.Endpoint{}, false
}

// repeatable reports whether r may be sent more than once: its method is
// idempotent (RFC 9110, section 9.2.2) or it carries an Idempotency-Key.
func repeatable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete, http.MethodTrace:
		return true
	}
	return r.Header.Get("Idempotency-Key") != ""
}

// attempt sends one outgoing request, made with a context that cancel
// cancels, and waits for its headers, at most headerTimeout (if positive).
func (p *Proxy) attempt(outgoing *http.Request, cancel context.CancelFunc, endpoint endpoints.Endpoint, number int, headerTimeout time.Duration) *endpointresponse.Outcome {
	start := time.Now()
	var tryTimer *time.Timer
	if headerTimeout > 0 {
		tryTimer = time.AfterFunc(headerTimeout, cancel)
	}
	resp, err := p.Transport.RoundTrip(outgoing)
	outcome := &endpointresponse.Outcome{Endpoint: endpoint, Attempt: number, Cancel: cancel, NotSent: wire.NotSent(err)}
	// A timer that already fired has cancelled this attempt, even if headers
	// arrived in the meantime.
	if tryTimer != nil && !tryTimer.Stop() {
		if resp != nil {
			resp.Body.Close()
			resp = nil
		}
		err = fmt.Errorf("%w of %s", errTryTimeout, headerTimeout.Round(time.Millisecond))
	}
	outcome.Elapsed = time.Since(start)
	if err != nil {
		outcome.Err = fmt.Errorf("endpoint %d (%s): %w", endpoint.Index, endpoint, err)
		return outcome
	}
	outcome.Response = resp
	return outcome
}

// report tells the pool and the schedule what an attempt's outcome says about
// its endpoint: an answer and its latency, a failure, a Retry-After, or, for
// an attempt cut short by a winner or a time-out, that it was at least that
// slow. The client's leaving says nothing about the endpoint.
func (rc *race) report(outcome *endpointresponse.Outcome) {
	pool, endpoint := rc.proxy.Endpoints, outcome.Endpoint
	switch {
	case outcome.Err == nil:
		if pause, ok := retryAfter(outcome.Response, time.Now()); ok {
			pool.Pause(endpoint, pause)
		}
		if rc.isTerminal(outcome) {
			pool.Answered(endpoint, outcome.Elapsed)
			rc.proxy.Schedule.observe(outcome.Elapsed)
			return
		}
		pool.Failed(endpoint, fmt.Errorf("non-terminal status %d", outcome.Status()))
	case rc.in.Context().Err() != nil:
	case errors.Is(outcome.Err, context.Canceled), rc.deadlinePassed():
		// Cut short by a winner or the request's deadline: at least that slow.
		pool.Outpaced(endpoint, outcome.Elapsed)
		rc.proxy.Schedule.observe(outcome.Elapsed)
	case errors.Is(outcome.Err, errTryTimeout):
		pool.Failed(endpoint, outcome.Err)
		rc.proxy.Schedule.observe(outcome.Elapsed)
	default:
		pool.Failed(endpoint, outcome.Err)
	}
}

// maxRetryAfter bounds the pause a Retry-After can ask for, against nonsense.
const maxRetryAfter = time.Hour

// retryAfter returns the pause that a 429 or 503 response asks for in its
// Retry-After header, in seconds or as a date.
func retryAfter(resp *http.Response, now time.Time) (time.Duration, bool) {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return 0, false
	}
	value := resp.Header.Get("Retry-After")
	if value == "" {
		return 0, false
	}
	var pause time.Duration
	if seconds, err := strconv.ParseUint(value, 10, 32); err == nil {
		pause = time.Duration(seconds) * time.Second
	} else if date, err := http.ParseTime(value); err == nil {
		pause = date.Sub(now)
	}
	if pause <= 0 {
		return 0, false
	}
	return min(pause, maxRetryAfter), true
}

// chooseFallback picks the last non-terminal answer, if any, once no terminal
// one can be had.
func (rc *race) chooseFallback(otherwise raceOutcome) (*endpointresponse.Outcome, raceOutcome) {
	if rc.fallback == nil {
		return nil, otherwise
	}
	chosen := rc.fallback
	rc.fallback = nil
	return chosen, nonTerminalAnswer
}

func (rc *race) recordFailure(outcome *endpointresponse.Outcome) {
	if outcome.Err != nil {
		rc.failures = append(rc.failures, outcome.Err)
		return
	}
	rc.failures = append(rc.failures, fmt.Errorf("endpoint %d: non-terminal status %d", outcome.Endpoint.Index, outcome.Status()))
	if rc.fallback != nil {
		rc.fallback.Close()
	}
	rc.fallback = outcome
}

// setDebugHeaders says in h which endpoint answered, how many attempts were
// made and why no more were, replacing any such header from the endpoint.
func (rc *race) setDebugHeaders(h http.Header, chosen *endpointresponse.Outcome) {
	names := []string{EndpointHeader, AttemptsHeader, NoExtraAttemptHeader}
	if chosen != nil {
		for _, name := range names {
			chosen.Response.Header.Del(name)
		}
		h.Set(EndpointHeader, strconv.Itoa(chosen.Endpoint.Index))
	}
	h.Set(AttemptsHeader, strconv.Itoa(rc.launched))
	if rc.heldBack != "" {
		h.Set(NoExtraAttemptHeader, rc.heldBack)
	}
}

// smallAnswer bounds the answers whose copy the losers may outlast, and the
// loser bodies read out rather than cut: over HTTP/1 a loser can only be
// stopped by closing its connection, and the next request then needs a new
// one, which costs more than reading a small body that is already there.
const smallAnswer = 64 << 10

// drainWait bounds how long the losers may outlast a small answer's copy,
// and then the time spent reading out the bodies of those that answered.
const drainWait = 5 * time.Millisecond

// settleLosers stops the attempts other than the chosen one: at once, unless
// the chosen answer is small, in which case they may go on while it is
// copied, for up to drainWait, and finish reads out those that answered by
// then.
func (rc *race) settleLosers(chosen *endpointresponse.Outcome) {
	if length := chosen.Response.ContentLength; length < 0 || length > smallAnswer {
		rc.cancelAllBut(chosen)
		return
	}
	if !rc.inline && len(rc.cancels) > 1 {
		rc.loserCut = time.AfterFunc(drainWait, func() { rc.cancelUnanswered(chosen) })
	}
}

// cancelUnanswered cancels the attempts other than keep that have no answer
// yet; those that have one are left for finish to read out.
func (rc *race) cancelUnanswered(keep *endpointresponse.Outcome) {
	answered := rc.answered.Load()
	for i, cancel := range rc.cancels {
		if i != keep.Attempt-1 && (i >= 64 || answered&(1<<i) == 0) {
			cancel()
		}
	}
}

// drainSmall reads out the body of a loser's small answer, until drainBy at
// the latest, so that its HTTP/1 connection goes back to the pool rather than
// being closed.
func drainSmall(outcome *endpointresponse.Outcome, drainBy time.Time) {
	resp := outcome.Response
	if resp == nil || resp.ContentLength < 0 || resp.ContentLength > smallAnswer || outcome.Cancel == nil {
		return
	}
	left := time.Until(drainBy)
	if left <= 0 {
		return
	}
	cut := time.AfterFunc(left, outcome.Cancel)
	defer cut.Stop()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, smallAnswer+1))
}

// cancelAllBut cancels every attempt except keep's.
func (rc *race) cancelAllBut(keep *endpointresponse.Outcome) {
	for i, cancel := range rc.cancels {
		if keep == nil || i != keep.Attempt-1 {
			cancel()
		}
	}
}

// finish cancels every attempt, waits for them all to return, closes every
// response body that nobody else will read and gives the endpoints back their
// in-flight places.
func (rc *race) finish() {
	if rc.loserCut != nil {
		rc.loserCut.Stop()
	}
	// Losers that answered while the winner was copied are read out, all
	// within drainWait, so that their connection can carry another request.
	var drainBy time.Time
	for answered := true; answered; {
		select {
		case outcome := <-rc.results:
			logAttempt(rc.log, outcome)
			rc.report(outcome)
			if drainBy.IsZero() {
				drainBy = time.Now().Add(drainWait)
			}
			drainSmall(outcome, drainBy)
			outcome.Close()
		default:
			answered = false
		}
	}
	rc.cancelAllBut(nil)
	rc.attempts.Wait()
	close(rc.results)
	for outcome := range rc.results {
		logAttempt(rc.log, outcome)
		rc.report(outcome)
		outcome.Close()
	}
	if rc.fallback != nil {
		rc.fallback.Close()
	}
	if rc.chosen != nil {
		rc.chosen.Close()
	}
	for i, endpoint := range rc.tried {
		if i+1 != rc.givenBack {
			rc.proxy.Endpoints.Release(endpoint)
		}
	}
}

// giveBack gives back the in-flight place of chosen's endpoint ahead of
// finish, once its answer is read whole: the client, which may send its next
// request as soon as it has that answer, then finds the place free.
func (rc *race) giveBack(chosen *endpointresponse.Outcome) {
	rc.proxy.Endpoints.Release(chosen.Endpoint)
	rc.givenBack = chosen.Attempt
}

func logAttempt(log *zerolog.Logger, outcome *endpointresponse.Outcome) {
	event := log.Debug().
		Int("endpoint", outcome.Endpoint.Index).
		Int("attempt", outcome.Attempt).
		Float64("elapsed_ms", float64(outcome.Elapsed.Microseconds())/1000)
	switch {
	case errors.Is(outcome.Err, context.Canceled):
		event.Msg("attempt cancelled")
		return
	case outcome.Err != nil:
		event.Err(outcome.Err).Msg("attempt failed")
		return
	}
	event.Int("status", outcome.Status()).Msg("attempt answered")
}

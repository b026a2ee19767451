// Package fanout owns the engine: it captures a request's body, starts attempts
// at the endpoints on a schedule (serial or fan-out), picks the first terminal
// answer, cancels the rest and decides the reply when nothing was terminal.
package fanout

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/rs/zerolog/hlog"

	"balancing-reverse-proxy/endpointresponse"
	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/terminal"
)

// statusClientClosedRequest is logged (never sent) when the client went away
// before its answer was complete, as nginx does.
const statusClientClosedRequest = 499

// errTryTimeout is the failure of an attempt whose headers did not arrive within
// Proxy.TryTimeout.
var errTryTimeout = errors.New("no response headers within the try time-out")

// Proxy is the http.Handler that forwards each request to the endpoints and
// answers with the first terminal response. Its fields are set before it serves
// and not changed after.
type Proxy struct {
	// Endpoints are tried in this order. There must be at least one.
	Endpoints endpoints.List
	// Terminal says which statuses end a request.
	Terminal terminal.Ranges
	// Schedule says when attempts start. The zero value is Serial.
	Schedule Schedule
	// Transport sends every attempt.
	Transport http.RoundTripper
	// MaxBodyBuffer is the largest request body, in bytes, held in memory so
	// that every attempt can send it. A larger body is streamed to the first
	// endpoint only, and the request gets no other attempt.
	MaxBodyBuffer int64
	// Timeout bounds the wait for a terminal answer's headers, all attempts
	// together; the body then streams for as long as it flows. If zero, there
	// is no bound.
	Timeout time.Duration
	// TryTimeout bounds each attempt's wait for its response headers, from its
	// start. If zero, there is no bound.
	TryTimeout time.Duration
}

// ServeHTTP forwards r as described on Proxy and logs one line about it.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	log := hlog.FromRequest(r)
	summary := &summary{endpoint: -1}
	defer func() { summary.log(log, r, time.Since(start)) }()

	body, err := captureBody(r, p.MaxBodyBuffer)
	if err != nil {
		summary.err = fmt.Errorf("reading the request body: %w", err)
		summary.status = http.StatusBadRequest
		if clientLeft(r, err) {
			summary.status = statusClientClosedRequest
			return
		}
		http.Error(w, "400 Bad Request: the request body could not be read", summary.status)
		return
	}
	maxAttempts := len(p.Endpoints)
	if !body.replayable {
		maxAttempts = 1
		summary.streamedBody = true
	}

	race := newRace(p, r, body, maxAttempts, log)
	defer race.finish()
	chosen, ended := race.run()
	summary.attempts = race.launched
	summary.failures = race.failures

	if chosen == nil {
		summary.status = failureStatus(r, ended, race.failures)
		summary.err = errors.Join(race.failures...)
		if summary.status != statusClientClosedRequest {
			http.Error(w, fmt.Sprintf("%d %s: no endpoint answered", summary.status, http.StatusText(summary.status)), summary.status)
		}
		return
	}

	// Only the chosen attempt may go on; the others stop now, not when it ends.
	race.cancelAllBut(chosen)
	summary.endpoint = chosen.Endpoint.Index
	summary.status = chosen.Status()
	summary.terminal = ended == terminalAnswer
	summary.bytes, err = chosen.Copy(w)
	if err != nil {
		summary.err = err
		if clientLeft(r, err) {
			summary.status = statusClientClosedRequest
		} else {
			summary.aborted = true
		}
		// The status is out; the only honest thing left is to cut the connection,
		// so the client cannot take a truncated body for a whole one.
		panic(http.ErrAbortHandler)
	}
}

// failureStatus maps how a race that produced no response ended to the status
// logged and, unless the client left, sent: the client gone 499, the request's
// time-out or every attempt timed out 504, anything else 502.
func failureStatus(r *http.Request, ended raceOutcome, failures []error) int {
	switch {
	case ended == clientGone || r.Context().Err() != nil:
		return statusClientClosedRequest
	case ended == deadlineExpired:
		return http.StatusGatewayTimeout
	case len(failures) > 0 && allTimedOut(failures):
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

func allTimedOut(failures []error) bool {
	for _, err := range failures {
		if !errors.Is(err, errTryTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return false
		}
	}
	return true
}

// clientLeft reports whether err means that the client went away, which is no
// one's failure: its request was cancelled, or writing to it failed.
func clientLeft(r *http.Request, err error) bool {
	return r.Context().Err() != nil || errors.Is(err, endpointresponse.ErrClientWrite)
}

// raceOutcome says how a race ended.
type raceOutcome int

const (
	// terminalAnswer: an attempt answered with a terminal status.
	terminalAnswer raceOutcome = iota
	// nonTerminalAnswer: every attempt is done and at least one answered, but
	// none terminally; the last answer is passed through.
	nonTerminalAnswer
	// allFailed: every attempt is done and none answered.
	allFailed
	// deadlineExpired: Proxy.Timeout ran out before a terminal answer.
	deadlineExpired
	// clientGone: the client went away.
	clientGone
)

// race is the state of one request's attempts.
type race struct {
	proxy       *Proxy
	in          *http.Request
	body        *requestBody
	maxAttempts int
	// results is sized to maxAttempts, so no attempt blocks on sending.
	results  chan *endpointresponse.Outcome
	cancels  []context.CancelFunc
	attempts sync.WaitGroup
	launched int
	failures []error
	// fallback is the last non-terminal answer, kept open in case nothing
	// better comes.
	fallback *endpointresponse.Outcome
	chosen   *endpointresponse.Outcome
	log      *zerolog.Logger
}

func newRace(p *Proxy, in *http.Request, body *requestBody, maxAttempts int, log *zerolog.Logger) *race {
	return &race{
		log:         log,
		proxy:       p,
		in:          in,
		body:        body,
		maxAttempts: maxAttempts,
		results:     make(chan *endpointresponse.Outcome, maxAttempts),
		cancels:     make([]context.CancelFunc, 0, maxAttempts),
	}
}

// run starts attempts on the proxy's schedule until one is terminal, all are
// done, the deadline passes or the client leaves. It returns the outcome to send
// to the client (the winner, or the last non-terminal answer), or nil.
func (rc *race) run() (*endpointresponse.Outcome, raceOutcome) {
	var deadline <-chan time.Time
	if rc.proxy.Timeout > 0 {
		timer := time.NewTimer(rc.proxy.Timeout)
		defer timer.Stop()
		deadline = timer.C
	}
	rc.launch()
	for rc.proxy.Schedule.parallel && rc.launched < rc.maxAttempts {
		rc.launch()
	}
	for pending := rc.launched; pending > 0; {
		select {
		case outcome := <-rc.results:
			pending--
			logAttempt(rc.log, outcome)
			if outcome.Err == nil && rc.proxy.Terminal.Contains(outcome.Status()) {
				rc.chosen = outcome
				return outcome, terminalAnswer
			}
			rc.recordFailure(outcome)
			// A failure that is only the client's leaving must not start another.
			if rc.launched < rc.maxAttempts && rc.in.Context().Err() == nil {
				rc.launch()
				pending++
			}
		case <-deadline:
			rc.failures = append(rc.failures, fmt.Errorf("no terminal answer within the time-out of %s", rc.proxy.Timeout))
			return rc.chooseFallback(deadlineExpired)
		case <-rc.in.Context().Done():
			return nil, clientGone
		}
	}
	return rc.chooseFallback(allFailed)
}

// chooseFallback picks the last non-terminal answer, if any, once no terminal
// one can be had.
func (rc *race) chooseFallback(otherwise raceOutcome) (*endpointresponse.Outcome, raceOutcome) {
	if rc.fallback == nil {
		return nil, otherwise
	}
	rc.chosen, rc.fallback = rc.fallback, nil
	return rc.chosen, nonTerminalAnswer
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

// launch starts the next attempt, at the next endpoint in order.
func (rc *race) launch() {
	endpoint := rc.proxy.Endpoints[rc.launched]
	number := rc.launched + 1
	ctx, cancel := context.WithCancel(rc.in.Context())
	rc.cancels = append(rc.cancels, cancel)
	rc.launched++
	body, length := rc.body.forAttempt()
	outgoing := endpoint.Outgoing(ctx, rc.in, body, length)
	if rc.body.replayable {
		// The client's body is already here (the server answered its Expect with
		// 100 Continue); asking the endpoint again would only add a wait.
		outgoing.Header.Del("Expect")
	}
	rc.attempts.Add(1)
	go func() {
		defer rc.attempts.Done()
		rc.results <- rc.proxy.attempt(outgoing, cancel, endpoint, number)
	}()
}

// attempt sends one outgoing request and waits for its headers, at most
// TryTimeout.
func (p *Proxy) attempt(outgoing *http.Request, cancel context.CancelFunc, endpoint endpoints.Endpoint, number int) *endpointresponse.Outcome {
	start := time.Now()
	var tryTimer *time.Timer
	if p.TryTimeout > 0 {
		tryTimer = time.AfterFunc(p.TryTimeout, cancel)
	}
	resp, err := p.Transport.RoundTrip(outgoing)
	// A timer that already fired has cancelled this attempt, even if headers
	// arrived in the meantime.
	if tryTimer != nil && !tryTimer.Stop() {
		if resp != nil {
			resp.Body.Close()
			resp = nil
		}
		err = fmt.Errorf("%w of %s", errTryTimeout, p.TryTimeout)
	}
	outcome := &endpointresponse.Outcome{Endpoint: endpoint, Attempt: number, Elapsed: time.Since(start)}
	if err != nil {
		outcome.Err = fmt.Errorf("endpoint %d (%s): %w", endpoint.Index, endpoint, err)
		return outcome
	}
	outcome.Response = resp
	return outcome
}

// cancelAllBut cancels every attempt except keep's.
func (rc *race) cancelAllBut(keep *endpointresponse.Outcome) {
	for i, cancel := range rc.cancels {
		if keep == nil || i != keep.Attempt-1 {
			cancel()
		}
	}
}

// finish cancels every attempt, waits for them all to return and closes every
// response body that nobody else will read.
func (rc *race) finish() {
	rc.cancelAllBut(nil)
	rc.attempts.Wait()
	close(rc.results)
	for outcome := range rc.results {
		logAttempt(rc.log, outcome)
		outcome.Close()
	}
	if rc.fallback != nil {
		rc.fallback.Close()
	}
	if rc.chosen != nil {
		rc.chosen.Close()
	}
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

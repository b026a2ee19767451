// Package fanout owns the engine. For each request it decides a plan (the
// endpoints to try in order, the schedule, what extra attempts may cost), runs
// the one attempt loop that serial, fan-out and hedged are settings of, picks
// the first terminal answer, settles the losers, and turns however the
// request ended into the one reply the client gets. What happens is reported
// to Observers; the request log is one.
package fanout

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"balancing-reverse-proxy/budget"
	"balancing-reverse-proxy/coarsetimer"
	"balancing-reverse-proxy/endpointresponse"
	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/forward"
	"balancing-reverse-proxy/logging"
	"balancing-reverse-proxy/session"
	"balancing-reverse-proxy/terminal"
)

// singleAttemptBuffer is the largest body read whole before it is sent when
// the request can have one attempt only.
const singleAttemptBuffer = 64 << 10

// Proxy is the http.Handler that forwards each request to the endpoints and
// answers with the first terminal response. Its fields are set before it serves
// and not changed after.
type Proxy struct {
	// Endpoints are the endpoints with their state; the pool orders them for
	// each request and skips those ejected or at their in-flight cap.
	Endpoints *endpoints.Pool
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
	// MaxReplayMemory caps the bytes of request bodies held in memory for
	// replay, all requests together; a request whose body does not fit gets
	// 503. If zero, there is no cap.
	MaxReplayMemory int64
	// ReplayMemory, if set, counts those bytes together with the proxies that
	// share it (the routes of one listener, under one cap); if nil, the proxy
	// counts its own in replayMemory.
	ReplayMemory *ReplayMemory
	replayMemory ReplayMemory
	// Timeout bounds the wait for a terminal answer's headers, all attempts
	// together; the body then streams for as long as it flows. If zero, there
	// is no bound.
	Timeout time.Duration
	// TryTimeout bounds each attempt's wait for its response headers, from its
	// start. If zero, there is no bound. The wait ends up to a twentieth of
	// its bound late (50 ms at most), as does one bounded by Timeout.
	TryTimeout time.Duration
	// headerTimers bound the attempts' waits for their headers: coarse
	// timers, as nearly all of them are stopped by the headers.
	headerTimers coarsetimer.Group
	// ResponseIdleTimeout bounds each wait for the winner's next body bytes;
	// a body that stalls longer is cut off and the client's connection
	// aborted. If zero, there is no bound.
	ResponseIdleTimeout time.Duration
	// MaxAttempts caps the attempts of one request. If zero, each endpoint
	// may be tried once.
	MaxAttempts int
	// Budget limits extra attempts (every attempt after a request's first:
	// hedges and fail-overs). If nil, there is no limit.
	Budget *budget.Budget
	// IdempotentOnly gives extra attempts only to requests that are safe to
	// repeat: idempotent methods, or an Idempotency-Key header. Others get one
	// attempt, plus fail-overs from attempts that failed before sending.
	IdempotentOnly bool
	// TrustedProxies are the proxies in front of this one whose forwarding
	// headers are extended rather than replaced. If empty, every client's
	// are replaced.
	TrustedProxies forward.TrustedProxies
	// tunnels are the open upgraded connections, closed by CloseTunnels.
	tunnels tunnels
	// DebugHeaders adds X-Proxy-Endpoint, X-Proxy-Attempts and, when an extra
	// attempt was wanted but not made, X-Proxy-No-Extra-Attempt to responses.
	DebugHeaders bool
	// Observers are told what happens to each request (see Observer); the
	// request log is RequestLog. If empty, nobody is.
	Observers []Observer
	// Route names the route the proxy serves, for the log; "" for the
	// command line's one.
	Route string
	// Sessions, if set, pins each session to one endpoint: a request whose
	// session id is pinned goes there alone, and an answer that gives out an
	// id pins it to its endpoint. If nil, requests have no sessions.
	Sessions *session.Affinity
}

// Headers that the proxy adds to responses when Proxy.DebugHeaders is set.
const (
	EndpointHeader       = "X-Proxy-Endpoint"
	AttemptsHeader       = "X-Proxy-Attempts"
	NoExtraAttemptHeader = "X-Proxy-No-Extra-Attempt"
)

// ServeHTTP forwards r: it captures the body, plans the request, runs its
// attempts, replies and settles the losers, telling the observers all along.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	x := &exchange{proxy: p, in: r, done: Done{Endpoint: -1}}
	p.observe(Event{Kind: RequestReceived, Request: r})
	// Registered first, so that it runs last, after the losers are settled
	// and even when the reply cuts the connection.
	defer func() {
		p.observe(Event{Kind: RequestDone, Request: r, Elapsed: time.Since(start), Done: &x.done})
	}()
	if p.Sessions != nil && !x.pinSession() {
		x.reply(w)
		return
	}
	memory := p.ReplayMemory
	if memory == nil {
		memory = &p.replayMemory
	}
	body, err := captureBody(r, p.replayLimit(), memory, p.MaxReplayMemory)
	if err != nil {
		x.done.Ending = bodyEnding(r, err)
		x.done.Err = err
		if x.done.Ending != ReplayMemoryFull {
			x.done.Err = fmt.Errorf("reading the request body: %w", err)
		}
		x.replyError(w)
		return
	}
	x.body = body
	// Registered before finish, so it runs after it.
	defer body.release()
	x.done.StreamedBody = !body.replayable
	if !body.replayable {
		// The attempt reads the client's body while the answer is copied: the
		// endpoint may answer before the end, and Go's transport reads on
		// past a Content-Length to check it. Otherwise the server consumes and
		// closes the body as the answer starts, so the answer either waits for
		// all of the body or is cut, as the transport drops the endpoint's
		// connection when it cannot read the body.
		_ = http.NewResponseController(w).EnableFullDuplex()
	}
	if p.Budget != nil {
		p.Budget.Deposit()
	}
	x.plan = p.plan(r, body, upgradeProtocol(r), &x.pinning)
	x.prepare()
	defer x.finish()
	x.decideEnding(x.run())
	if x.winner != nil {
		x.done.Endpoint = x.winner.Endpoint.Index
		p.observe(Event{Kind: WinnerChosen, Request: r, Endpoint: x.winner.Endpoint, Attempt: x.winner.Attempt, Status: x.winner.Status(),
			Hedge: x.wasHedge(x.winner.Attempt)})
		x.losers.settle(x.winner, x.plan.inline)
		if p.Sessions != nil && x.done.Ending != PassedThrough {
			x.settlePin()
		}
	}
	x.reply(w)
}

// replayLimit is the largest body kept for replay. A request with one attempt
// at most never replays its body, so only a small one is read whole before
// it is sent (then a body that is cut off or malformed, or a client that
// sends it slowly, never reaches an endpoint); a larger one streams.
func (p *Proxy) replayLimit() int64 {
	if p.Endpoints.Len() == 1 || p.MaxAttempts == 1 {
		return min(p.MaxBodyBuffer, singleAttemptBuffer)
	}
	return p.MaxBodyBuffer
}

// prepare readies x's attempt loop: its request, forwarded once for all
// attempts, and room for their outcomes.
func (x *exchange) prepare() {
	options := forward.Options{Trusted: x.proxy.TrustedProxies, Upgrade: x.plan.upgrade, BodyRead: x.body.replayable}
	options.RequestID = logging.RequestID(x.in)
	x.forwarded = forward.Prepare(x.in, options)
	if !x.plan.inline {
		x.results = make(chan *endpointresponse.Outcome, x.plan.maxAttempts)
	}
	x.tried = x.triedArray[:0]
}

// note tells the observers and the pool what an attempt's outcome is, and
// reports whether it is terminal.
func (x *exchange) note(outcome *endpointresponse.Outcome) bool {
	terminal := x.isTerminal(outcome)
	event := Event{Kind: AttemptAnswered, Request: x.in, Endpoint: outcome.Endpoint, Attempt: outcome.Attempt,
		Elapsed: outcome.Elapsed, Status: outcome.Status(), Err: outcome.Err, Result: ResultFailed}
	switch {
	case outcome.Err == nil && terminal && !x.settling:
		// The loop takes in one terminal answer, the request's.
		event.Result = ResultWon
	case outcome.Err == nil && terminal:
		event.Result = ResultCancelled
	case outcome.Err == nil:
	case errors.Is(outcome.Err, context.Canceled):
		event.Kind, event.Result = AttemptCancelled, ResultCancelled
	case errors.Is(outcome.Err, errTryTimeout) || errors.Is(outcome.Err, errCutAtDeadline):
		event.Kind, event.Result = AttemptFailed, ResultTimeout
	default:
		event.Kind = AttemptFailed
	}
	x.proxy.observe(event)
	if event.Result == ResultCancelled && outcome.Attempt == 1 && x.winner != nil && x.wasHedge(x.winner.Attempt) {
		x.observeSaving(outcome)
	}
	x.proxy.feedback(x.in, outcome, terminal)
	return terminal
}

// observeSaving tells the observers how much a hedge that won saved over the
// first attempt, whose outcome first is: at least how much longer first
// waited for its answer (in vain, until it was cut, or to a late one) than
// the hedge took to its headers.
func (x *exchange) observeSaving(first *endpointresponse.Outcome) {
	saved := max(first.Elapsed-x.winner.Elapsed, 0)
	x.proxy.observe(Event{Kind: HedgeSaved, Request: x.in, Endpoint: x.winner.Endpoint, Attempt: x.winner.Attempt, Elapsed: saved})
}

// finish settles what the request leaves behind once it is answered: the
// losers that answered while the winner was copied are read out, all within
// drainWait, so that their connections can carry other requests; the rest
// are cancelled and waited for; every answer is closed and every in-flight
// place given back.
func (x *exchange) finish() {
	x.settling = true
	x.losers.stopCut()
	for drained := true; drained; {
		select {
		case outcome := <-x.results:
			x.note(outcome)
			x.losers.drain(outcome)
		default:
			drained = false
		}
	}
	// Those that have answered by now are left to come in and be read out
	// like the others: cancelled, their connections would be reset.
	x.losers.cancelUnanswered(x.winner)
	x.running.Wait()
	if x.results != nil {
		close(x.results)
		for outcome := range x.results {
			x.note(outcome)
			x.losers.drain(outcome)
		}
	}
	x.losers.cancelAllBut(nil)
	if x.fallback != nil {
		x.fallback.Close()
	}
	if x.winner != nil {
		x.winner.Close()
	}
	for i, index := range x.tried {
		if i+1 != x.givenBack {
			x.proxy.Endpoints.Release(x.plan.candidates[index])
		}
	}
}

// giveBack gives back the in-flight place of the winner's endpoint ahead of
// finish, once its answer is read whole: the client, which may send its next
// request as soon as it has that answer, then finds the place free.
func (x *exchange) giveBack() {
	x.proxy.Endpoints.Release(x.winner.Endpoint)
	x.givenBack = x.winner.Attempt
}

// joinedFailures is the error of a request that no endpoint served: all its
// attempts' failures.
func joinedFailures(failures []error) error {
	return errors.Join(failures...)
}

// Package fanout owns the engine: it captures a request's body, starts attempts
// at the endpoints on a schedule (serial, fan-out or hedged) within the limits
// of the budget and the request's method, picks the first terminal answer,
// cancels the rest and decides the reply when nothing was terminal.
package fanout

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/rs/zerolog/hlog"

	"balancing-reverse-proxy/budget"
	"balancing-reverse-proxy/endpointresponse"
	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/forward"
	"balancing-reverse-proxy/inbound"
	"balancing-reverse-proxy/terminal"
)

// singleAttemptBuffer is the largest body read whole before it is sent when
// the request can have one attempt only.
const singleAttemptBuffer = 64 << 10

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
	// replayMemory counts those bytes.
	replayMemory replayMemory
	// Timeout bounds the wait for a terminal answer's headers, all attempts
	// together; the body then streams for as long as it flows. If zero, there
	// is no bound.
	Timeout time.Duration
	// TryTimeout bounds each attempt's wait for its response headers, from its
	// start. If zero, there is no bound.
	TryTimeout time.Duration
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
}

// Headers that the proxy adds to responses when Proxy.DebugHeaders is set.
const (
	EndpointHeader       = "X-Proxy-Endpoint"
	AttemptsHeader       = "X-Proxy-Attempts"
	NoExtraAttemptHeader = "X-Proxy-No-Extra-Attempt"
)

// Reasons why a request got no extra attempt when its schedule wanted one, as
// given in NoExtraAttemptHeader and the log.
const (
	heldBackBody        = "request body over --max-body-buffer"
	heldBackMethod      = "method not idempotent"
	heldBackBudget      = "budget spent"
	heldBackMaxInflight = "other endpoints at --max-inflight"
)

// ServeHTTP forwards r as described on Proxy and logs one line about it.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	log := hlog.FromRequest(r)
	summary := &summary{endpoint: -1}
	defer func() { summary.log(log, r, time.Since(start)) }()

	replayLimit := p.MaxBodyBuffer
	if p.Endpoints.Len() == 1 || p.MaxAttempts == 1 {
		// A request with one attempt at most never replays its body, so only
		// a small one is read whole before it is sent (then a body that is
		// cut off or malformed, or a client that sends it slowly, never
		// reaches an endpoint); a larger one streams.
		replayLimit = min(replayLimit, singleAttemptBuffer)
	}
	body, err := captureBody(r, replayLimit, &p.replayMemory, p.MaxReplayMemory)
	if errors.Is(err, errReplayMemoryFull) {
		summary.status, summary.err = http.StatusServiceUnavailable, err
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("503 Service Unavailable: the request bodies held for replay are at --max-replay-memory (%d bytes); try again", p.MaxReplayMemory), summary.status)
		return
	}
	if err != nil {
		summary.err = fmt.Errorf("reading the request body: %w", err)
		// A body that failed for its size or pace also ends the request's
		// context (the server stops reading the connection), but the client
		// is still there to get the answer.
		status, isLimit := bodyFailureStatus(err)
		summary.status = status
		if !isLimit && clientLeft(r, err) {
			summary.status = statusClientClosedRequest
			abandon()
		}
		http.Error(w, fmt.Sprintf("%d %s: the request body could not be read", summary.status, http.StatusText(summary.status)), summary.status)
		return
	}
	// Registered before the race's finish, so it runs after it.
	defer body.release()
	summary.streamedBody = !body.replayable
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

	protocol := upgradeProtocol(r)
	race := newRace(p, r, body, protocol, log)
	defer race.finish()
	chosen, ended := race.run()
	summary.attempts = race.launched
	summary.failures = race.failures
	summary.heldBack = race.heldBack
	if p.DebugHeaders {
		race.setDebugHeaders(w.Header(), chosen)
	}

	if chosen == nil {
		summary.status = failureStatus(r, ended, race.failures)
		summary.err = errors.Join(race.failures...)
		if summary.status == statusClientClosedRequest {
			abandon()
		}
		message := "no endpoint answered"
		if ended == noEndpointFree {
			message = "every endpoint is at --max-inflight"
		}
		http.Error(w, fmt.Sprintf("%d %s: %s", summary.status, http.StatusText(summary.status), message), summary.status)
		return
	}

	race.settleLosers(chosen)
	summary.endpoint = chosen.Endpoint.Index
	summary.status = chosen.Status()
	summary.terminal = ended == terminalAnswer
	if protocol != "" && chosen.Status() == http.StatusSwitchingProtocols {
		var hijacked bool
		summary.bytes, hijacked, err = p.tunnel(w, chosen, protocol)
		summary.tunnelled, summary.err = err == nil, err
		switch {
		case errors.Is(err, errStopping) && !hijacked:
			summary.status = http.StatusServiceUnavailable
			http.Error(w, "503 Service Unavailable: the proxy is stopping", summary.status)
		case err != nil && !hijacked:
			summary.status = http.StatusBadGateway
			http.Error(w, "502 Bad Gateway: the endpoint did not switch protocols", summary.status)
		case err != nil:
			// The connection is the handler's and closed; nothing can be sent.
			summary.status = statusClientClosedRequest
		}
		return
	}
	summary.bytes, err = chosen.Copy(w, p.ResponseIdleTimeout)
	if err == nil {
		race.giveBack(chosen)
		// The answer goes out whole now rather than when the handler
		// returns, which under fan-out is after the losers are read out.
		err = endpointresponse.Flush(w)
	}
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

// abandon ends a request whose client went away before it had an answer: the
// connection is cut, never left to the server, which would send an empty
// 200 for a handler that wrote nothing.
func abandon() {
	panic(http.ErrAbortHandler)
}

// failureStatus maps how a race that produced no response ended to the status
// logged and, unless the client left, sent: a request body over --max-body
// 413 or too slow 408, the client gone 499, every endpoint
// at its in-flight cap 503, the request's time-out or every attempt timed out
// 504, anything else 502.
func failureStatus(r *http.Request, ended raceOutcome, failures []error) int {
	if status, ok := bodyFailureStatus(errors.Join(failures...)); ok {
		return status
	}
	switch {
	case ended == clientGone || r.Context().Err() != nil:
		return statusClientClosedRequest
	case ended == noEndpointFree:
		return http.StatusServiceUnavailable
	case ended == deadlineExpired:
		return http.StatusGatewayTimeout
	case len(failures) > 0 && allTimedOut(failures):
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// bodyFailureStatus maps a failure to read the client's request body to its
// status: over --max-body 413, too slow 408, anything else 400. It is false
// when err is not about the request body.
func bodyFailureStatus(err error) (int, bool) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, true
	case errors.Is(err, inbound.ErrBodyReadTimeout):
		return http.StatusRequestTimeout, true
	}
	return http.StatusBadRequest, false
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
	// noEndpointFree: every endpoint was at its in-flight cap, so nothing was
	// sent.
	noEndpointFree
)

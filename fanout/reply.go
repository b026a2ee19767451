package fanout

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/rs/zerolog"

	"balancing-reverse-proxy/endpointresponse"
	"balancing-reverse-proxy/inbound"
)

// statusClientClosedRequest is logged (never sent) when the client went away
// before its answer was complete, as nginx does.
const statusClientClosedRequest = 499

// Ending is a way a request can end.
type Ending uint8

// The ways a request can end.
const (
	// Served: a terminal answer went to the client whole.
	Served Ending = iota
	// PassedThrough: no answer was terminal; the last one went to the client.
	PassedThrough
	// Tunnelled: the connection switched protocols, was joined to the
	// endpoint's and is now closed.
	Tunnelled
	// Aborted: the chosen answer's body broke off after its status was
	// sent, so the client's connection was cut.
	Aborted
	// ClientGone: the client went away before its answer was whole.
	ClientGone
	// NoAnswer: no endpoint answered.
	NoAnswer
	// TimedOut: no answer came within the time-outs.
	TimedOut
	// NoEndpointFree: every endpoint was at its in-flight cap.
	NoEndpointFree
	// BadBody: the request's body could not be read (its framing).
	BadBody
	// BodyTooLarge: the request's body crossed the body cap.
	BodyTooLarge
	// BodyTooSlow: the client paused its body longer than allowed.
	BodyTooSlow
	// ReplayMemoryFull: the bodies held for replay were at their cap.
	ReplayMemoryFull
	// UpgradeFailed: the endpoint answered 101 without switching to the
	// protocol asked for, or its connection could not be taken over.
	UpgradeFailed
	// Stopping: an upgrade came while the proxy stops.
	Stopping
	// BadSessionID: the request carried no session id, which
	// --session-required asks for, or one over session.MaxIDBytes.
	BadSessionID
	// SessionUnknown: the request's session id has no pin, and
	// --session-unknown reject refuses such ids.
	SessionUnknown
	// SessionStoreDown: the session store failed to answer (an error, or
	// --session-store-timeout).
	SessionStoreDown
	// PinnedEndpointDown: the session's endpoint failed or is out, and
	// --session-failover fail keeps the pin.
	PinnedEndpointDown
)

// endings says, for each way a request can end, what the client gets (the
// status, or 0 for the endpoint's own, and the error body's reason when the
// proxy answers itself) and what the log says.
var endings = [...]struct {
	status  int
	reason  string
	level   zerolog.Level
	message string
}{
	Served:           {0, "", zerolog.InfoLevel, "request served"},
	PassedThrough:    {0, "", zerolog.WarnLevel, "no terminal answer, passed the last one through"},
	Tunnelled:        {http.StatusSwitchingProtocols, "", zerolog.InfoLevel, "tunnel closed"},
	Aborted:          {0, "", zerolog.WarnLevel, "response aborted"},
	ClientGone:       {statusClientClosedRequest, "", zerolog.InfoLevel, "client went away"},
	NoAnswer:         {http.StatusBadGateway, "no endpoint answered", zerolog.WarnLevel, "no endpoint answered"},
	TimedOut:         {http.StatusGatewayTimeout, "no endpoint answered", zerolog.WarnLevel, "no endpoint answered"},
	NoEndpointFree:   {http.StatusServiceUnavailable, "every endpoint is at --max-inflight", zerolog.WarnLevel, "no endpoint answered"},
	BadBody:          {http.StatusBadRequest, "the request body could not be read", zerolog.InfoLevel, "bad request"},
	BodyTooLarge:     {http.StatusRequestEntityTooLarge, "the request body is over --max-body", zerolog.InfoLevel, "request refused"},
	BodyTooSlow:      {http.StatusRequestTimeout, "the request body paused longer than --body-read-timeout", zerolog.InfoLevel, "request refused"},
	ReplayMemoryFull: {http.StatusServiceUnavailable, "the request bodies held for replay are at --max-replay-memory; try again", zerolog.WarnLevel, "request refused for want of replay memory"},
	UpgradeFailed:    {http.StatusBadGateway, "the endpoint did not switch protocols", zerolog.WarnLevel, "upgrade failed"},
	Stopping:         {http.StatusServiceUnavailable, "the proxy is stopping", zerolog.InfoLevel, "upgrade refused: stopping"},
	BadSessionID:     {http.StatusBadRequest, "bad session id", zerolog.InfoLevel, "request refused: bad session id"},
	SessionUnknown:   {http.StatusNotFound, "unknown session id", zerolog.InfoLevel, "request refused: unknown session"},
	SessionStoreDown: {http.StatusServiceUnavailable, "session store unavailable", zerolog.InfoLevel, "request refused: session store unavailable"},
	PinnedEndpointDown: {http.StatusServiceUnavailable, "the session's endpoint is unavailable; try again later", zerolog.WarnLevel,
		"session's endpoint unavailable"},
}

// String names the ending as the log does.
func (e Ending) String() string {
	return endings[e].message
}

// Level is the log level of a request that ended so.
func (e Ending) Level() zerolog.Level {
	return endings[e].level
}

// decideEnding sets how the request ends from how its attempt loop did: a
// winner served, passed through or tunnelled, or the failure that left it
// without one (a pinned endpoint's own, when it may not be failed over).
func (x *exchange) decideEnding(end loopEnd) {
	switch {
	case x.failedPinned(end):
		x.done.Err = joinedFailures(x.done.Failures)
		if x.winner != nil {
			x.fallback, x.winner = x.winner, nil
		}
		x.refusePinnedDown(x.proxy.Endpoints.RetryIn(x.plan.candidates[0]))
	case x.winner == nil:
		x.done.Ending = x.failureEnding(end)
		x.done.Err = joinedFailures(x.done.Failures)
	case x.plan.upgrade != "" && x.winner.Status() == http.StatusSwitchingProtocols:
		x.done.Ending = Tunnelled
	case end == terminalAnswer:
		x.done.Ending = Served
	default:
		x.done.Ending = PassedThrough
	}
}

// reply gives the client what x's ending says: the winner's answer (or a
// tunnel), or the proxy's own error answer; for a client gone, nothing, and
// its connection is cut. It is the one place that writes to the client, and
// it settles x.done.Status.
func (x *exchange) reply(w http.ResponseWriter) {
	if x.proxy.DebugHeaders {
		x.setDebugHeaders(w.Header())
	}
	end := &x.done
	switch end.Ending {
	case Served, PassedThrough:
		x.copyWinner(w)
		return
	case Tunnelled:
		x.tunnelWinner(w)
		return
	}
	x.replyError(w)
}

// replyError answers the client with x's failed ending, or cuts the
// connection of a client gone.
func (x *exchange) replyError(w http.ResponseWriter) {
	end := &x.done
	end.Status = endings[end.Ending].status
	switch end.Ending {
	case ClientGone:
		abandon()
	case ReplayMemoryFull, SessionStoreDown:
		w.Header().Set("Retry-After", "1")
	case PinnedEndpointDown:
		w.Header().Set("Retry-After", strconv.Itoa(x.retryAfter))
	}
	reason := endings[end.Ending].reason
	if x.reason != "" {
		reason = x.reason
	}
	inbound.WriteError(w, end.Status, reason)
}

// copyWinner copies the winning answer to the client.
func (x *exchange) copyWinner(w http.ResponseWriter) {
	end := &x.done
	end.Status = x.winner.Status()
	var err error
	end.Bytes, err = x.winner.Copy(w, x.proxy.ResponseIdleTimeout)
	if err == nil {
		x.giveBack()
		// The answer goes out whole now rather than when the handler
		// returns, which under fan-out is after the losers are read out. With
		// no loser out, the handler returns at once, and the server's own
		// flush then sends it without a write of its own.
		if x.pending > 0 {
			err = endpointresponse.Flush(w)
		}
	}
	if err != nil {
		end.Err = err
		end.Ending = Aborted
		if clientLeft(x.in, err) {
			end.Ending, end.Status = ClientGone, statusClientClosedRequest
		}
		// The status is out; the only honest thing left is to cut the
		// connection, so the client cannot take a truncated body for a whole
		// one.
		panic(http.ErrAbortHandler)
	}
}

// tunnelWinner joins the client's connection to the winner's upgraded one.
func (x *exchange) tunnelWinner(w http.ResponseWriter) {
	end := &x.done
	end.Status = http.StatusSwitchingProtocols
	var hijacked bool
	var err error
	end.Bytes, hijacked, err = x.proxy.tunnel(w, x.winner, x.plan.upgrade)
	if err == nil {
		return
	}
	end.Err = err
	switch {
	case hijacked:
		// The connection is the handler's and closed; nothing can be sent.
		end.Ending, end.Status = ClientGone, statusClientClosedRequest
	case errors.Is(err, errStopping):
		end.Ending = Stopping
		x.replyError(w)
	default:
		end.Ending = UpgradeFailed
		x.replyError(w)
	}
}

// abandon ends a request whose client went away before it had an answer: the
// connection is cut, never left to the server, which would send an empty
// 200 for a handler that wrote nothing.
func abandon() {
	panic(http.ErrAbortHandler)
}

// bodyEnding maps a failure to read the client's body to its ending: over
// the body cap, too slow, the client gone, or a body that cannot be read.
func bodyEnding(r *http.Request, err error) Ending {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, errReplayMemoryFull):
		return ReplayMemoryFull
	case errors.As(err, &tooLarge):
		return BodyTooLarge
	case errors.Is(err, inbound.ErrBodyReadTimeout):
		return BodyTooSlow
	case clientLeft(r, err):
		return ClientGone
	}
	return BadBody
}

// failureEnding maps how an attempt loop that chose no answer ended to the
// request's ending: a streamed body that failed as it went, the client gone,
// every endpoint at its cap, the time-outs, or no answer.
func (x *exchange) failureEnding(end loopEnd) Ending {
	for _, err := range x.done.Failures {
		if ending := bodyEnding(x.in, err); ending == BodyTooLarge || ending == BodyTooSlow {
			return ending
		}
	}
	switch {
	case end == clientGone || x.in.Context().Err() != nil:
		return ClientGone
	case end == noEndpointFree:
		return NoEndpointFree
	case end == deadlineExpired || len(x.done.Failures) > 0 && allTimedOut(x.done.Failures):
		return TimedOut
	}
	return NoAnswer
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

// setDebugHeaders says in h which endpoint answered, how many attempts were
// made and why no more were, replacing any such header from the endpoint.
func (x *exchange) setDebugHeaders(h http.Header) {
	if x.winner != nil {
		for _, name := range []string{EndpointHeader, AttemptsHeader, NoExtraAttemptHeader} {
			x.winner.Response.Header.Del(name)
		}
		h.Set(EndpointHeader, strconv.Itoa(x.winner.Endpoint.Index))
	}
	h.Set(AttemptsHeader, strconv.Itoa(x.done.Attempts))
	if x.done.NoExtraAttempt != NotRefused {
		h.Set(NoExtraAttemptHeader, x.done.NoExtraAttempt.String())
	}
}

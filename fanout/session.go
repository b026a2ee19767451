package fanout

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"balancing-reverse-proxy/logging"

	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/session"
)

// What happened to a request's session pin, as the log says it.
const (
	pinHit       = "hit"
	pinClaimed   = "pinned"
	pinRepinned  = "repinned"
	pinLearned   = "learned"
	pinForgotten = "forgotten"
	pinStoreDown = "store unavailable"
)

// pinning is what a request's session asks of its plan: the id it carries
// and the endpoint that id is pinned to, with the candidates that follow
// from it.
type pinning struct {
	// id is the request's session id, "" if it carries none.
	id string
	// pin is the URL of the endpoint the id is pinned to, "" if none.
	pin string
	// candidates are the endpoints a pinned request may try, in order: the
	// pinned one alone, or (failing over by re-pinning) the others after it;
	// nil for a request with no pin. pinnedFirst is set when the first is
	// the pinned one.
	candidates  endpoints.List
	pinnedFirst bool
}

// pinSession reads the request's session id and resolves its pin, before
// anything of the request is read or sent. It returns false, with x's
// ending set, when the request is refused for its session.
func (x *exchange) pinSession() bool {
	affinity := x.proxy.Sessions
	x.pinning.id = affinity.ID(x.in)
	switch {
	case x.pinning.id == "" && affinity.Required:
		return x.refuseSession(BadSessionID, "no session id in the "+affinity.Where())
	case x.pinning.id == "":
		return true
	case len(x.pinning.id) > session.MaxIDBytes:
		return x.refuseSession(BadSessionID, fmt.Sprintf("the session id in the %s is over %d bytes", affinity.Where(), session.MaxIDBytes))
	}
	pin, err := affinity.Lookup(x.pinning.id)
	switch {
	case err != nil:
		x.done.SessionLookup = LookupError
		return x.storeDown(err)
	case pin == "":
		x.done.SessionLookup = LookupMiss
	default:
		x.done.SessionLookup = LookupHit
	}
	planned := x.proxy.Endpoints.Plan()
	if pin == "" {
		if affinity.Unknown == session.Reject {
			return x.refuseSession(SessionUnknown, "unknown session id in the "+affinity.Where()+"; start a new session")
		}
		chosen, ok := x.chooseForSession(planned)
		if !ok {
			return x.refuseSession(NoEndpointFree, "")
		}
		if pin, err = affinity.Claim(x.pinning.id, chosen.String()); err != nil {
			return x.storeDown(err)
		}
		x.done.Session = pinClaimed
		if pin != chosen.String() {
			x.done.Session = pinHit // another request pinned it first
		}
	} else {
		x.done.Session = pinHit
	}
	x.pinning.pin = pin
	return x.pinnedCandidates(planned)
}

// chooseForSession picks the endpoint a new client-chosen id is pinned to:
// the first of the planned ones (in --order, ejected ones left out unless
// all are) that is under its in-flight cap.
func (x *exchange) chooseForSession(planned endpoints.List) (endpoints.Endpoint, bool) {
	for _, e := range planned {
		if x.proxy.Endpoints.HasRoom(e) {
			return e, true
		}
	}
	return endpoints.Endpoint{}, false
}

// pinnedCandidates sets the candidates of a pinned request: its endpoint
// alone, or when failing over by re-pinning, the others after it (tried only
// when it fails, never because it is at its in-flight cap: see
// plan.pinnedFirst). An endpoint that is out (ejected, paused, or not one of
// this proxy's) is failed over at once, or refused with 503 under
// --session-failover fail.
func (x *exchange) pinnedCandidates(planned endpoints.List) bool {
	pinned, known := x.proxy.Endpoints.Find(x.pinning.pin)
	isPinned := func(e endpoints.Endpoint) bool { return known && e.Index == pinned.Index }
	usable := slices.ContainsFunc(planned, isPinned)
	if !known {
		logging.Log(x.in, zerolog.WarnLevel).Str("pin", x.pinning.pin).Msg("session pinned to an endpoint this proxy does not have")
	}
	if x.proxy.Sessions.Failover == session.Fail {
		if !usable {
			retry := time.Duration(0)
			if known {
				retry = x.proxy.Endpoints.RetryIn(pinned)
			}
			x.refusePinnedDown(retry)
			return false
		}
		x.pinning.candidates, x.pinning.pinnedFirst = endpoints.List{pinned}, true
		return true
	}
	x.pinning.candidates = make(endpoints.List, 0, len(planned))
	if usable {
		x.pinning.candidates, x.pinning.pinnedFirst = append(x.pinning.candidates, pinned), true
	}
	for _, e := range planned {
		if !isPinned(e) {
			x.pinning.candidates = append(x.pinning.candidates, e)
		}
	}
	return true
}

// refuseSession ends the request with ending, whose error body says detail
// ("" for the ending's own reason).
func (x *exchange) refuseSession(ending Ending, detail string) bool {
	x.done.Ending, x.reason = ending, detail
	return false
}

// storeDown ends the request for the store's failure err, which the log
// says and the client does not: it names the store's address.
func (x *exchange) storeDown(err error) bool {
	x.done.Ending, x.done.Session, x.done.Err = SessionStoreDown, pinStoreDown, err
	return false
}

// refusePinnedDown ends a request whose pinned endpoint failed or is out
// with 503 and a Retry-After of retry (at least a second).
func (x *exchange) refusePinnedDown(retry time.Duration) {
	x.done.Ending = PinnedEndpointDown
	x.retryAfter = max(1, int(math.Ceil(retry.Seconds())))
}

// failedPinned reports whether the request's pinned endpoint could not serve
// it and nothing else may: it was at its in-flight cap, or (with
// --session-failover fail) it gave no terminal answer before the request's
// time-out. The client's leaving is no failure of the endpoint's.
func (x *exchange) failedPinned(end loopEnd) bool {
	if !x.plan.pinnedFirst || x.in.Context().Err() != nil {
		return false
	}
	switch end {
	case noEndpointFree:
		return true
	case terminalAnswer, clientGone, deadlineExpired:
		return false
	}
	return x.proxy.Sessions.Failover == session.Fail
}

// settlePin updates the pins once the winner is chosen, before its answer's
// headers go to the client (so that the client's next request finds them): a
// DELETE of a pinned session that its own endpoint answered with 2xx or 404
// removes the pin; a pinned request that another endpoint answered moves the
// pin there (unless another request moved it first); an id that the answer
// gives out is pinned to the winner. A store that fails costs the pin, not
// the answer.
func (x *exchange) settlePin() {
	affinity, winner := x.proxy.Sessions, x.winner.Endpoint.String()
	status := x.winner.Status()
	var err error
	switch {
	case x.pinning.pin == "":
	case x.in.Method == http.MethodDelete && winner == x.pinning.pin && (status/100 == 2 || status == http.StatusNotFound):
		if err = affinity.Forget(x.pinning.id, x.pinning.pin); err == nil {
			x.done.Session = pinForgotten
		}
	case winner != x.pinning.pin:
		var owner string
		if owner, err = affinity.Repin(x.pinning.id, x.pinning.pin, winner); err == nil {
			x.done.Session, x.done.Repinned = pinRepinned, true
			x.warnIfPinnedElsewhere(owner, winner)
		}
	}
	if given := affinity.Given(x.winner.Response.Header); err == nil && given != "" && given != x.pinning.id {
		var owner string
		if owner, err = affinity.Claim(given, winner); err == nil {
			x.done.Session = pinLearned
			x.warnIfPinnedElsewhere(owner, winner)
		}
	}
	if err != nil {
		x.done.Session = pinStoreDown
	}
}

// warnIfPinnedElsewhere logs a pin that another request set to another
// endpoint than the one that answered.
func (x *exchange) warnIfPinnedElsewhere(owner, winner string) {
	if owner != winner {
		logging.Log(x.in, zerolog.WarnLevel).Str("pin", owner).Str("answered_by", winner).Msg("session already pinned to another endpoint; the pin stays")
	}
}

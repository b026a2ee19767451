package fanout

import (
	"net/http"
	"time"

	"balancing-reverse-proxy/endpoints"
)

// Observer is told what the engine does with each request, as it happens: the
// request log (RequestLog) is one, metrics and tests can be others. Observe
// is called on the request's goroutine, in the order things happen (an
// attempt's end when the engine takes it in), and from many requests at once.
// It must not block, nor keep the Event's pointers past the call.
type Observer interface {
	Observe(Event)
}

// EventKind says what happened.
type EventKind uint8

// The kinds of Event.
const (
	// RequestReceived: the engine has the request, its body not read yet.
	RequestReceived EventKind = iota
	// AttemptStarted: an attempt was sent to its endpoint.
	AttemptStarted
	// AttemptAnswered: an attempt's status line and headers arrived
	// (Status), whatever the status.
	AttemptAnswered
	// AttemptFailed: an attempt ended without an answer (Err).
	AttemptFailed
	// AttemptCancelled: an attempt was cut short, by a winner or the
	// client's leaving.
	AttemptCancelled
	// HedgeSent: an attempt was started because the hedge delay passed,
	// with the earlier ones still pending (it is an AttemptStarted too).
	HedgeSent
	// WinnerChosen: the answer that goes to the client was chosen (Status).
	WinnerChosen
	// RequestDone: the request is over (Done says how).
	RequestDone
	// HedgeSaved: the first attempt of a request that a hedge won has ended
	// (after WinnerChosen). Elapsed is what the hedge saved: at least how
	// much longer the first attempt waited for its headers (until it was
	// cut, or to an answer that came too late) than the hedge took to its
	// own. Endpoint and Attempt are the winning hedge's.
	HedgeSaved
)

// Result is how an attempt ended.
type Result uint8

// The results of an attempt.
const (
	// ResultNone: the event is not an attempt's end.
	ResultNone Result = iota
	// ResultWon: its terminal answer is the request's.
	ResultWon
	// ResultFailed: an error, or an answer with a status that is not
	// terminal.
	ResultFailed
	// ResultTimeout: no headers within --try-timeout or the request's
	// time-out.
	ResultTimeout
	// ResultCancelled: a loser, cut by the winner or the client's leaving,
	// or answered after the winner was chosen.
	ResultCancelled
)

// String names the result as the metrics label it: won, failed, timeout or
// cancelled.
func (r Result) String() string {
	return [...]string{"", "won", "failed", "timeout", "cancelled"}[r]
}

// Lookup is how the look-up of a request's session id in the store went.
type Lookup uint8

// The look-ups' results.
const (
	// LookupNone: no look-up (no sessions, no id, or an id refused).
	LookupNone Lookup = iota
	// LookupHit: the id was pinned.
	LookupHit
	// LookupMiss: the id had no pin.
	LookupMiss
	// LookupError: the store failed.
	LookupError
)

// Lookups lists the results of a look-up, for metrics that count each.
var Lookups = [...]Lookup{LookupHit, LookupMiss, LookupError}

// String names the result as the metrics label it: hit, miss or error.
func (l Lookup) String() string {
	return [...]string{"", "hit", "miss", "error"}[l]
}

// Event is one thing the engine did with a request.
type Event struct {
	Kind EventKind
	// Route is the proxy's Route.
	Route string
	// Request is the client's request.
	Request *http.Request
	// Endpoint and Attempt (numbered from 1) are the attempt's, for attempt
	// events, HedgeSent and WinnerChosen.
	Endpoint endpoints.Endpoint
	Attempt  int
	// Elapsed is, for an attempt's end, the time from its start to its
	// headers or failure; for RequestDone, the request's whole time; for
	// HedgeSaved, the saving.
	Elapsed time.Duration
	// Status is the answer's status, for AttemptAnswered and WinnerChosen.
	Status int
	// Result is how the attempt ended, for AttemptAnswered, AttemptFailed
	// and AttemptCancelled.
	Result Result
	// Hedge is set, for WinnerChosen, when the winning attempt was a hedge.
	Hedge bool
	// Err is why the attempt failed or was cancelled.
	Err error
	// Done is how the request ended, for RequestDone.
	Done *Done
}

// Done is how a request ended, what its reply and log line say.
type Done struct {
	// Ending is the way it ended.
	Ending Ending
	// Status is the status sent, or 499 when the client left first (never
	// sent).
	Status int
	// Endpoint is the index of the endpoint whose answer was sent, -1 if none.
	Endpoint int
	// Attempts counts the attempts made.
	Attempts int
	// Bytes counts the body bytes sent to the client (both ways for a tunnel).
	Bytes int64
	// StreamedBody is set when the request body was over the replay buffer,
	// so streamed to one endpoint with no other attempt.
	StreamedBody bool
	// NoExtraAttempt says why an extra attempt that was wanted was not made.
	NoExtraAttempt Refusal
	// Session says what became of the request's session pin: hit, pinned,
	// repinned, learned, forgotten or store unavailable; "" for none.
	Session string
	// SessionLookup is how the look-up of the request's session id went;
	// LookupNone when there was none.
	SessionLookup Lookup
	// Repinned is set when the session's pin moved to the endpoint that
	// answered.
	Repinned bool
	// Failures are why the attempts that did not serve failed.
	Failures []error
	// Err is what ended the request, when it was a failure of its own (the
	// body, the copy, the tunnel); nil otherwise.
	Err error
}

// observe tells every observer about e.
func (p *Proxy) observe(e Event) {
	e.Route = p.Route
	for _, o := range p.Observers {
		o.Observe(e)
	}
}

package fanout

import (
	"time"

	"balancing-reverse-proxy/logging"

	"github.com/rs/zerolog"
)

// RequestLog is the Observer that writes the request log, to the logger of
// each request's context (logging.Log): one line per request, at the level of how it
// ended, and at debug a line per attempt's end, cancelled ones included. It
// writes nothing else, and allocates nothing when a line is not logged.
type RequestLog struct{}

// Observe writes the lines for e.
func (RequestLog) Observe(e Event) {
	switch e.Kind {
	case AttemptAnswered, AttemptFailed, AttemptCancelled:
		logAttempt(e)
	case RequestDone:
		logRequest(e)
	}
}

// logAttempt writes the debug line of an attempt's end.
func logAttempt(e Event) {
	event := logging.Log(e.Request, zerolog.DebugLevel)
	if event == nil {
		return
	}
	event = event.Int("endpoint", e.Endpoint.Index).
		Int("attempt", e.Attempt).
		Float64("elapsed_ms", milliseconds(e.Elapsed))
	switch e.Kind {
	case AttemptCancelled:
		event.Msg("attempt cancelled")
	case AttemptFailed:
		event.Err(e.Err).Msg("attempt failed")
	default:
		event.Int("status", e.Status).Msg("attempt answered")
	}
}

// logRequest writes the one line of a request.
func logRequest(e Event) {
	done := e.Done
	event := logging.Log(e.Request, done.Ending.Level())
	if event == nil {
		return
	}
	if e.Route != "" {
		event = event.Str("route", e.Route)
	}
	event = event.
		Str("method", e.Request.Method).
		// The query is left out: it may carry API keys.
		Str("path", e.Request.URL.Path).
		Int("status", done.Status)
	if done.Endpoint >= 0 {
		event = event.Int("endpoint", done.Endpoint)
	}
	event = event.
		Int("attempts", done.Attempts).
		Int64("bytes", done.Bytes).
		Float64("duration_ms", milliseconds(e.Elapsed))
	if done.StreamedBody {
		event = event.Str("body", "over --max-body-buffer: streamed to one endpoint, no other attempt")
	}
	if done.NoExtraAttempt != NotRefused {
		event = event.Stringer("no_extra_attempt", done.NoExtraAttempt)
	}
	if done.Session != "" {
		// The id itself is left out: a session cookie is a credential.
		event = event.Str("session", done.Session)
	}
	if done.Err != nil {
		event = event.Err(done.Err)
	} else if len(done.Failures) > 0 {
		event = event.Errs("failures", done.Failures)
	}
	event.Msg(done.Ending.String())
}

// milliseconds is d in milliseconds, to the microsecond.
func milliseconds(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

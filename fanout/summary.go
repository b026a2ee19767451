package fanout

import (
	"net/http"
	"time"

	"github.com/rs/zerolog"
)

// summary collects what the request log line says about one request.
type summary struct {
	status   int
	endpoint int // -1 when no endpoint's response was sent
	attempts int
	bytes    int64
	// terminal is false when the response sent was a non-terminal one passed
	// through for want of a better one.
	terminal     bool
	streamedBody bool
	// tunnelled is true when the connection was upgraded and joined to the
	// endpoint's; bytes then counts both ways.
	tunnelled bool
	// aborted is true when the endpoint's body broke off after the status
	// was sent.
	aborted bool
	// heldBack says why an extra attempt that was wanted was not made.
	heldBack string
	failures []error
	err      error
}

// log writes the one line per request: at Info when it was served or the client
// left, at Warn when no endpoint gave a terminal answer or the copy broke.
func (s *summary) log(log *zerolog.Logger, r *http.Request, elapsed time.Duration) {
	var event *zerolog.Event
	var message string
	switch {
	case s.status == statusClientClosedRequest:
		event, message = log.Info(), "client went away"
	case s.aborted:
		event, message = log.Warn(), "response aborted"
	case s.tunnelled:
		event, message = log.Info(), "tunnel closed"
	case s.endpoint >= 0 && s.terminal:
		event, message = log.Info(), "request served"
	case s.endpoint >= 0:
		event, message = log.Warn(), "no terminal answer, passed the last one through"
	case s.status == http.StatusBadRequest:
		event, message = log.Info(), "bad request"
	default:
		event, message = log.Warn(), "no endpoint answered"
	}
	event = event.
		Str("method", r.Method).
		// The query is left out: it may carry API keys.
		Str("path", r.URL.Path).
		Int("status", s.status)
	if s.endpoint >= 0 {
		event = event.Int("endpoint", s.endpoint)
	}
	event = event.
		Int("attempts", s.attempts).
		Int64("bytes", s.bytes).
		Float64("duration_ms", float64(elapsed.Microseconds())/1000)
	if s.streamedBody {
		event = event.Str("body", "over --max-body-buffer: streamed to one endpoint, no other attempt")
	}
	if s.heldBack != "" {
		event = event.Str("no_extra_attempt", s.heldBack)
	}
	if s.err != nil {
		event = event.Err(s.err)
	} else if len(s.failures) > 0 {
		event = event.Errs("failures", s.failures)
	}
	event.Msg(message)
}

package fanout

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"balancing-reverse-proxy/coarsetimer"
	"balancing-reverse-proxy/endpointresponse"
	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/internal/canonical"
	"balancing-reverse-proxy/wire"
)

// errTryTimeout is the failure of an attempt whose headers did not arrive within
// Proxy.TryTimeout.
var errTryTimeout = errors.New("no response headers within the try time-out")

// errCutAtDeadline is the end of an attempt whose wait for its headers was
// cut by the request's time-out: no failure of its endpoint's, only slow.
var errCutAtDeadline = errors.New("cut at the request's time-out")

// attempt is one attempt's request on its way: where it goes, and how long it
// may wait for its headers.
type attempt struct {
	endpoint endpoints.Endpoint
	number   int
	request  *http.Request
	// cancel cancels the request's context.
	cancel context.CancelFunc
	// headerTimeout bounds the wait for the headers, if positive; atDeadline
	// is set when that bound is the request's deadline.
	headerTimeout time.Duration
	atDeadline    bool
	// started is when the attempt was launched, which its Elapsed counts from.
	started time.Time
}

// send sends the attempt's request through transport (or the endpoint's own)
// and waits for its headers, bounded by a timer of timers.
func (a *attempt) send(transport http.RoundTripper, timers *coarsetimer.Group) *endpointresponse.Outcome {
	if a.endpoint.Transport != nil {
		transport = a.endpoint.Transport
	}
	var timer *coarsetimer.Timer
	if a.headerTimeout > 0 {
		timer = timers.AfterFunc(a.headerTimeout, a.cancel)
	}
	resp, err := transport.RoundTrip(a.request)
	outcome := &endpointresponse.Outcome{Endpoint: a.endpoint, Attempt: a.number, Cancel: a.cancel, NotSent: wire.NotSent(err)}
	// A timer that already fired has cancelled this attempt, even if headers
	// arrived in the meantime.
	if timer != nil && !timer.Stop() {
		if resp != nil {
			resp.Body.Close()
			resp = nil
		}
		err = fmt.Errorf("%w of %s", errTryTimeout, a.headerTimeout.Round(time.Millisecond))
		if a.atDeadline {
			err = errCutAtDeadline
		}
	}
	outcome.Elapsed = time.Since(a.started)
	if err != nil {
		outcome.Err = fmt.Errorf("endpoint %d (%s): %w", a.endpoint.Index, a.endpoint, err)
		return outcome
	}
	outcome.Response = resp
	return outcome
}

// feedback tells the pool and the schedule what an attempt's outcome says
// about its endpoint: an answer and its latency, a failure, a Retry-After,
// or, for an attempt cut short by a winner or the deadline, that it was at
// least that slow. The client's leaving says nothing about the endpoint.
func (p *Proxy) feedback(in *http.Request, outcome *endpointresponse.Outcome, terminal bool) {
	pool, endpoint := p.Endpoints, outcome.Endpoint
	switch {
	case outcome.Err == nil:
		if pause, ok := retryAfter(outcome.Response, time.Now); ok {
			pool.Pause(endpoint, pause)
		}
		if terminal {
			pool.Answered(endpoint, outcome.Elapsed)
			p.Schedule.observe(outcome.Elapsed)
			return
		}
		pool.Failed(endpoint, fmt.Errorf("non-terminal status %d", outcome.Status()))
	case in.Context().Err() != nil:
	case cutShort(outcome):
		pool.Outpaced(endpoint, outcome.Elapsed)
		p.Schedule.observe(outcome.Elapsed)
	case errors.Is(outcome.Err, errTryTimeout):
		pool.Failed(endpoint, outcome.Err)
		p.Schedule.observe(outcome.Elapsed)
	default:
		pool.Failed(endpoint, outcome.Err)
	}
}

// cutShort reports whether outcome is that of an attempt cut short, by a
// winner (or the end of the request) or by the request's deadline, rather
// than one that failed.
func cutShort(outcome *endpointresponse.Outcome) bool {
	return errors.Is(outcome.Err, context.Canceled) || errors.Is(outcome.Err, errCutAtDeadline)
}

// maxRetryAfter bounds the pause a Retry-After can ask for, against nonsense.
const maxRetryAfter = time.Hour

// retryAfter returns the pause that a 429 or 503 response asks for in its
// Retry-After header, in seconds or as a date (then now tells the time:
// the clock is read only for such a date).
func retryAfter(resp *http.Response, now func() time.Time) (time.Duration, bool) {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return 0, false
	}
	value := canonical.Get(resp.Header, "Retry-After")
	if value == "" {
		return 0, false
	}
	var pause time.Duration
	if seconds, err := strconv.ParseUint(value, 10, 32); err == nil {
		pause = time.Duration(seconds) * time.Second
	} else if date, err := http.ParseTime(value); err == nil {
		pause = date.Sub(now())
	}
	if pause <= 0 {
		return 0, false
	}
	return min(pause, maxRetryAfter), true
}

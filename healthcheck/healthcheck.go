// Package healthcheck owns the optional active health checks: it sends a GET to a
// configured path on every endpoint at a fixed interval and reports each result,
// so that the proxy can bring ejected endpoints back and notice dead ones. What to
// do with a result is the caller's business.
package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"

	"balancing-reverse-proxy/endpoints"
)

// userAgent identifies probes in the endpoints' access logs.
const userAgent = "balancing-reverse-proxy-health-check"

// drainLimit bounds how much of a probe's response body is read so that the
// connection can be reused; a longer body costs the connection instead.
const drainLimit = 64 << 10

// accepted describes the accepted form of a health path, for error messages.
const accepted = "an absolute path such as /healthz"

// Checker probes every endpoint at Path every Interval and reports each result.
//
// Each endpoint has its own goroutine, which probes it, waits for the next round
// and probes again. So a slow endpoint never delays the probes of the others, and
// an endpoint never has two probes in flight: a round that comes due while the
// endpoint's previous probe is still running starts as soon as that probe ends,
// and any further rounds missed meanwhile are skipped. With Timeout at most
// Interval (the default) a probe ends about when the next round is due, so
// nothing is skipped.
//
// Redirects are not followed: a 3xx answer is a failure.
type Checker struct {
	// Endpoints are the endpoints to probe. If empty, Run only waits for its
	// context to end.
	Endpoints endpoints.List
	// Path is joined under each endpoint's path prefix, like a request path:
	// base http://h:1/api and /healthz give http://h:1/api/healthz. It may carry
	// a query. It must pass CheckPath.
	Path string
	// Interval is the time between the starts of two rounds. It must be positive.
	Interval time.Duration
	// Timeout bounds one probe: an endpoint that has not sent its response
	// headers by then fails with a *TimeoutError. If zero or negative, it is
	// Interval.
	Timeout time.Duration
	// Transport sends the probes. If nil, http.DefaultTransport is used.
	Transport http.RoundTripper
	// Report is called once per probe with the endpoint's Index and nil when the
	// endpoint answered with a 2xx status, or else an error saying what went
	// wrong: a *StatusError, a *TimeoutError or the transport's error. The error
	// does not name the endpoint. Report is called from the checker's goroutines,
	// possibly concurrently for different endpoints but never for the same one,
	// and never after Run has returned. A probe cut short because Run's context
	// ended is not reported. Report must not be nil, and it should return quickly,
	// since the endpoint's next probe waits for it.
	Report func(index int, err error)
}

// StatusError reports a probe that was answered with a status outside 2xx.
type StatusError struct {
	// Code is the HTTP status code of the answer.
	Code int
}

// Error returns "status " and the code, such as "status 503".
func (e *StatusError) Error() string {
	return fmt.Sprintf("status %d", e.Code)
}

// TimeoutError reports a probe that got no response headers within the
// checker's Timeout. It matches context.DeadlineExceeded with errors.Is.
type TimeoutError struct {
	// Timeout is the time the probe was given.
	Timeout time.Duration
}

// Error says how long the probe waited, such as "no answer within 2s".
func (e *TimeoutError) Error() string {
	return fmt.Sprintf("no answer within %s", e.Timeout)
}

// Unwrap returns context.DeadlineExceeded.
func (e *TimeoutError) Unwrap() error {
	return context.DeadlineExceeded
}

// CheckPath validates a health-check path, as given to --health-path. It must
// start with "/" and contain no spaces, control characters or fragment; a query
// is allowed. The error is one line that names the value and the accepted form.
func CheckPath(path string) error {
	if _, err := parsePath(path); err != nil {
		return fmt.Errorf("health path %q: %w; accepted: %s", path, err, accepted)
	}
	return nil
}

func parsePath(path string) (*url.URL, error) {
	if path == "" {
		return nil, errors.New("empty path")
	}
	if !strings.HasPrefix(path, "/") {
		return nil, errors.New(`it must start with "/"`)
	}
	for _, r := range path {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return nil, errors.New("spaces and control characters are not allowed")
		}
	}
	// A fragment is never sent, so a path carrying one cannot mean what it says.
	if strings.Contains(path, "#") {
		return nil, errors.New("a fragment is not allowed")
	}
	// ParseRequestURI, unlike Parse, reads "//x" as a path, not as a host.
	u, err := url.ParseRequestURI(path)
	if err != nil {
		// url.Error repeats the path, which the caller already names.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return nil, err
	}
	return u, nil
}

// Run probes all endpoints at once right away, then every Interval, until ctx
// ends. It returns only when every goroutine it started has returned. Each probe
// is a GET with User-Agent "balancing-reverse-proxy-health-check"; its response
// body is drained (up to 64 KiB) and closed so that the connection is reused.
//
// Run panics if Interval is not positive, Report is nil or Path fails CheckPath:
// check the configuration at startup.
func (c *Checker) Run(ctx context.Context) {
	if c.Interval <= 0 {
		panic(fmt.Sprintf("healthcheck: Interval %s is not positive", c.Interval))
	}
	if c.Report == nil {
		panic("healthcheck: Report is nil")
	}
	path, err := parsePath(c.Path)
	if err != nil {
		panic(fmt.Sprintf("healthcheck: health path %q: %v", c.Path, err))
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = c.Interval
	}
	transport := c.Transport
	if transport == nil {
		transport = http.DefaultTransport
	}

	var probes sync.WaitGroup
	for _, e := range c.Endpoints {
		p := prober{
			index:     e.Index,
			target:    e.URLFor(path).String(),
			timeout:   timeout,
			transport: transport,
			header:    e.Header,
		}
		if e.Transport != nil {
			p.transport = e.Transport
		}
		probes.Go(func() { c.watch(ctx, p) })
	}
	// Without endpoints there is nothing to wait for but ctx.
	<-ctx.Done()
	probes.Wait()
}

// prober probes one endpoint.
type prober struct {
	index     int
	target    string
	timeout   time.Duration
	transport http.RoundTripper
	// header is the endpoint's own, as its attempts have it.
	header http.Header
}

// watch probes one endpoint every Interval until ctx ends.
func (c *Checker) watch(ctx context.Context, p prober) {
	// Created before the first probe so that every endpoint keeps the same
	// schedule, however long its probes take.
	ticker := time.NewTicker(c.Interval)
	defer ticker.Stop()
	for {
		// select picks at random when ctx has ended and a tick is pending.
		if ctx.Err() != nil {
			return
		}
		if answered, err := p.probe(ctx); answered {
			c.Report(p.index, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// probe sends one GET and returns its verdict. answered is false when ctx ended
// before there was an answer: that says nothing about the endpoint.
func (p prober) probe(ctx context.Context) (answered bool, verdict error) {
	probeCtx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(probeCtx, http.MethodGet, p.target, nil)
	if err != nil {
		return true, err
	}
	req.Header.Set("User-Agent", userAgent)
	maps.Copy(req.Header, p.header)
	resp, err := p.transport.RoundTrip(req)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return false, nil
		case errors.Is(probeCtx.Err(), context.DeadlineExceeded):
			return true, &TimeoutError{Timeout: p.timeout}
		}
		return true, err
	}
	// The status is the verdict; the body is read only to free the connection,
	// and a body that stalls ends with probeCtx.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return true, &StatusError{Code: resp.StatusCode}
	}
	return true, nil
}

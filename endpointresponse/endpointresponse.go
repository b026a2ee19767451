// Package endpointresponse owns one attempt's outcome (which endpoint, its
// response or error, how long it took) and the copy of a chosen response to the
// client: headers, status, a streamed body and trailers. It also owns the rule
// that every response body is closed exactly once, by Close.
package endpointresponse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/forward"
	"balancing-reverse-proxy/internal/canonical"
)

// copyBufferSize is how much of a body is read before it is written on.
const copyBufferSize = 32 << 10

// Outcome is the result of one attempt: either Response (status line and headers
// arrived; the body is still unread) or Err.
type Outcome struct {
	// Endpoint is the endpoint the attempt went to.
	Endpoint endpoints.Endpoint
	// Attempt numbers the attempts of one request, from 1.
	Attempt int
	// Response is the endpoint's response, nil when Err is set. Its body is
	// closed by Close.
	Response *http.Response
	// Err says why the attempt failed, nil when Response is set.
	Err error
	// Elapsed is the time from the attempt's start to its headers or failure.
	Elapsed time.Duration
	// Cancel, if not nil, cancels the attempt: Copy calls it to cut off a
	// body that stalls longer than its idle time-out.
	Cancel context.CancelFunc
	// NotSent is true when the attempt failed before any of its request was
	// written to a connection, so the endpoint cannot have acted on it.
	NotSent bool

	// closed records that Close ran, so that the body is closed only once.
	closed bool
}

// Status returns the response's status code, or 0 when the attempt failed.
func (o *Outcome) Status() int {
	if o.Response == nil {
		return 0
	}
	return o.Response.StatusCode
}

// Close closes the response body, if there is one. It is safe to call more than
// once and on a failed outcome.
func (o *Outcome) Close() {
	if o.Response != nil && !o.closed {
		o.closed = true
		o.Response.Body.Close()
	}
}

// ErrResponseIdle is the failure of a response body that sent nothing for
// longer than the idle time-out given to Copy.
var ErrResponseIdle = errors.New("the endpoint sent no body bytes within the response idle time-out")

// ErrClientWrite wraps failures to write to the client, to tell them from
// failures to read from the endpoint.
var ErrClientWrite = errors.New("writing to the client")

// Copy writes the response to w: headers without hop-by-hop ones and the status,
// flushed with the body or within headFlushDelay, so a slow body does not hold
// them back; the body as it arrives (flushed write by write when its length is
// unknown, as with Server-Sent Events); and the trailers. The end of the answer
// may stay in the server's buffer until Flush or the handler's return. If the
// body breaks off, what arrived is flushed before the error returns; a body
// that sends nothing for idleTimeout (if positive, and if o.Cancel is set) is
// cut off with ErrResponseIdle. It returns the body bytes written. An error
// comes after the status was written, so the caller can only abort the
// exchange. Copy does not close the body; Close does.
func (o *Outcome) Copy(w http.ResponseWriter, idleTimeout time.Duration) (int64, error) {
	resp := o.Response
	forward.RemoveHopByHop(resp.Header)
	header := w.Header()
	for name, values := range resp.Header {
		header[name] = values
	}
	var announced map[string]bool
	if len(resp.Trailer) > 0 {
		announced = make(map[string]bool, len(resp.Trailer))
	}
	for name := range resp.Trailer {
		announced[name] = true
		header.Add("Trailer", name)
	}
	if knownLengthUnsaid(resp) {
		// An HTTP/2 endpoint may leave the length out, and the flush at the
		// end would make the answer chunked for want of it.
		header["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	w.WriteHeader(resp.StatusCode)
	out := &clientWriter{w: w, controller: *http.NewResponseController(w), arrived: arrived(resp.Body)}
	defer out.finish()

	var body io.Reader = resp.Body
	// A body that has all arrived cannot stall: no watch, no timer.
	if idleTimeout > 0 && o.Cancel != nil && !out.arrived {
		out.idle = idleWatch{body: resp.Body, timeout: idleTimeout, cancel: o.Cancel}
		defer out.idle.stop()
		body = &out.idle
	}
	written, err := out.copyBody(body, streams(resp))
	if err != nil && !errors.Is(err, ErrClientWrite) {
		return written, fmt.Errorf("endpoint %d: %w", o.Endpoint.Index, err)
	}
	if err != nil {
		return written, err
	}
	// The head timer may flush no more: under HTTP/2 a flush reads the
	// header map, which the trailers go into.
	out.finish()
	for name, values := range resp.Trailer {
		if !announced[name] {
			name = http.TrailerPrefix + name
		}
		header[name] = values
	}
	return written, nil
}

// Flush sends what Copy left in w's buffer now rather than when the handler
// returns, so that the client has the whole answer while the handler goes on.
func Flush(w http.ResponseWriter) error {
	return flush(http.NewResponseController(w))
}

// knownLengthUnsaid reports whether resp's body length is known but not in
// its header, for a response that may have a body.
func knownLengthUnsaid(resp *http.Response) bool {
	if resp.ContentLength < 0 || canonical.Get(resp.Header, "Content-Length") != "" || len(resp.Trailer) > 0 {
		return false
	}
	if resp.Request != nil && resp.Request.Method == http.MethodHead {
		return false
	}
	code := resp.StatusCode
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}

// streams reports whether a response should reach the client write by write
// rather than when the server's buffer fills.
func streams(resp *http.Response) bool {
	if resp.ContentLength < 0 {
		return true
	}
	// The media type alone, without mime.ParseMediaType's allocations.
	mediaType, _, _ := strings.Cut(canonical.Get(resp.Header, "Content-Type"), ";")
	return strings.EqualFold(strings.TrimSpace(mediaType), "text/event-stream")
}

// copyBuffers holds the buffers bodies are copied through. Pooled: a 32 KiB
// buffer per response was most of the bytes the proxy allocated per request
// (BenchmarkProxy: 46.6 KB/op before, see the README for after), and the
// garbage collector's work grows with them.
var copyBuffers = sync.Pool{New: func() any {
	buf := make([]byte, copyBufferSize)
	return &buf
}}

// headFlushDelay is how long the status and headers may wait in the
// server's buffer for the body: most answers are whole within it, and the
// server then sends head and body in one write, which saves a system call
// and a packet per request; a slower body does not hold the head back any
// longer.
const headFlushDelay = time.Millisecond

// clientWriter writes a response's body to the client, making sure that
// its head is on the way within headFlushDelay.
type clientWriter struct {
	w          http.ResponseWriter
	controller http.ResponseController
	// mu serialises the writer's use by the copy and by the head timer.
	mu sync.Mutex
	// flushed is set once the head was flushed; finished once Copy
	// returned, after which the writer is not to be used.
	flushed, finished bool
	headTimer         *time.Timer
	// arrived is set when the whole body is there to copy without waiting:
	// the head then goes with it, with no timer to see to it.
	arrived bool
	// idle watches the body's pace when an idle time-out is set.
	idle idleWatch
}

// flushHead flushes what is written so far, head included, unless that was
// done already.
func (c *clientWriter) flushHead() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.flushed && !c.finished {
		c.flushed = true
		_ = c.controller.Flush()
	}
}

// finish stops the head timer; the writer is the handler's alone again. It
// may be called more than once.
func (c *clientWriter) finish() {
	if c.headTimer != nil {
		c.headTimer.Stop()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.finished = true
}

func (c *clientWriter) copyBody(body io.Reader, streaming bool) (int64, error) {
	bufp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bufp)
	buf := *bufp
	if !c.arrived {
		c.headTimer = time.AfterFunc(headFlushDelay, c.flushHead)
	}
	var written int64
	for {
		n, readErr := body.Read(buf)
		if n > 0 {
			wrote, err := c.write(buf[:n], streaming)
			written += int64(wrote)
			if err != nil {
				return written, err
			}
		}
		if readErr == io.EOF {
			return written, nil
		}
		if readErr != nil {
			// What did arrive is genuine; the caller then cuts the connection.
			c.mu.Lock()
			_ = flush(&c.controller)
			c.mu.Unlock()
			return written, fmt.Errorf("reading the response body: %w", readErr)
		}
	}
}

// arrived reports whether all of body is there to read without waiting, as
// the proxy's own HTTP/1 client can tell of a small answer.
func arrived(body io.Reader) bool {
	if body == http.NoBody {
		return true
	}
	b, ok := body.(interface{ Arrived() bool })
	return ok && b.Arrived()
}

// write writes p to the client, and flushes it when the body streams.
func (c *clientWriter) write(p []byte, streaming bool) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	wrote, err := c.w.Write(p)
	if err != nil {
		return wrote, fmt.Errorf("%w: %w", ErrClientWrite, err)
	}
	if streaming {
		c.flushed = true
		if err := flush(&c.controller); err != nil {
			return wrote, err
		}
	}
	return wrote, nil
}

func flush(controller *http.ResponseController) error {
	if err := controller.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("%w: %w", ErrClientWrite, err)
	}
	return nil
}

// idleWatch cuts a body off when one of its reads waits longer than timeout.
// Only the waits for the endpoint count: a slow client is not the endpoint's
// stall.
type idleWatch struct {
	body    io.Reader
	timeout time.Duration
	cancel  context.CancelFunc
	timer   *time.Timer
	fired   atomic.Bool
}

func (w *idleWatch) Read(p []byte) (int, error) {
	if w.timer == nil {
		w.timer = time.AfterFunc(w.timeout, w.cut)
	} else {
		w.timer.Reset(w.timeout)
	}
	n, err := w.body.Read(p)
	w.timer.Stop()
	if err != nil && w.fired.Load() {
		err = fmt.Errorf("%w (%s): %w", ErrResponseIdle, w.timeout, err)
	}
	return n, err
}

func (w *idleWatch) cut() {
	w.fired.Store(true)
	w.cancel()
}

func (w *idleWatch) stop() {
	if w.timer != nil {
		w.timer.Stop()
	}
}

package inbound

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"balancing-reverse-proxy/logging"
)

// Limits are the checks a request passes before any endpoint is called.
type Limits struct {
	// MaxHeaders caps the header fields of a request (each line counts, a
	// repeated name too); more get 431. If zero, there is no cap.
	MaxHeaders int
	// MaxBody caps a request body, in bytes: a Content-Length above it gets
	// 413 at once, and a body of unknown length fails with an
	// *http.MaxBytesError when it crosses it. If zero, there is no cap.
	MaxBody int64
	// BodyReadTimeout bounds the wait for each read of a request body; a body
	// that stalls longer fails with a time-out error. If zero, there is no
	// bound.
	BodyReadTimeout time.Duration
}

// Handler returns next behind the limits. Requests that no reverse proxy
// should forward get 400 here too: CONNECT (this is not a forward proxy) and
// the asterisk form (*) with any method but OPTIONS, which Go's server
// answers itself.
func (l Limits) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			// Over TLS, a checked HTTP/1 connection hides its TLS from the
			// server (see ConnContext).
			r.TLS, _ = r.Context().Value(tlsStateKey{}).(*tls.ConnectionState)
		}
		if status, reason := l.refusal(r); status != 0 {
			refuse(w, r, status, reason)
			return
		}
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		if l.MaxBody > 0 {
			r.Body = http.MaxBytesReader(w, r.Body, l.MaxBody)
		}
		if l.BodyReadTimeout > 0 {
			body := &idleTimeoutBody{body: r.Body, timeout: l.BodyReadTimeout, controller: http.NewResponseController(w)}
			r.Body = body
			defer body.handlerReturned()
		}
		next.ServeHTTP(w, r)
	})
}

// refusal returns the status and reason a request is refused with, or 0.
func (l Limits) refusal(r *http.Request) (int, string) {
	switch {
	case r.Method == http.MethodConnect:
		return http.StatusBadRequest, "CONNECT is not served: this is a reverse proxy"
	case r.RequestURI == "*":
		return http.StatusBadRequest, "the asterisk form (*) is only for OPTIONS"
	case l.MaxBody > 0 && r.ContentLength > l.MaxBody:
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes is over --max-body %d", r.ContentLength, l.MaxBody)
	}
	if l.MaxHeaders > 0 {
		fields := 0
		for _, values := range r.Header {
			fields += len(values)
		}
		if fields > l.MaxHeaders {
			return http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("%d header fields, over --max-headers %d", fields, l.MaxHeaders)
		}
	}
	return 0, ""
}

// refusedLinger bounds how long the server reads what is left of a refused
// or abandoned request body after the handler: Go's server reads up to 256 KiB
// of it so that the client gets the answer rather than a reset, but with no
// time limit, so a client that announces a body and sends nothing would hold
// the connection for ever.
const refusedLinger = 2 * time.Second

// refuse answers status with reason, closes the connection after it (its
// body, if any, is not read), and logs it.
func refuse(w http.ResponseWriter, r *http.Request, status int, reason string) {
	logging.Log(r, zerolog.InfoLevel).
		Str("method", r.Method).Str("path", r.URL.Path).Int("status", status).Str("reason", reason).
		Msg("request refused")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(refusedLinger))
	w.Header().Set("Connection", "close")
	WriteError(w, status, reason)
}

// WriteError answers with the proxy's own error: status, and a one-line body
// "<status> <its text>: <reason>", as every refusal and failure the proxy
// answers itself has.
func WriteError(w http.ResponseWriter, status int, reason string) {
	http.Error(w, strconv.Itoa(status)+" "+http.StatusText(status)+": "+reason, status)
}

// idleTimeoutBody is a request body whose every read must make progress
// within timeout: a client that stops sending its body in the middle is cut
// off, however long the body is.
type idleTimeoutBody struct {
	body       io.ReadCloser
	timeout    time.Duration
	controller *http.ResponseController

	// mu makes handlerReturned and the deadline changes exclusive: once the
	// handler has returned, the connection may be reading its next request,
	// whose deadlines are the server's (a transport may still read or close
	// a body after its round trip returned).
	mu       sync.Mutex
	finished bool
	// ended is set once a read returned the end of the body.
	ended bool
}

// ErrBodyReadTimeout is the error of a request body whose client paused
// longer than Limits.BodyReadTimeout.
var ErrBodyReadTimeout = errors.New("the client paused its request body longer than the body read time-out")

func (b *idleTimeoutBody) Read(p []byte) (int, error) {
	b.setDeadline(time.Now().Add(b.timeout))
	n, err := b.body.Read(p)
	if errors.Is(err, io.EOF) {
		// The server's watch for the client leaving, which starts at the end
		// of the body, must not time out. After a failure the deadline stays:
		// the server must not wait on this connection any more.
		b.end()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("%w (%s): %w", ErrBodyReadTimeout, b.timeout, err)
	}
	return n, err
}

func (b *idleTimeoutBody) Close() error {
	return b.body.Close()
}

func (b *idleTimeoutBody) setDeadline(deadline time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.finished {
		_ = b.controller.SetReadDeadline(deadline)
	}
}

func (b *idleTimeoutBody) end() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ended = true
	if !b.finished {
		_ = b.controller.SetReadDeadline(time.Time{})
	}
}

// handlerReturned stops the body from changing the connection's deadlines. A
// body left unread (or failed) gets refusedLinger for the server to read the
// rest.
func (b *idleTimeoutBody) handlerReturned() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.finished = true
	if !b.ended {
		_ = b.controller.SetReadDeadline(time.Now().Add(refusedLinger))
	}
}

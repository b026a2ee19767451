package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// phaseHeader tags each load-generator request with its phase, so that an
// endpoint can count the upstream requests that belong to measured client
// requests only, whenever they arrive (a hedge of a warm-up request sent after
// the measured phase began is still warm-up load). The proxy passes it on like
// any end-to-end header.
const phaseHeader = "X-Bench-Phase"

// Values of phaseHeader.
const (
	phaseWarmup   = "warmup"
	phaseMeasured = "measured"
)

// bodySize is the size of every successful endpoint answer.
const bodySize = 1024

// body is the answer of every successful request; handlers only read it.
var body = func() []byte {
	b := make([]byte, bodySize)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}()

// Model is an endpoint's latency model. A request fails at once with 503 with
// probability ErrorFraction; otherwise it waits Tail with probability
// TailFraction, and Base in all other cases, then answers 200 with a 1 KiB body.
// The zero Model answers 200 at once.
type Model struct {
	Base          time.Duration
	Tail          time.Duration
	TailFraction  float64
	ErrorFraction float64
}

// String describes the model for the report, such as "5ms, 2% 500ms, 5% 503".
func (m Model) String() string {
	s := m.Base.String()
	if m.TailFraction > 0 {
		s += fmt.Sprintf(", %g%% %s", m.TailFraction*100, m.Tail)
	}
	if m.ErrorFraction > 0 {
		s += fmt.Sprintf(", %g%% 503", m.ErrorFraction*100)
	}
	return s
}

// decide returns what a request gets for the uniform draw u in [0, 1): the
// delay before a 200, or fail to answer 503 at once. The error share is the
// bottom of [0, 1) and the tail share the slice above it, so both fractions
// hold exactly whatever the other is.
func (m Model) decide(u float64) (delay time.Duration, fail bool) {
	switch {
	case u < m.ErrorFraction:
		return 0, true
	case u < m.ErrorFraction+m.TailFraction:
		return m.Tail, false
	}
	return m.Base, false
}

// endpoint is an in-process HTTP server whose answers follow a Model that can
// be switched while it serves.
type endpoint struct {
	model atomic.Pointer[Model]
	// uniform draws a number in [0, 1) per request; tests make it fixed.
	uniform func() float64

	// received counts every request; measured those tagged phaseMeasured;
	// cancelled those whose client went away before the answer (hedge losers).
	received  atomic.Int64
	measured  atomic.Int64
	cancelled atomic.Int64

	server *http.Server
	// URL is the endpoint's base URL, http://127.0.0.1:port.
	URL string
}

// newEndpoint returns an endpoint following model; it does not listen yet.
func newEndpoint(model Model) *endpoint {
	e := &endpoint{uniform: rand.Float64}
	e.setModel(model)
	return e
}

func (e *endpoint) setModel(m Model) {
	e.model.Store(&m)
}

// ServeHTTP answers after the model's delay, or not at all when the request's
// context ends first: a cancelled hedge loser stops waiting at once.
func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.received.Add(1)
	if r.Header.Get(phaseHeader) == phaseMeasured {
		e.measured.Add(1)
	}
	delay, fail := e.model.Load().decide(e.uniform())
	if fail {
		http.Error(w, "bench endpoint: injected error", http.StatusServiceUnavailable)
		return
	}
	if delay > 0 {
		timer := time.NewTimer(delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
			e.cancelled.Add(1)
			return
		}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// start listens on a free port of 127.0.0.1 and serves in the background until
// close.
func (e *endpoint) start() error {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("endpoint: %w", err)
	}
	e.URL = "http://" + listener.Addr().String()
	// HTTP/2 without TLS too, for the proxy's h2c:// rows; clients that
	// speak HTTP/1 get HTTP/1.
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	e.server = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second, Protocols: protocols}
	go func() { _ = e.server.Serve(listener) }()
	return nil
}

// close stops the server and cuts its connections, whose handlers then return
// at once since their contexts end.
func (e *endpoint) close() {
	if e.server == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := e.server.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
		_ = e.server.Close()
	}
}

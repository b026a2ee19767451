// Package h1server serves plain HTTP/1.1 client connections itself, in front
// of Go's server: it reads each request head with Go's parser, runs the
// handler on the connection's goroutine and answers as Go's server would,
// with the head and a small body in one write and no read running beside
// the handler unless it runs long (see watch), and no copy of a head that
// does not depend on the body. Any request it does not serve
// (another protocol version, an upgrade, Expect, a chunked body, a head too
// long or that Go's server refuses, an HTTP/2 preface) hands its connection
// over to Go's server, with the bytes read so far, for the rest of its life.
package h1server

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves HTTP/1.1 connections for fallback, Go's server, which takes
// every connection handed over. The fallback's Handler, ReadHeaderTimeout,
// IdleTimeout, MaxHeaderBytes, ConnState, ConnContext and ErrorLog apply to
// both; a fallback with a ReadTimeout or WriteTimeout gets every connection.
// Serve it with the Server's Serve, and stop it with the Server's Shutdown or
// Close, never the fallback's.
type Server struct {
	fallback *http.Server
	handler  http.Handler
	baseCtx  context.Context
	handoff  *handoffListener
	sweep    *sweep
	stopping atomic.Bool
	// started is when New made the server, the origin of its clock.
	started time.Time
	// closed is closed by Close: a connection's last wait ends at once.
	closed    chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex
	listener net.Listener
	conns    map[*conn]struct{}
	// fallbackServed has Serve's run of the fallback's Serve.
	fallbackServed chan error
}

// New returns a Server in front of fallback.
func New(fallback *http.Server) *Server {
	handler := fallback.Handler
	if handler == nil {
		handler = http.DefaultServeMux
	}
	s := &Server{
		fallback: fallback, handler: handler, baseCtx: context.Background(),
		handoff: newHandoffListener(), conns: make(map[*conn]struct{}), closed: make(chan struct{}),
		started: time.Now(),
	}
	s.sweep = newSweep(s)
	return s
}

// Serve accepts connections on l until it is closed. Like http.Server.Serve,
// it returns http.ErrServerClosed after Shutdown or Close.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.shuttingDown() {
		// Shutdown or Close came first, and had no listener to close.
		s.mu.Unlock()
		_ = l.Close()
		return http.ErrServerClosed
	}
	s.listener = l
	s.handoff.addr = l.Addr()
	s.fallbackServed = make(chan error, 1)
	s.mu.Unlock()
	go func() { s.fallbackServed <- s.fallback.Serve(s.handoff) }()
	s.sweep.start()
	var delay time.Duration
	for {
		raw, err := l.Accept()
		if err != nil {
			if s.shuttingDown() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				_ = s.handoff.Close()
				return err
			}
			// Out of file descriptors and the like: as Go's server, wait and
			// try again.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.logf("h1server: Accept error: %v; retrying in %v", err, delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		c := newConn(s, raw)
		if !s.track(c) {
			_ = raw.Close()
			return http.ErrServerClosed
		}
		go c.serve()
	}
}

// Shutdown stops accepting, closes idle connections, lets the requests in
// flight finish (their responses close their connections), and waits for the
// connections to close, or for ctx. Go's server shuts down beside it.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopping.Store(true)
	s.mu.Lock()
	listener := s.listener
	s.mu.Unlock()
	var err error
	if listener != nil {
		err = listener.Close()
	}
	fallbackDone := make(chan error, 1)
	go func() { fallbackDone <- s.fallback.Shutdown(ctx) }()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for s.closeIdle() > 0 {
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err(), <-fallbackDone)
		case <-poll.C:
		}
	}
	s.sweep.end()
	return errors.Join(err, <-fallbackDone, s.fallbackServe())
}

// Close closes the listener and every connection at once, Go's server's
// too.
func (s *Server) Close() error {
	s.stopping.Store(true)
	s.closeOnce.Do(func() { close(s.closed) })
	s.mu.Lock()
	var err error
	if s.listener != nil {
		err = s.listener.Close()
	}
	for c := range s.conns {
		_ = c.raw.Close()
		// As the read Go's server has going: the handler's context ends
		// with its connection.
		c.watch.cancelArmed()
	}
	s.mu.Unlock()
	s.sweep.end()
	return errors.Join(err, s.fallback.Close())
}

// fallbackServe returns the end of Go's server's Serve, nil when it closed
// as it should.
func (s *Server) fallbackServe() error {
	s.mu.Lock()
	served := s.fallbackServed
	s.mu.Unlock()
	if served == nil {
		return nil
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// closeIdle closes the connections waiting for a request (new ones after
// newConnGrace, as Go's server) and returns how many are left.
func (s *Server) closeIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		switch c.state.Load() {
		case stateIdle:
			_ = c.raw.Close()
		case stateNew:
			if time.Since(c.accepted) > newConnGrace {
				_ = c.raw.Close()
			}
		}
	}
	return len(s.conns)
}

// newConnGrace is how long Shutdown waits for the first request of a new
// connection.
const newConnGrace = 5 * time.Second

// track notes a new connection; it refuses it once shutting down.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown() {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// forget drops a connection that closed or went to Go's server.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) shuttingDown() bool { return s.stopping.Load() }

// maxHeaderBytes is the longest head served here.
func (s *Server) maxHeaderBytes() int {
	if s.fallback.MaxHeaderBytes > 0 {
		return s.fallback.MaxHeaderBytes
	}
	return http.DefaultMaxHeaderBytes
}

func (s *Server) connState(c net.Conn, state http.ConnState) {
	if hook := s.fallback.ConnState; hook != nil {
		hook(c, state)
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.fallback.ErrorLog != nil {
		s.fallback.ErrorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// handoffListener is what Go's server accepts handed-over connections from.
type handoffListener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
	addr      net.Addr
}

func newHandoffListener() *handoffListener {
	return &handoffListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// give hands c to Go's server; once that is closed, it closes c and reports
// false.
func (h *handoffListener) give(c net.Conn) bool {
	select {
	case h.conns <- c:
		return true
	case <-h.closed:
		return false
	}
}

func (h *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.closed:
		return nil, net.ErrClosed
	}
}

func (h *handoffListener) Close() error {
	h.closeOnce.Do(func() { close(h.closed) })
	return nil
}

func (h *handoffListener) Addr() net.Addr { return h.addr }

package inbound

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// defaultHandshakeTimeout bounds a TLS handshake when no time-out is given.
const defaultHandshakeTimeout = 10 * time.Second

// tlsAcceptor does the TLS handshakes of a Listener's connections, each on a
// goroutine of its own so that a slow client holds up no other. A connection
// that negotiated HTTP/2 is handed to the server as the *tls.Conn it needs
// for that; any other is checked like a plain one, above TLS.
type tlsAcceptor struct {
	listener *Listener
	config   *tls.Config
	timeout  time.Duration

	start sync.Once
	// ready carries handshaken connections; temporary the listener's
	// errors that the server waits out (too many open files), each once;
	// failed the error that ended it.
	ready     chan net.Conn
	temporary chan error
	failed    chan error

	// mu guards untracked: the HTTP/2 connections, whose slot is given back
	// when the server reports them closed, since they cannot be wrapped.
	mu        sync.Mutex
	untracked map[net.Conn]bool
}

func newTLSAcceptor(l *Listener, config *tls.Config, timeout time.Duration) *tlsAcceptor {
	if timeout <= 0 {
		timeout = defaultHandshakeTimeout
	}
	return &tlsAcceptor{
		listener: l, config: config, timeout: timeout,
		ready: make(chan net.Conn), temporary: make(chan error), failed: make(chan error, 1),
		untracked: map[net.Conn]bool{},
	}
}

// accept returns the next handshaken connection.
func (a *tlsAcceptor) accept() (net.Conn, error) {
	a.start.Do(func() { go a.acceptLoop() })
	select {
	case c := <-a.ready:
		return c, nil
	case err := <-a.temporary:
		return nil, err
	case err := <-a.failed:
		// Every later call fails the same way.
		a.failed <- err
		return nil, err
	case <-a.listener.closed:
		return nil, net.ErrClosed
	}
}

// acceptLoop accepts TCP connections until the listener fails or closes,
// and starts their handshakes. A temporary error goes to the server, which
// waits a little before it accepts again, and so does the loop: it sends the
// error only when the server asks for the next connection.
func (a *tlsAcceptor) acceptLoop() {
	for {
		raw, err := a.listener.acceptRaw()
		var netErr net.Error
		switch {
		case err == nil:
			go a.handshake(raw)
		case errors.As(err, &netErr) && netErr.Temporary(): //nolint:staticcheck // what http.Server.Serve retries on
			select {
			case a.temporary <- err:
			case <-a.listener.closed:
				return
			}
		default:
			a.failed <- err
			return
		}
	}
}

// handshake does raw's TLS handshake and hands the connection on, or closes
// it and frees its slot.
func (a *tlsAcceptor) handshake(raw net.Conn) {
	tlsConn := tls.Server(raw, a.config)
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	err := tlsConn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		raw.Close()
		a.listener.release()
		return
	}
	var c net.Conn
	if tlsConn.ConnectionState().NegotiatedProtocol == "h2" {
		a.mu.Lock()
		a.untracked[tlsConn] = true
		a.mu.Unlock()
		c = tlsConn
	} else {
		// Not h2c: HTTP/2 over TLS is chosen by ALPN, never by a preface.
		c = a.listener.checked(tlsConn, false, false)
	}
	select {
	case a.ready <- c:
	case <-a.listener.closed:
		c.Close()
		a.connClosed(c)
	}
}

// connClosed gives back the slot of an HTTP/2 connection once it is closed.
func (a *tlsAcceptor) connClosed(c net.Conn) {
	a.mu.Lock()
	untracked := a.untracked[c]
	delete(a.untracked, c)
	a.mu.Unlock()
	if untracked {
		a.listener.release()
	}
}

// ConnState is the server's http.Server.ConnState, which every server of a
// Listener's connections must call: when a connection is idle again after an
// upgrade request that did not switch protocols, it has the bytes held behind
// that request checked as the next one's; over TLS, it frees the slot of an
// HTTP/2 connection when it closes.
func (l *Listener) ConnState(c net.Conn, state http.ConnState) {
	switch {
	case state == http.StateIdle:
		// The server calls this from the connection's own goroutine, once any
		// read it had going has returned: nothing else reads c now.
		if checked, ok := c.(*conn); ok {
			checked.resume()
		}
	case l.tls != nil && (state == http.StateClosed || state == http.StateHijacked):
		l.tls.connClosed(c)
	}
}

// tlsStateKey is the context key of a checked TLS connection's state.
type tlsStateKey struct{}

// ConnContext is the server's http.Server.ConnContext when the Listener
// serves TLS: it keeps the TLS state of a checked HTTP/1 connection, which
// the server cannot see through the check, for Limits.Handler to put in the
// request.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if checked, ok := c.(*conn); ok {
		if tlsConn, ok := checked.Conn.(*tls.Conn); ok {
			state := tlsConn.ConnectionState()
			return context.WithValue(ctx, tlsStateKey{}, &state)
		}
	}
	return ctx
}

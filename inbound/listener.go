// Package inbound owns the client side of the proxy before the engine: the
// listener, which caps client connections and checks the framing of every
// HTTP/1 request at the byte level (refusing the ambiguous forms used to
// smuggle requests), and the limits a request must pass before any endpoint
// is called (header fields, body size and pace, forms a reverse proxy does not
// serve).
package inbound

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"time"
)

// Listener wraps a net.Listener: it holds at most MaxConnections client
// connections open at once, and checks the framing of every HTTP/1 request on
// them (see checker) before Go's server parses it.
//
// A written-out limiter rather than golang.org/x/net/netutil.LimitListener:
// the connections it returns hide the TCP connection's CloseWrite, which Go's
// server uses to close gracefully after an error response (so that the
// client reads the 400 instead of a reset).
type Listener struct {
	net.Listener
	// slots holds a token per open connection; nil means no cap.
	slots chan struct{}
	// closed is closed by Close, to wake an Accept waiting for a slot.
	closed    chan struct{}
	closeOnce sync.Once
	// onReject is told about each rejected request.
	onReject func(remote net.Addr, reason string)
	// h2c lets a connection that opens with HTTP/2's preface go unchecked.
	h2c bool
	// checkFromUnread has plain connections checked from their Unread on.
	checkFromUnread bool
	// tls, when set, has connections served over TLS (see tls.go).
	tls *tlsAcceptor
}

// ListenerOptions configure a Listener.
type ListenerOptions struct {
	// MaxConnections caps the client connections open at once. When it is
	// reached, Accept waits for one to close (new clients wait in the
	// kernel's backlog). If zero, there is no cap.
	MaxConnections int
	// OnReject, if not nil, is called with the client's address and the
	// reason whenever a request is rejected for its framing.
	OnReject func(remote net.Addr, reason string)
	// H2C lets clients speak HTTP/2 without TLS (prior knowledge): such a
	// connection is not checked, HTTP/2 framing being another matter. The
	// server must accept unencrypted HTTP/2 too.
	H2C bool
	// TLS, if not nil, serves every connection over TLS with this
	// configuration, HTTP/2 where the client negotiates it (the server must
	// then serve HTTP/2), checked HTTP/1 otherwise. The server's
	// ConnContext must call ConnContext.
	TLS *tls.Config
	// HandshakeTimeout bounds a TLS handshake; if zero, it is 10s.
	HandshakeTimeout time.Duration
	// CheckFromUnread is for a server in front that reads plain requests
	// itself with a parser that takes none the check would refuse, as
	// h1server's, and gives back with Unread the bytes of the connection
	// from the first request it does not serve, before it hands the
	// connection over: the check of a plain connection starts there, at
	// that request, rather than at its first byte (over TLS it always
	// starts at the first byte). The server must call Unread, even with no
	// bytes, before anything else reads the connection.
	CheckFromUnread bool
}

// NewListener returns l with a cap on connections and request checks. The
// server of its connections must call the Listener's ConnState from its own.
func NewListener(l net.Listener, opts ListenerOptions) *Listener {
	listener := &Listener{Listener: l, closed: make(chan struct{}), onReject: opts.OnReject, h2c: opts.H2C, checkFromUnread: opts.CheckFromUnread}
	if opts.MaxConnections > 0 {
		listener.slots = make(chan struct{}, opts.MaxConnections)
	}
	if opts.TLS != nil {
		listener.tls = newTLSAcceptor(listener, opts.TLS, opts.HandshakeTimeout)
	}
	return listener
}

// Accept waits for a free slot, then for a connection, and returns it wrapped
// (over TLS, once its handshake is done).
func (l *Listener) Accept() (net.Conn, error) {
	if l.tls != nil {
		return l.tls.accept()
	}
	c, err := l.acceptRaw()
	if err != nil {
		return nil, err
	}
	return l.checked(c, l.h2c, l.checkFromUnread), nil
}

// checked wraps c so that its requests are checked; with h2c, one that opens
// with HTTP/2's preface is let go unchecked; with deferred, the check starts
// at Unread.
func (l *Listener) checked(c net.Conn, h2c, deferred bool) *conn {
	return &conn{Conn: c, check: newChecker(h2c, deferred), listener: l}
}

// acceptRaw waits for a free slot, then for a TCP connection.
func (l *Listener) acceptRaw() (net.Conn, error) {
	if l.slots != nil {
		select {
		case l.slots <- struct{}{}:
		case <-l.closed:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		l.release()
		return nil, err
	}
	return c, nil
}

// Close closes the listener; an Accept waiting for a slot returns at once.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *Listener) release() {
	if l.slots != nil {
		<-l.slots
	}
}

// conn is a client connection whose requests are checked as they are read.
type conn struct {
	net.Conn
	listener *Listener
	check    *checker
	// ready holds checked bytes due to the server after those it was given.
	ready []byte
	// readErr is an error from the client's connection that is due to the
	// server once ready is empty.
	readErr error
	// scratchBuf takes the bytes read while none go on to the server.
	scratchBuf []byte
	// readDeferred counts the bytes read while the check was deferred.
	readDeferred int64
	closeOnce    sync.Once
}

// Read gives the server the client's bytes once checked: the end of a request
// head only when the head is accepted, a line the server refuses in place of
// it when it is not, and nothing more after that.
func (c *conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if len(c.ready) > 0 {
			n := copy(p, c.ready)
			c.ready = c.ready[n:]
			if len(c.ready) == 0 {
				c.ready = nil
			}
			return n, nil
		}
		if err := c.readErr; err != nil {
			c.readErr = nil
			return 0, err
		}
		switch c.check.phase {
		case cut:
			return 0, io.EOF
		case unchecked:
			return c.Conn.Read(p)
		case deferred:
			n, err := c.Conn.Read(p)
			c.readDeferred += int64(n)
			return n, err
		}
		buf := p
		if c.check.phase == ended || c.check.phase == rejected || c.check.phase == afterUpgrade {
			// Nothing read now goes to p: read it in larger pieces than the
			// server's one-byte watch for the client's leaving.
			buf = c.scratch()
		}
		n, err := c.Conn.Read(buf)
		pass := c.feed(buf[:n])
		if pass > 0 {
			c.readErr = err
			return pass, nil
		}
		if err != nil {
			c.readErr = err
		}
	}
}

// feed passes in, read from the client, to the checker: the first pass bytes
// of in go on as they are, what else may go on is queued in ready. It reports
// a request that the check refuses.
func (c *conn) feed(in []byte) (pass int) {
	refused := c.check.reason != ""
	pass, c.ready = c.check.feed(in, c.ready)
	c.reportRefusal(refused)
	return pass
}

// reportRefusal tells the listener's OnReject about a refusal the check has
// made since it had refused (or not) before.
func (c *conn) reportRefusal(before bool) {
	if !before && c.check.reason != "" && c.listener.onReject != nil {
		c.listener.onReject(c.RemoteAddr(), c.check.reason)
	}
}

// scratchSize is the size of the buffer that a connection's bytes are read
// into when none of them goes to the server now.
const scratchSize = 4 << 10

func (c *conn) scratch() []byte {
	if c.scratchBuf == nil {
		c.scratchBuf = make([]byte, scratchSize)
	}
	return c.scratchBuf
}

// resume checks the bytes held behind an upgrade request whose connection
// did not switch protocols, as the next request's. On any other connection
// it touches nothing: an HTTP/2 server reports idle streams from another
// goroutine than the one reading.
func (c *conn) resume() {
	if c.check.phase != afterUpgrade {
		return
	}
	refused := c.check.reason != ""
	pass, queued := c.check.resume()
	c.ready = append(append(c.ready, pass...), queued...)
	c.reportRefusal(refused)
}

// Unread gives back bytes the server read from c, to be read again before
// the rest: for a server that hands the connection over to another. With
// the check deferred (see ListenerOptions.CheckFromUnread), the check
// starts with them: they are the start of a request.
func (c *conn) Unread(p []byte) {
	if c.check.phase == deferred {
		c.check.startAt(int64(len(p)) < c.readDeferred)
		refused := c.check.reason != ""
		pass, queued := c.check.feed(p, nil)
		c.ready = append(append([]byte(nil), p[:pass]...), queued...)
		c.reportRefusal(refused)
		return
	}
	c.ready = append(append([]byte(nil), p...), c.ready...)
}

// CloseWrite shuts the sending side of the TCP connection, so that Go's
// server can close gracefully after an error response.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close closes the connection and frees its slot.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(c.listener.release)
	return err
}

// StopChecking makes c pass the client's bytes on unchecked from now on: for
// a connection that a handler has taken over (an upgrade to WebSocket) and
// that no longer carries HTTP/1 requests. The bytes that came behind the
// upgrade request go on first. It does nothing to a connection that did not
// come from a Listener, nor to one whose last request was not an upgrade.
func StopChecking(c net.Conn) {
	checked, ok := c.(*conn)
	if !ok || checked.check.phase != afterUpgrade {
		return
	}
	checked.ready = append(checked.ready, checked.check.held...)
	checked.check.held = nil
	checked.check.phase = unchecked
}

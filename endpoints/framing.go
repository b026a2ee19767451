package endpoints

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
)

// ErrAmbiguousFraming is the failure of a response whose head gives its body's
// length twice, with Content-Length and with Transfer-Encoding. Go's Transport
// reads such a body by its chunks and deletes both headers, but the endpoint,
// or something between, may have meant the Content-Length: RFC 9112, section
// 6.3, says the message ought to be handled as an error, as it may be an
// attempt at response splitting.
var ErrAmbiguousFraming = errors.New("response has both Content-Length and Transfer-Encoding")

// maxCheckedLine bounds the head line a framingConn holds while it checks a
// head. A head with a longer line is not checked; Go's Transport has its own
// bound on heads.
const maxCheckedLine = 64 << 10

// dialFraming wraps dial so that its connections can check response heads;
// see WatchFraming.
func dialFraming(dial func(ctx context.Context, network, address string) (net.Conn, error)) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		conn, err := dial(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return &framingConn{Conn: conn}, nil
	}
}

// Watch follows one attempt on its way through NewTransport's transport: it
// has the head of the response checked as the bytes come in (see Verdict),
// has the connection reset if the attempt is cancelled while it carries it,
// and notes whether the request was written (see Wrote). Make one per
// attempt with NewWatch and derive the request's context with Context.
type Watch struct {
	trace httptrace.ClientTrace
	ctx   context.Context
	conn  atomic.Pointer[framingConn]
	wrote atomic.Bool
}

// NewWatch returns a Watch for an attempt whose context is ctx; the request
// must be made with the context it returns.
func NewWatch(ctx context.Context) (*Watch, context.Context) {
	w := &Watch{}
	w.trace.GotConn = w.gotConn
	w.trace.PutIdleConn = w.putIdleConn
	w.trace.WroteHeaders = w.wroteHeaders
	w.ctx = httptrace.WithClientTrace(ctx, &w.trace)
	return w, w.ctx
}

func (w *Watch) gotConn(info httptrace.GotConnInfo) {
	// The request is not written yet, so its response cannot have begun.
	if conn, ok := info.Conn.(*framingConn); ok {
		conn.arm(w.ctx)
		w.conn.Store(conn)
	} else if tlsConn, ok := info.Conn.(*tls.Conn); ok && tlsConn.ConnectionState().NegotiatedProtocol != "h2" {
		// Encrypted bytes cannot be checked, but the connection can still be
		// reset when this request is cancelled. (HTTP/2 cancels a stream, not
		// the connection its streams share.)
		if conn, ok := tlsConn.NetConn().(*framingConn); ok {
			conn.setRequest(w.ctx)
			w.conn.Store(conn)
		}
	}
}

func (w *Watch) putIdleConn(error) {
	// Done with the request: a later close is not its cancellation.
	if conn := w.conn.Load(); conn != nil {
		conn.setRequest(nil)
	}
}

func (w *Watch) wroteHeaders() {
	w.wrote.Store(true)
}

// Wrote reports whether the request's headers were written to a connection,
// so that the endpoint may have acted on it.
func (w *Watch) Wrote() bool {
	return w.wrote.Load()
}

// Verdict is called once RoundTrip has returned a response. It returns
// ErrAmbiguousFraming when the response's head was ambiguous; the connection
// is then already closed, so it is never reused, and the caller closes the
// body. It returns nil when the head was fine or could not be checked: only
// plain HTTP/1 connections dialled by NewTransport's transport are.
func (w *Watch) Verdict() error {
	if conn := w.conn.Load(); conn != nil {
		return conn.verdict()
	}
	return nil
}

// framingConn is a connection to an endpoint that, when armed for a request,
// reads the head of the response along with Go's Transport, which deletes the
// evidence of an ambiguous framing before its caller sees the response.
type framingConn struct {
	net.Conn

	// mu guards the fields below.
	mu sync.Mutex
	// request is the context of the request the connection carries, nil
	// once it is done with it.
	request context.Context
	// armed is set from the request's getting the connection to the end of
	// its final response head; checking mirrors it for reads without the
	// lock.
	armed    bool
	checking atomic.Bool
	// line is the head line read so far; status is set once the status line
	// was read.
	line   []byte
	status []byte
	// contentLength and transferEncoding say what the head has so far.
	contentLength, transferEncoding bool
	// err is ErrAmbiguousFraming once a head was; it stays, as the
	// connection is then closed.
	err error
}

// arm starts checking the next response head, that of the request whose
// context is ctx.
func (c *framingConn) arm(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.request = ctx
	if c.err != nil {
		return
	}
	c.armed = true
	c.checking.Store(true)
	c.startHead()
}

// setRequest records the context of the request the connection now carries,
// or nil once it is done with it.
func (c *framingConn) setRequest(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.request = ctx
}

// Close closes the connection. When its request was cancelled (a losing
// attempt, a time-out), the only way Go's Transport has to stop it, it
// resets the connection (SO_LINGER 0) instead of closing it gracefully:
// nothing more is to be said on it, the endpoint learns at once that the
// request is abandoned, and the proxy is not left with a TIME_WAIT socket for
// every cancelled attempt, which under fan-out would pile up by the
// thousand and could run out of local ports.
func (c *framingConn) Close() error {
	c.mu.Lock()
	abandoned := c.request != nil && c.request.Err() != nil
	c.mu.Unlock()
	if tcp, ok := c.Conn.(*net.TCPConn); ok && abandoned {
		_ = tcp.SetLinger(0)
	}
	return c.Conn.Close()
}

func (c *framingConn) startHead() {
	c.line, c.status = c.line[:0], nil
	c.contentLength, c.transferEncoding = false, false
}

// verdict returns ErrAmbiguousFraming when a head read on c was ambiguous.
func (c *framingConn) verdict() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Read reads from the connection and, when armed, checks what it read. By the
// time Go's Transport has parsed a head, this has checked it.
func (c *framingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	// Most reads are of bodies, with no head to check: no lock for them.
	if n > 0 && c.checking.Load() {
		c.mu.Lock()
		c.check(p[:n])
		c.mu.Unlock()
	}
	return n, err
}

// check feeds b to the head being checked, one line at a time.
func (c *framingConn) check(b []byte) {
	for c.armed && len(b) > 0 {
		end := bytes.IndexByte(b, '\n')
		if end < 0 {
			c.line = append(c.line, b...)
			if len(c.line) > maxCheckedLine {
				c.armed = false
				c.checking.Store(false)
			}
			return
		}
		c.line = append(c.line, b[:end]...)
		b = b[end+1:]
		// Go's Transport ends lines at a bare LF too.
		c.endLine(bytes.TrimSuffix(c.line, []byte("\r")))
		c.line = c.line[:0]
	}
}

func (c *framingConn) endLine(line []byte) {
	switch {
	case c.status == nil:
		c.status = append([]byte{}, line...)
	case len(line) > 0:
		name, _, _ := bytes.Cut(line, []byte(":"))
		c.contentLength = c.contentLength || bytes.EqualFold(name, []byte("Content-Length"))
		c.transferEncoding = c.transferEncoding || bytes.EqualFold(name, []byte("Transfer-Encoding"))
	case informational(c.status):
		// The final head follows.
		c.startHead()
	default:
		c.armed = false
		c.checking.Store(false)
		// Even where no body follows (HEAD, 204), a sender must never send
		// both (RFC 9112, section 6.1): such an endpoint is not to be trusted
		// with the connection.
		if c.contentLength && c.transferEncoding {
			c.err = ErrAmbiguousFraming
			// Whatever follows this head cannot be trusted to end where Go
			// thinks it does, so nothing more is read from here.
			c.Conn.Close()
		}
	}
}

// informational reports whether statusLine is that of a 1xx response other
// than 101 Switching Protocols, after which another head comes.
func informational(statusLine []byte) bool {
	_, rest, _ := bytes.Cut(statusLine, []byte(" "))
	code, _, _ := bytes.Cut(rest, []byte(" "))
	return len(code) == 3 && code[0] == '1' && string(code) != "101"
}

package wire

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
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

// maxKeptLine bounds what a framingConn keeps of a line while it follows a
// response: enough for a field's name and a Content-Length, and for the
// longest chunk-size line Go's Transport takes (one that fits its 4 KiB
// buffer).
const maxKeptLine = 4 << 10

// dialFraming wraps dial so that its connections can follow responses; see
// watch.
func dialFraming(dial func(ctx context.Context, network, address string) (net.Conn, error)) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		conn, err := dial(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return &framingConn{Conn: conn}, nil
	}
}

// watch follows one request on its way through Transport: it has the
// response followed as the bytes come in (its head checked, its end found, so
// that no byte past it is ever taken for the next request's answer), has the
// connection reset if the request is cancelled while it carries it, and
// notes whether the request was written.
type watch struct {
	trace httptrace.ClientTrace
	ctx   context.Context
	// head is set for a HEAD request, whose answer has no body.
	head  bool
	conn  atomic.Pointer[framingConn]
	wrote atomic.Bool
}

// newWatch returns a watch for a request whose context is ctx and whose
// method is method; the request must be sent with the context it returns.
func newWatch(ctx context.Context, method string) (*watch, context.Context) {
	w := &watch{head: method == http.MethodHead}
	w.trace.GotConn = w.gotConn
	w.trace.PutIdleConn = w.putIdleConn
	w.trace.WroteHeaders = w.wroteHeaders
	w.ctx = httptrace.WithClientTrace(ctx, &w.trace)
	return w, w.ctx
}

func (w *watch) gotConn(info httptrace.GotConnInfo) {
	// The request is not written yet, so its response cannot have begun. An
	// HTTP/2 connection is no framingConn: it cancels a stream, not the
	// connection its streams share, and has frames rather than heads.
	if conn, ok := info.Conn.(*framingConn); ok {
		conn.arm(w.ctx, w.head)
		w.conn.Store(conn)
	}
}

func (w *watch) putIdleConn(error) {
	// Done with the request: a later close is not its cancellation.
	if conn := w.conn.Load(); conn != nil {
		conn.release()
	}
}

func (w *watch) wroteHeaders() {
	w.wrote.Store(true)
}

// verdict is called once the request has a response. It returns
// ErrAmbiguousFraming when the response's head was ambiguous; the connection
// is then already closed, so it is never reused. It returns nil when the head
// was fine or could not be checked: only HTTP/1 connections dialled by
// New's transport are.
func (w *watch) verdict() error {
	if conn := w.conn.Load(); conn != nil {
		return conn.verdict()
	}
	return nil
}

// notSentError is the failure of a request that failed before any of it
// was written to a connection; it reads as the failure it wraps.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }

func (e *notSentError) Unwrap() error { return e.err }

// NotSent reports whether err, from Transport.RoundTrip, came before any of
// the request was written to a connection, so that the endpoint cannot have
// acted on it.
func NotSent(err error) bool {
	if err == nil {
		return false
	}
	var notSent *notSentError
	return errors.As(err, &notSent)
}

// responsePhase is where a framingConn is in the response it follows.
type responsePhase int

const (
	// idle: no response is due; any byte is one too many.
	idle responsePhase = iota
	// inHead: the lines of a head, up to the empty line.
	inHead
	// inBody: the rest of a Content-Length body.
	inBody
	// inChunkLine, inChunkData, inTrailer: a chunked body's size line, its
	// data with the CRLF after it, and its trailer section.
	inChunkLine
	inChunkData
	inTrailer
	// unframed: the stream is no longer followed: a tunnel after 101, a body
	// that ends with the connection, or what Go's Transport refuses anyway.
	unframed
)

// framingConn is a connection to an endpoint that follows each response on it
// along with Go's Transport, by the same framing. It checks the head, whose
// evidence of an ambiguous framing Go's Transport deletes before its caller
// sees the response. And it finds where the response ends: bytes past the
// end, in the read that brings it or while no request is out, never reach the
// Transport, which could put the connection back in its pool before it
// noticed them and hand them to the next request as its answer. The read
// that finds them ends the stream there, so the Transport closes the
// connection instead of reusing it.
type framingConn struct {
	net.Conn

	// mu guards the fields below: reads come from the Transport's reading
	// goroutine, arm and release from the request's.
	mu sync.Mutex
	// request is the context of the request the connection carries, nil
	// once it is done with it.
	request context.Context
	// phase is where the response is; head is set when the request was a
	// HEAD; remaining counts the bytes left in a body or a chunk.
	phase     responsePhase
	head      bool
	remaining uint64
	// line is what is kept of the line read so far, lineTooLong set when it
	// was cut at maxKeptLine; status is set once the status line was read.
	line        []byte
	lineTooLong bool
	status      []byte
	// The head's framing so far: whether it has a Content-Length and its
	// first value (lengthOK if that parsed), and whether it has a
	// Transfer-Encoding.
	contentLength, lengthOK, transferEncoding bool
	length                                    uint64
	// err is ErrAmbiguousFraming once a head was; it stays, as the
	// connection is then closed.
	err error

	// surplus is set once bytes past a response were seen; from then on the
	// connection reads as ended.
	surplus atomic.Bool
}

// arm starts following the next response, that of the request whose context
// is ctx; head is set when the request is a HEAD.
func (c *framingConn) arm(ctx context.Context, head bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.request, c.head = ctx, head
	if c.err == nil && !c.surplus.Load() {
		c.startHead()
	}
}

// release records that the connection no longer carries a request.
func (c *framingConn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.request = nil
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
	if tcp, ok := tcpConn(c.Conn); ok && abandoned {
		_ = tcp.SetLinger(0)
	}
	return c.Conn.Close()
}

// tcpConn returns the TCP connection under conn, which may be TLS.
func tcpConn(conn net.Conn) (*net.TCPConn, bool) {
	if inner, ok := conn.(interface{ NetConn() net.Conn }); ok {
		conn = inner.NetConn()
	}
	tcp, ok := conn.(*net.TCPConn)
	return tcp, ok
}

func (c *framingConn) startHead() {
	c.phase = inHead
	c.line, c.lineTooLong, c.status = c.line[:0], false, nil
	c.contentLength, c.lengthOK, c.transferEncoding, c.length = false, false, false, 0
}

// verdict returns ErrAmbiguousFraming when a head read on c was ambiguous.
func (c *framingConn) verdict() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Read reads from the connection and follows what it read. By the time Go's
// Transport has parsed a head, this has checked it; a read that brings bytes
// past the end of a response returns up to that end, with io.EOF.
func (c *framingConn) Read(p []byte) (int, error) {
	if c.surplus.Load() {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(p)
	if n == 0 {
		return n, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.phase == unframed {
		return n, err
	}
	end := c.follow(p[:n])
	// A read that filled p exactly to the end of a response may have left
	// more behind, which came with it.
	if end < n || n == len(p) && c.phase == idle && pending(c.Conn) {
		c.surplus.Store(true)
		return end, io.EOF
	}
	return n, err
}

// follow feeds b to the response being followed and returns how many of its
// bytes belong to it (len(b) unless the response ended before b did).
func (c *framingConn) follow(b []byte) int {
	at := 0
	for at < len(b) {
		switch c.phase {
		case idle:
			return at
		case unframed:
			return len(b)
		case inBody, inChunkData:
			n := min(uint64(len(b)-at), c.remaining)
			at += int(n)
			if c.remaining -= n; c.remaining == 0 {
				if c.phase == inBody {
					c.phase = idle
				} else {
					c.phase = inChunkLine
				}
			}
		case inHead, inChunkLine, inTrailer:
			end := bytes.IndexByte(b[at:], '\n')
			if end < 0 {
				c.keep(b[at:])
				return len(b)
			}
			c.keep(b[at : at+end])
			at += end + 1
			// Go's Transport ends lines at a bare LF too.
			line := bytes.TrimSuffix(c.line, []byte("\r"))
			switch {
			case c.phase == inHead:
				c.headLine(line)
			case c.phase == inChunkLine:
				c.chunkLine(line)
			case len(line) == 0:
				c.phase = idle
			}
			c.line, c.lineTooLong = c.line[:0], false
		}
	}
	return at
}

// keep adds b to what is kept of the current line, up to maxKeptLine bytes.
func (c *framingConn) keep(b []byte) {
	if room := maxKeptLine - len(c.line); len(b) > room {
		b, c.lineTooLong = b[:room], true
	}
	c.line = append(c.line, b...)
}

// headLine takes a line of a response head.
func (c *framingConn) headLine(line []byte) {
	switch {
	case c.status == nil:
		c.status = append([]byte{}, line...)
	case len(line) > 0:
		name, value, _ := bytes.Cut(line, []byte(":"))
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if !c.contentLength {
				c.length, c.lengthOK = parseLength(value)
				c.lengthOK = c.lengthOK && !c.lineTooLong
			}
			c.contentLength = true
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			c.transferEncoding = true
		}
	default:
		c.endHead()
	}
}

// endHead follows the empty line that ends a head to what comes after it, as
// Go's Transport reads it.
func (c *framingConn) endHead() {
	code := statusCode(c.status)
	switch {
	case code == http.StatusSwitchingProtocols:
		c.phase = unframed
	case code >= 100 && code < 200:
		// The final head follows.
		c.startHead()
	case c.contentLength && c.transferEncoding:
		// Even where no body follows (HEAD, 204), a sender must never send
		// both (RFC 9112, section 6.1): such an endpoint is not to be trusted
		// with the connection, and whatever follows this head cannot be
		// trusted to end where Go thinks it does.
		c.err = ErrAmbiguousFraming
		c.phase = unframed
		c.Conn.Close()
	case c.head || code == http.StatusNoContent || code == http.StatusNotModified:
		c.phase = idle
	case c.transferEncoding:
		c.phase = inChunkLine
	case c.contentLength && c.lengthOK && c.length > 0:
		c.phase, c.remaining = inBody, c.length
	case c.contentLength && c.lengthOK:
		c.phase = idle
	default:
		// The body ends with the connection, or Go's Transport refuses the
		// head.
		c.phase = unframed
	}
}

// chunkLine takes a chunk-size line, read as Go's Transport does: the size
// in hex before any extension, with white space around it.
func (c *framingConn) chunkLine(line []byte) {
	size, _, _ := bytes.Cut(line, []byte(";"))
	n, err := strconv.ParseUint(string(bytes.Trim(size, " \t")), 16, 64)
	switch {
	case err != nil || n > 1<<62 || c.lineTooLong:
		// Go's Transport fails the body.
		c.phase = unframed
	case n == 0:
		c.phase = inTrailer
	default:
		c.phase, c.remaining = inChunkData, n+2
	}
}

// parseLength parses a Content-Length value as Go's Transport does.
func parseLength(value []byte) (uint64, bool) {
	n, err := strconv.ParseUint(string(bytes.Trim(value, " \t")), 10, 63)
	return n, err == nil
}

// statusCode returns the code of statusLine, or 0.
func statusCode(statusLine []byte) int {
	_, rest, _ := bytes.Cut(statusLine, []byte(" "))
	code, _, _ := bytes.Cut(rest, []byte(" "))
	if len(code) != 3 {
		return 0
	}
	n, err := strconv.Atoi(string(code))
	if err != nil {
		return 0
	}
	return n
}

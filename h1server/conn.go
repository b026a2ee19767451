package h1server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"balancing-reverse-proxy/scope"
)

// connection states, for Shutdown: an idle connection waits for the first
// bytes of its next request and may be closed at once; a new one has not
// sent its first request yet.
const (
	stateNew int32 = iota
	stateActive
	stateIdle
)

// conn is one client connection served by the Server.
type conn struct {
	server *Server
	// raw is the accepted connection; src reads it after the bytes given
	// back to it.
	raw net.Conn
	src replayConn
	br  *bufio.Reader
	bw  *bufio.Writer
	// body buffers the first bufferBeforeChunking bytes of a response body
	// in front of its chunks; reset for each response.
	body       *bufio.Writer
	ctx        context.Context
	remoteAddr string
	watch      watch
	state      atomic.Int32
	// expiresAt is when the connection's wait for its client ends (see
	// Server.clock), 0 outside a wait, expired once the expiry pass ended it.
	expiresAt atomic.Int64
	// deadlineSet is set when a handler set a read deadline, which the
	// next request does not inherit; whatever reads the body may set it.
	deadlineSet atomic.Bool
	accepted    time.Time
	writeErr    error
	lastMethod  string
	// response and header are the current request's response and its
	// header, kept from one request to the next.
	response response
	header   http.Header
	// dateSecond and dateText cache the Date field of this second.
	dateSecond int64
	dateText   []byte
}

func newConn(s *Server, raw net.Conn) *conn {
	c := &conn{server: s, raw: raw, src: replayConn{Conn: raw}}
	c.br = bufio.NewReaderSize(&c.src, headBufferSize)
	c.bw = bufio.NewWriterSize(raw, 4<<10)
	c.body = bufio.NewWriterSize(nil, bufferBeforeChunking)
	c.watch.conn = c
	c.watch.done = make(chan struct{}, 1)
	c.accepted = time.Now()
	if addr := raw.RemoteAddr(); addr != nil {
		c.remoteAddr = addr.String()
	}
	ctx := context.WithValue(s.baseCtx, http.ServerContextKey, s.fallback)
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, raw.LocalAddr())
	if s.fallback.ConnContext != nil {
		ctx = s.fallback.ConnContext(ctx, raw)
	}
	c.ctx = ctx
	return c
}

// headBufferSize is the size of the buffer a request head must fit in to be
// served here; a longer one goes to Go's server.
const headBufferSize = 4 << 10

// serve serves the connection's requests until it closes, or hands it to Go's
// server at the first request that is not plain.
func (c *conn) serve() {
	handedOver := false
	defer func() {
		if err := recover(); err != nil && err != http.ErrAbortHandler {
			const size = 64 << 10
			buf := make([]byte, size)
			buf = buf[:runtime.Stack(buf, false)]
			c.server.logf("h1server: panic serving %v: %v\n%s", c.remoteAddr, err, buf)
		}
		c.watch.disarm()
		c.server.forget(c)
		if !handedOver {
			_ = c.bw.Flush()
			_ = c.raw.Close()
			c.server.connState(c.raw, http.StateClosed)
		}
	}()
	c.server.connState(c.raw, http.StateNew)
	if c.server.fallback.ReadTimeout != 0 || c.server.fallback.WriteTimeout != 0 {
		// Time limits on whole requests are Go's server's alone.
		handedOver = c.handOver()
		return
	}
	if !c.wait(c.server.fallback.ReadHeaderTimeout) {
		return
	}
	for {
		head, plain, err := c.peekHead()
		if err != nil {
			return
		}
		// Parsed here, copied once with the request's context.
		var parsed http.Request
		if !plain || !c.parse(head, &parsed) {
			handedOver = c.handOver()
			return
		}
		c.state.Store(stateActive)
		c.server.connState(c.raw, http.StateActive)
		if c.server.shuttingDown() {
			return
		}
		_, _ = c.br.Discard(len(head))
		// The body has no time limit here, as with Go's server.
		if !c.wait(0) {
			return
		}
		w := c.serveRequest(&parsed)
		if !w.shouldReuseConnection() {
			if w.bodyLimitHit || w.closedRequestBodyEarly() {
				c.closeWriteAndWait()
			}
			return
		}
		c.server.connState(c.raw, http.StateIdle)
		c.state.Store(stateIdle)
		if c.server.shuttingDown() {
			return
		}
		if !c.awaitNext() {
			return
		}
	}
}

// serveRequest runs the handler on parsed, with a context of its own, and
// ends its response. The response and its header are the connection's, reset
// for each request: a handler must not use them once it has returned.
func (c *conn) serveRequest(parsed *http.Request) *response {
	ctx := scope.New(c.ctx)
	// Also when the handler panics, as Go's server: attempts end with it.
	defer ctx.Cancel()
	req := parsed.WithContext(ctx)
	if c.header == nil {
		c.header = make(http.Header)
	}
	clear(c.header)
	w := &c.response
	*w = response{conn: c, req: req, handlerHeader: c.header, contentLength: -1, wantsClose: req.Close}
	if req.ContentLength > 0 {
		req.Body = &body{src: c.br, remaining: req.ContentLength, closing: req.Close,
			onEOF: func() { c.watch.arm(ctx) }}
	} else {
		req.Body = http.NoBody
		c.watch.arm(ctx)
	}
	w.reqBody = req.Body
	c.body.Reset(chunks{w})
	c.lastMethod = req.Method
	c.server.handler.ServeHTTP(w, req)
	ctx.Cancel()
	w.finish()
	if c.watch.goneErr != nil {
		w.closeAfter = true
	}
	return w
}

// awaitNext waits, up to the idle timeout, for the first bytes of the next
// request, then gives the client the header timeout to send the rest of its
// head, as Go's server does.
func (c *conn) awaitNext() bool {
	if c.deadlineSet.Swap(false) {
		_ = c.raw.SetReadDeadline(time.Time{})
	}
	if !c.wait(c.server.fallback.IdleTimeout) {
		return false
	}
	if _, err := c.br.Peek(4); err != nil {
		return false
	}
	return c.wait(c.server.fallback.ReadHeaderTimeout)
}

// peekHead waits until the buffer holds a whole request head and returns it.
// plain is false for a head this server does not read itself: one that does
// not fit in the buffer, has bare line feeds, or is cut short by the client.
// err is set when the connection is to be closed.
func (c *conn) peekHead() (head []byte, plain bool, err error) {
	if c.lastMethod == http.MethodPost {
		// As Go's server: a client may send a CRLF after a POST body.
		peek, _ := c.br.Peek(4)
		_, _ = c.br.Discard(leadingCRorLF(peek))
	}
	// Each line feed is looked at once, however the head arrives.
	for scanned := 0; ; {
		buffered, err := c.br.Peek(scanned + 1)
		if err != nil {
			// Go's server answers a head cut by the client's end, and
			// drops the connection on any other error.
			if len(buffered) > 0 && errors.Is(err, io.EOF) {
				return nil, false, nil
			}
			return nil, false, err
		}
		buffered, _ = c.br.Peek(c.br.Buffered())
		end, bare := headEnd(buffered, scanned)
		switch {
		case end > 0:
			return buffered[:end], true, nil
		case bare || len(buffered) == c.br.Size():
			return nil, false, nil
		}
		scanned = len(buffered)
	}
}

// headEnd returns the length of the head at the start of b, up to and with
// its empty line, or 0 if b holds no whole head; bare is set when a line
// feed without a carriage return before it (which Go's parser takes as a
// line's end too) comes first. It looks at the line feeds from b[from:] on.
func headEnd(b []byte, from int) (end int, bare bool) {
	for i := from; i < len(b); i++ {
		switch {
		case b[i] != '\n':
		case i == 0 || b[i-1] != '\r':
			return 0, true
		case i >= 3 && b[i-2] == '\n':
			return i + 1, false
		}
	}
	return 0, false
}

func leadingCRorLF(b []byte) int {
	n := 0
	for _, c := range b {
		if c != '\r' && c != '\n' {
			break
		}
		n++
	}
	return n
}

// parse reads head into req, and reports false when it is not a request
// this server serves (see parseHead), or longer than the fallback's
// MaxHeaderBytes.
func (c *conn) parse(head []byte, req *http.Request) bool {
	if len(head) > c.server.maxHeaderBytes() || !parseHead(head, req) {
		return false
	}
	req.RemoteAddr = c.remoteAddr
	return true
}

// handOver gives the connection, with the bytes read from it so far, to Go's
// server. It reports whether the connection went.
func (c *conn) handOver() bool {
	buffered, _ := c.br.Peek(c.br.Buffered())
	held := append(append([]byte(nil), buffered...), c.src.held...)
	next := c.raw
	if unreader, ok := c.raw.(interface{ Unread([]byte) }); ok {
		// Also with nothing to give back: a listener's check may start
		// there (see inbound.ListenerOptions.CheckFromUnread).
		unreader.Unread(held)
	} else if len(held) > 0 {
		next = &replayConn{Conn: c.raw, held: held}
	}
	// Go's server keeps time itself.
	if !c.wait(0) {
		return false
	}
	_ = c.raw.SetReadDeadline(time.Time{})
	return c.server.handoff.give(next)
}

// replayConn is a connection read after bytes read from it before.
type replayConn struct {
	net.Conn
	held []byte
}

// Read reads the held bytes, then the connection.
func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.held) > 0 {
		n := copy(p, r.held)
		r.held = r.held[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

// noteWriteErr keeps the first error writing to the client.
func (c *conn) noteWriteErr(err error) {
	if err != nil && c.writeErr == nil {
		c.writeErr = err
	}
}

// closeWriteAndWait ends the sending side and waits a moment before the
// connection closes, so that a client still sending its body reads the
// response rather than a reset.
func (c *conn) closeWriteAndWait() {
	_ = c.bw.Flush()
	if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	wait := time.NewTimer(rstAvoidanceDelay)
	defer wait.Stop()
	select {
	case <-wait.C:
	case <-c.server.closed:
	}
}

// rstAvoidanceDelay is how long closeWriteAndWait waits, as Go's server.
const rstAvoidanceDelay = 500 * time.Millisecond

// date returns the Date field's value for now.
func (c *conn) date() []byte {
	now := time.Now()
	if second := now.Unix(); second != c.dateSecond || c.dateText == nil {
		c.dateSecond = second
		c.dateText = now.UTC().AppendFormat(c.dateText[:0], http.TimeFormat)
	}
	return c.dateText
}

package wire

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"balancing-reverse-proxy/internal/canonical"
	"balancing-reverse-proxy/scope"
)

// h1Client is the proxy's own HTTP/1.1 client, for the requests that are
// nearly all of the traffic: to http:// endpoints and to https:// ones that
// negotiate HTTP/1.1, with no body or a small one in memory. Go's Transport
// hands each request and its answer between the caller and two goroutines
// per connection; this writes the request and reads the answer on the
// caller's goroutine, head and body in one write, and reads the head in one
// pass that checks its framing too. Connections are kept per endpoint and
// never reused after anything doubtful: bytes past an answer, an answer cut
// short or abandoned, a connection that has something to say while idle.
type h1Client struct {
	dialer *net.Dialer
	// tls configures TLS to https:// endpoints (see Options.TLS); http2
	// has the ones that negotiate HTTP/2, which are Go's to speak.
	tls   *tls.Config
	http2 *alpnRecord
	// maxHeadBytes and maxFields cap response heads (see Options).
	maxHeadBytes, maxFields int
	// maxIdle is how many idle connections are kept per endpoint.
	maxIdle int

	mu sync.Mutex
	// idle has the idle connections by endpoint, the most recent last.
	idle map[poolKey][]*h1Conn
	// sweep closes the connections idle for longer than idleTimeout; it is
	// set while there are idle connections.
	sweep *time.Timer
}

// poolKey names the connections to one endpoint: its host and port, and
// whether they are TLS.
type poolKey struct {
	address string
	tls     bool
}

// idleTimeout is how long a connection may stay idle, as in Go's Transport.
const idleTimeout = 90 * time.Second

// maxInlineBody bounds the request bodies h1Client takes: it writes a body
// with its head, so it holds both in memory.
const maxInlineBody = 64 << 10

// newH1Client returns a client with the caps and the TLS of opts, which
// notes in http2 the endpoints that negotiate HTTP/2.
func newH1Client(dialer *net.Dialer, opts Options, maxHeadBytes int64, http2 *alpnRecord) *h1Client {
	maxIdle := opts.MaxIdlePerHost
	if maxIdle == 0 {
		maxIdle = http.DefaultMaxIdleConnsPerHost
	}
	return &h1Client{
		dialer:       dialer,
		tls:          opts.TLS,
		http2:        http2,
		maxHeadBytes: int(maxHeadBytes),
		maxFields:    opts.MaxResponseHeaders,
		maxIdle:      maxIdle,
		idle:         make(map[poolKey][]*h1Conn),
	}
}

// inMemory is a request body whose bytes are all there: a bytes.Reader.
type inMemory interface {
	io.Reader
	Len() int
}

// takes reports whether the client carries req: HTTP/1.1 (to an http://
// endpoint, or an https:// one not known to negotiate HTTP/2) with no
// upgrade, no 100-continue and no trailers, whose body, if any, is in memory
// and small.
func (c *h1Client) takes(req *http.Request) bool {
	switch req.URL.Scheme {
	case "http":
	case "https":
		if c.http2.has(endpointAddress(req)) {
			return false
		}
	default:
		return false
	}
	if len(req.Trailer) > 0 || canonical.Get(req.Header, "Upgrade") != "" || canonical.Get(req.Header, "Expect") != "" {
		return false
	}
	if req.Body == nil || req.Body == http.NoBody {
		return true
	}
	body, ok := req.Body.(inMemory)
	return ok && req.ContentLength >= 0 && req.ContentLength <= maxInlineBody && int64(body.Len()) == req.ContentLength
}

// errSpeaksHTTP2 is the failure of a request, not sent, to an https://
// endpoint that turned out to negotiate HTTP/2.
var errSpeaksHTTP2 = errors.New("the endpoint negotiated HTTP/2")

// roundTrip sends req, which takes accepted, and reads its answer's head.
// It fails with errSpeaksHTTP2, and nothing sent, when the endpoint
// negotiates HTTP/2.
func (c *h1Client) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		return nil, &notSentError{err: err}
	}
	key := poolKey{address: endpointAddress(req), tls: req.URL.Scheme == "https"}
	for retried := false; ; retried = true {
		conn, err := c.get(ctx, key)
		if err == errSpeaksHTTP2 {
			return nil, err
		}
		if err != nil {
			return nil, &notSentError{err: ctxErr(ctx, err)}
		}
		if err := conn.encode(req); err != nil {
			c.put(conn)
			return nil, &notSentError{err: err}
		}
		resp, failure := conn.exchange(ctx, req)
		if failure == nil {
			return resp, nil
		}
		// As Go's Transport: a reused connection that the endpoint closed
		// as the request went out is retried once on a new one, when the
		// endpoint cannot have acted on it or the request can be repeated.
		if !retried && failure.idleEnd && (!failure.wrote || replayable(req)) && ctx.Err() == nil {
			continue
		}
		if !failure.wrote {
			return nil, &notSentError{err: failure.err}
		}
		return nil, failure.err
	}
}

// replayable reports whether req may be sent again after a failure that may
// have come after the endpoint read it, by Go's Transport's rule.
func replayable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return canonical.Get(req.Header, "Idempotency-Key") != "" || canonical.Get(req.Header, "X-Idempotency-Key") != ""
}

// endpointAddress returns the host and port req goes to.
func endpointAddress(req *http.Request) string {
	if req.URL.Port() != "" {
		return req.URL.Host
	}
	if req.URL.Scheme == "https" {
		return net.JoinHostPort(req.URL.Hostname(), "443")
	}
	return net.JoinHostPort(req.URL.Hostname(), "80")
}

// ctxErr returns the context's error when ctx is done, the likely cause of
// err, which is then only the closed connection it left.
func ctxErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return err
}

// get returns an idle connection to the endpoint of key that is fit for
// reuse, or a new one.
func (c *h1Client) get(ctx context.Context, key poolKey) (*h1Conn, error) {
	now := time.Now()
	for {
		c.mu.Lock()
		conns := c.idle[key]
		if len(conns) == 0 {
			c.mu.Unlock()
			break
		}
		conn := conns[len(conns)-1]
		conns[len(conns)-1] = nil
		c.idle[key] = conns[:len(conns)-1]
		c.mu.Unlock()
		// A connection with something to read while idle is one the
		// endpoint closed, or one with bytes no request asked for.
		if now.Sub(conn.idleSince) < idleTimeout && quiet(conn.Conn) {
			conn.reused = true
			return conn, nil
		}
		conn.Close()
	}
	raw, err := c.dial(ctx, key)
	if err != nil {
		return nil, err
	}
	if !key.tls {
		return c.newConn(raw, raw, key), nil
	}
	secure, err := handshake(ctx, raw, c.tls, key.address, "h2", "http/1.1")
	if err != nil {
		return nil, err
	}
	speaksHTTP2 := secure.ConnectionState().NegotiatedProtocol == "h2"
	c.http2.note(key.address, speaksHTTP2)
	if speaksHTTP2 {
		raw.Close()
		return nil, errSpeaksHTTP2
	}
	return c.newConn(secure, raw, key), nil
}

// newConn makes the connection for key of conn, over raw, a new TCP
// connection (conn itself, or TLS over it).
func (c *h1Client) newConn(conn, raw net.Conn, key poolKey) *h1Conn {
	h := &h1Conn{Conn: conn, raw: raw, client: c, key: key}
	h.br = bufio.NewReaderSize(conn, 4<<10)
	h.heads = headReader{br: h.br, maxBytes: c.maxHeadBytes, maxFields: c.maxFields}
	h.abortFunc = h.abort
	_, tcp := conn.(*net.TCPConn)
	h.plainTCP = tcp
	return h
}

// dial connects to key's address. A request cancelled while it dials (a
// fan-out loser, most often) returns at once, and the dial goes on: a
// plain TCP connection that it makes goes to the pool for the next request,
// rather than that request dialling again, as Go's Transport does.
func (c *h1Client) dial(ctx context.Context, key poolKey) (net.Conn, error) {
	type dialed struct {
		conn net.Conn
		err  error
	}
	done := make(chan dialed, 1)
	go func() {
		conn, err := c.dialer.DialContext(context.WithoutCancel(ctx), "tcp", key.address)
		done <- dialed{conn, err}
	}()
	select {
	case d := <-done:
		return d.conn, d.err
	case <-ctx.Done():
		go func() {
			if d := <-done; d.err == nil {
				if key.tls {
					d.conn.Close()
					return
				}
				c.put(c.newConn(d.conn, d.conn, key))
			}
		}()
		return nil, ctx.Err()
	}
}

// quiet reports whether conn, an idle connection, has nothing to give: no
// bytes, no end and no error, in TLS's buffers (see tlsQuiet) or in the
// socket's (see readable).
func quiet(conn net.Conn) bool {
	if secure, ok := conn.(*tls.Conn); ok {
		if !tlsQuiet(secure) {
			return false
		}
		conn = secure.NetConn()
	}
	return !readable(conn)
}

// longAgo is a deadline that has passed.
var longAgo = time.Unix(1, 0)

// tlsQuiet reports whether conn holds nothing that a read would give: TLS
// keeps what it read of the socket past the answer, as records or their
// plain text, where neither the answer's reader nor the socket can show it.
// A read with a deadline passed gets that, and no more.
func tlsQuiet(conn *tls.Conn) bool {
	if conn.SetReadDeadline(longAgo) != nil {
		return false
	}
	var b [1]byte
	_, err := conn.Read(b[:])
	return errors.Is(err, os.ErrDeadlineExceeded) && conn.SetReadDeadline(time.Time{}) == nil
}

// put keeps conn for the next request to its endpoint, or closes it when
// there are enough.
func (c *h1Client) put(conn *h1Conn) {
	conn.idleSince = time.Now()
	conn.reused = false
	c.mu.Lock()
	conns := c.idle[conn.key]
	if len(conns) >= c.maxIdle {
		c.mu.Unlock()
		conn.Close()
		return
	}
	c.idle[conn.key] = append(conns, conn)
	if c.sweep == nil {
		c.sweep = time.AfterFunc(idleTimeout, c.closeExpired)
	}
	c.mu.Unlock()
}

// closeExpired closes the connections idle for longer than idleTimeout, and
// comes back while any are left.
func (c *h1Client) closeExpired() {
	now := time.Now()
	var expired []*h1Conn
	c.mu.Lock()
	left := 0
	for key, conns := range c.idle {
		kept := conns[:0]
		for _, conn := range conns {
			if now.Sub(conn.idleSince) >= idleTimeout {
				expired = append(expired, conn)
			} else {
				kept = append(kept, conn)
			}
		}
		clear(conns[len(kept):])
		c.idle[key] = kept
		left += len(kept)
	}
	c.sweep = nil
	if left > 0 {
		c.sweep = time.AfterFunc(idleTimeout/3, c.closeExpired)
	}
	c.mu.Unlock()
	for _, conn := range expired {
		conn.Close()
	}
}

// closeIdle closes the idle connections.
func (c *h1Client) closeIdle() {
	c.mu.Lock()
	idle := c.idle
	c.idle = make(map[poolKey][]*h1Conn)
	if c.sweep != nil {
		c.sweep.Stop()
		c.sweep = nil
	}
	c.mu.Unlock()
	for _, conns := range idle {
		for _, conn := range conns {
			conn.Close()
		}
	}
}

// h1Conn is a connection of h1Client's, carrying one request at a time:
// Conn is TLS over raw, or raw itself.
type h1Conn struct {
	net.Conn
	raw    net.Conn
	client *h1Client
	key    poolKey
	br     *bufio.Reader
	heads  headReader
	// out is the request being written, head and body; kept from one
	// request to the next.
	out []byte
	// abortFunc is abort, made once: the request's context calls it when
	// it is cancelled.
	abortFunc func()
	// idleSince is when the connection was last put back; reused is set
	// while it carries a request it did not carry first.
	idleSince time.Time
	reused    bool
	// plainTCP is set for a connection without TLS. cutWait is set once
	// abort has cut its request short by deadlines rather than by a reset;
	// abortMu is held by such an abort, so that deadlines set after it come
	// after its own.
	plainTCP bool
	cutWait  atomic.Bool
	abortMu  sync.Mutex
	// hooked counts the abort hooked to the request's context, until it is
	// unhooked or has run.
	hooked sync.WaitGroup
}

// abort stops the request the connection carries, at once: over plain
// TCP by deadlines in the past, which end any read or write on it and leave
// the connection to be salvaged (see salvage) or, if its answer was read
// whole, put back; over TLS by a reset of the connection (as
// framingConn.Close does, and for the same reasons).
func (c *h1Conn) abort() {
	defer c.hooked.Done()
	if !c.plainTCP {
		c.reset()
		return
	}
	c.abortMu.Lock()
	defer c.abortMu.Unlock()
	c.cutWait.Store(true)
	_ = c.raw.SetDeadline(longAgo)
}

// unhook unhooks abort from the request's context, and reports whether
// abort ran, once it has returned. An exchange hooks it once and unhooks it
// once.
func (c *h1Conn) unhook(hook scope.Hook) (aborted bool) {
	if hook.Stop() {
		c.hooked.Done()
		return false
	}
	c.hooked.Wait()
	return true
}

// uncut clears the deadlines of an abort that has cut the connection's
// request short, and reports whether there was one.
func (c *h1Conn) uncut() bool {
	c.abortMu.Lock()
	defer c.abortMu.Unlock()
	return c.cutWait.Swap(false) && c.raw.SetDeadline(time.Time{}) == nil
}

// closeAfter closes the connection after its request failed: with a reset
// when an abort cut it, as abort over TLS does.
func (c *h1Conn) closeAfter() {
	if c.cutWait.Load() {
		c.reset()
		return
	}
	c.Close()
}

// reset closes the connection with a reset, leaving no TIME_WAIT socket.
func (c *h1Conn) reset() {
	if tcp, ok := c.raw.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	c.raw.Close()
}

// salvageable reports whether abort cut the wait for the head short, the
// head read failing before its first byte (err) or read whole all the same
// (nil), and if so gives the salvage its deadline.
func (c *h1Conn) salvageable(err error) bool {
	if !c.cutWait.Load() || err != nil && (len(c.heads.buf) > 0 || !errors.Is(err, os.ErrDeadlineExceeded)) {
		return false
	}
	return c.uncut() && c.raw.SetReadDeadline(time.Now().Add(salvageWait)) == nil
}

// salvageWait bounds how long salvage waits for a cancelled request's answer,
// and salvageMax the length of an answer it reads out.
const (
	salvageWait = 50 * time.Millisecond
	salvageMax  = 64 << 10
)

// salvage reads out, off the request's goroutine, the answer to a request
// cancelled while it waited for its head, typically a fan-out or hedged
// loser: a small answer that comes within salvageWait puts the connection
// back in the pool, where closing it would have the next request dial a new
// one (a third of fan-out's cost when losers were cut). Any other answer, or
// none, resets it as abort would have.
func (c *h1Conn) salvage(method string) {
	var resp http.Response
	f, _, err := c.heads.readResponse(method, &resp)
	c.salvageBody(f, err == nil)
}

// salvageBody reads out the body framed by f (when headRead, its head read
// whole) and puts the connection back, or resets it.
func (c *h1Conn) salvageBody(f framing, headRead bool) {
	clean := headRead && !f.close && !f.spent && (f.body == noBody || f.body == lengthBody && f.length <= salvageMax)
	if clean && f.body == lengthBody {
		_, err := io.CopyN(io.Discard, c.br, f.length)
		clean = err == nil
	}
	if !clean || c.br.Buffered() > 0 || c.raw.SetReadDeadline(time.Time{}) != nil {
		c.reset()
		return
	}
	c.client.put(c)
}

// Close closes the connection without TLS's closing alert, which could wait
// on an endpoint that does not read: HTTP/1.1 frames each answer, so no
// answer needs the alert to be whole.
func (c *h1Conn) Close() error { return c.raw.Close() }

// failure is why an exchange failed, and how far it got.
type failure struct {
	err error
	// wrote is set when any of the request was written; idleEnd when the
	// connection, a reused one, then ended without a byte of an answer.
	wrote, idleEnd bool
}

// exchange writes the encoded request and reads its answer's head. The
// connection is then the answer's body's, or closed.
func (c *h1Conn) exchange(ctx context.Context, req *http.Request) (*http.Response, *failure) {
	c.hooked.Add(1)
	// A hook of the attempt's scope, when the context is one (see scope),
	// costs no allocation where context.AfterFunc costs five.
	stop := scope.After(ctx, c.abortFunc)
	fail := func(f *failure) (*http.Response, *failure) {
		c.unhook(stop)
		c.closeAfter()
		f.err = ctxErr(ctx, f.err)
		return nil, f
	}
	if n, err := c.Write(c.out); err != nil {
		return fail(&failure{err: err, wrote: n > 0, idleEnd: c.reused})
	}
	x := &answer{conn: c, stop: stop, ctx: ctx}
	f, idleEnd, err := c.heads.readResponse(req.Method, &x.resp)
	cut := c.cutWait.Load()
	if (err != nil || cut) && c.unhook(stop) && c.salvageable(err) {
		// Cut short before a byte of the head, or as it came: the answer
		// may still be read out, and the connection kept.
		if err != nil {
			go c.salvage(req.Method)
		} else {
			go c.salvageBody(f, true)
		}
		return nil, &failure{err: ctxErr(ctx, context.Canceled), wrote: true}
	}
	if err != nil || cut {
		c.closeAfter()
		return nil, &failure{err: ctxErr(ctx, cmp.Or(err, context.Canceled)), wrote: true, idleEnd: idleEnd && c.reused}
	}
	x.resp.Request = req
	x.body.answer = x
	x.framing = f
	x.remaining = f.length
	switch f.body {
	case noBody:
		x.resp.Body = http.NoBody
		x.release(true)
	case chunkedBody:
		x.chunks = httputil.NewChunkedReader(c.br)
		x.resp.Body = &x.body
	default:
		x.resp.Body = &x.body
	}
	return &x.resp, nil
}

// encode writes req into c.out as Go's Transport would write it, but for
// the order of its header fields, which it leaves as they come.
func (c *h1Conn) encode(req *http.Request) error {
	if !isToken(req.Method) {
		return fmt.Errorf("net/http: invalid method %q", req.Method)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !validHost(host) {
		return fmt.Errorf("http: invalid Host header %q", host)
	}
	b := c.out[:0]
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = appendRequestURI(b, req)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	if agent, ok := req.Header["User-Agent"]; !ok {
		b = append(b, "User-Agent: Go-http-client/1.1\r\n"...)
	} else if len(agent) > 0 && agent[0] != "" {
		b = appendField(b, "User-Agent", agent[0])
	}
	if sendsContentLength(req) {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, req.ContentLength, 10)
		b = append(b, "\r\n"...)
	}
	if req.Close && !hasToken(req.Header["Connection"], "close") {
		b = append(b, "Connection: close\r\n"...)
	}
	for name, values := range req.Header {
		if !isToken(name) {
			return fmt.Errorf("net/http: invalid header field name %q", name)
		}
		switch name {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		for _, v := range values {
			if !validFieldValue(v) {
				return fmt.Errorf("net/http: invalid header field value for %q", name)
			}
			b = appendField(b, name, v)
		}
	}
	b = append(b, "\r\n"...)
	if body, ok := req.Body.(inMemory); ok && req.ContentLength > 0 {
		start := len(b)
		b = slices.Grow(b, int(req.ContentLength))[:start+int(req.ContentLength)]
		c.out = b
		if n, err := io.ReadFull(body, b[start:]); err != nil {
			return fmt.Errorf("http: ContentLength=%d with Body length %d", req.ContentLength, n)
		}
	}
	c.out = b
	return nil
}

// appendField appends the field name: value.
func appendField(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, textproto.TrimString(value)...)
	return append(b, "\r\n"...)
}

// appendRequestURI appends the request target of req, as URL.RequestURI
// makes it.
func appendRequestURI(b []byte, req *http.Request) []byte {
	u := req.URL
	if u.Opaque == "" && u.RawQuery == "" && !u.ForceQuery && u.RawPath == "" && u.Path != "" && u.Path[0] == '/' && pathNeedsNoEscape(u.Path) {
		return append(b, u.Path...)
	}
	return append(b, u.RequestURI()...)
}

// pathNeedsNoEscape reports whether path is its own escaped form, so that
// the common path goes out without a string made for it.
func pathNeedsNoEscape(path string) bool {
	for i := range len(path) {
		c := path[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~/!$&'()*+,;=:@", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// sendsContentLength reports whether Go's Transport would send a
// Content-Length with req: for a body, and for an empty one where servers
// expect it.
func sendsContentLength(req *http.Request) bool {
	if req.ContentLength > 0 {
		return true
	}
	switch req.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		return true
	}
	return false
}

// isToken reports whether s is a token, as a method and a field name must
// be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if !tokenByte(s[i]) {
			return false
		}
	}
	return true
}

// validHost reports whether host can go in a Host field: no white space or
// control characters.
func validHost(host string) bool {
	for i := range len(host) {
		if c := host[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// answer is the response to one request on an h1Conn, with its body.
type answer struct {
	resp http.Response
	body answerBody
	conn *h1Conn
	ctx  context.Context
	// stop unhooks the connection's abort from the request's context.
	stop    scope.Hook
	framing framing
	// remaining counts the bytes left of a Content-Length body; chunks
	// reads a chunked one, with the code of Go's Transport. Only the body's
	// reader uses them.
	remaining int64
	chunks    io.Reader
	// released is set once the answer let go of its connection: put it
	// back, or closed it.
	released atomic.Bool
	// mu guards err, what reads return once the body ended or was closed.
	mu  sync.Mutex
	err error
}

// release lets go of the answer's connection, once: it is put back for the
// next request when the answer ended cleanly where its framing says, with
// nothing after it, and closed otherwise.
func (x *answer) release(clean bool) {
	if !x.released.CompareAndSwap(false, true) {
		return
	}
	c := x.conn
	// A reset under way has the connection; once stop returns true, none
	// will come. An abort by deadlines leaves an answer read whole as good.
	aborted := c.unhook(x.stop)
	if clean && !x.framing.close && !x.framing.spent && c.br.Buffered() == 0 && (!aborted || c.uncut()) {
		c.client.put(c)
		return
	}
	c.closeAfter()
}

// end records err as what the body's reads return from now on, unless
// something was recorded first, and returns what was.
func (x *answer) end(err error) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.err == nil {
		x.err = err
	}
	return x.err
}

// answerBody is the body of an answer, read from its connection.
type answerBody struct{ answer *answer }

// Read reads the body as Go's Transport reads it, and hands the connection
// back at its end.
func (b answerBody) Read(p []byte) (int, error) {
	x := b.answer
	if x.released.Load() {
		return 0, x.end(http.ErrBodyReadAfterClose)
	}
	n, err := x.read(p)
	if err != nil {
		if err != io.EOF {
			err = ctxErr(x.ctx, err)
		}
		err = x.end(err)
		x.release(err == io.EOF)
	}
	return n, err
}

// read reads from the body by its framing.
func (x *answer) read(p []byte) (int, error) {
	br := x.conn.br
	switch x.framing.body {
	case lengthBody:
		if int64(len(p)) > x.remaining {
			p = p[:x.remaining]
		}
		n, err := br.Read(p)
		x.remaining -= int64(n)
		if x.remaining == 0 {
			return n, io.EOF
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return n, err
	case chunkedBody:
		n, err := x.chunks.Read(p)
		if err == io.EOF {
			if trailerErr := readTrailer(br, &x.resp); trailerErr != nil {
				return n, trailerErr
			}
		}
		return n, err
	}
	return br.Read(p)
}

// Arrived reports whether all of the body not read yet has arrived, so
// that reading it will not wait: a Content-Length body that came with its
// head. A copy need not then see to it that the head goes ahead of it.
func (b answerBody) Arrived() bool {
	x := b.answer
	return x.framing.body == lengthBody && !x.released.Load() && x.remaining <= int64(x.conn.br.Buffered())
}

// Close closes the body; a body not read to its end closes its connection,
// which ends a read under way.
func (b answerBody) Close() error {
	x := b.answer
	x.end(http.ErrBodyReadAfterClose)
	x.release(false)
	return nil
}

// errTrailerEOF is the failure of a trailer section cut short.
var errTrailerEOF = errors.New("http: unexpected EOF reading trailer")

// readTrailer reads the trailer section after a chunked body into
// resp.Trailer, as Go's Transport does.
func readTrailer(br *bufio.Reader, resp *http.Response) error {
	buf, err := br.Peek(2)
	if string(buf) == "\r\n" {
		_, _ = br.Discard(2)
		return nil
	}
	if len(buf) < 2 {
		return errTrailerEOF
	}
	if err != nil {
		return err
	}
	// The whole section must be in the buffer (4 KiB), against an endless
	// one.
	if !seeUpcomingDoubleCRLF(br) {
		return errors.New("http: suspiciously long trailer after chunked body")
	}
	fields, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil {
		if err == io.EOF {
			return errTrailerEOF
		}
		return err
	}
	if resp.Trailer == nil {
		resp.Trailer = http.Header(fields)
		return nil
	}
	maps.Copy(resp.Trailer, http.Header(fields))
	return nil
}

// seeUpcomingDoubleCRLF reports whether the end of a trailer section is in
// br's buffer.
func seeUpcomingDoubleCRLF(br *bufio.Reader) bool {
	for size := 4; ; size++ {
		buf, err := br.Peek(size)
		if bytes.HasSuffix(buf, []byte("\r\n\r\n")) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

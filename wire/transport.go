// Package wire owns the proxy's side of the connections to endpoints: the
// transport every attempt goes through (HTTP/1.1, HTTP/2 by ALPN over TLS,
// HTTP/2 without TLS to h2c:// endpoints, upgrades in HTTP/1.1), the following
// of every HTTP/1 answer by its framing (ambiguous heads refused, bytes past
// an answer cut off, such connections never reused), the caps on response
// heads, and the reset of connections whose attempt was cancelled.
package wire

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/internal/canonical"
)

// Transport sends the requests of every attempt to every endpoint: HTTP/1.1,
// or HTTP/2 where TLS negotiates it, to http:// and https:// endpoints, and
// HTTP/2 without TLS (prior knowledge) to h2c:// ones. Over HTTP/2, a
// cancelled attempt (a losing one) costs a reset stream; its connection goes
// on carrying the others. Every HTTP/1 response, over TLS or not, is
// followed to its end by its framing (see watch), and a response head over
// the caps fails its attempt.
type Transport struct {
	// fast carries what it can of HTTP/1.1 (see h1Client), Go's
	// transports the rest.
	fast  *h1Client
	http1 *http.Transport
	h2c   *http.Transport
	// upgrades carries requests that upgrade their connection (WebSocket),
	// in HTTP/1.1 whatever the endpoint's scheme.
	upgrades *http.Transport
	// maxHeaders caps the header fields of a response; 0 for no cap.
	maxHeaders int
}

// Options configure New's transport.
type Options struct {
	// MaxIdlePerHost is how many idle connections are kept per endpoint. If
	// zero, Go's default (2).
	MaxIdlePerHost int
	// MaxResponseHeaderBytes caps the heads of a response (status lines
	// and header fields, any 1xx heads before it included, as Go's Transport
	// counts them); larger ones fail the attempt. If zero,
	// DefaultMaxResponseHeaderBytes.
	MaxResponseHeaderBytes int64
	// MaxResponseHeaders caps the header fields of a response (each line
	// counts, a repeated name too); more fail the attempt. If zero, there is
	// no cap.
	MaxResponseHeaders int
	// TLS is the configuration of TLS to https:// endpoints, such as the
	// roots they are checked against. If nil, the system's roots.
	TLS *tls.Config
}

// DefaultMaxResponseHeaderBytes is the cap on a response head when
// Options leave it zero, the same as the proxy's default for
// request heads.
const DefaultMaxResponseHeaderBytes = 64 << 10

// ErrResponseHeaders is the failure of a response with more header fields
// than Options.MaxResponseHeaders.
var ErrResponseHeaders = errors.New("too many response header fields")

// tlsHandshakeTimeout bounds the TLS handshake with an endpoint.
const tlsHandshakeTimeout = 10 * time.Second

// New returns the transport that every attempt to every endpoint
// shares. It keeps up to opts.MaxIdlePerHost idle connections per endpoint
// so that busy endpoints are not dialled per request, with no cap in all:
// under fan-out a client connection can have an attempt at every endpoint,
// so a cap below that times the endpoints would close connections that are
// about to be used again. It never asks for compressed bodies it would then
// have to undo (responses pass through as the endpoint sent them), ignores
// HTTP_PROXY settings (the endpoints are called directly) and dials
// connections that can be followed (see watch).
func New(opts Options) *Transport {
	maxHeaderBytes := opts.MaxResponseHeaderBytes
	if maxHeaderBytes == 0 {
		maxHeaderBytes = DefaultMaxResponseHeaderBytes
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	newTransport := func() *http.Transport {
		return &http.Transport{
			DialContext:            dialFraming(dialer.DialContext),
			MaxIdleConnsPerHost:    opts.MaxIdlePerHost,
			IdleConnTimeout:        90 * time.Second,
			ExpectContinueTimeout:  time.Second,
			DisableCompression:     true,
			MaxResponseHeaderBytes: maxHeaderBytes,
		}
	}
	http1 := newTransport()
	// TLS is dialled here rather than by Go's Transport, so that HTTP/1 is
	// followed above TLS, not below it; HTTP/2 is Go's to speak. Which
	// endpoints speak it, both clients note.
	http2 := new(alpnRecord)
	http1.DialTLSContext = dialTLS(dialer, opts.TLS, http2, "h2", "http/1.1")
	http1.ForceAttemptHTTP2 = true
	upgrades := newTransport()
	upgrades.DialTLSContext = dialTLS(dialer, opts.TLS, nil, "http/1.1")
	// HTTP/2 frames are not HTTP/1 heads to follow, and one connection
	// carries many streams, so h2c connections are dialled plain.
	h2c := newTransport()
	h2c.DialContext = dialer.DialContext
	h2c.Protocols = new(http.Protocols)
	h2c.Protocols.SetUnencryptedHTTP2(true)
	return &Transport{
		fast:  newH1Client(dialer, opts, maxHeaderBytes, http2),
		http1: http1, h2c: h2c, upgrades: upgrades,
		maxHeaders: opts.MaxResponseHeaders,
	}
}

// dialTLS returns a dial for https:// endpoints that offers protocols by
// ALPN: a connection that negotiated HTTP/2 is returned as the *tls.Conn Go's
// Transport needs to speak it, any other wrapped so that it can be followed.
// With http2 set, it notes there whether the endpoint negotiated HTTP/2.
func dialTLS(dialer *net.Dialer, config *tls.Config, http2 *alpnRecord, protocols ...string) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		raw, err := dialer.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		conn, err := handshake(ctx, raw, config, address, protocols...)
		if err != nil {
			return nil, err
		}
		speaksHTTP2 := conn.ConnectionState().NegotiatedProtocol == "h2"
		if http2 != nil {
			http2.note(address, speaksHTTP2)
		}
		if speaksHTTP2 {
			return conn, nil
		}
		return &framingConn{Conn: conn}, nil
	}
}

// handshake makes raw, a connection to address, a TLS one by config (the
// system's roots if nil, the address's host as the server name unless it
// names one), offering protocols by ALPN, within tlsHandshakeTimeout. It
// closes raw when that fails.
func handshake(ctx context.Context, raw net.Conn, config *tls.Config, address string, protocols ...string) (*tls.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		raw.Close()
		return nil, err
	}
	cfg := &tls.Config{}
	if config != nil {
		cfg = config.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	cfg.NextProtos = protocols
	conn := tls.Client(raw, cfg)
	handshakeCtx, cancel := context.WithTimeout(ctx, tlsHandshakeTimeout)
	err = conn.HandshakeContext(handshakeCtx)
	cancel()
	if err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}

// alpnRecord has the https:// endpoints (by host and port) that negotiated
// HTTP/2 the last time a connection to them was made.
type alpnRecord struct{ http2 sync.Map }

// has reports whether address negotiated HTTP/2.
func (r *alpnRecord) has(address string) bool {
	_, ok := r.http2.Load(address)
	return ok
}

// note records whether address negotiated HTTP/2, writing only a change.
func (r *alpnRecord) note(address string, speaksHTTP2 bool) {
	switch {
	case speaksHTTP2 && !r.has(address):
		r.http2.Store(address, struct{}{})
	case !speaksHTTP2 && r.has(address):
		r.http2.Delete(address)
	}
}

// RoundTrip sends req to its endpoint, by HTTP/2 without TLS when its URL's
// scheme is h2c, unless req asks to upgrade its connection (a WebSocket):
// HTTP/2 has no such thing, so that goes in HTTP/1.1, which servers of h2c
// speak on the same port. A failure before any of req was written is one
// that NotSent tells. A response whose head is ambiguous (ErrAmbiguousFraming) or
// has more header fields than the cap (ErrResponseHeaders) is closed and
// fails.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.fast != nil && t.fast.takes(req) {
		resp, err := t.fast.roundTrip(req)
		if err != errSpeaksHTTP2 {
			return resp, err
		}
		// Nothing was sent: Go's Transport speaks HTTP/2 to it.
	}
	watch, ctx := newWatch(req.Context(), req.Method)
	sent := req.WithContext(ctx)
	if req.URL.Scheme == endpoints.SchemeH2C {
		// Go's transports speak h2c to http:// URLs when told to.
		url := *req.URL
		url.Scheme = "http"
		sent.URL = &url
	}
	resp, err := t.transportFor(req).RoundTrip(sent)
	if err != nil {
		if !watch.wrote.Load() {
			err = &notSentError{err: err}
		}
		return nil, err
	}
	if err := t.check(resp, watch); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

// check returns why resp must fail, or nil.
func (t *Transport) check(resp *http.Response, watch *watch) error {
	if err := watch.verdict(); err != nil {
		return err
	}
	if t.maxHeaders == 0 {
		return nil
	}
	fields := 0
	for _, values := range resp.Header {
		fields += len(values)
	}
	if fields > t.maxHeaders {
		return fmt.Errorf("%w: %d, over --max-response-headers %d", ErrResponseHeaders, fields, t.maxHeaders)
	}
	return nil
}

// transportFor returns the transport that carries req.
func (t *Transport) transportFor(req *http.Request) *http.Transport {
	switch {
	case canonical.Get(req.Header, "Upgrade") != "":
		return t.upgrades
	case req.URL.Scheme == endpoints.SchemeH2C:
		return t.h2c
	}
	return t.http1
}

// CloseIdleConnections closes the connections not carrying a request.
func (t *Transport) CloseIdleConnections() {
	if t.fast != nil {
		t.fast.closeIdle()
	}
	t.http1.CloseIdleConnections()
	t.h2c.CloseIdleConnections()
	t.upgrades.CloseIdleConnections()
}

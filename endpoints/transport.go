package endpoints

import (
	"context"
	"net"
	"net/http"
	"time"
)

// Transport sends the requests of every attempt to every endpoint: HTTP/1.1,
// or HTTP/2 where TLS negotiates it, to http:// and https:// endpoints, and
// HTTP/2 without TLS (prior knowledge) to h2c:// ones. Over HTTP/2, a
// cancelled attempt (a losing one) costs a reset stream; its connection goes
// on carrying the others.
type Transport struct {
	http1 *http.Transport
	h2c   *http.Transport
}

// NewTransport returns the transport that every attempt to every endpoint
// shares. It keeps up to maxIdlePerHost idle connections per endpoint so
// that busy endpoints are not dialled per request, with no cap in all: under
// fan-out a client connection can have an attempt at every endpoint, so a cap
// below maxIdlePerHost times the endpoints would close connections that are
// about to be used again. It never asks for compressed bodies it would then
// have to undo (responses pass through as the endpoint sent them), ignores
// HTTP_PROXY settings (the endpoints are called directly) and dials
// connections that a Watch can follow.
func NewTransport(maxIdlePerHost int) *Transport {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	newTransport := func(dial func(ctx context.Context, network, address string) (net.Conn, error)) *http.Transport {
		return &http.Transport{
			DialContext:           dial,
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   maxIdlePerHost,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
			DisableCompression:    true,
		}
	}
	// HTTP/2 frames are not HTTP/1 heads to check, and one connection
	// carries many streams, so h2c connections are dialled plain.
	h2c := newTransport(dialer.DialContext)
	h2c.Protocols = new(http.Protocols)
	h2c.Protocols.SetUnencryptedHTTP2(true)
	return &Transport{http1: newTransport(dialFraming(dialer.DialContext)), h2c: h2c}
}

// schemeH2C is the scheme of endpoints spoken to in HTTP/2 without TLS.
const schemeH2C = "h2c"

// RoundTrip sends req to its endpoint, by HTTP/2 without TLS when its URL's
// scheme is h2c, unless req asks to upgrade its connection (a WebSocket):
// HTTP/2 has no such thing, so that goes in HTTP/1.1, which servers of h2c
// speak on the same port.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != schemeH2C {
		return t.http1.RoundTrip(req)
	}
	// Go's transports speak h2c to http:// URLs when told to.
	url := *req.URL
	url.Scheme = "http"
	plainReq := *req
	plainReq.URL = &url
	if req.Header.Get("Upgrade") != "" {
		return t.http1.RoundTrip(&plainReq)
	}
	return t.h2c.RoundTrip(&plainReq)
}

// CloseIdleConnections closes the connections not carrying a request.
func (t *Transport) CloseIdleConnections() {
	t.http1.CloseIdleConnections()
	t.h2c.CloseIdleConnections()
}

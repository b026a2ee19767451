package endpoints

import (
	"net"
	"net/http"
	"time"
)

// NewTransport returns the transport that every attempt to every endpoint shares.
// It keeps up to maxIdlePerHost idle connections per endpoint so that busy
// endpoints are not dialled per request, never asks for compressed bodies it
// would then have to undo (responses pass through as the endpoint sent them),
// ignores HTTP_PROXY settings (the endpoints are called directly) and dials
// connections that a Watch can follow.
func NewTransport(maxIdlePerHost int) *http.Transport {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:           dialFraming(dialer.DialContext),
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   maxIdlePerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

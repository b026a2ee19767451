package main

import (
	"context"
	"crypto/tls"
	"fmt"
	stdlog "log"
	"net"
	"net/http"

	"github.com/rs/zerolog"

	"balancing-reverse-proxy/h1server"
	"balancing-reverse-proxy/inbound"
)

// frontServer serves the listener: Go's server over TLS, the proxy's own
// HTTP/1.1 server in front of it otherwise.
type frontServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// listen makes the server for handler and its listener on --address: the
// client-side time-outs and limits, the connection cap and request checks,
// TLS with HTTP/2 when --tls-cert is given, and HTTP/2 without TLS with --h2c.
// Without TLS, the front server serves plain HTTP/1.1 itself and hands every
// other connection (h2c, upgrades, the unusual) to Go's server; over TLS, Go's
// server serves all.
func (c *CLI) listen(handler http.Handler, logger zerolog.Logger) (*http.Server, frontServer, *inbound.Listener, error) {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(c.H2C)
	options := inbound.ListenerOptions{
		MaxConnections:   c.MaxConnections,
		H2C:              c.H2C,
		HandshakeTimeout: c.ReadHeaderTimeout,
		// The own server reads plain requests with a stricter parser, and
		// hands the rest over from where the check starts.
		CheckFromUnread: c.TLSCert == "",
		OnReject: func(remote net.Addr, reason string) {
			logger.Info().Str("remote", remote.String()).Int("status", http.StatusBadRequest).Str("reason", reason).
				Msg("request refused for its framing")
		},
	}
	if c.TLSCert != "" {
		certificate, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, nil, nil, usageError{fmt.Errorf("--tls-cert %q, --tls-key %q: %w; accepted: a PEM certificate chain and its PEM private key", c.TLSCert, c.TLSKey, err)}
		}
		options.TLS = &tls.Config{
			Certificates: []tls.Certificate{certificate},
			NextProtos:   []string{"h2", "http/1.1"},
			MinVersion:   tls.VersionTLS12,
		}
		protocols.SetHTTP2(true)
	}
	tcpListener, err := net.Listen("tcp", c.Address)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--address %q: %w", c.Address, err)
	}
	listener := inbound.NewListener(tcpListener, options)
	server := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    int(c.MaxHeaderBytes),
		Protocols:         protocols,
		ConnState:         listener.ConnState,
		ConnContext:       inbound.ConnContext,
		ErrorLog:          stdlog.New(logger.With().Str("source", "http.Server").Logger(), "", 0),
	}
	if c.TLSCert != "" {
		return server, server, listener, nil
	}
	return server, h1server.New(server), listener, nil
}

package main

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"os"
	"sync"

	"balancing-reverse-proxy/config"
	"balancing-reverse-proxy/wire"
)

// transportCache gives each endpoint of the configuration file a transport
// of its own, kept across reloads for as long as the endpoint (its URL and
// TLS settings) is in some set of routes, so that a reload keeps the
// connections to endpoints that stay and closes those to endpoints that go.
type transportCache struct {
	options func(*tls.Config) wire.Options
	mu      sync.Mutex
	byKey   map[string]*wire.Transport
}

func newTransportCache(options func(*tls.Config) wire.Options) *transportCache {
	return &transportCache{options: options, byKey: map[string]*wire.Transport{}}
}

// transportKey names an endpoint's transport: its URL, its TLS settings and
// what its TLS files hold, so that a changed CA file gets a new transport.
func transportKey(e config.Endpoint) string {
	if e.TLS == nil {
		return e.URL
	}
	digest := sha256.New()
	for _, path := range []string{e.TLS.CA, e.TLS.Cert, e.TLS.Key} {
		if data, err := os.ReadFile(path); err == nil {
			digest.Write(data)
		}
	}
	return fmt.Sprintf("%s %+v %x", e.URL, *e.TLS, digest.Sum(nil))
}

// get returns the transport of key, made with tlsConfig if it is new.
func (tc *transportCache) get(key string, tlsConfig *tls.Config) *wire.Transport {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	t, ok := tc.byKey[key]
	if !ok {
		t = wire.New(tc.options(tlsConfig))
		tc.byKey[key] = t
	}
	return t
}

// keep closes and forgets the transports whose key is not in keep: their
// endpoints are in no set of routes that may still send to them.
func (tc *transportCache) keep(keep map[string]bool) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	for key, t := range tc.byKey {
		if !keep[key] {
			t.CloseIdleConnections()
			delete(tc.byKey, key)
		}
	}
}

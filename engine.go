package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"balancing-reverse-proxy/budget"
	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/fanout"
	"balancing-reverse-proxy/healthcheck"
	"balancing-reverse-proxy/metrics"
	"balancing-reverse-proxy/session"
	"balancing-reverse-proxy/wire"
)

// engine is one route's proxy with what runs beside it (its session store's
// watch, its health checks), stopped by stop.
type engine struct {
	name  string
	proxy *fanout.Proxy
	// metrics observes proxy, with an admin listener; nil otherwise.
	metrics *metrics.Route
	stops   []func()
	// sessionKey says which session settings proxy.Sessions has, so that a
	// reload that keeps them keeps its pins. ownsSessions is set while the
	// engine is the one to close them: a reload's engine that shares them
	// (sessionsFrom) takes that over once it is in force (see handOver).
	sessionKey   string
	ownsSessions atomic.Bool
	sessionsFrom *engine
}

// handOver makes e, now in force, the owner of the sessions it shares with
// the engine it replaced.
func (e *engine) handOver() {
	if e.sessionsFrom != nil {
		e.sessionsFrom.ownsSessions.Store(false)
		e.ownsSessions.Store(true)
	}
}

// newEngine builds the proxy of route (its name, "" for the command line's)
// with c's endpoints and settings, sending through transport; log lines about
// its endpoints and sessions go to logger.
// Its replay memory is counted in replay, which every route shares. With
// previous, the engine of the same route before a reload, the endpoints that
// stay keep their state, and the sessions their pins if their settings stay.
func (c *CLI) newEngine(route string, transport *wire.Transport, replay *fanout.ReplayMemory, previous *engine, logger zerolog.Logger) (*engine, error) {
	pool := endpoints.NewPool(c.Endpoints, endpoints.PoolOptions{
		Order: c.Order, MaxInflight: c.MaxInflight,
		EjectAfter: c.EjectAfter, EjectBackoff: c.EjectBackoff, EjectBackoffMax: c.EjectBackoffMax,
		Log: logger,
	})
	proxy := &fanout.Proxy{
		Route:               route,
		Endpoints:           pool,
		Terminal:            c.TerminalResponses,
		Schedule:            c.schedule(),
		Transport:           transport,
		MaxBodyBuffer:       int64(c.MaxBodyBuffer),
		MaxReplayMemory:     int64(c.MaxReplayMemory),
		ReplayMemory:        replay,
		Timeout:             c.Timeout,
		TryTimeout:          c.TryTimeout,
		ResponseIdleTimeout: c.ResponseIdleTimeout,
		MaxAttempts:         c.MaxAttempts,
		IdempotentOnly:      c.IdempotentOnly,
		TrustedProxies:      c.TrustedProxies,
		DebugHeaders:        c.DebugHeaders,
		Observers:           []fanout.Observer{fanout.RequestLog{}},
	}
	if previous != nil {
		pool.Inherit(previous.proxy.Endpoints)
	}
	e := &engine{name: route, proxy: proxy, sessionKey: c.sessionKey()}
	if previous != nil && previous.proxy.Sessions != nil && previous.sessionKey == e.sessionKey {
		proxy.Sessions, e.sessionsFrom = previous.proxy.Sessions, previous
	} else {
		var err error
		if proxy.Sessions, err = c.sessions(logger); err != nil {
			return nil, err
		}
		e.ownsSessions.Store(proxy.Sessions != nil)
	}
	if proxy.Sessions != nil {
		logger.Info().Str("header", c.SessionHeader).Str("cookie", c.SessionCookie).Str("unknown", string(c.SessionUnknown)).
			Str("failover", string(c.SessionFailover)).Stringer("ttl", c.SessionTTL).Str("store", session.Redact(c.SessionStore)).
			Msg("session affinity")
		e.stops = append(e.stops, func() {
			if e.ownsSessions.Load() {
				_ = proxy.Sessions.Close()
			}
		})
		e.background(func(ctx context.Context) { proxy.Sessions.Watch(ctx, time.Second) })
	}
	if c.HedgeBudget != nil {
		proxy.Budget = budget.New(float64(*c.HedgeBudget), budget.DefaultFloor, 0)
	}
	for _, endpoint := range c.Endpoints {
		line := logger.Info().Int("endpoint", endpoint.Index).Str("url", endpoint.String())
		if len(endpoint.Header) > 0 {
			// Names only: the values are credentials.
			line = line.Strs("headers", slices.Sorted(maps.Keys(endpoint.Header)))
		}
		line.Msg("configured endpoint")
	}
	if c.metrics != nil {
		e.metrics = c.metrics.Route(proxy)
		proxy.Observers = append(proxy.Observers, e.metrics)
	}
	if c.HealthPath != "" {
		checker := &healthcheck.Checker{
			Endpoints: c.Endpoints, Path: c.HealthPath, Interval: c.HealthInterval,
			Transport: transport, Report: pool.Probed,
		}
		e.background(checker.Run)
	}
	return e, nil
}

// sessionKey names c's session settings.
func (c *CLI) sessionKey() string {
	return fmt.Sprint(c.SessionHeader, c.SessionCookie, c.SessionUnknown, c.SessionRequired, c.SessionFailover,
		c.SessionTTL, c.SessionStore, c.SessionStorePrefix, c.SessionStoreTimeout)
}

// background runs f until the engine stops, and waits for it then.
func (e *engine) background(f func(context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f(ctx) }()
	e.stops = append(e.stops, func() { cancel(); <-done })
}

// stop stops what runs beside the proxy, the last started first.
func (e *engine) stop() {
	for i := len(e.stops) - 1; i >= 0; i-- {
		e.stops[i]()
	}
}

package main

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"balancing-reverse-proxy/budget"
	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/fanout"
	"balancing-reverse-proxy/healthcheck"
	"balancing-reverse-proxy/session"
	"balancing-reverse-proxy/wire"
)

// engine is one route's proxy with what runs beside it (its session store's
// watch, its health checks), stopped by stop.
type engine struct {
	proxy *fanout.Proxy
	stops []func()
}

// newEngine builds the proxy of route (its name, "" for the command line's)
// with c's endpoints and settings, sending through transport; log lines about
// its endpoints and sessions go to logger.
// Its replay memory is counted in replay, which every route shares.
func (c *CLI) newEngine(route string, transport *wire.Transport, replay *fanout.ReplayMemory, logger zerolog.Logger) (*engine, error) {
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
	e := &engine{proxy: proxy}
	var err error
	if proxy.Sessions, err = c.sessions(logger); err != nil {
		return nil, err
	}
	if proxy.Sessions != nil {
		logger.Info().Str("header", c.SessionHeader).Str("cookie", c.SessionCookie).Str("unknown", string(c.SessionUnknown)).
			Str("failover", string(c.SessionFailover)).Stringer("ttl", c.SessionTTL).Str("store", session.Redact(c.SessionStore)).
			Msg("session affinity")
		e.stops = append(e.stops, func() { _ = proxy.Sessions.Close() })
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
	if c.HealthPath != "" {
		checker := &healthcheck.Checker{
			Endpoints: c.Endpoints, Path: c.HealthPath, Interval: c.HealthInterval,
			Transport: transport, Report: pool.Probed,
		}
		e.background(checker.Run)
	}
	return e, nil
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

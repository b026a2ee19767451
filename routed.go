package main

import (
	"crypto/tls"
	"fmt"
	"maps"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"balancing-reverse-proxy/config"
	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/fanout"
	"balancing-reverse-proxy/metrics"
	"balancing-reverse-proxy/routes"
	"balancing-reverse-proxy/wire"
)

// routedEngines is what serves the requests: an engine per route, and the
// handler that picks among them.
type routedEngines struct {
	handler http.Handler
	engines []*engine
	// describe adds to the listening line what is served.
	describe func(*zerolog.Event) *zerolog.Event
	// file is the configuration the engines are of, nil for the command
	// line's.
	file *config.File
	// refs counts the requests being served (see liveRoutes).
	refs atomic.Int64
	// transportKeys are the keys of the endpoints' transports in the
	// transport cache.
	transportKeys map[string]bool
}

// engineNamed returns the engine of route name, or nil.
func (r *routedEngines) engineNamed(name string) *engine {
	if r == nil {
		return nil
	}
	for _, e := range r.engines {
		if e.name == name {
			return e
		}
	}
	return nil
}

// routed builds the engines: one of the command line's endpoints and
// settings, sending through transport, or with --config one per route of the
// file, whose endpoints send through their own transports from cache.
// previous, if not nil, is the set a reload replaces, whose routes of the
// same name hand their endpoint state (and sessions) on. replay is the
// replay memory every route shares.
func (c *CLI) routed(transport *wire.Transport, cache *transportCache, replay *fanout.ReplayMemory, previous *routedEngines, logger zerolog.Logger) (*routedEngines, error) {
	if c.Config == "" {
		c.startMetrics()
		e, err := c.newEngine("", transport, replay, nil, logger)
		if err != nil {
			return nil, err
		}
		return &routedEngines{handler: e.proxy, engines: []*engine{e}, describe: func(ev *zerolog.Event) *zerolog.Event {
			return ev.Str("mode", e.proxy.Schedule.String()).Str("terminal", c.TerminalResponses.String()).Str("order", string(c.Order))
		}}, nil
	}
	file, routeCLIs, err := c.loadConfig()
	if err != nil {
		return nil, err
	}
	if previous == nil {
		c.startMetrics()
		for i := range routeCLIs {
			routeCLIs[i].metrics = c.metrics
		}
	}
	r := &routedEngines{file: file, transportKeys: map[string]bool{}}
	table := make([]routes.Route, len(file.Routes))
	for i, fr := range file.Routes {
		table[i] = routes.Route{Name: fr.Name, Host: fr.Match.Host, Path: fr.Match.Path, StripPrefix: fr.StripPrefix}
		if fr.Redirect != nil {
			table[i].Redirect = &routes.Redirect{To: fr.Redirect.To, Status: fr.Redirect.Status}
			logger.Info().Str("route", fr.Name).Str("to", fr.Redirect.To).Msg("configured redirect")
			continue
		}
		routeLog := logger.With().Str("route", fr.Name).Logger()
		maps.Copy(r.transportKeys, endpointTransports(cache, fr.Endpoints, routeCLIs[i].Endpoints, routeLog))
		e, err := routeCLIs[i].newEngine(fr.Name, transport, replay, previous.engineNamed(fr.Name), routeLog)
		if err != nil {
			r.stop()
			return nil, err
		}
		r.engines = append(r.engines, e)
		table[i].Handler = e.proxy
	}
	handler, err := routes.New(table)
	if err != nil {
		r.stop()
		return nil, usageError{fmt.Errorf("--config %q: %w", c.Config, err)}
	}
	r.handler = handler
	r.describe = func(ev *zerolog.Event) *zerolog.Event {
		return ev.Str("config", c.Config).Int("routes", len(file.Routes))
	}
	return r, nil
}

// notReady says why the engines cannot serve: a route none of whose
// endpoints is usable (every one ejected or paused by Retry-After); "" when
// each has one.
func (r *routedEngines) notReady() string {
	for _, e := range r.engines {
		if !e.proxy.Endpoints.Usable() {
			name := e.name
			if name == "" {
				name = metrics.DefaultRoute
			}
			return fmt.Sprintf("route %s: every endpoint is ejected or paused by Retry-After", name)
		}
	}
	return ""
}

// observed returns the metrics observers of the engines, none without an
// admin listener.
func (r *routedEngines) observed() []*metrics.Route {
	var observed []*metrics.Route
	for _, e := range r.engines {
		if e.metrics != nil {
			observed = append(observed, e.metrics)
		}
	}
	return observed
}

// closeTunnels closes every engine's upgraded connections.
func (r *routedEngines) closeTunnels() {
	for _, e := range r.engines {
		e.proxy.CloseTunnels()
	}
}

// stop stops every engine.
func (r *routedEngines) stop() {
	for _, e := range r.engines {
		e.stop()
	}
}

// startMetrics makes the metrics that the engines report to, when there is
// an admin listener (from the flags, or the file's admin) to serve them.
func (c *CLI) startMetrics() {
	if _, address := c.adminAddress(); address != "" && c.metrics == nil {
		c.metrics = metrics.New()
	}
}

// loadConfig reads --config and returns it with, for each route, the
// command line its engine is built from: the flags, then the file's defaults
// over them, then the route's own settings over those, but a flag given on
// the command line (or in the environment) wins over the file. Every problem,
// of the file or of a route's settings together, is in the error.
func (c *CLI) loadConfig() (*config.File, []CLI, error) {
	file, err := config.Load(c.Config, nil)
	if err != nil {
		return nil, nil, usageError{err}
	}
	var problems config.Problems
	if file.Listen != "" && !c.given["address"] {
		if err := checkAddress("listen", file.Listen); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", c.Config, err))
		}
		c.Address = file.Listen
	}
	if file.Admin != "" && !c.given["admin-address"] && !c.given["debug-address"] {
		if err := checkAddress("admin", file.Admin); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", c.Config, err))
		}
		c.AdminAddress, c.DebugAddress = file.Admin, ""
	}
	routeCLIs := make([]CLI, len(file.Routes))
	for i, fr := range file.Routes {
		rc := *c
		settings := fr.Settings.Over(file.Defaults)
		rc.apply(settings)
		if !c.given["session-store-prefix"] && (settings.Session == nil || settings.Session.StorePrefix == nil) {
			// A route's pins are its own, in a shared Redis too.
			rc.SessionStorePrefix = c.SessionStorePrefix + fr.Name + ":"
		}
		list, err := endpointList(fr.Endpoints)
		if err == nil {
			rc.Endpoints = list
			err = rc.validateSettings()
		}
		if err != nil && fr.Redirect == nil {
			problems = append(problems, fmt.Sprintf("%s:%d: routes[%d] (%s): %v", c.Config, fr.Line, i, fr.Name, err))
		}
		routeCLIs[i] = rc
	}
	if len(problems) > 0 {
		return nil, nil, usageError{problems}
	}
	return file, routeCLIs, nil
}

// endpointTransports gives each endpoint of list (configured, in the same
// order, is its configuration) its transport from cache, and returns their
// keys. An endpoint that checks nothing of its certificate is logged as a
// warning.
func endpointTransports(cache *transportCache, configured []config.Endpoint, list endpoints.List, logger zerolog.Logger) map[string]bool {
	keys := map[string]bool{}
	for i, e := range configured {
		var tlsConfig *tls.Config
		if e.TLS != nil {
			// Checked when the file was read: it loads.
			tlsConfig, _ = e.TLS.Load()
			if e.TLS.InsecureSkipVerify {
				logger.Warn().Int("endpoint", i).Str("url", e.URL).Msg("insecure_skip_verify: the endpoint's certificate is not checked")
			}
		}
		key := transportKey(e)
		list[i].Transport = cache.get(key, tlsConfig)
		keys[key] = true
	}
	return keys
}

// endpointList is the endpoints of a route, numbered from 0.
func endpointList(list []config.Endpoint) (endpoints.List, error) {
	out := make(endpoints.List, 0, len(list))
	for i, e := range list {
		parsed, err := endpoints.Parse(e.URL)
		if err != nil {
			return nil, err
		}
		parsed[0].Index = i
		if e.Weight != nil {
			parsed[0].Weight = int(*e.Weight)
		}
		if e.MaxInflight != nil {
			parsed[0].MaxInflight = int(*e.MaxInflight)
		}
		if len(e.Headers) > 0 {
			parsed[0].Header = make(http.Header, len(e.Headers))
			for name, value := range e.Headers {
				parsed[0].Header.Set(name, string(value))
			}
		}
		out = append(out, parsed[0])
	}
	return out, nil
}

// apply sets c's settings to s's where s sets one and the flag was not given.
func (c *CLI) apply(s config.Settings) {
	set := func(flag string, present bool, f func()) {
		if present && !c.given[flag] {
			f()
		}
	}
	if s.Mode != nil && !c.given["fanout"] && !c.given["hedge"] && !c.given["hedge-delay"] {
		c.Fanout, c.Hedge = *s.Mode == config.FanOut, *s.Mode == config.Hedged
	}
	if h := s.Hedge; h != nil {
		set("hedge-delay", h.Delay != nil, func() { spec := h.Delay.Value; c.HedgeDelay = &spec })
		set("hedge-delay-min", h.DelayMin != nil, func() { c.HedgeDelayMin = time.Duration(*h.DelayMin) })
		set("hedge-delay-max", h.DelayMax != nil, func() { c.HedgeDelayMax = time.Duration(*h.DelayMax) })
		set("hedge-budget", h.Budget != nil, func() { share := h.Budget.Value; c.HedgeBudget = &share })
	}
	set("terminal-responses", s.Terminal != nil, func() { c.TerminalResponses = s.Terminal.Value })
	set("timeout", s.Timeout != nil, func() { c.Timeout = time.Duration(*s.Timeout) })
	set("try-timeout", s.TryTimeout != nil, func() { c.TryTimeout = time.Duration(*s.TryTimeout) })
	set("response-idle-timeout", s.ResponseIdleTimeout != nil, func() { c.ResponseIdleTimeout = time.Duration(*s.ResponseIdleTimeout) })
	set("order", s.Order != nil, func() { c.Order = s.Order.Value })
	set("max-attempts", s.MaxAttempts != nil, func() { c.MaxAttempts = int(*s.MaxAttempts) })
	set("idempotent-only", s.IdempotentOnly != nil, func() { c.IdempotentOnly = *s.IdempotentOnly })
	set("max-inflight", s.MaxInflight != nil, func() { c.MaxInflight = int(*s.MaxInflight) })
	if e := s.Eject; e != nil {
		set("eject-after", e.After != nil, func() { c.EjectAfter = int(*e.After) })
		set("eject-backoff", e.Backoff != nil, func() { c.EjectBackoff = time.Duration(*e.Backoff) })
		set("eject-backoff-max", e.BackoffMax != nil, func() { c.EjectBackoffMax = time.Duration(*e.BackoffMax) })
	}
	if h := s.Health; h != nil {
		set("health-path", h.Path != nil, func() { c.HealthPath = *h.Path })
		set("health-interval", h.Interval != nil, func() { c.HealthInterval = time.Duration(*h.Interval) })
	}
	set("max-body-buffer", s.MaxBodyBuffer != nil, func() { c.MaxBodyBuffer = s.MaxBodyBuffer.Value })
	set("debug-headers", s.DebugHeaders != nil, func() { c.DebugHeaders = *s.DebugHeaders })
	// A hedge delay, inherited or the route's own, makes a route hedged only
	// when its mode is; --hedge-delay on the command line does either way.
	if (c.Fanout || !c.Hedge) && !c.given["hedge-delay"] {
		c.HedgeDelay = nil
	}
	if ss := s.Session; ss != nil {
		set("session-header", ss.Header != nil, func() { c.SessionHeader = string(*ss.Header) })
		set("session-cookie", ss.Cookie != nil, func() { c.SessionCookie = string(*ss.Cookie) })
		set("session-unknown", ss.Unknown != nil, func() { c.SessionUnknown = ss.Unknown.Value })
		set("session-required", ss.Required != nil, func() { c.SessionRequired = *ss.Required })
		set("session-failover", ss.Failover != nil, func() { c.SessionFailover = ss.Failover.Value })
		set("session-ttl", ss.TTL != nil, func() { c.SessionTTL = time.Duration(*ss.TTL) })
		set("session-store", ss.Store != nil, func() { c.SessionStore = *ss.Store })
		set("session-store-prefix", ss.StorePrefix != nil, func() { c.SessionStorePrefix = *ss.StorePrefix })
		set("session-store-timeout", ss.StoreTimeout != nil, func() { c.SessionStoreTimeout = time.Duration(*ss.StoreTimeout) })
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// viaProxy is row.direct for a row that goes through the proxy.
const viaProxy = -1

// settleTime is how long a run waits after its last answer before it reads
// the endpoints' counters, so that a hedge already on its way is counted.
const settleTime = 100 * time.Millisecond

// row is one run of a scenario: the load generator calls one endpoint
// directly, or a server in front of the endpoints: the proxy started with
// proxyArgs, nginx, HAProxy or Caddy.
type row struct {
	name      string
	direct    int
	proxyArgs []string
	// server is serverProxy (the zero value), serverNginx, serverHAProxy or
	// serverCaddy; nginx, HAProxy and Caddy forward to the first endpoint
	// only.
	server string
	// endpoints is how many of the scenario's endpoints, from the first, the
	// server is given; 0 gives it all.
	endpoints int
	// h2c has the proxy speak HTTP/2 without TLS to the endpoints.
	h2c bool
	// binary is the proxy binary of a serverProxy row; empty is the one
	// under test.
	binary string
	// header is sent with every request, "Name: value", if not empty.
	header string
	// redis gives the proxy the harness's Redis server as its session store.
	redis bool
}

// scenario is a set of endpoints and the rows run against them, one after
// another, each starting with the endpoints following models.
type scenario struct {
	name  string
	about string
	// models has one latency model per endpoint.
	models []Model
	// measuredModels, if not nil, replaces models when the measured phase of
	// each row starts.
	measuredModels []Model
	rows           []row
}

// Rows' names that the targets look up.
const (
	rowDirect0        = "direct (endpoint 0)"
	rowFanOut         = "fan-out"
	rowHedgedP95      = "hedged p95"
	rowBudgetSlowdown = "hedged p95 + 5% budget"
)

var (
	tailModel      = Model{Base: 5 * time.Millisecond, Tail: 500 * time.Millisecond, TailFraction: 0.02}
	tailErrorModel = Model{Base: 5 * time.Millisecond, Tail: 500 * time.Millisecond, TailFraction: 0.02, ErrorFraction: 0.05}
	slowModel      = Model{Base: 50 * time.Millisecond}
)

// tailRows are the rows of the tail scenarios.
func tailRows() []row {
	return []row{
		{name: rowDirect0, direct: 0},
		{name: "serial", direct: viaProxy},
		{name: rowFanOut, direct: viaProxy, proxyArgs: []string{"-fanout"}},
		{name: "hedged 10ms", direct: viaProxy, proxyArgs: []string{"--hedge-delay", "10ms"}},
		{name: rowHedgedP95, direct: viaProxy, proxyArgs: []string{"--hedge-delay", "p95"}},
		{name: "hedged 5% budget", direct: viaProxy, proxyArgs: []string{"--hedge", "--hedge-budget", "5%"}},
	}
}

// scenarioNames lists the scenarios in the order "all" runs them.
var scenarioNames = []string{"tail", "tail-errors", "spread", "slowdown"}

// scenarios returns the scenarios by name.
func scenarios() map[string]scenario {
	three := func(m Model) []Model { return []Model{m, m, m} }
	return map[string]scenario{
		"tail": {
			name:   "tail",
			about:  "3 endpoints, each " + tailModel.String(),
			models: three(tailModel),
			rows:   tailRows(),
		},
		"tail-errors": {
			name:   "tail-errors",
			about:  "3 endpoints, each " + tailErrorModel.String() + " at once",
			models: three(tailErrorModel),
			rows:   tailRows(),
		},
		"spread": {
			name:  "spread",
			about: "3 endpoints with fixed latencies 5ms, 10ms, 20ms",
			models: []Model{
				{Base: 5 * time.Millisecond},
				{Base: 10 * time.Millisecond},
				{Base: 20 * time.Millisecond},
			},
			rows: []row{
				{name: rowDirect0, direct: 0},
				{name: "direct (endpoint 1)", direct: 1},
				{name: "direct (endpoint 2)", direct: 2},
				{name: rowFanOut, direct: viaProxy, proxyArgs: []string{"-fanout"}},
			},
		},
		"slowdown": {
			name:           "slowdown",
			about:          "3 endpoints, each " + tailModel.String() + " during the warm-up, then every request " + slowModel.Base.String(),
			models:         three(tailModel),
			measuredModels: three(slowModel),
			rows: []row{
				{name: rowBudgetSlowdown, direct: viaProxy, proxyArgs: []string{"--hedge-delay", "p95", "--hedge-budget", "5%"}},
				{name: "hedged p95, no budget", direct: viaProxy, proxyArgs: []string{"--hedge-delay", "p95"}},
			},
		},
	}
}

// runner runs scenarios with one configuration and proxy binary.
type runner struct {
	cfg       config
	proxyPath string
	// tools are wrk, nginx, HAProxy, Caddy and redis-server, for the overhead
	// scenario.
	tools tools
	// redisURL is the harness's Redis server, once started for rows that
	// need it.
	redisURL string
	// progress gets a line per row as it starts.
	progress io.Writer
}

// runScenario starts the scenario's endpoints and runs its rows one after
// another. A row whose proxy rejects its flags is reported unavailable and is
// not an error; a row that could not run is reported failed and its error
// joined to the returned one. It stops at once when ctx ends.
func (rn *runner) runScenario(ctx context.Context, sc scenario) ([]result, error) {
	eps := make([]*endpoint, len(sc.models))
	for i, m := range sc.models {
		eps[i] = newEndpoint(m)
		if err := eps[i].start(); err != nil {
			closeEndpoints(eps)
			return nil, err
		}
	}
	defer closeEndpoints(eps)

	var results []result
	var errs []error
	for _, rw := range sc.rows {
		fmt.Fprintf(rn.progress, "bench: %s: %s\n", sc.name, rw.name)
		res, err := rn.runRow(ctx, sc, eps, rw)
		if ctx.Err() != nil {
			// Numbers of a cut run would pass for whole ones.
			res.Failed = "interrupted"
			return append(results, res), ctx.Err()
		}
		results = append(results, res)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s / %s: %w", sc.name, rw.name, err))
		}
	}
	return results, errors.Join(errs...)
}

func closeEndpoints(eps []*endpoint) {
	for _, e := range eps {
		if e != nil {
			e.close()
		}
	}
}

// runRow runs one row: the endpoints reset to the scenario's models, the proxy
// started if the row needs it, the load, and the upstream count.
func (rn *runner) runRow(ctx context.Context, sc scenario, eps []*endpoint, rw row) (result, error) {
	res := result{Name: rw.name, Direct: rw.direct != viaProxy}
	for i, e := range eps {
		e.setModel(sc.models[i])
	}
	url := ""
	var proxy *proxyProcess
	if rw.direct == viaProxy {
		var err error
		proxy, err = rn.startServer(ctx, rw, eps)
		var unavailable *UnavailableError
		if errors.As(err, &unavailable) {
			res.Unavailable = unavailable.Line
			return res, nil
		}
		if err != nil {
			res.Failed = err.Error()
			return res, err
		}
		url = proxy.URL()
	} else {
		url = eps[rw.direct].URL
	}

	client := newClient()
	defer client.CloseIdleConnections()
	var before []int64
	l := load{
		Client:      client,
		URL:         url + "/bench",
		Rate:        rn.cfg.rate,
		Warmup:      rn.cfg.warmup,
		Duration:    rn.cfg.duration,
		Timeout:     rn.cfg.timeout,
		MaxInFlight: rn.cfg.maxInFlight,
		Header:      requestHeader(rw.header),
		OnMeasure: func() {
			if sc.measuredModels != nil {
				for i, e := range eps {
					e.setModel(sc.measuredModels[i])
				}
			}
			before = measuredCounts(eps)
		},
	}
	started, cpuBefore := time.Now(), selfCPU()
	measured, err := l.run(ctx)
	res.loadResult = measured
	if err == nil {
		timer := time.NewTimer(settleTime)
		select {
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
	}
	after := measuredCounts(eps)
	res.Wall = time.Since(started)
	res.BenchCPU = selfCPU() - cpuBefore
	if before != nil {
		for i := range after {
			res.Upstream += after[i] - before[i]
		}
	}
	if proxy != nil {
		exitedEarly := proxy.hasExited()
		res.ProxyCPU = proxy.stop()
		if exitedEarly && err == nil {
			err = fmt.Errorf("during the run: %w", proxy.exitError())
			res.Failed = err.Error()
		}
	}
	return res, err
}

// measuredCounts returns each endpoint's count of measured requests received.
func measuredCounts(eps []*endpoint) []int64 {
	counts := make([]int64, len(eps))
	for i, e := range eps {
		counts[i] = e.measured.Load()
	}
	return counts
}

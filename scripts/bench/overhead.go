package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// overheadScenario is the scenario that measures what the proxy itself costs
// (throughput, added latency, CPU, memory) against the endpoint called
// directly, nginx, HAProxy and Caddy. "all" leaves it out: it needs wrk and takes minutes.
const overheadScenario = "overhead"

// Defaults of the overhead scenario's knobs.
const (
	defaultOverheadRuns     = 3
	defaultOverheadDuration = 10 * time.Second
	defaultOverheadRate     = 2000
	// defaultOverheadWarmup is the load before each measured run, not
	// recorded: a wrk run, or the open-loop warm-up phase.
	defaultOverheadWarmup = time.Second
	// defaultOverheadInFlight is how many requests the memory runs hold.
	defaultOverheadInFlight = 1000
)

// Bounds of the memory runs.
const (
	// memorySettle is how long the proxy is left alone before each RSS reading.
	memorySettle = 500 * time.Millisecond
	// memoryReachTimeout bounds the wait for every held request's attempts to
	// reach the endpoints. A hedge starts 1s after its request, since a proxy
	// with no history hedges after -hedge-delay-max.
	memoryReachTimeout = 10 * time.Second
	// memoryHold is the endpoints' delay while requests are held: longer than
	// a run lasts, whose requests are cancelled once the RSS is read.
	memoryHold = time.Minute
	// memoryRequestTimeout bounds each held request, should a run not cancel
	// them.
	memoryRequestTimeout = 30 * time.Second
)

// overheadEndpoints is how many endpoints the overhead scenario starts; rows
// use the first one, two or three.
const overheadEndpoints = 3

// Names of the rows the report compares others with.
const (
	rowDirect  = "endpoint called directly"
	rowSerial  = "proxy, serial, 1 endpoint"
	rowNginx   = "nginx, 1 endpoint"
	rowHAProxy = "HAProxy, 1 endpoint"
	rowCaddy   = "Caddy, 1 endpoint"
	// The rows of -sessions.
	rowPinnedMemory = "proxy, serial, pinned session, memory store"
	rowPinnedRedis  = "proxy, serial, pinned session, Redis store"
)

// The session of the -sessions rows: one id, pinned by its first request,
// so that every later one is a pinned request (a lookup that finds the pin).
const (
	sessionHeaderName    = "X-Session-ID"
	sessionRequestHeader = sessionHeaderName + ": bench"
)

// memoryRow is a row of the memory table: a proxy mode and how many upstream
// attempts each held request has once the mode has started them all.
type memoryRow struct {
	row
	attempts int
}

// overheadPlan is the rows of the overhead scenario's three tables.
type overheadPlan struct {
	closedLoop []row
	openLoop   []row
	memory     []memoryRow
}

// defaultOverheadPlan is the overhead scenario.
//
// The endpoints are the harness's in-process ones, with no delay. Measured
// against a separate process (dummy-http-server -body-size 1024, also Go's
// net/http) on the 2-core development machine, in alternate runs, they did as
// well: wrk 27,000-37,000 requests/s against 26,000-33,000, and an open-loop
// p50 at 2,000/s of 0.74-0.94 ms against 0.87-1.29 ms. While wrk runs the
// harness does nothing but serve, so it is a separate process already; in
// the open-loop rows the load generator shares it alike for every row, and
// the added p50 subtracts that. A separate process would only cost a build.
// Either way the endpoint is a Go server sharing the two cores with wrk and
// the server under test, so the direct row is what wrk gets out of such an
// endpoint here, not a ceiling of the proxy's.
//
// A baseline binary, if not empty, adds its serial and fan-out-to-3 rows
// after the proxy's own, so that an old build and a new one are measured in
// the same rounds. sessions adds rows of serial requests whose session is
// pinned, with the memory store and with Redis, to compare with the serial
// row (whose requests carry the same header, which it ignores).
func defaultOverheadPlan(baseline string, sessions bool) overheadPlan {
	direct := row{name: rowDirect, direct: 0}
	serial := row{name: rowSerial, direct: viaProxy, endpoints: 1}
	// The metrics' cost: the serial row again, with the admin listener on.
	serialAdmin := row{name: rowSerial + ", admin listener on", direct: viaProxy, endpoints: 1, proxyArgs: []string{"-admin-address", "127.0.0.1:0"}}
	nginx := row{name: rowNginx, direct: viaProxy, server: serverNginx, endpoints: 1}
	haproxy := row{name: rowHAProxy, direct: viaProxy, server: serverHAProxy, endpoints: 1}
	caddy := row{name: rowCaddy, direct: viaProxy, server: serverCaddy, endpoints: 1}
	fanOut := func(n int) row {
		return row{name: fmt.Sprintf("proxy, fan-out to %d", n), direct: viaProxy, endpoints: n, proxyArgs: []string{"-fanout"}}
	}
	fanOutH2C := func(n int) row {
		r := fanOut(n)
		r.name += ", HTTP/2 (h2c)"
		r.h2c = true
		return r
	}
	hedged := row{name: "proxy, hedged p95, 2 endpoints", direct: viaProxy, endpoints: 2, proxyArgs: []string{"--hedge-delay", "p95"}}
	closedLoop := []row{direct, serial, serialAdmin, fanOut(1), fanOut(2), fanOut(3), fanOutH2C(3), hedged, nginx, haproxy, caddy}
	openLoop := []row{direct, serial, nginx, haproxy, caddy}
	if sessions {
		serial.header = sessionRequestHeader
		closedLoop[1], openLoop[1] = serial, serial
		pinned := row{name: rowPinnedMemory, direct: viaProxy, endpoints: 1, header: sessionRequestHeader,
			proxyArgs: []string{"-session-header", sessionHeaderName}}
		pinnedRedis := pinned
		pinnedRedis.name, pinnedRedis.redis = rowPinnedRedis, true
		closedLoop = append(closedLoop, pinned, pinnedRedis)
		openLoop = append(openLoop, pinned, pinnedRedis)
	}
	if baseline != "" {
		for _, rw := range []row{serial, fanOut(3)} {
			rw.name = "baseline" + strings.TrimPrefix(rw.name, "proxy")
			rw.binary = baseline
			closedLoop = append(closedLoop, rw)
		}
	}
	return overheadPlan{
		closedLoop: closedLoop,
		openLoop:   openLoop,
		memory: []memoryRow{
			{row: row{name: "serial, 1 endpoint", direct: viaProxy, endpoints: 1}, attempts: 1},
			{row: row{name: "fan-out to 3", direct: viaProxy, endpoints: 3, proxyArgs: []string{"-fanout"}}, attempts: 3},
			{row: row{name: "hedged p95, 2 endpoints", direct: viaProxy, endpoints: 2, proxyArgs: []string{"--hedge-delay", "p95"}}, attempts: 2},
		},
	}
}

// needsRedis reports whether a row of the plan has a Redis session store.
func (p overheadPlan) needsRedis() bool {
	for _, rw := range slices.Concat(p.closedLoop, p.openLoop) {
		if rw.redis {
			return true
		}
	}
	return false
}

// estimate is roughly how long the plan takes with cfg: every run plus a
// second for its server's start and stop.
func (p overheadPlan) estimate(cfg config) time.Duration {
	perRun := cfg.overheadWarmup + cfg.overheadDuration + time.Second
	memoryRun := 2*memorySettle + 3*time.Second
	runs := time.Duration(cfg.overheadRuns)
	return runs * (time.Duration(len(p.closedLoop)+len(p.openLoop))*perRun + time.Duration(len(p.memory))*memoryRun)
}

// rowRuns is what the runs of one row came to. The first run that is
// unavailable or fails stops the row and says why.
type rowRuns struct {
	Name        string
	Unavailable string
	Failed      string
	// OtherCores has, for each run, the CPU that other processes on the
	// machine used meanwhile, in cores.
	OtherCores []float64
}

// done reports whether the row takes no more runs.
func (r *rowRuns) done() bool {
	return r.Unavailable != "" || r.Failed != ""
}

// closedLoopResult is a row of the closed-loop table.
type closedLoopResult struct {
	rowRuns
	Runs []wrkResult
}

// openLoopResult is a row of the open-loop table.
type openLoopResult struct {
	rowRuns
	Runs []result
}

// memoryRun is one memory run of a proxy mode.
type memoryRun struct {
	// IdleKB is the RSS after the start, HeldKB with the requests held, both
	// in kB; Reached counts the upstream attempts the endpoints had then.
	IdleKB, HeldKB int64
	Reached        int64
}

// memoryResult is a row of the memory table.
type memoryResult struct {
	rowRuns
	InFlight int
	Runs     []memoryRun
}

// overheadResults is what the overhead scenario measured.
type overheadResults struct {
	closedLoop []closedLoopResult
	openLoop   []openLoopResult
	memory     []memoryResult
}

// runOverhead runs plan's three tables, each in rounds, and prints them to
// stdout, also when a row failed or ctx ended. It returns the rows' errors
// joined, or ctx's.
func (rn *runner) runOverhead(ctx context.Context, plan overheadPlan, stdout io.Writer) error {
	started := time.Now()
	fmt.Fprintf(rn.progress, "bench: overhead: about %s\n", plan.estimate(rn.cfg).Round(time.Minute))
	eps := make([]*endpoint, overheadEndpoints)
	for i := range eps {
		eps[i] = newEndpoint(Model{})
		if err := eps[i].start(); err != nil {
			closeEndpoints(eps)
			return err
		}
	}
	defer closeEndpoints(eps)
	if plan.needsRedis() && rn.tools.redis != "" {
		url, stop, err := startRedis(ctx, rn.tools.redis)
		if err != nil {
			return err
		}
		defer stop()
		rn.redisURL = url
	}

	var res overheadResults
	for _, rw := range plan.closedLoop {
		res.closedLoop = append(res.closedLoop, closedLoopResult{rowRuns: rowRuns{Name: rw.name}})
	}
	for _, rw := range plan.openLoop {
		res.openLoop = append(res.openLoop, openLoopResult{rowRuns: rowRuns{Name: rw.name}})
	}
	for _, mr := range plan.memory {
		res.memory = append(res.memory, memoryResult{rowRuns: rowRuns{Name: mr.name}, InFlight: rn.cfg.overheadInFlight})
	}
	err := rn.overheadTables(ctx, plan, eps, &res)
	printOverhead(stdout, rn.cfg, describeTools(ctx, rn.tools), res)
	fmt.Fprintf(stdout, "\noverhead: took %s\n", time.Since(started).Round(time.Second))
	return err
}

// overheadTables fills res, table after table.
func (rn *runner) overheadTables(ctx context.Context, plan overheadPlan, eps []*endpoint, res *overheadResults) error {
	var errs []error
	statuses := make([]*rowRuns, len(res.closedLoop))
	for i := range res.closedLoop {
		statuses[i] = &res.closedLoop[i].rowRuns
	}
	err := rn.rounds(ctx, "closed loop", statuses, func(i int) error {
		run, err := rn.closedLoopRun(ctx, eps, plan.closedLoop[i])
		if err == nil {
			res.closedLoop[i].Runs = append(res.closedLoop[i].Runs, run)
		}
		return err
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	errs = append(errs, err)

	openLoop := *rn
	openLoop.cfg.rate = rn.cfg.overheadRate
	openLoop.cfg.warmup = rn.cfg.overheadWarmup
	openLoop.cfg.duration = rn.cfg.overheadDuration
	sc := scenario{name: overheadScenario, models: make([]Model, len(eps))}
	statuses = make([]*rowRuns, len(res.openLoop))
	for i := range res.openLoop {
		statuses[i] = &res.openLoop[i].rowRuns
	}
	err = rn.rounds(ctx, "open loop", statuses, func(i int) error {
		run, err := openLoop.runRow(ctx, sc, eps, plan.openLoop[i])
		switch {
		case run.Unavailable != "":
			return &UnavailableError{Line: run.Unavailable}
		case err != nil:
			return err
		}
		res.openLoop[i].Runs = append(res.openLoop[i].Runs, run)
		return nil
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	errs = append(errs, err)

	statuses = make([]*rowRuns, len(res.memory))
	for i := range res.memory {
		statuses[i] = &res.memory[i].rowRuns
	}
	err = rn.rounds(ctx, "memory", statuses, func(i int) error {
		run, err := rn.memoryRun(ctx, eps, plan.memory[i])
		if err == nil {
			res.memory[i].Runs = append(res.memory[i].Runs, run)
		}
		return err
	})
	errs = append(errs, err)
	return errors.Join(errs...)
}

// rounds runs every row once per round, cfg.overheadRuns rounds, so that a
// change in the machine's load over time touches every row alike. An
// *UnavailableError from run makes the row unavailable, another error fails
// it; either way the row takes no more runs, and the errors are returned
// joined. When ctx ends it returns ctx's error at once.
func (rn *runner) rounds(ctx context.Context, table string, rows []*rowRuns, run func(i int) error) error {
	var errs []error
	for round := 1; round <= rn.cfg.overheadRuns; round++ {
		for i, r := range rows {
			if r.done() {
				continue
			}
			fmt.Fprintf(rn.progress, "bench: overhead: %s, run %d of %d: %s\n", table, round, rn.cfg.overheadRuns, r.Name)
			window := startCPUWindow()
			err := run(i)
			if ctx.Err() != nil {
				r.Failed = "interrupted"
				return ctx.Err()
			}
			var unavailable *UnavailableError
			switch {
			case errors.As(err, &unavailable):
				r.Unavailable = unavailable.Line
			case err != nil:
				r.Failed = err.Error()
				errs = append(errs, fmt.Errorf("overhead / %s / %s: %w", table, r.Name, err))
			default:
				if cores, ok := window.otherCores(); ok {
					r.OtherCores = append(r.OtherCores, cores)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// setModels gives every endpoint model m.
func setModels(eps []*endpoint, m Model) {
	for _, e := range eps {
		e.setModel(m)
	}
}

// totalReceived counts the requests all the endpoints have received.
func totalReceived(eps []*endpoint) int64 {
	var n int64
	for _, e := range eps {
		n += e.received.Load()
	}
	return n
}

// startTarget starts what the row measures, if it is not an endpoint called
// directly, and returns its base URL.
func (rn *runner) startTarget(ctx context.Context, rw row, eps []*endpoint) (string, *proxyProcess, error) {
	if rw.direct != viaProxy {
		return eps[rw.direct].URL, nil, nil
	}
	server, err := rn.startServer(ctx, rw, eps)
	if err != nil {
		return "", nil, err
	}
	return server.URL(), server, nil
}

// stopTarget stops server, if any, and turns its exit before the stop into
// err's place when err is nil.
func stopTarget(server *proxyProcess, err error) error {
	if server == nil {
		return err
	}
	exitedEarly := server.hasExited()
	server.stop()
	if exitedEarly && err == nil {
		return fmt.Errorf("during the run: %w", server.exitError())
	}
	return err
}

// closedLoopRun runs wrk against the row's target for the warm-up, then for
// the measured run, of which it counts the upstream requests and the CPU time
// of the server under test.
func (rn *runner) closedLoopRun(ctx context.Context, eps []*endpoint, rw row) (wrkResult, error) {
	setModels(eps, Model{})
	url, server, err := rn.startTarget(ctx, rw, eps)
	if err != nil {
		return wrkResult{}, err
	}
	var res wrkResult
	if rn.cfg.overheadWarmup > 0 {
		_, err = runWrk(ctx, rn.tools.wrk, rn.tools.wrkScript, url+"/bench", rn.cfg.overheadWarmup, rw.header)
		if err != nil {
			err = fmt.Errorf("warm-up: %w", err)
		}
	}
	if err == nil {
		res, err = rn.measuredWrk(ctx, eps, url, rw.header, cpuTargetOf(server))
	}
	return res, stopTarget(server, err)
}

// measuredWrk runs wrk for the measured run against url, with header if not
// empty, and adds to its result the upstream requests of the run and the CPU
// time target used meanwhile. The CPU time is left out where there is no
// /proc, or when the server ended during the run, which stopTarget reports.
func (rn *runner) measuredWrk(ctx context.Context, eps []*endpoint, url, header string, target cpuTarget) (wrkResult, error) {
	measure := haveProc()
	var cpuBefore cpuSample
	if measure {
		var err error
		if cpuBefore, err = target.sample(); err != nil {
			return wrkResult{}, fmt.Errorf("server CPU before the run: %w", err)
		}
	}
	before := totalReceived(eps)
	res, err := runWrk(ctx, rn.tools.wrk, rn.tools.wrkScript, url+"/bench", rn.cfg.overheadDuration, header)
	res.Upstream = totalReceived(eps) - before
	if err != nil || !measure {
		return res, err
	}
	cpuAfter, err := target.sample()
	switch {
	case errors.Is(err, errProcessGone):
		return res, nil
	case err != nil:
		return res, fmt.Errorf("server CPU after the run: %w", err)
	}
	res.ServerCPU, res.HasServerCPU = cpuBetween(cpuBefore, cpuAfter), true
	return res, nil
}

// cpuTarget is the processes whose CPU time a closed-loop run charges to the
// server under test.
type cpuTarget struct {
	// pid is the server's process, or the harness's own for an endpoint
	// called directly.
	pid int
	// tree adds every process descended from pid, such as nginx's workers.
	tree bool
}

// cpuTargetOf returns the target of a run against server: it and its
// descendants; or, when server is nil (an endpoint called directly), the
// harness process alone, which serves the endpoint, leaving out its children
// (wrk).
func cpuTargetOf(server *proxyProcess) cpuTarget {
	if server == nil {
		return cpuTarget{pid: os.Getpid()}
	}
	return cpuTarget{pid: server.cmd.Process.Pid, tree: true}
}

// sample reads the target's CPU time from /proc.
func (c cpuTarget) sample() (cpuSample, error) {
	return sampleCPU(procRoot, c.pid, c.tree)
}

// haveProc reports whether the RSS can be read here: /proc is Linux's.
func haveProc() bool {
	_, err := os.Stat("/proc/self/status")
	return err == nil
}

// memoryRun starts the row's proxy, reads its RSS once it is idle, then holds
// cfg.overheadInFlight requests at the endpoints (which answer after
// memoryHold) until all their attempts have reached the endpoints, reads the
// RSS again and cancels the requests.
func (rn *runner) memoryRun(ctx context.Context, eps []*endpoint, mr memoryRow) (memoryRun, error) {
	if !haveProc() {
		return memoryRun{}, &UnavailableError{Line: "no /proc here: the RSS is read from /proc/PID/status"}
	}
	// The endpoints answer at once until the proxy is ready: its readiness
	// check is a request.
	setModels(eps, Model{})
	url, server, err := rn.startTarget(ctx, mr.row, eps)
	if err != nil {
		return memoryRun{}, err
	}
	if server == nil {
		return memoryRun{}, errors.New("a memory row needs a server in front of the endpoints")
	}
	var run memoryRun
	pid := server.cmd.Process.Pid
	err = sleepCtx(ctx, memorySettle)
	if err == nil {
		run.IdleKB, err = readRSS(pid)
	}
	if err == nil {
		run.Reached, run.HeldKB, err = rn.holdRequests(ctx, eps, url, pid, int64(mr.attempts))
	}
	setModels(eps, Model{})
	return run, stopTarget(server, err)
}

// holdRequests sends cfg.overheadInFlight requests at once to url, waits until
// the endpoints have received attempts of each, reads the RSS of pid, and
// cancels the requests. It returns the attempts received and the RSS.
func (rn *runner) holdRequests(ctx context.Context, eps []*endpoint, url string, pid int, attempts int64) (int64, int64, error) {
	before := totalReceived(eps)
	setModels(eps, Model{Base: memoryHold})
	holdCtx, cancel := context.WithTimeout(ctx, memoryRequestTimeout)
	client := newClient()
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		client.CloseIdleConnections()
	}()
	for range rn.cfg.overheadInFlight {
		wg.Go(func() { _, _ = get(holdCtx, client, url+"/bench", phaseWarmup, nil) })
	}
	want := int64(rn.cfg.overheadInFlight) * attempts
	reached := func() int64 { return totalReceived(eps) - before }
	if err := waitFor(ctx, func() bool { return reached() >= want }, memoryReachTimeout); err != nil {
		return reached(), 0, fmt.Errorf("%d of %d upstream attempts reached the endpoints: %w", reached(), want, err)
	}
	if err := sleepCtx(ctx, memorySettle); err != nil {
		return reached(), 0, err
	}
	held, err := readRSS(pid)
	return reached(), held, err
}

// waitFor polls cond every 10ms until it holds, ctx ends or timeout passes.
func waitFor(ctx context.Context, cond func() bool, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("not within %s", timeout)
		case <-tick.C:
		}
	}
	return nil
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

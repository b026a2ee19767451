// Command soak runs the proxy for minutes under mixed, misbehaving traffic in
// front of endpoints that inject faults, and fails when the proxy's
// goroutines, open files or memory keep growing. With -idle-conns N it
// measures instead what an idle keep-alive client connection costs the proxy.
//
//	go run ./scripts/soak                     # serial, fan-out and hedged p95, 3m of load in all
//	go run ./scripts/soak -duration 20s       # a quick check of the harness itself
//	go run ./scripts/soak -idle-conns 10000   # memory per idle client connection
//
// Per mode it builds nothing new but starts three dummy endpoints (each
// injecting every fault at -fault-rate, 2% 503s and a 2% tail of 300ms) and
// the proxy with -debug-address, all on 127.0.0.1, sends a warm-up, takes a
// sample at rest, sends the load while sampling, and takes a sample at rest
// again. Goroutines and open files at rest, net of the connections the proxy
// holds, must be back within a tolerance of the first rest sample; RSS must
// not rise between the two halves of the load beyond a tolerance.
//
// Exit status: 0 when nothing grew, 1 on a harness error (a build, a process
// that would not start, an interrupt), 2 on a bad command line, 3 when a
// figure grew beyond its tolerance, an answer was corrupt or the proxy died
// (with -idle-conns: when a connection costs more than 50 kB).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Exit statuses.
const (
	exitOK      = 0
	exitHarness = 1
	exitUsage   = 2
	exitGrew    = 3
)

// Bounds and defaults of the command line.
const (
	maxDuration  = 6 * time.Hour
	maxWarmup    = 15 * time.Second
	minInterval  = 500 * time.Millisecond
	maxInterval  = 10 * time.Second
	samplesAim   = 12 // load samples per mode when -interval is automatic
	maxFaultRate = 0.125
	maxIdleConns = 100_000
)

// modeArgs are the proxy's flags per mode; modeNames their order.
var (
	modeArgs = map[string][]string{
		"serial":  nil,
		"fan-out": {"-fanout"},
		"hedged":  {"-hedge-delay", "p95"},
	}
	modeNames = []string{"serial", "fan-out", "hedged"}
)

// proxyArgs are the proxy's flags in every mode: short time-outs, so that
// hanging endpoints and slow clients are cut within a soak's seconds.
var proxyArgs = []string{"-try-timeout", "2s", "-timeout", "10s", "-read-header-timeout", "2s"}

// dummyArgs are the dummy endpoints' flags but -address, -name and the fault
// rate: fast answers with a long tail, a few 503s, and every fault.
func dummyArgs(faultRate float64) []string {
	return []string{
		"-delay-responding=false", "-delay", "2ms", "-tail-rate", "0.02", "-tail-delay", "300ms",
		"-random-errors", "-error-rate", "0.02", "-error-status", "503",
		"-faults", "all", "-fault-rate", fmt.Sprint(faultRate), "-fault-stall", "3s",
	}
}

// config is the command line.
type config struct {
	duration    time.Duration
	modes       []string
	rate        float64
	maxInFlight int
	interval    time.Duration // 0: automatic
	warmup      time.Duration // 0: automatic
	faultRate   float64
	idleConns   int
}

// schedule is how one mode spends its share of -duration.
type schedule struct {
	warmup, load, interval time.Duration
}

// schedule splits -duration between the modes, and each mode's share between
// its warm-up (a quarter, at most maxWarmup, unless -warmup) and its load,
// sampled every -interval (automatic: samplesAim samples).
func (c config) schedule() schedule {
	// Whole milliseconds keep the figures readable.
	share := (c.duration / time.Duration(len(c.modes))).Round(time.Millisecond)
	s := schedule{warmup: c.warmup, interval: c.interval}
	if s.warmup == 0 {
		s.warmup = min(share/4, maxWarmup).Round(time.Millisecond)
	}
	s.load = share - s.warmup
	if s.interval == 0 {
		s.interval = min(max(s.load/samplesAim, minInterval), maxInterval).Round(time.Millisecond)
	}
	return s
}

// parseFlags reads args (without the program name). Errors are one line
// naming the bad value and what is accepted.
func parseFlags(args []string, usage io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.DurationVar(&cfg.duration, "duration", 3*time.Minute, "time of the whole soak, every mode's warm-up and load together")
	modeList := fs.String("modes", strings.Join(modeNames, ","), "proxy modes to soak, comma-separated, one after another: "+strings.Join(modeNames, ", "))
	fs.Float64Var(&cfg.rate, "rate", 50, "client requests per second")
	fs.IntVar(&cfg.maxInFlight, "max-in-flight", 64, "most client requests outstanding at once; one due beyond that is dropped and counted")
	fs.DurationVar(&cfg.interval, "interval", 0, "time between samples under load (default: the load time over 12, from 500ms to 10s)")
	fs.DurationVar(&cfg.warmup, "warmup", 0, "warm-up of each mode before its first sample (default: a quarter of its time, at most 15s)")
	fs.Float64Var(&cfg.faultRate, "fault-rate", 0.01, "share of each endpoint's answers that get each fault of the dummy server")
	fs.IntVar(&cfg.idleConns, "idle-conns", 0, "instead of the soak, measure the proxy's memory per idle keep-alive client connection with this many")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q: only flags are accepted", fs.Arg(0))
	}
	cfg.modes = nil
	for name := range strings.SplitSeq(*modeList, ",") {
		name = strings.TrimSpace(name)
		if _, ok := modeArgs[name]; !ok || slices.Contains(cfg.modes, name) {
			return cfg, fmt.Errorf("-modes %q: %q is unknown or repeated; accepted: a list of %s, each once",
				*modeList, name, strings.Join(modeNames, ", "))
		}
		cfg.modes = append(cfg.modes, name)
	}
	switch {
	case cfg.duration <= 0 || cfg.duration > maxDuration:
		return cfg, fmt.Errorf("-duration %s: accepted: above 0, at most %s", cfg.duration, maxDuration)
	case !(cfg.rate > 0 && cfg.rate <= 2000):
		return cfg, fmt.Errorf("-rate %g: accepted: above 0, at most 2000", cfg.rate)
	case cfg.maxInFlight < 1 || cfg.maxInFlight > 10_000:
		return cfg, fmt.Errorf("-max-in-flight %d: accepted: 1 to 10000", cfg.maxInFlight)
	case cfg.interval < 0:
		return cfg, fmt.Errorf("-interval %s: accepted: 0 (automatic) or more", cfg.interval)
	case cfg.warmup < 0:
		return cfg, fmt.Errorf("-warmup %s: accepted: 0 (automatic) or more", cfg.warmup)
	case !(cfg.faultRate >= 0 && cfg.faultRate <= maxFaultRate):
		return cfg, fmt.Errorf("-fault-rate %g: accepted: 0 to %g (8 faults share each answer)", cfg.faultRate, maxFaultRate)
	case cfg.idleConns < 0 || cfg.idleConns > maxIdleConns:
		return cfg, fmt.Errorf("-idle-conns %d: accepted: 0 (soak) to %d", cfg.idleConns, maxIdleConns)
	}
	if cfg.idleConns > 0 {
		return cfg, nil
	}
	s := cfg.schedule()
	if s.load < minLoadSamples*s.interval {
		return cfg, fmt.Errorf("-duration %s over %d modes leaves %s of load per mode after a %s warm-up, fewer than %d samples %s apart; "+
			"accepted: a longer -duration, or a shorter -warmup or -interval", cfg.duration, len(cfg.modes), s.load, s.warmup, minLoadSamples, s.interval)
	}
	return cfg, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, a second one gets its default effect.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the soak (or the idle-connection measurement) with args and
// returns the exit status. Tables go to stdout, progress to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return exitUsage
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		fmt.Fprintf(stderr, "soak: the samples come from /proc, which is missing here: %v\n", err)
		return exitHarness
	}
	dir, err := os.MkdirTemp("", "soak-")
	if err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return exitHarness
	}
	defer os.RemoveAll(dir)
	started := time.Now()
	proxyPath, dummyPath, err := buildBinaries(ctx, dir)
	if err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return exitHarness
	}
	fmt.Fprintf(stderr, "soak: built the proxy and the dummy server in %s\n", time.Since(started).Round(time.Millisecond))
	if cfg.idleConns > 0 {
		return runIdleConns(ctx, cfg.idleConns, proxyPath, dummyPath, stdout, stderr)
	}

	s := cfg.schedule()
	fmt.Fprintf(stdout, "soak: modes %s; per mode %s warm-up then %s of load, sampled every %s\n",
		strings.Join(cfg.modes, ", "), s.warmup, s.load, s.interval)
	fmt.Fprintf(stdout, "clients: %g requests/s, at most %d in flight, mix %s\n", cfg.rate, cfg.maxInFlight, mixDescription())
	fmt.Fprintf(stdout, "endpoints: 3 dummy servers %s\n", strings.Join(dummyArgs(cfg.faultRate), " "))
	fmt.Fprintf(stdout, "proxy: %s, plus the mode's flags\n", strings.Join(proxyArgs, " "))
	var results []modeResult
	for _, mode := range cfg.modes {
		fmt.Fprintf(stderr, "soak: %s: starting\n", mode)
		result, err := runMode(ctx, cfg, s, mode, proxyPath, dummyPath, stdout, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "soak: %s: %v\n", mode, err)
			return exitHarness
		}
		results = append(results, result)
	}
	if printSummary(stdout, results, s.load) {
		fmt.Fprintln(stderr, "soak: FAIL: see the lines marked FAIL above")
		return exitGrew
	}
	return exitOK
}

// mixDescription lists the client kinds and their weights.
func mixDescription() string {
	parts := make([]string, len(clientKinds))
	for i, k := range clientKinds {
		parts[i] = fmt.Sprintf("%s %d%%", k.name, k.weight)
	}
	return strings.Join(parts, ", ")
}

// Settling: after the load, the proxy is at rest once it holds no client
// connection and its net goroutines and files held still for a settleGap.
const (
	settleGap     = 500 * time.Millisecond
	settleTimeout = 20 * time.Second
)

// settle takes rest samples until the proxy is at rest or settleTimeout
// passes, and returns the last; the checks then judge a proxy that never
// came to rest.
func settle(ctx context.Context, smp *sampler, at func() time.Duration) (sample, error) {
	deadline := time.Now().Add(settleTimeout)
	var previous sample
	for first := true; ; first = false {
		s, err := smp.take(ctx, at(), phaseRest)
		if err != nil {
			return s, err
		}
		still := !first && s.NetGoroutines() == previous.NetGoroutines() && s.NetFDs() == previous.NetFDs()
		if (still && s.ClientConns == 0) || time.Now().After(deadline) {
			heap, _, err := smp.liveMemory(ctx)
			s.HeapKB = heap >> 10
			return s, err
		}
		previous = s
		if !sleep(ctx, settleGap) {
			return s, ctx.Err()
		}
	}
}

// runMode soaks one mode: endpoints and proxy, warm-up, rest sample, load
// with samples, rest sample. Its error is a harness error; what the proxy
// did wrong is in the result.
func runMode(ctx context.Context, cfg config, s schedule, mode, proxyPath, dummyPath string, stdout, stderr io.Writer) (modeResult, error) {
	result := modeResult{name: mode, traffic: newTrafficStats()}
	start := time.Now()
	at := func() time.Duration { return time.Since(start) }

	var endpointURLs []string
	var endpointPorts []int
	for i := range 3 {
		dummy, port, err := startDummy(ctx, dummyPath, fmt.Sprintf("soak-%d", i), dummyArgs(cfg.faultRate))
		if err != nil {
			return result, err
		}
		defer func() {
			if err := dummy.stop(); err != nil {
				fmt.Fprintf(stderr, "soak: %s: %v\n", mode, err)
			}
		}()
		endpointURLs = append(endpointURLs, "http://"+localAddr(port))
		endpointPorts = append(endpointPorts, port)
	}
	proxy, err := startProxy(ctx, proxyPath, endpointURLs, append(slices.Clone(proxyArgs), modeArgs[mode]...))
	if err != nil {
		return result, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = proxy.stop()
		}
	}()
	smp := newSampler(proxy.pid(), proxy.port, endpointPorts, proxy.debugURL())
	clients := newTraffic(localAddr(proxy.port), cfg.maxInFlight, defaultTiming)
	defer clients.closeIdle()

	fmt.Fprintf(stderr, "soak: %s: warm-up of %s\n", mode, s.warmup)
	clients.run(ctx, cfg.rate, cfg.maxInFlight, s.warmup, newTrafficStats())
	clients.closeIdle()
	if result.restBefore, err = settle(ctx, smp, at); err != nil {
		return result, proxyFailure(proxy, err)
	}

	fmt.Fprintf(stderr, "soak: %s: load of %s\n", mode, s.load)
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		clients.run(ctx, cfg.rate, cfg.maxInFlight, s.load, result.traffic)
	}()
	ticker := time.NewTicker(s.interval)
	defer ticker.Stop()
	var sampleErr error
sampling:
	for {
		select {
		case <-loadDone:
			break sampling
		case <-ticker.C:
			if sampleErr != nil {
				continue
			}
			got, err := smp.take(ctx, at(), phaseLoad)
			if err != nil {
				sampleErr = err
				continue
			}
			result.load = append(result.load, got)
		}
	}
	if ctx.Err() != nil {
		return result, ctx.Err()
	}
	if sampleErr != nil {
		return result, proxyFailure(proxy, sampleErr)
	}
	clients.closeIdle()
	if result.restAfter, err = settle(ctx, smp, at); err != nil {
		return result, proxyFailure(proxy, err)
	}
	if result.restAfter.NetGoroutines()-result.restBefore.NetGoroutines() > goroutineSlack {
		result.notes = append(result.notes, goroutineExcerpt(ctx, smp, mode))
	}

	stopped = true
	if err := proxy.stop(); err != nil {
		result.notes = append(result.notes, err.Error())
	}
	printSamples(stdout, mode, slices.Concat([]sample{result.restBefore}, result.load, []sample{result.restAfter}))
	printTraffic(stdout, mode, result.traffic)
	return result, nil
}

// proxyFailure turns a failed sample into a harness error, saying so when
// the proxy died.
func proxyFailure(proxy *proxyProcess, err error) error {
	if proxy.hasExited() {
		return fmt.Errorf("the proxy died: %w (sampling: %v)", proxy.exitError(), err)
	}
	return fmt.Errorf("sampling the proxy: %w", err)
}

// goroutineExcerpt fetches the proxy's goroutine profile, keeps it in a file
// and returns a note with its most common stacks.
func goroutineExcerpt(ctx context.Context, smp *sampler, mode string) string {
	profile, err := smp.debug(ctx, "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return fmt.Sprintf("goroutines grew; the profile could not be fetched: %v", err)
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("soak-goroutines-%s-%d.txt", mode, time.Now().Unix()))
	if err := os.WriteFile(path, profile, 0o644); err != nil {
		path = "(not kept: " + err.Error() + ")"
	}
	return fmt.Sprintf("goroutines grew; full profile in %s; the largest groups:\n%s", path, profileExcerpt(string(profile), 5))
}

// profileExcerpt returns the first line of a goroutine profile of debug=1 and
// its first groups blocks (the largest: the profile sorts them by count),
// each cut to its first 12 lines.
func profileExcerpt(profile string, groups int) string {
	blocks := strings.Split(strings.TrimSpace(profile), "\n\n")
	var out []string
	for i, block := range blocks {
		if i >= groups {
			break
		}
		lines := strings.Split(block, "\n")
		if len(lines) > 12 {
			lines = append(lines[:12], "#\t...")
		}
		out = append(out, strings.Join(lines, "\n"))
	}
	return strings.Join(out, "\n\n")
}

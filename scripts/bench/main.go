// Command bench is an open-loop benchmark of how much the proxy cuts tail
// latency, and at what cost in upstream load. It starts in-process endpoints
// with a latency model, builds the proxy once, runs it as a real process per
// row, and sends a constant request rate through it (or to an endpoint
// directly), measuring each latency from the request's intended send time.
//
// The overhead scenario (not part of "all") measures instead what the proxy
// itself costs against the endpoint called directly, nginx, HAProxy and
// Caddy: closed-loop throughput with wrk and the server's CPU time per
// request, the latency added at a moderate open-loop rate, and the proxy's
// memory per request in flight. It needs wrk; nginx, HAProxy and Caddy rows
// are marked unavailable where those are not installed.
//
//	go run ./scripts/bench                       # every tail scenario, 200/s, 3s warm-up + 20s per row
//	go run ./scripts/bench -scenario tail -duration 10s
//	go run ./scripts/bench -duration 2s -warmup 500ms -rate 100   # a quick smoke run
//	go run ./scripts/bench -scenario overhead    # about 9 minutes
//	go run ./scripts/bench -scenario overhead -overhead-runs 1 -overhead-duration 3s   # about 1 minute
//
// Exit status: 0 when every row ran (targets missed or not), 1 on a harness
// error (the build, a proxy that crashed or could not start, wrk missing for
// the overhead scenario, an interrupt),
// 2 on a bad command line, 3 with -strict when a target was missed or could not
// be checked.
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
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Exit statuses.
const (
	exitOK           = 0
	exitHarnessError = 1
	exitUsage        = 2
	exitTargetMissed = 3
)

// config is the command line.
type config struct {
	rate      float64
	duration  time.Duration
	warmup    time.Duration
	scenarios []string
	proxyPath string
	// baselinePath is a proxy binary the overhead scenario also measures.
	baselinePath string
	// sessions adds the overhead scenario's pinned-session rows.
	sessions    bool
	strict      bool
	timeout     time.Duration
	maxInFlight int

	// overhead selects the overhead scenario, whose knobs follow.
	overhead         bool
	overheadRuns     int
	overheadDuration time.Duration
	overheadRate     float64
	// overheadWarmup and overheadInFlight have no flag; tests make them small.
	overheadWarmup   time.Duration
	overheadInFlight int
}

// maxRequestsPerRow bounds a row's request count, whatever the flags.
const maxRequestsPerRow = 10_000_000

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, a second one gets its default effect.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// parseFlags reads args (without the program name).
func parseFlags(args []string, stderr io.Writer) (config, error) {
	cfg := config{overheadWarmup: defaultOverheadWarmup, overheadInFlight: defaultOverheadInFlight}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Float64Var(&cfg.rate, "rate", 200, "requests per second, sent open-loop at a constant rate")
	fs.DurationVar(&cfg.duration, "duration", 20*time.Second, "measured time of each row")
	fs.DurationVar(&cfg.warmup, "warmup", 3*time.Second, "time of each row sent before the measured phase and not recorded")
	scenarioList := fs.String("scenario", "all", "scenarios to run, comma-separated: all (the tail scenarios: "+strings.Join(scenarioNames, ", ")+
		"), any of those, or "+overheadScenario+" (not part of all: it needs wrk and takes about 9 minutes)")
	fs.StringVar(&cfg.proxyPath, "proxy", "", "prebuilt proxy binary (default: build it from the module root with go build)")
	fs.StringVar(&cfg.baselinePath, "baseline", "", "overhead: another proxy binary (an older build) whose serial and fan-out rows run in the same rounds")
	fs.BoolVar(&cfg.sessions, "sessions", false, "overhead: also measure serial requests of a pinned session, with the memory store and with Redis (needs redis-server)")
	fs.BoolVar(&cfg.strict, "strict", false, "exit with status 3 when a target is missed or cannot be checked")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "time-out of each request from its send, counted as an error")
	fs.IntVar(&cfg.maxInFlight, "max-in-flight", 2000, "most requests outstanding at once; a request due beyond that is dropped")
	fs.IntVar(&cfg.overheadRuns, "overhead-runs", defaultOverheadRuns, "overhead: runs of each figure, whose median is reported")
	fs.DurationVar(&cfg.overheadDuration, "overhead-duration", defaultOverheadDuration, "overhead: measured time of each run (whole seconds, for wrk)")
	fs.Float64Var(&cfg.overheadRate, "overhead-rate", defaultOverheadRate, "overhead: requests per second of the open-loop runs")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case !(cfg.rate > 0 && cfg.rate <= 100_000):
		return cfg, fmt.Errorf("-rate %g: accepted: above 0, at most 100000", cfg.rate)
	case cfg.duration <= 0 || cfg.duration > time.Hour:
		return cfg, fmt.Errorf("-duration %s: accepted: above 0, at most 1h", cfg.duration)
	case cfg.warmup < 0 || cfg.warmup > time.Hour:
		return cfg, fmt.Errorf("-warmup %s: accepted: 0 to 1h", cfg.warmup)
	case cfg.timeout <= 0 || cfg.timeout > time.Minute:
		return cfg, fmt.Errorf("-timeout %s: accepted: above 0, at most 1m", cfg.timeout)
	case cfg.maxInFlight < 1 || cfg.maxInFlight > 100_000:
		return cfg, fmt.Errorf("-max-in-flight %d: accepted: 1 to 100000", cfg.maxInFlight)
	case cfg.overheadRuns < 1 || cfg.overheadRuns > 20:
		return cfg, fmt.Errorf("-overhead-runs %d: accepted: 1 to 20", cfg.overheadRuns)
	case cfg.overheadDuration < time.Second || cfg.overheadDuration > 10*time.Minute || cfg.overheadDuration%time.Second != 0:
		return cfg, fmt.Errorf("-overhead-duration %s: accepted: whole seconds, 1s to 10m", cfg.overheadDuration)
	case !(cfg.overheadRate > 0 && cfg.overheadRate <= 100_000):
		return cfg, fmt.Errorf("-overhead-rate %g: accepted: above 0, at most 100000", cfg.overheadRate)
	}
	if warm, measured := phaseCounts(cfg.rate, cfg.warmup, cfg.duration); warm+measured > maxRequestsPerRow {
		return cfg, fmt.Errorf("-rate x (-warmup + -duration) is %d requests per row; accepted: at most %d", warm+measured, maxRequestsPerRow)
	}
	if warm, measured := phaseCounts(cfg.overheadRate, cfg.overheadWarmup, cfg.overheadDuration); warm+measured > maxRequestsPerRow {
		return cfg, fmt.Errorf("-overhead-rate x -overhead-duration is %d requests per run; accepted: at most %d", warm+measured, maxRequestsPerRow)
	}
	for name := range strings.SplitSeq(*scenarioList, ",") {
		name = strings.TrimSpace(name)
		switch {
		case name == "all":
			cfg.scenarios = append(cfg.scenarios, scenarioNames...)
		case slices.Contains(scenarioNames, name):
			cfg.scenarios = append(cfg.scenarios, name)
		case name == overheadScenario:
			cfg.overhead = true
		default:
			return cfg, fmt.Errorf("-scenario %q: accepted: all, %s, %s", name, strings.Join(scenarioNames, ", "), overheadScenario)
		}
	}
	cfg.scenarios = uniqueInOrder(cfg.scenarios)
	if cfg.baselinePath != "" && !cfg.overhead {
		return cfg, fmt.Errorf("-baseline %q: accepted only with -scenario %s", cfg.baselinePath, overheadScenario)
	}
	if cfg.sessions && !cfg.overhead {
		return cfg, fmt.Errorf("-sessions: accepted only with -scenario %s", overheadScenario)
	}
	return cfg, nil
}

// uniqueInOrder returns names without repeats, in the order of scenarioNames.
func uniqueInOrder(names []string) []string {
	var out []string
	for _, n := range scenarioNames {
		if slices.Contains(names, n) {
			out = append(out, n)
		}
	}
	return out
}

// run runs the benchmark with args (program name first) and returns the exit
// status. Tables and targets go to stdout, progress and errors to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args[1:], stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return exitUsage
	}

	var tl tools
	if cfg.overhead {
		tl = tools{wrk: lookTool("wrk", false), nginx: lookTool("nginx", true), haproxy: lookTool("haproxy", true), caddy: lookTool("caddy", true)}
		if cfg.sessions {
			tl.redis = lookTool("redis-server", true)
		}
		if tl.wrk == "" {
			fmt.Fprintln(stderr, "bench: -scenario overhead needs wrk, which is not on PATH: apt-get install wrk")
			return exitHarnessError
		}
		dir, err := os.MkdirTemp("", "bench-overhead-")
		if err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return exitHarnessError
		}
		defer os.RemoveAll(dir)
		tl.dir = dir
		if tl.wrkScript, err = writeWrkScript(dir); err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return exitHarnessError
		}
	}

	fmt.Fprintf(stdout, "machine: %d CPUs (GOMAXPROCS %d), %s/%s, %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version())
	// Under go run the program's path is a throw-away build directory, so the
	// line shows its name and the arguments exactly as given.
	fmt.Fprintf(stdout, "command: %s\n", shellQuote(append([]string{filepath.Base(args[0])}, args[1:]...)))
	if len(cfg.scenarios) > 0 {
		fmt.Fprintf(stdout, "load: %g requests/s open-loop, %s warm-up (not recorded) + %s measured per row, %s time-out, at most %d in flight\n",
			cfg.rate, cfg.warmup, cfg.duration, cfg.timeout, cfg.maxInFlight)
		fmt.Fprintln(stdout, "latency: ms from each request's intended send time to the end of its body, every sent request (errors too);")
		fmt.Fprintln(stdout, "extra load: upstream requests of the measured phase / client requests - 1; cpu: % of one core over the row")
	}

	proxyPath := cfg.proxyPath
	if proxyPath == "" {
		dir, err := os.MkdirTemp("", "bench-proxy-")
		if err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return exitHarnessError
		}
		defer os.RemoveAll(dir)
		started := time.Now()
		proxyPath, err = buildProxy(ctx, dir)
		if err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return exitHarnessError
		}
		fmt.Fprintf(stderr, "bench: built the proxy in %s\n", time.Since(started).Round(time.Millisecond))
	} else if _, err := os.Stat(proxyPath); err != nil {
		fmt.Fprintf(stderr, "bench: -proxy: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stdout, "proxy: %s\n", proxyPath)
	if cfg.baselinePath != "" {
		if _, err := os.Stat(cfg.baselinePath); err != nil {
			fmt.Fprintf(stderr, "bench: -baseline: %v\n", err)
			return exitUsage
		}
		fmt.Fprintf(stdout, "baseline: %s\n", cfg.baselinePath)
	}

	rn := &runner{cfg: cfg, proxyPath: proxyPath, tools: tl, progress: stderr}
	all := scenarios()
	results := make(map[string][]result)
	var harnessErrs []error
	for _, name := range cfg.scenarios {
		sc := all[name]
		rows, err := rn.runScenario(ctx, sc)
		printTable(stdout, sc.name+": "+sc.about, rows)
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "bench: interrupted: %v\n", ctx.Err())
			return exitHarnessError
		}
		results[name] = rows
		if err != nil {
			harnessErrs = append(harnessErrs, err)
		}
	}
	if cfg.overhead {
		err := rn.runOverhead(ctx, defaultOverheadPlan(cfg.baselinePath, cfg.sessions), stdout)
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "bench: interrupted: %v\n", ctx.Err())
			return exitHarnessError
		}
		if err != nil {
			harnessErrs = append(harnessErrs, err)
		}
	}
	missed := printTargets(stdout, evaluateTargets(results))
	if err := errors.Join(harnessErrs...); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return exitHarnessError
	}
	if cfg.strict && missed > 0 {
		fmt.Fprintf(stderr, "bench: -strict: %d targets missed or not checked\n", missed)
		return exitTargetMissed
	}
	return exitOK
}

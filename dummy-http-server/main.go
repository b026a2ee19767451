// Command dummy-http-server is a test backend for the balancing reverse
// proxy. It answers every request with a short "Hello from NAME" text (or a
// filler body of a chosen size) after a configurable fixed, random and
// long-tail delay, and with a configurable share of error statuses. The
// query parameters ?status= and ?delay= override the flags per request, for
// manual testing with curl through the proxy.
//
// Usage:
//
//	dummy-http-server -address 127.0.0.1:8001 -max-delay 50ms -random-errors=false -stop-after 5s
//	curl -i 'http://127.0.0.1:8001/some/path?status=404&delay=2s'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// maxRequestBody caps the request body the server reads to echo back.
	maxRequestBody = 64 << 20

	// fillerLine is the pattern repeated in -body-size bodies. It is 64 bytes,
	// so the filler buffer holds whole lines and every chunk continues the
	// pattern where the previous one stopped.
	fillerLine = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\n"

	// fillerBufferSize is the size of the one buffer every -body-size body
	// is written from, in chunks, so large bodies cost no memory.
	fillerBufferSize = 32 << 10

	// shutdownGrace is how long in-flight requests may keep running once the
	// server stops. After it, their contexts are cancelled and their
	// connections closed.
	shutdownGrace = 5 * time.Second

	// minStatus and maxStatus bound -status, -error-status and ?status=.
	// 1xx codes are informational, never a final response, so they are out.
	minStatus = 200
	maxStatus = 599
)

// config holds the validated command-line flags.
type config struct {
	address         string        // listen address, host:port
	stopAfter       time.Duration // if zero, run until SIGINT or SIGTERM
	delayResponding bool          // add a random delay in [0, maxDelay)
	maxDelay        time.Duration // if zero, the random delay is always zero
	randomErrors    bool          // answer a share errorRate with errorStatus
	errorRate       float64       // in [0, 1]
	errorStatus     int           // in [minStatus, maxStatus]
	status          int           // in [minStatus, maxStatus]
	delay           time.Duration // fixed delay added to every response
	tailDelay       time.Duration // extra delay for a share tailRate
	tailRate        float64       // in [0, 1]
	bodySize        int64         // if positive, the body is that many filler bytes
	name            string        // X-Dummy-Name header and hello text
	faults          []fault       // the faults -fault-rate draws from; no repeats
	faultRate       float64       // share of responses per fault in faults, in [0, 1]
	faultStall      time.Duration // how long stall-after-headers waits before the body
}

// fault is a way of answering wrongly that a request can get instead of its
// answer: drawn per request from -faults at -fault-rate each, or asked for
// with ?fault=.
type fault string

// The faults, named as -faults and ?fault= spell them.
const (
	faultNone              fault = ""
	faultReset             fault = "reset"               // the connection reset before any answer
	faultHang              fault = "hang"                // no answer until the client goes away
	faultJunk              fault = "junk"                // bytes that are not a status line, then close
	faultBadStatus         fault = "bad-status"          // an invalid status line, then close
	faultEarlyHintsClose   fault = "early-hints-close"   // only "103 Early Hints", then close
	faultDupLength         fault = "dup-length"          // two different Content-Length headers
	faultMidBodyClose      fault = "mid-body-close"      // half the promised body, then close
	faultStallAfterHeaders fault = "stall-after-headers" // headers, -fault-stall, then the body
)

// allFaults lists every fault, in the order "-faults all" draws them. It is
// never written to.
var allFaults = []fault{
	faultReset, faultHang, faultJunk, faultBadStatus, faultEarlyHintsClose,
	faultDupLength, faultMidBodyClose, faultStallAfterHeaders,
}

// faultNames is the list of fault names for usage and error messages.
func faultNames() string {
	names := make([]string, len(allFaults))
	for i, f := range allFaults {
		names[i] = string(f)
	}
	return strings.Join(names, ", ")
}

// parseFault returns the fault called name, or false.
func parseFault(name string) (fault, bool) {
	for _, f := range allFaults {
		if string(f) == name {
			return f, true
		}
	}
	return faultNone, false
}

// parseFaults reads the -faults list: comma-separated fault names, or all.
// An empty list is no fault. Errors are one line naming the bad value.
func parseFaults(list string) ([]fault, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	if strings.TrimSpace(list) == "all" {
		return slices.Clone(allFaults), nil
	}
	var faults []fault
	for name := range strings.SplitSeq(list, ",") {
		name = strings.TrimSpace(name)
		f, ok := parseFault(name)
		if !ok {
			return nil, fmt.Errorf("-faults %q: unknown fault %q; want a comma-separated list of %s, or all", list, name, faultNames())
		}
		if slices.Contains(faults, f) {
			return nil, fmt.Errorf("-faults %q: %q is listed twice; want each fault once", list, name)
		}
		faults = append(faults, f)
	}
	return faults, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "dummy-http-server: %v\n", err)
		os.Exit(2)
	}

	logger := log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)

	ln, err := net.Listen("tcp", cfg.address)
	if err != nil {
		fmt.Fprintf(os.Stderr, "dummy-http-server: %v\n", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// Restore default signal handling once shutdown starts, so a second
		// Ctrl-C kills a server stuck waiting for slow requests.
		<-ctx.Done()
		stop()
	}()

	if err := run(ctx, cfg, ln, logger); err != nil {
		fmt.Fprintf(os.Stderr, "dummy-http-server: %v\n", err)
		os.Exit(1)
	}
}

// parseFlags parses and validates the command-line arguments (without the
// program name). Errors are one line naming the bad value and what is
// accepted. For -h or -help it writes the usage to usage and returns
// flag.ErrHelp.
func parseFlags(args []string, usage io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("dummy-http-server", flag.ContinueOnError)
	// The caller prints errors as one line; usage only on request.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}

	fs.StringVar(&cfg.address, "address", ":8000", "listen `address`, host:port")
	fs.DurationVar(&cfg.stopAfter, "stop-after", 0, "shut down gracefully and exit 0 after this long; 0 runs until SIGINT or SIGTERM")
	fs.BoolVar(&cfg.delayResponding, "delay-responding", true, "delay each response by a random duration in [0, -max-delay)")
	fs.DurationVar(&cfg.maxDelay, "max-delay", time.Second, "upper bound of the random delay")
	fs.BoolVar(&cfg.randomErrors, "random-errors", true, "answer a share -error-rate of the requests with -error-status")
	fs.Float64Var(&cfg.errorRate, "error-rate", 0.25, "share of responses, from 0 to 1, that get -error-status")
	fs.IntVar(&cfg.errorStatus, "error-status", 500, "`status` of the random error responses, 200-599")
	fs.IntVar(&cfg.status, "status", 200, "`status` of the other responses, 200-599")
	fs.DurationVar(&cfg.delay, "delay", 0, "fixed delay added to every response")
	fs.DurationVar(&cfg.tailDelay, "tail-delay", 0, "extra delay for a share -tail-rate of the responses")
	fs.Float64Var(&cfg.tailRate, "tail-rate", 0, "share of responses, from 0 to 1, that get -tail-delay extra")
	fs.Int64Var(&cfg.bodySize, "body-size", 0, "if positive, the body is exactly this many `bytes` of filler instead of the hello text and the echoed request body")
	fs.StringVar(&cfg.name, "name", "", "`name` sent in the X-Dummy-Name header and the body (default \"dummy-\" and the port of -address)")
	faultList := fs.String("faults", "", "comma-separated `faults` that -fault-rate draws from, or all: "+faultNames())
	fs.Float64Var(&cfg.faultRate, "fault-rate", 0, "share of responses, from 0 to 1, that get each fault of -faults instead of their answer")
	fs.DurationVar(&cfg.faultStall, "fault-stall", 10*time.Second, "how long stall-after-headers waits between the headers and the body")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(usage, "Usage: dummy-http-server [flags]\n\n"+
				"A test backend. Per request, ?status=CODE, ?delay=DURATION and ?fault=NAME (or none) override the flags.\n\nFlags:\n")
			fs.SetOutput(usage)
			fs.PrintDefaults()
			return config{}, err
		}
		return config{}, fmt.Errorf("%w (run with -h for usage)", err)
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q: only flags are accepted", fs.Arg(0))
	}

	faults, err := parseFaults(*faultList)
	if err != nil {
		return config{}, err
	}
	cfg.faults = faults

	nameSet := false
	fs.Visit(func(f *flag.Flag) { nameSet = nameSet || f.Name == "name" })
	if !nameSet {
		_, port, err := net.SplitHostPort(cfg.address)
		if err == nil {
			cfg.name = "dummy-" + port
		}
	}
	if err := cfg.validate(); err != nil {
		return config{}, err
	}
	return cfg, nil
}

// validate reports the first bad value, naming the flag and what it accepts.
func (c config) validate() error {
	if _, _, err := net.SplitHostPort(c.address); err != nil {
		return fmt.Errorf("-address %q: want host:port such as :8000 or 127.0.0.1:8000", c.address)
	}
	durations := []struct {
		flag  string
		value time.Duration
	}{
		{"-stop-after", c.stopAfter},
		{"-max-delay", c.maxDelay},
		{"-delay", c.delay},
		{"-tail-delay", c.tailDelay},
		{"-fault-stall", c.faultStall},
	}
	for _, d := range durations {
		if d.value < 0 {
			return fmt.Errorf("%s %s: want a duration of zero or more", d.flag, d.value)
		}
	}
	rates := []struct {
		flag  string
		value float64
	}{
		{"-error-rate", c.errorRate},
		{"-tail-rate", c.tailRate},
		{"-fault-rate", c.faultRate},
	}
	for _, r := range rates {
		// Written so that NaN fails too.
		if !(r.value >= 0 && r.value <= 1) {
			return fmt.Errorf("%s %v: want a share from 0 to 1", r.flag, r.value)
		}
	}
	statuses := []struct {
		flag  string
		value int
	}{
		{"-status", c.status},
		{"-error-status", c.errorStatus},
	}
	for _, s := range statuses {
		if s.value < minStatus || s.value > maxStatus {
			return fmt.Errorf("%s %d: want a status from %d to %d", s.flag, s.value, minStatus, maxStatus)
		}
	}
	if c.faultRate > 0 && len(c.faults) == 0 {
		return fmt.Errorf("-fault-rate %v without -faults: want -faults naming the faults to inject (%s, or all)", c.faultRate, faultNames())
	}
	// Each fault gets its own slice of the draw, so together they must fit.
	if total := c.faultRate * float64(len(c.faults)); total > 1 {
		return fmt.Errorf("-fault-rate %v for %d -faults is a share of %v: want at most %v, so that the faults add up to 1 at most",
			c.faultRate, len(c.faults), total, 1/float64(len(c.faults)))
	}
	if c.bodySize < 0 {
		return fmt.Errorf("-body-size %d: want a size in bytes of zero or more", c.bodySize)
	}
	if c.name == "" {
		return errors.New("-name is empty: want a non-empty name")
	}
	for _, b := range []byte(c.name) {
		if b < 0x20 || b == 0x7f {
			return fmt.Errorf("-name %q: want a name without control characters", c.name)
		}
	}
	return nil
}

// handler is the dummy server's http.Handler.
type handler struct {
	cfg    config
	logger *log.Logger
	filler []byte // read-only after newHandler; shared by all requests

	randMu sync.Mutex // guards rnd, which is not safe for concurrent use
	rnd    *rand.Rand
}

// newHandler returns the handler answering every request according to cfg.
// Random delays and errors are drawn from rnd, which the handler guards with
// a mutex; pass a seeded source for deterministic tests. Each request logs
// one line to logger.
func newHandler(cfg config, rnd *rand.Rand, logger *log.Logger) http.Handler {
	filler := make([]byte, 0, fillerBufferSize)
	for len(filler) < fillerBufferSize {
		filler = append(filler, fillerLine...)
	}
	return &handler{cfg: cfg, logger: logger, filler: filler, rnd: rnd}
}

// ServeHTTP waits for the chosen delay, or until the request is cancelled,
// then writes the hello text (with the echoed request body, if any) or the
// filler body, or injects the chosen fault instead.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Dummy-Name", h.cfg.name)
	target := r.URL.RequestURI()

	delay, failed, injected := h.draw()
	status := h.cfg.status
	if failed {
		status = h.cfg.errorStatus
	}

	query := r.URL.Query()
	if query.Has("status") {
		raw := query.Get("status")
		s, err := strconv.Atoi(raw)
		if err != nil || s < minStatus || s > maxStatus {
			h.reject(w, r, http.StatusBadRequest, fmt.Sprintf("bad status %q: want an integer from %d to %d", raw, minStatus, maxStatus))
			return
		}
		status = s
	}
	if query.Has("delay") {
		raw := query.Get("delay")
		d, err := time.ParseDuration(raw)
		if err != nil || d < 0 {
			h.reject(w, r, http.StatusBadRequest, fmt.Sprintf("bad delay %q: want a duration of zero or more such as 250ms or 2s", raw))
			return
		}
		delay = d
	}
	if query.Has("fault") {
		raw := query.Get("fault")
		f, ok := parseFault(raw)
		if !ok && raw != "none" {
			h.reject(w, r, http.StatusBadRequest, fmt.Sprintf("bad fault %q: want none or one of %s", raw, faultNames()))
			return
		}
		injected = f
	}

	// Read the whole body before responding: an HTTP/1 handler may not be
	// able to read the request body once it has started writing.
	reqBody, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.reject(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", tooLarge.Limit))
			return
		}
		h.logger.Printf("%s %s reading request body failed: %v", r.Method, target, err)
		return
	}

	if err := wait(r.Context(), delay); err != nil {
		h.logger.Printf("%s %s delay=%s cancelled: %v", r.Method, target, delay, err)
		return
	}

	if injected != faultNone && injected != faultStallAfterHeaders {
		if err := h.injectFault(w, r, injected); err != nil {
			h.logger.Printf("%s %s delay=%s fault=%s: %v", r.Method, target, delay, injected, err)
			return
		}
		h.logger.Printf("%s %s delay=%s fault=%s", r.Method, target, delay, injected)
		return
	}

	var stall time.Duration
	if injected == faultStallAfterHeaders {
		stall = h.cfg.faultStall
	}
	if err := h.respond(w, r, status, delay, stall, reqBody); err != nil {
		h.logger.Printf("%s %s delay=%s status=%d%s write failed: %v", r.Method, target, delay, status, faultField(injected), err)
		return
	}
	h.logger.Printf("%s %s delay=%s status=%d%s", r.Method, target, delay, status, faultField(injected))
}

// faultField is the log field of an injected fault, or nothing.
func faultField(f fault) string {
	if f == faultNone {
		return ""
	}
	return " fault=" + string(f)
}

// draw picks this request's delay (fixed, random and tail parts), whether it
// gets the error status, and the fault it gets, if any.
func (h *handler) draw() (delay time.Duration, failed bool, injected fault) {
	h.randMu.Lock()
	defer h.randMu.Unlock()

	delay = h.cfg.delay
	if h.cfg.delayResponding && h.cfg.maxDelay > 0 {
		// Whole microseconds keep the hello text and the log readable.
		random := time.Duration(h.rnd.Int64N(int64(h.cfg.maxDelay)))
		delay += random.Truncate(time.Microsecond)
	}
	if h.cfg.tailRate > 0 && h.rnd.Float64() < h.cfg.tailRate {
		delay += h.cfg.tailDelay
	}
	failed = h.cfg.randomErrors && h.cfg.errorRate > 0 && h.rnd.Float64() < h.cfg.errorRate
	// Without faults nothing is drawn, so the other draws of a seeded source
	// stay as they were.
	if h.cfg.faultRate > 0 && len(h.cfg.faults) > 0 {
		// Fault i owns [i*rate, (i+1)*rate) of [0, 1); validate keeps the
		// slices inside it.
		if i := int(h.rnd.Float64() / h.cfg.faultRate); i < len(h.cfg.faults) {
			injected = h.cfg.faults[i]
		}
	}
	return delay, failed, injected
}

// wait returns nil after d, or the cause as soon as ctx is done.
func wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// respond writes the status and the body: -body-size filler bytes if set,
// otherwise the hello line followed by the echoed request body, if any. If
// stall is positive, the headers are flushed and the body follows after
// stall, or not at all if the request is cancelled first.
func (h *handler) respond(w http.ResponseWriter, r *http.Request, status int, delay, stall time.Duration, reqBody []byte) error {
	var text []byte
	size := h.cfg.bodySize
	if size == 0 {
		text = fmt.Appendf(nil, "Hello from %s: %s %s after %s\n", h.cfg.name, r.Method, r.URL.RequestURI(), delay)
		if len(reqBody) > 0 {
			text = fmt.Appendf(text, "received %d bytes\n", len(reqBody))
			text = append(text, reqBody...)
		}
		size = int64(len(text))
	}

	// 204 and 304 responses must not have a body; HEAD gets the headers of
	// the GET response without its body.
	noBody := status == http.StatusNoContent || status == http.StatusNotModified
	if !noBody {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	}
	w.WriteHeader(status)
	if noBody || r.Method == http.MethodHead {
		return nil
	}
	if stall > 0 {
		if err := http.NewResponseController(w).Flush(); err != nil {
			return fmt.Errorf("flushing the headers: %w", err)
		}
		if err := wait(r.Context(), stall); err != nil {
			return fmt.Errorf("stalled after the headers for less than %s: %w", stall, err)
		}
	}

	if text != nil {
		_, err := w.Write(text)
		return err
	}
	for remaining := size; remaining > 0; {
		n := min(remaining, int64(len(h.filler)))
		if _, err := w.Write(h.filler[:n]); err != nil {
			return err
		}
		remaining -= n
	}
	return nil
}

// injectFault answers r with f, any fault but stall-after-headers (which
// respond does): hang waits for the client to go away; the others take the
// connection over and write what no http.ResponseWriter would, then close it.
func (h *handler) injectFault(w http.ResponseWriter, r *http.Request, f fault) error {
	if f == faultHang {
		<-r.Context().Done()
		return fmt.Errorf("hung until the request ended: %w", context.Cause(r.Context()))
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return fmt.Errorf("taking the connection over: %w", err)
	}
	defer conn.Close()
	if f == faultReset {
		// A zero linger makes close send RST instead of FIN.
		tcp, ok := conn.(*net.TCPConn)
		if !ok {
			return fmt.Errorf("resetting: %T is not a TCP connection, closed it instead", conn)
		}
		if err := tcp.SetLinger(0); err != nil {
			return fmt.Errorf("resetting: %w", err)
		}
		return nil
	}
	if _, err := conn.Write(h.rawFault(f)); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	return nil
}

// midBodySize is the Content-Length a mid-body-close answer promises; half
// of it is sent.
const midBodySize = 1024

// rawFault returns the bytes a hijacked connection gets for f before it is
// closed.
func (h *handler) rawFault(f fault) []byte {
	switch f {
	case faultJunk:
		return []byte("\x00\xff\xfejunk instead of a status line\r\n\r\n")
	case faultBadStatus:
		return []byte("HTTP/1.1 2x0 Not A Status\r\nContent-Length: 0\r\n\r\n")
	case faultEarlyHintsClose:
		return []byte("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n")
	case faultDupLength:
		return fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nX-Dummy-Name: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"+
			"Content-Length: 6\r\nContent-Length: 7\r\n\r\nhello\n", h.cfg.name)
	case faultMidBodyClose:
		head := fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nX-Dummy-Name: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"+
			"Content-Length: %d\r\n\r\n", h.cfg.name, midBodySize)
		return append(head, h.filler[:midBodySize/2]...)
	}
	return nil
}

// reject answers with status and a one-line message, and logs it.
func (h *handler) reject(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.logger.Printf("%s %s status=%d: %s", r.Method, r.URL.RequestURI(), status, msg)
	http.Error(w, msg, status)
}

// run serves on ln until ctx is done or cfg.stopAfter has passed, then shuts
// down gracefully and returns nil. Requests still running after
// shutdownGrace are cancelled and their connections closed. run closes ln.
func run(ctx context.Context, cfg config, ln net.Listener, logger *log.Logger) error {
	// Requests only see this context cancelled when the grace period ends,
	// not when shutdown starts, so slow requests can still finish.
	baseCtx, cancelRequests := context.WithCancel(context.Background())
	defer cancelRequests()

	rnd := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	srv := &http.Server{
		Handler:           newHandler(cfg, rnd, logger),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          logger,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Printf("%s listening on %s", cfg.name, ln.Addr())

	var stopTimer <-chan time.Time
	if cfg.stopAfter > 0 {
		timer := time.NewTimer(cfg.stopAfter)
		defer timer.Stop()
		stopTimer = timer.C
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-stopTimer:
		logger.Printf("%s stopping after %s", cfg.name, cfg.stopAfter)
	case <-ctx.Done():
		logger.Printf("%s stopping: %v", cfg.name, context.Cause(ctx))
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Printf("%s shutdown grace of %s over, closing remaining connections: %v", cfg.name, shutdownGrace, err)
		cancelRequests()
		if err := srv.Close(); err != nil {
			return fmt.Errorf("close: %w", err)
		}
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

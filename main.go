// Command balancing-reverse-proxy is a hedging fan-out reverse proxy: it forwards
// each request to a list of endpoints (mirrors of one API) and answers with the
// first response whose status is terminal. See README.md.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"balancing-reverse-proxy/budget"
	"balancing-reverse-proxy/config"
	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/fanout"
	"balancing-reverse-proxy/forward"
	"balancing-reverse-proxy/healthcheck"
	"balancing-reverse-proxy/heapfloor"
	"balancing-reverse-proxy/hedge"
	"balancing-reverse-proxy/inbound"
	"balancing-reverse-proxy/internal/bytesize"
	"balancing-reverse-proxy/logging"
	"balancing-reverse-proxy/metrics"
	"balancing-reverse-proxy/session"
	"balancing-reverse-proxy/terminal"
	"balancing-reverse-proxy/wire"
)

// envPrefix prefixes the environment variable of every flag:
// BALANCING_REVERSE_PROXY_ENDPOINTS and so on.
const envPrefix = "BALANCING_REVERSE_PROXY"

// CLI is the command line. Flags keep the original tool's Go-flag spellings
// (see normalizeArgs); the flags the original had are tagged original.
type CLI struct {
	Endpoints              endpoints.List         `original:"" short:"e" placeholder:"URL,..." help:"Comma-separated base URLs of the endpoints, in priority order: http[s]://host[:port][/prefix]."`
	Config                 string                 `placeholder:"FILE" help:"Read routes, their endpoints and settings from this YAML file instead of --endpoints; a flag given on the command line (or in the environment) wins over the file."`
	CheckConfig            bool                   `help:"Check --config (and every route's settings) and exit: 0 when it is good, 2 with every problem on stderr."`
	Address                string                 `original:"" default:":8080" help:"Address to listen on, [host]:port."`
	TerminalResponses      terminal.Ranges        `original:"" short:"t" default:"${terminal_default}" help:"Statuses whose response goes to the client: hundreds (400 = 400-499), classes (2xx), codes (404) or ranges (500-503), comma-separated. Others make the proxy try the next endpoint."`
	Fanout                 bool                   `original:"" short:"f" help:"Send each request to every endpoint at once; the first terminal answer wins. Default: serial, one endpoint after another, the next only when one fails."`
	Hedge                  bool                   `help:"Hedged mode: send to one endpoint, then to the next when the pending ones have not answered within --hedge-delay, or at once when one fails. Implied by --hedge-delay."`
	HedgeDelay             *hedge.Spec            `placeholder:"DURATION|pNN" help:"How long hedged mode waits before the next attempt: a duration (20ms), or a percentile of recent answer times (p95, p99.9). Default: the percentile that fits --hedge-budget, else p95."`
	HedgeDelayMin          time.Duration          `default:"1ms" help:"Least delay a percentile --hedge-delay can give."`
	HedgeDelayMax          time.Duration          `default:"1s" help:"Greatest delay a percentile --hedge-delay can give; also the delay until enough answers were seen."`
	HedgeBudget            *budget.Share          `placeholder:"PERCENT" help:"Cap extra attempts (hedges and fail-overs) at this share of recent requests, such as 5%, plus one a second. Default: no cap."`
	MaxAttempts            int                    `help:"Most attempts per request (0: one per endpoint)."`
	IdempotentOnly         bool                   `help:"Give extra attempts only to requests that are safe to repeat: GET, HEAD, OPTIONS, PUT, DELETE, TRACE, or with an Idempotency-Key header. Others get one attempt (plus a fail-over when it failed before sending)."`
	Order                  endpoints.Order        `default:"priority" enum:"priority,round-robin,fastest,weighted" help:"Order in which a request tries the endpoints: priority (as listed), round-robin, fastest (lowest recent latency), or weighted (smooth weighted round-robin over the weights of --config's endpoints; all 1 with --endpoints)."`
	MaxInflight            int                    `help:"Most attempts one endpoint may have in flight; one at its cap is skipped (0: no cap)."`
	EjectAfter             int                    `default:"5" help:"Failures in a row after which an endpoint is skipped for --eject-backoff (0: never)."`
	EjectBackoff           time.Duration          `default:"1s" help:"How long an ejected endpoint is first skipped; doubles while it keeps failing, resets when it answers."`
	EjectBackoffMax        time.Duration          `default:"1m" help:"Longest an endpoint is skipped, after failures or a Retry-After."`
	HealthPath             string                 `placeholder:"PATH" help:"Probe every endpoint at this path (GET, 2xx is healthy) every --health-interval; a pass brings an ejected endpoint back. Default: no probes."`
	HealthInterval         time.Duration          `default:"5s" help:"Time between health probes."`
	DebugHeaders           bool                   `help:"Add X-Proxy-Endpoint, X-Proxy-Attempts and X-Proxy-No-Extra-Attempt to responses."`
	Timeout                time.Duration          `default:"30s" help:"How long a request may wait for a terminal answer's headers, all attempts together (0: no limit). Then 504, or the last non-terminal answer."`
	TryTimeout             time.Duration          `default:"10s" help:"How long one attempt may wait for its response headers before it counts as failed (0: no limit)."`
	ResponseIdleTimeout    time.Duration          `default:"60s" help:"How long the winning endpoint may pause in the middle of its response body before the response is cut off (0: no limit). Streams (Server-Sent Events) must send something more often."`
	MaxBodyBuffer          bytesize.Size          `default:"8MiB" help:"Largest request body held in memory so every attempt can send it (bytes, or with KiB, MiB, GiB). A larger body is streamed to the first endpoint only, as is one over 64KiB when a request has one attempt at most."`
	MaxReplayMemory        bytesize.Size          `default:"256MiB" help:"Most memory held by request bodies kept for replay, all requests together; a request whose body does not fit gets 503 (0: no cap)."`
	StopAfter              time.Duration          `original:"" short:"s" help:"Stop (gracefully, exit 0) after this long; 0 runs until SIGINT or SIGTERM."`
	ShutdownTimeout        time.Duration          `default:"10s" help:"On stop, how long in-flight requests may take to finish."`
	ReadHeaderTimeout      time.Duration          `default:"10s" help:"How long a client may take to send its request headers."`
	IdleTimeout            time.Duration          `default:"120s" help:"How long an idle keep-alive client connection is kept."`
	TrustedProxies         forward.TrustedProxies `placeholder:"CIDR,..." help:"Proxies in front of this one (IP addresses or networks, comma-separated) whose X-Forwarded-* and Forwarded headers are extended; from any other client they are replaced. Default: none."`
	MaxConnections         int                    `default:"10000" help:"Most client connections open at once; more wait to be accepted (0: no cap)."`
	MaxHeaderBytes         bytesize.Size          `default:"64KiB" help:"Largest request head (request line and headers); a larger one gets 431."`
	MaxHeaders             int                    `default:"100" help:"Most header fields in a request; more get 431 (0: no cap)."`
	MaxResponseHeaderBytes bytesize.Size          `default:"64KiB" help:"Largest response head an endpoint may send (status line and headers); a larger one fails that attempt."`
	MaxResponseHeaders     int                    `default:"100" help:"Most header fields in an endpoint's response; more fail that attempt (0: no cap)."`
	MaxBody                bytesize.Size          `default:"0" help:"Largest request body (bytes, or with KiB, MiB, GiB); a Content-Length above it gets 413 at once, a chunked body when it crosses it (0: no cap)."`
	BodyReadTimeout        time.Duration          `default:"60s" help:"How long a client may pause while sending its request body before the request fails with 408 (0: no limit)."`
	TLSCert                string                 `name:"tls-cert" placeholder:"FILE" help:"Serve HTTPS (and HTTP/2) with this PEM certificate chain; needs --tls-key. Default: plain HTTP."`
	TLSKey                 string                 `name:"tls-key" placeholder:"FILE" help:"The PEM private key of --tls-cert."`
	H2C                    bool                   `name:"h2c" help:"Also accept HTTP/2 without TLS (prior knowledge, as gRPC and curl --http2-prior-knowledge send it)."`
	SessionHeader          string                 `placeholder:"NAME" help:"Header that carries a request's session id (such as Mcp-Session-Id or X-Session-ID): a session's requests go to the endpoint it is pinned to. Default: no sessions."`
	SessionCookie          string                 `placeholder:"NAME" help:"Cookie that carries a request's session id, read after --session-header. Default: none."`
	SessionUnknown         session.Unknown        `default:"pin" enum:"pin,reject" help:"What a session id with no pin gets: pin (the id is the client's own: pin it to an endpoint chosen by --order, and send it there) or reject (404; ids are given out by the endpoints)."`
	SessionRequired        bool                   `help:"Refuse (400) a request that carries no session id. Without it, such a request is routed as usual, and an id its answer gives out is pinned to the endpoint that sent it."`
	SessionFailover        session.Failover       `default:"repin" enum:"repin,fail" help:"When a session's endpoint fails or is ejected: repin (try the others one at a time and pin the session to the one that answers) or fail (503 with Retry-After; the pin stays)."`
	SessionTTL             time.Duration          `name:"session-ttl" default:"30m" help:"How long a pin lives after its last use."`
	SessionStore           string                 `default:"memory" placeholder:"memory|redis://..." help:"Where pins are kept: memory (this process only), or a Redis server shared by every replica: redis://[user:password@]host:port[/db], or rediss:// for TLS."`
	SessionStorePrefix     string                 `default:"${session_prefix}" help:"Prefix of the pins' Redis keys."`
	SessionStoreTimeout    time.Duration          `default:"200ms" help:"Bound of every call to the session store; past it, a request that needs a pin gets 503."`
	AdminAddress           string                 `placeholder:"HOST:PORT" help:"Serve the admin endpoints on this address, such as 127.0.0.1:9090: /metrics (Prometheus), /healthz, /readyz and Go's profiles at /debug/pprof/. Keep it off public interfaces. Default: off."`
	DebugAddress           string                 `placeholder:"HOST:PORT" help:"The older name of --admin-address."`
	LogPrefix              string                 `original:"" default:"balancing-reverse-proxy" help:"Prefix of every text log line."`
	LogFile                string                 `original:"" default:"stdout" help:"Where logs go: stdout, stderr, or a file (appended to)."`
	LogDate                bool                   `original:"" default:"true" help:"Stamp log lines with the date (-log-date=false to drop it)."`
	LogTime                bool                   `original:"" default:"true" help:"Stamp log lines with the time (-log-time=false to drop it)."`
	LogMsec                bool                   `original:"" help:"Add microseconds to the time stamp."`
	LogUTC                 bool                   `original:"" name:"log-utc" help:"Stamp in UTC instead of local time."`
	LogFormat              string                 `default:"text" enum:"text,json" help:"Log format: text or json."`
	LogLevel               string                 `default:"info" enum:"debug,info,warn,error" help:"Least severe level logged: debug (every attempt), info (every request), warn or error."`
	Version                kong.VersionFlag       `help:"Print the version and exit."`

	// given has the flags set on the command line or in the environment,
	// which win over the configuration file.
	given map[string]bool
	// metrics, with an admin address, are what every engine reports to.
	metrics *metrics.Metrics
}

// Validate checks what single flags cannot check alone.
func (c *CLI) Validate() error {
	switch {
	case c.Config != "" && len(c.Endpoints) > 0:
		return fmt.Errorf("--config %q and --endpoints: accepted: one of them (the file has the endpoints of each route)", c.Config)
	case c.CheckConfig && c.Config == "":
		return fmt.Errorf("--check-config needs --config FILE, the file it checks")
	case c.Config == "" && len(c.Endpoints) == 0:
		return fmt.Errorf("--endpoints is required; accepted: %s", endpoints.Accepted)
	}
	if err := checkAddress("--address", c.Address); err != nil {
		return err
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("--tls-cert %q and --tls-key %q: accepted: both (a certificate and its key) or neither", c.TLSCert, c.TLSKey)
	}
	if c.AdminAddress != "" && c.DebugAddress != "" && c.AdminAddress != c.DebugAddress {
		return fmt.Errorf("--admin-address %q and --debug-address %q: accepted: one of them (--debug-address is its older name)", c.AdminAddress, c.DebugAddress)
	}
	if flag, address := c.adminAddress(); address != "" {
		if err := checkAddress(flag, address); err != nil {
			return err
		}
	}
	for name, d := range map[string]time.Duration{
		"--timeout": c.Timeout, "--try-timeout": c.TryTimeout, "--stop-after": c.StopAfter,
		"--shutdown-timeout": c.ShutdownTimeout, "--read-header-timeout": c.ReadHeaderTimeout, "--idle-timeout": c.IdleTimeout,
		"--hedge-delay-min": c.HedgeDelayMin, "--hedge-delay-max": c.HedgeDelayMax,
		"--eject-backoff": c.EjectBackoff, "--eject-backoff-max": c.EjectBackoffMax,
		"--body-read-timeout": c.BodyReadTimeout, "--response-idle-timeout": c.ResponseIdleTimeout,
	} {
		if d < 0 {
			return fmt.Errorf("%s: %s is negative; accepted: a duration such as 500ms, 10s or 0", name, d)
		}
	}
	for name, n := range map[string]int{
		"--max-attempts": c.MaxAttempts, "--max-inflight": c.MaxInflight, "--eject-after": c.EjectAfter,
		"--max-connections": c.MaxConnections, "--max-headers": c.MaxHeaders, "--max-response-headers": c.MaxResponseHeaders,
	} {
		if n < 0 {
			return fmt.Errorf("%s: %d is negative; accepted: a whole number, 0 for no limit", name, n)
		}
	}
	for name, size := range map[string]bytesize.Size{"--max-header-bytes": c.MaxHeaderBytes, "--max-response-header-bytes": c.MaxResponseHeaderBytes} {
		if size < minHeaderBytes || size > maxHeaderBytes {
			return fmt.Errorf("%s %d: accepted: %d (1KiB) to %d (1MiB)", name, size, minHeaderBytes, maxHeaderBytes)
		}
	}
	if c.Config != "" {
		// The settings are checked per route, once the file is read.
		return nil
	}
	return c.validateSettings()
}

// validateSettings checks the settings a route of the configuration file may
// set, together.
func (c *CLI) validateSettings() error {
	if c.MaxReplayMemory > 0 && c.MaxReplayMemory < c.MaxBodyBuffer {
		return fmt.Errorf("--max-replay-memory %d is below --max-body-buffer %d, so such a body could never be replayed; accepted: 0 (no cap) or at least --max-body-buffer", c.MaxReplayMemory, c.MaxBodyBuffer)
	}
	if err := c.validateSessions(); err != nil {
		return err
	}
	return c.validateHedging()
}

// validateSessions checks the session flags together.
func (c *CLI) validateSessions() error {
	for name, value := range map[string]string{"--session-header": c.SessionHeader, "--session-cookie": c.SessionCookie} {
		if value != "" && !forward.IsToken(value) {
			return fmt.Errorf("%s %q: accepted: a header or cookie name, letters, digits and !#$%%&'*+-.^_`|~", name, value)
		}
	}
	if c.SessionHeader == "" && c.SessionCookie == "" {
		for name, set := range map[string]bool{
			"--session-unknown": c.SessionUnknown != session.Pin, "--session-required": c.SessionRequired,
			"--session-failover": c.SessionFailover != session.Repin, "--session-store": c.SessionStore != "memory",
		} {
			if set {
				return fmt.Errorf("%s needs --session-header or --session-cookie, which say where a request's session id is", name)
			}
		}
		return nil
	}
	if c.SessionTTL < time.Second {
		return fmt.Errorf("--session-ttl %s: accepted: a duration of at least 1s, such as 30m", c.SessionTTL)
	}
	if c.SessionStoreTimeout <= 0 {
		return fmt.Errorf("--session-store-timeout %s: accepted: a positive duration such as 200ms", c.SessionStoreTimeout)
	}
	if err := session.CheckStore(c.SessionStore); err != nil {
		return fmt.Errorf("--session-store %w; accepted: %s", err, session.StoreAccepted)
	}
	return nil
}

// sessions returns the session affinity of the flags, or nil without
// sessions; its store is not reached yet.
func (c *CLI) sessions(logger zerolog.Logger) (*session.Affinity, error) {
	if c.SessionHeader == "" && c.SessionCookie == "" {
		return nil, nil
	}
	store, err := session.Open(c.SessionStore, c.SessionStorePrefix, c.SessionTTL, c.SessionStoreTimeout)
	if err != nil {
		return nil, usageError{fmt.Errorf("--session-store %w; accepted: %s", err, session.StoreAccepted)}
	}
	return session.New(store, session.Options{
		Header: c.SessionHeader, Cookie: c.SessionCookie, Unknown: c.SessionUnknown, Required: c.SessionRequired,
		Failover: c.SessionFailover, Timeout: c.SessionStoreTimeout, Log: logger.With().Str("store", session.Redact(c.SessionStore)).Logger(),
	}), nil
}

// Bounds of --max-header-bytes and --max-response-header-bytes: below 1 KiB
// ordinary heads would not fit, above 1 MiB a head is a way to make the proxy
// hold memory.
const (
	minHeaderBytes = 1 << 10
	maxHeaderBytes = 1 << 20
)

// validateHedging checks the flags of hedged mode and health checks together.
func (c *CLI) validateHedging() error {
	switch {
	case c.Fanout && (c.Hedge || c.HedgeDelay != nil):
		return fmt.Errorf("--fanout and --hedge/--hedge-delay are different modes; accepted: one of them")
	case c.HedgeDelayMin > c.HedgeDelayMax:
		return fmt.Errorf("--hedge-delay-min %s is above --hedge-delay-max %s; accepted: min <= max", c.HedgeDelayMin, c.HedgeDelayMax)
	case c.HealthPath != "" && c.HealthInterval <= 0:
		return fmt.Errorf("--health-interval %s: accepted: a positive duration such as 5s", c.HealthInterval)
	}
	if c.HealthPath != "" {
		if err := healthcheck.CheckPath(c.HealthPath); err != nil {
			return fmt.Errorf("--health-path: %w", err)
		}
	}
	return nil
}

// schedule returns the schedule the flags ask for: hedged with --hedge or
// --hedge-delay, fan-out with --fanout, else serial.
func (c *CLI) schedule() fanout.Schedule {
	switch {
	case c.Fanout:
		return fanout.FanOut()
	case !c.Hedge && c.HedgeDelay == nil:
		return fanout.Serial()
	}
	spec := hedge.Spec{Percentile: defaultHedgePercentile}
	if c.HedgeDelay != nil {
		spec = *c.HedgeDelay
	} else if c.HedgeBudget != nil {
		spec.Percentile = hedge.PercentileForShare(float64(*c.HedgeBudget))
	}
	return fanout.Hedged(hedge.NewDelay(spec, hedge.Options{Min: c.HedgeDelayMin, Max: c.HedgeDelayMax}))
}

// wireOptions are the transport's options of the flags, with tlsConfig for
// https:// endpoints (nil for the system's roots).
func (c *CLI) wireOptions(tlsConfig *tls.Config) wire.Options {
	return wire.Options{
		MaxIdlePerHost:         c.idleConnsPerEndpoint(),
		MaxResponseHeaderBytes: int64(c.MaxResponseHeaderBytes),
		MaxResponseHeaders:     c.MaxResponseHeaders,
		TLS:                    tlsConfig,
	}
}

// idleConnsPerEndpoint sizes the idle connections kept per endpoint to the
// concurrency the proxy can have: as many as client connections (an HTTP/1
// one has at most one attempt per endpoint in flight), so that under load no
// answer closes a connection only for the pool being full.
func (c *CLI) idleConnsPerEndpoint() int {
	if c.MaxConnections > 0 {
		return c.MaxConnections
	}
	return unlimitedIdleConns
}

// unlimitedIdleConns is the idle pool per endpoint when client connections
// are not capped; idle connections still close after 90 seconds.
const unlimitedIdleConns = 1 << 16

// heapFloor is the heap the proxy lets grow before a collection (see
// heapfloor): at Go's default pace its few live megabytes had it collect
// some thirty times a second under load, for a tenth of its CPU. GOGC, when
// set, stands instead.
const heapFloor = 16 << 20

// defaultHedgePercentile is the hedge delay's percentile when neither
// --hedge-delay nor --hedge-budget gives one: about one request in twenty is
// hedged.
const defaultHedgePercentile = 95

// checkAddress checks the [host]:port address given to flag.
func checkAddress(flag, address string) error {
	host, port, err := net.SplitHostPort(address)
	if err == nil {
		_, err = net.LookupPort("tcp", port)
	}
	if err == nil && host != "" && net.ParseIP(host) == nil && !isHostName(host) {
		err = fmt.Errorf("bad host %q", host)
	}
	if err != nil {
		return fmt.Errorf("%s %q: %w; accepted: [host]:port, such as :8080 or 127.0.0.1:8080", flag, address, err)
	}
	return nil
}

func isHostName(host string) bool {
	for _, r := range host {
		if !(r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, stop, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses args, serves until ctx ends or --stop-after passes, and returns the
// exit status: 0 after a clean stop, 1 when serving failed, 2 for bad usage.
// releaseSignals is called when the drain starts, so that a second SIGINT or
// SIGTERM gets its default effect and ends the process.
func run(ctx context.Context, releaseSignals func(), args []string, stdout, stderr io.Writer) int {
	var cli CLI
	exitCode := -1
	parser, err := newParser(&cli,
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { exitCode = code }),
	)
	if err != nil {
		fmt.Fprintf(stderr, "balancing-reverse-proxy: %v\n", err)
		return 1
	}
	if len(args) == 0 && os.Getenv(envPrefix+"_ENDPOINTS") == "" {
		// Like the original tool: no arguments print the flags, as an error.
		parser.Stdout = stderr
		_, _ = parser.Parse([]string{"--help"})
		return 2
	}
	normalized, err := normalizeArgs(args, parser.Model.Flags)
	if err == nil {
		cli.given = givenFlags(normalized, parser.Model.Flags)
		_, err = parser.Parse(normalized)
	}
	if exitCode >= 0 {
		// --help or --version ran.
		return exitCode
	}
	if err != nil {
		fmt.Fprintf(stderr, "balancing-reverse-proxy: %v\n", err)
		return 2
	}
	if cli.CheckConfig {
		return cli.checkConfig(stdout, stderr)
	}
	if err := cli.serve(ctx, releaseSignals); err != nil {
		var problems config.Problems
		if errors.As(err, &problems) {
			// Each problem names its file and line already.
			fmt.Fprintln(stderr, problems.Error())
			return 2
		}
		fmt.Fprintf(stderr, "balancing-reverse-proxy: %v\n", err)
		var usage usageError
		if errors.As(err, &usage) {
			return 2
		}
		return 1
	}
	return 0
}

// adminAddress returns the admin listener's address and the flag that gave
// it, "" if none did.
func (c *CLI) adminAddress() (flag, address string) {
	if c.DebugAddress != "" {
		return "--debug-address", c.DebugAddress
	}
	return "--admin-address", c.AdminAddress
}

// givenFlags returns the names of the flags that normalized arguments (see
// normalizeArgs) or the environment give, rather than their defaults.
func givenFlags(normalized []string, flags []*kong.Flag) map[string]bool {
	given := map[string]bool{}
	for _, arg := range normalized {
		if arg == "--" {
			break
		}
		if name, ok := strings.CutPrefix(arg, "--"); ok {
			name, _, _ = strings.Cut(name, "=")
			given[name] = true
		}
	}
	for _, flag := range flags {
		for _, env := range flag.Tag.Envs {
			if _, ok := os.LookupEnv(env); ok {
				given[flag.Name] = true
			}
		}
	}
	return given
}

// checkConfig checks --config and every route's settings, as --check-config
// asks: 0 and a line on stdout when they are good, 2 and every problem on
// stderr otherwise.
func (c *CLI) checkConfig(stdout, stderr io.Writer) int {
	file, _, err := c.loadConfig()
	if err != nil {
		fmt.Fprintln(stderr, err.Error())
		return 2
	}
	fmt.Fprintf(stdout, "%s: good, %d routes\n", c.Config, len(file.Routes))
	return 0
}

// usageError is a bad flag value that only shows when it is used, such as a
// log file that cannot be opened.
type usageError struct{ error }

// Unwrap returns the error itself, so that errors.As finds config.Problems.
func (u usageError) Unwrap() error { return u.error }

// newParser returns the command-line parser that fills cli.
func newParser(cli *CLI, options ...kong.Option) (*kong.Kong, error) {
	return kong.New(cli, append([]kong.Option{
		kong.Name("balancing-reverse-proxy"),
		kong.Description("A reverse proxy that sends each request to several mirrors of one API and answers with the first terminal response. Flags take one or two dashes, -flag=value or -flag value, and any unique prefix of a name (-endp)."),
		kong.Vars{"version": version(), "terminal_default": terminal.Default, "session_prefix": session.DefaultPrefix},
		kong.DefaultEnvars(envPrefix),
	}, options...)...)
}

func version() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "(devel)"
}

// serve listens, serves until ctx ends or --stop-after passes, then calls
// releaseSignals and drains in-flight requests for at most --shutdown-timeout.
func (c *CLI) serve(ctx context.Context, releaseSignals func()) error {
	logOut, err := logging.Open(c.LogFile)
	if err != nil {
		return usageError{fmt.Errorf("--log-file %q: %w; accepted: stdout, stderr or a file that can be appended to", c.LogFile, err)}
	}
	defer logOut.Close()
	logger, err := logging.New(logOut, logging.Options{
		Prefix: c.LogPrefix, Date: c.LogDate, Time: c.LogTime, Msec: c.LogMsec, UTC: c.LogUTC,
		Format: c.LogFormat, Level: c.LogLevel,
	})
	if err != nil {
		return err
	}

	heapfloor.Keep(ctx, heapFloor)
	transport := wire.New(c.wireOptions(nil))
	defer transport.CloseIdleConnections()
	replay := &fanout.ReplayMemory{}
	cache := newTransportCache(c.wireOptions)
	routed, err := c.routed(transport, cache, replay, nil, logger)
	if err != nil {
		return err
	}
	adminFlag, adminAddress := c.adminAddress()
	if c.metrics != nil {
		c.metrics.Serve(routed.observed())
	}
	live := newLiveRoutes(routed, cache)
	defer live.stop()
	// The command line's engine is never swapped: it is served as it is.
	engines := routed.handler
	if c.Config != "" {
		engines = live
	}
	limits := inbound.Limits{MaxHeaders: c.MaxHeaders, MaxBody: int64(c.MaxBody), BodyReadTimeout: c.BodyReadTimeout}
	handler := logging.Requests(logger, "X-Request-Id")(limits.Handler(engines))
	server, front, listener, err := c.listen(handler, logger)
	if err != nil {
		return err
	}
	// Upgraded connections are the handlers'; Shutdown does not wait for them.
	server.RegisterOnShutdown(live.closeTunnels)
	if c.Config != "" {
		rl := &reloader{cli: c, live: live, transport: transport, cache: cache, replay: replay, logger: logger,
			listen: c.Address, admin: adminAddress, digest: routed.file.Digest}
		reloadCtx, stopReloading := context.WithCancel(context.Background())
		reloading := make(chan struct{})
		triggers := rl.watch()
		go func() { defer close(reloading); rl.run(reloadCtx, triggers) }()
		defer func() { stopReloading(); <-reloading }()
	}
	routed.describe(logger.Info().Str("address", listener.Addr().String()).Str("protocols", server.Protocols.String())).Msg("listening")
	if adminAddress != "" {
		admin, err := startAdminServer(adminFlag, adminAddress, c.metrics, func() string { return live.current.Load().notReady() })
		if err != nil {
			return err
		}
		logger.Info().Str("address", admin.Address).Msg("admin listener: the stats page at /, /stats.json, /metrics, /healthz, /readyz, profiles at /debug/pprof/")
		// Stopped after the drain: a load balancer keeps reading /readyz.
		defer func() {
			if err := admin.stop(); err != nil {
				logger.Warn().Err(err).Msg("stopping the admin server")
			}
		}()
		server.RegisterOnShutdown(func() { admin.draining.Store(true) })
	}

	if c.StopAfter > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.StopAfter)
		defer cancel()
	}
	served := make(chan error, 1)
	go func() { served <- front.Serve(listener) }()
	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	releaseSignals()
	return shutdown(front, served, c.ShutdownTimeout, logger)
}

// shutdown stops accepting connections and waits up to timeout for in-flight
// requests; after that it cuts the remaining ones and reports it.
func shutdown(server frontServer, served <-chan error, timeout time.Duration, logger zerolog.Logger) error {
	logger.Info().Stringer("drain_timeout", timeout).Msg("stopping: draining in-flight requests")
	drainCtx, cancel := context.WithCancel(context.Background())
	if timeout > 0 {
		drainCtx, cancel = context.WithTimeout(context.Background(), timeout)
	}
	defer cancel()
	err := server.Shutdown(drainCtx)
	if errors.Is(err, context.DeadlineExceeded) {
		server.Close()
		err = fmt.Errorf("requests still in flight after --shutdown-timeout %s were cut", timeout)
	}
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	if err != nil {
		return fmt.Errorf("stopping: %w", err)
	}
	logger.Info().Msg("stopped")
	return nil
}

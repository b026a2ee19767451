package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// binary is the proxy, built once for the tests that run it as a process.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "brp-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "balancing-reverse-proxy")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// hangGuard bounds waits for things that must happen; it is a deadlock guard,
// not a timing assertion.
const hangGuard = 10 * time.Second

// runToEnd runs the binary with args and returns its exit code, stdout and stderr.
func runToEnd(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitErr.ExitCode(), stdout.String(), stderr.String()
	}
	require.NoError(t, err)
	return 0, stdout.String(), stderr.String()
}

func TestNoArgumentsPrintsTheFlags(t *testing.T) {
	t.Parallel()
	code, _, stderr := runToEnd(t, nil)
	assert.Equal(t, 2, code)
	for _, flag := range []string{"--endpoints", "--terminal-responses", "--fanout", "--address", "--log-file", "--stop-after"} {
		assert.Contains(t, stderr, flag)
	}
}

func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	code, stdout, _ := runToEnd(t, nil, "-help")
	assert.Equal(t, 0, code)
	assert.Contains(t, stdout, "--endpoints")
	code, stdout, _ = runToEnd(t, nil, "--version")
	assert.Equal(t, 0, code)
	assert.NotEmpty(t, strings.TrimSpace(stdout))
}

func TestBadInputIsOneLineAndExitsBeforeListening(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		mentions string
	}{
		{"empty endpoint", []string{"-e", ""}, "endpoints"},
		{"empty element", []string{"-e", "http://a,,http://b"}, "empty endpoint"},
		{"unknown scheme", []string{"-e", "ftp://x"}, `unknown scheme "ftp"`},
		{"no host", []string{"-e", "http://"}, "no host"},
		{"terminal 150", []string{"-e", "http://a", "-t", "150"}, `"150"`},
		{"terminal abc", []string{"-e", "http://a", "-t", "abc"}, `"abc"`},
		{"address without port", []string{"-e", "http://a", "-address", "foo"}, `"foo"`},
		{"address with a bad port", []string{"-e", "http://a", "-address", ":99999"}, `":99999"`},
		{"replay memory below the body buffer", []string{"-e", "http://a", "-max-replay-memory", "1MiB"}, "--max-replay-memory 1048576 is below --max-body-buffer 8388608"},
		{"bad trusted proxy", []string{"-e", "http://a", "-trusted-proxies", "10.0.0.0/99"}, `"10.0.0.0/99"`},
		{"debug address without port", []string{"-e", "http://a", "-debug-address", "localhost"}, `--debug-address "localhost"`},
		{"unknown flag", []string{"-e", "http://a", "-bogus"}, "-bogus: unknown flag"},
		{"ambiguous prefix", []string{"-e", "http://a", "-log"}, "-log: ambiguous flag; it could be -log-date"},
		{"bad log format", []string{"-e", "http://a", "-log-fo", "xml"}, "xml"},
		{"negative duration", []string{"-e", "http://a", "-timeout", "-1s"}, "--timeout"},
		{"bad size", []string{"-e", "http://a", "-max-body-buffer", "lots"}, `"lots"`},
		{"missing endpoints", []string{"-f"}, "--endpoints"},
		{"stray argument", []string{"-e", "http://a", "extra"}, "extra"},
		{"missing value", []string{"-e", "http://a", "-address"}, "-address: needs a value"},
		{"bad hedge delay", []string{"-e", "http://a", "-hedge-delay", "p100"}, `"p100"`},
		{"negative hedge delay", []string{"-e", "http://a", "-hedge-delay", "-5ms"}, `"-5ms"`},
		{"bad budget", []string{"-e", "http://a", "-hedge-budget", "5"}, `"5"`},
		{"fan-out and hedged", []string{"-e", "http://a", "-f", "-hedge"}, "--fanout and --hedge"},
		{"hedge delay bounds", []string{"-e", "http://a", "-hedge-delay-min", "2s", "-hedge-delay-max", "1s"}, "--hedge-delay-min 2s"},
		{"negative max attempts", []string{"-e", "http://a", "-max-attempts", "-1"}, "--max-attempts"},
		{"negative eject after", []string{"-e", "http://a", "-eject-after", "-2"}, "--eject-after"},
		{"bad order", []string{"-e", "http://a", "-order", "random"}, "random"},
		{"bad health path", []string{"-e", "http://a", "-health-path", "healthz"}, `"healthz"`},
		{"zero health interval", []string{"-e", "http://a", "-health-path", "/h", "-health-interval", "0s"}, "--health-interval"},
		{"ambiguous new prefix", []string{"-e", "http://a", "-eject", "3"}, "-eject: ambiguous flag"},
		{"response head cap too small", []string{"-e", "http://a", "-max-response-header-bytes", "100"}, "--max-response-header-bytes 100: accepted: 1024 (1KiB) to 1048576 (1MiB)"},
		{"negative response header cap", []string{"-e", "http://a", "-max-response-headers", "-1"}, "--max-response-headers"},
		{"bad session header", []string{"-e", "http://a", "-session-header", "X Session"}, `--session-header "X Session"`},
		{"bad session cookie", []string{"-e", "http://a", "-session-cookie", "a;b"}, `--session-cookie "a;b"`},
		{"session flag with no id", []string{"-e", "http://a", "-session-required"}, "--session-required needs --session-header or --session-cookie"},
		{"bad session store", []string{"-e", "http://a", "-session-header", "X-S", "-session-store", "mysql://x"}, `--session-store "mysql://x"`},
		{"short session ttl", []string{"-e", "http://a", "-session-header", "X-S", "-session-ttl", "10ms"}, "--session-ttl 10ms"},
		{"bad session unknown", []string{"-e", "http://a", "-session-header", "X-S", "-session-unknown", "maybe"}, "maybe"},
		{"bad session failover", []string{"-e", "http://a", "-session-header", "X-S", "-session-failover", "retry"}, "retry"},
		{"log file that cannot be opened", []string{"-e", "http://a", "-address", "127.0.0.1:0", "-log-file", "/"}, `--log-file "/"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runToEnd(t, nil, tt.args...)
			assert.Equal(t, 2, code)
			assert.Empty(t, stdout, "nothing starts")
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
			assert.Contains(t, stderr, tt.mentions)
		})
	}
}

func TestSessionStoreErrorsKeepThePasswordOut(t *testing.T) {
	t.Parallel()
	code, _, stderr := runToEnd(t, nil, "-e", "http://a", "-session-header", "X-S", "-session-store", "redis://u:hunter2@h:6379/x")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, `--session-store "redis://u:xxxxx@h:6379/x"`)
	assert.NotContains(t, stderr, "hunter2")
}

func TestAddressInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	code, _, stderr := runToEnd(t, nil, "-e", "http://127.0.0.1:1", "-address", ln.Addr().String(), "-log-file", "stderr")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "address already in use")
}

// proxyProcess is a running proxy whose log goes to stdout.
type proxyProcess struct {
	cmd     *exec.Cmd
	address string
	// startLines are the log lines up to the one that says it listens; lines
	// has those that follow.
	startLines []string
	lines      chan string
	exited     chan error
}

var listeningLine = regexp.MustCompile(`listening address=(\S+)`)

// startProxy starts the binary on a free loopback port and waits until it
// listens.
func startProxy(t *testing.T, env []string, args ...string) *proxyProcess {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"-address", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	p := &proxyProcess{cmd: cmd, lines: make(chan string, 1000), exited: make(chan error, 1)}
	// waited is closed once Wait has returned: ProcessState is Wait's to
	// write, and the cleanup must not read it meanwhile.
	waited := make(chan struct{})
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			p.lines <- scanner.Text()
		}
		close(p.lines)
		err := cmd.Wait()
		close(waited)
		p.exited <- err
	}()
	t.Cleanup(func() {
		select {
		case <-waited:
		default:
			_ = cmd.Process.Kill()
		}
	})
	for p.address == "" {
		select {
		case line, ok := <-p.lines:
			require.True(t, ok, "the proxy exited before listening")
			p.startLines = append(p.startLines, line)
			if m := listeningLine.FindStringSubmatch(line); m != nil {
				p.address = m[1]
			}
		case <-time.After(hangGuard):
			t.Fatal("the proxy did not start listening")
		}
	}
	return p
}

// wait waits for the process to exit and returns its exit code and the log
// lines it wrote after starting.
func (p *proxyProcess) wait(t *testing.T) (int, []string) {
	t.Helper()
	var lines []string
	for line := range p.lines {
		lines = append(lines, line)
	}
	select {
	case err := <-p.exited:
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return exitErr.ExitCode(), lines
		}
		require.NoError(t, err)
		return 0, lines
	case <-time.After(hangGuard):
		t.Fatal("the proxy did not exit")
		return -1, nil
	}
}

// getBody sends a GET and returns the response and its whole body.
func getBody(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func TestStopAfterExitsCleanly(t *testing.T) {
	t.Parallel()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	defer backend.Close()
	p := startProxy(t, nil, "-f", "-e", backend.URL, "-s", "1s")
	resp, body := getBody(t, "http://"+p.address+"/")
	assert.Equal(t, "hello", body)
	assert.NotEmpty(t, resp.Header.Get("X-Request-Id"))
	code, lines := p.wait(t)
	assert.Equal(t, 0, code)
	log := strings.Join(lines, "\n")
	assert.Contains(t, log, "request served")
	assert.Contains(t, log, "stopped")
}

func TestHedgedModeWithHealthChecks(t *testing.T) {
	t.Parallel()
	probes := make(chan struct{}, 100)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/healthz" {
			probes <- struct{}{}
			return
		}
		<-r.Context().Done()
	}))
	defer slow.Close()
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "attempt "+r.Header.Get("X-Proxy-Attempt"))
	}))
	defer fast.Close()
	p := startProxy(t, nil, "-e", slow.URL+"/api,"+fast.URL, "--hedge-delay", "10ms", "--debug-headers",
		"--health-path", "/healthz", "--health-interval", "50ms", "-s", "2s")

	resp, body := getBody(t, "http://"+p.address+"/")
	assert.Equal(t, "attempt 2", body)
	assert.Equal(t, "1", resp.Header.Get("X-Proxy-Endpoint"))
	assert.Equal(t, "2", resp.Header.Get("X-Proxy-Attempts"))
	for range 2 {
		select {
		case <-probes:
		case <-time.After(hangGuard):
			t.Fatal("no health probe arrived")
		}
	}
	code, _ := p.wait(t)
	assert.Equal(t, 0, code)
}

func TestSignalDrainsInFlightRequests(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{})
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		_, _ = io.WriteString(w, "finished")
	}))
	defer backend.Close()
	p := startProxy(t, nil, "-e", backend.URL)

	type result struct {
		body string
		err  error
	}
	results := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + p.address + "/slow")
		if err != nil {
			results <- result{err: err}
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		results <- result{string(body), err}
	}()
	select {
	case <-arrived:
	case <-time.After(hangGuard):
		t.Fatal("the request did not reach the endpoint")
	}
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	// Once draining, the proxy takes no new connections.
	require.Eventually(t, func() bool {
		conn, err := net.Dial("tcp", p.address)
		if err == nil {
			conn.Close()
		}
		return err != nil
	}, hangGuard, 10*time.Millisecond)
	close(release)
	got := <-results
	require.NoError(t, got.err)
	assert.Equal(t, "finished", got.body)
	code, _ := p.wait(t)
	assert.Equal(t, 0, code)
}

func TestLogFlags(t *testing.T) {
	t.Parallel()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer backend.Close()
	logFile := filepath.Join(t.TempDir(), "proxy.log")
	require.NoError(t, os.WriteFile(logFile, []byte("kept from before\n"), 0o644))

	cmd := exec.Command(binary, "-e", backend.URL, "-address", "127.0.0.1:0", "-s", "100ms",
		"-log-date=false", "-log-time=false", "-log-prefix", "myproxy", "-log-f", logFile)
	require.NoError(t, cmd.Run())
	content, err := os.ReadFile(logFile)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(content)), "\n")
	require.Greater(t, len(lines), 2)
	assert.Equal(t, "kept from before", lines[0], "the log file is appended to")
	for _, line := range lines[1:] {
		assert.Regexp(t, `^myproxy (INF|WRN|DBG|ERR) `, line, "no time stamp")
	}
}

func TestEndpointsFromTheEnvironment(t *testing.T) {
	t.Parallel()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "from env")
	}))
	defer backend.Close()
	p := startProxy(t, []string{"BALANCING_REVERSE_PROXY_ENDPOINTS=" + backend.URL, "BALANCING_REVERSE_PROXY_STOP_AFTER=1s"})
	_, body := getBody(t, "http://"+p.address+"/")
	assert.Equal(t, "from env", body)
	code, _ := p.wait(t)
	assert.Equal(t, 0, code)
}

func TestSecondSignalEndsTheDrain(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer backend.Close()
	// The drain would wait an hour for the stuck request; only the second
	// signal can end the process within the test.
	p := startProxy(t, nil, "-e", backend.URL, "-shutdown-timeout", "1h", "-try-timeout", "1h")
	go func() {
		if resp, err := http.Get("http://" + p.address + "/stuck"); err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case <-arrived:
	case <-time.After(hangGuard):
		t.Fatal("the request did not reach the endpoint")
	}
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	var draining bool
	for !draining {
		select {
		case line := <-p.lines:
			draining = strings.Contains(line, "draining")
		case <-time.After(hangGuard):
			t.Fatal("the proxy did not start draining")
		}
	}
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	code, _ := p.wait(t)
	assert.NotEqual(t, 0, code, "ended by the signal, not a clean drain")
}

func TestServerTimeouts(t *testing.T) {
	t.Parallel()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer backend.Close()
	p := startProxy(t, nil, "-e", backend.URL, "-read-header-timeout", "200ms", "-idle-timeout", "200ms")

	// readUntilClosed reads what the proxy sends on conn until it closes it.
	readUntilClosed := func(t *testing.T, conn net.Conn) string {
		t.Helper()
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(hangGuard)))
		got, err := io.ReadAll(conn)
		var netErr net.Error
		require.False(t, errors.As(err, &netErr) && netErr.Timeout(), "the proxy kept the connection open")
		return string(got)
	}

	t.Run("a client slow to send its headers is cut off", func(t *testing.T) {
		conn, err := net.Dial("tcp", p.address)
		require.NoError(t, err)
		defer conn.Close()
		_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n")
		require.NoError(t, err)
		assert.NotContains(t, readUntilClosed(t, conn), "200 OK")
	})
	t.Run("an idle keep-alive connection is closed", func(t *testing.T) {
		conn, err := net.Dial("tcp", p.address)
		require.NoError(t, err)
		defer conn.Close()
		_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		assert.Contains(t, readUntilClosed(t, conn), "200 OK")
	})
}

func TestDebugAddressServesProfiles(t *testing.T) {
	t.Parallel()
	p := startProxy(t, nil, "-e", "http://127.0.0.1:1", "-debug-address", "127.0.0.1:0", "-s", "5s")
	var debugAddress string
	for debugAddress == "" {
		select {
		case line, ok := <-p.lines:
			require.True(t, ok, "the proxy exited before its admin listener was up")
			if m := regexp.MustCompile(`admin listener:.* address=(\S+)`).FindStringSubmatch(line); m != nil {
				debugAddress = m[1]
			}
		case <-time.After(hangGuard):
			t.Fatal("no line about the profile server")
		}
	}
	resp, body := getBody(t, "http://"+debugAddress+"/debug/pprof/goroutine?debug=1")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, "goroutine profile: total ")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	code, _ := p.wait(t)
	assert.Equal(t, 0, code)
}

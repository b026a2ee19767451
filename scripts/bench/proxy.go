package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Bounds of the proxy's life cycle.
const (
	proxyReadyTimeout = 10 * time.Second
	proxyStopTimeout  = 15 * time.Second
	proxyStartTries   = 3
	// proxyUsageStatus is the proxy's exit status for a bad command line.
	proxyUsageStatus = 2
)

// UnavailableError is a proxy that rejected its command line, such as a mode
// flag it does not have yet. Line is the first line of what it printed.
type UnavailableError struct {
	Line string
}

func (e *UnavailableError) Error() string {
	return "unavailable: " + e.Line
}

// goCommand returns the go command: the one on PATH, else $GOROOT/bin/go.
func goCommand() (string, error) {
	path, err := exec.LookPath("go")
	if err == nil {
		return path, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		path = filepath.Join(root, "bin", "go")
		if _, statErr := os.Stat(path); statErr == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("finding the go command: %w", err)
}

// buildProxy builds the proxy (the module's main package) into dir and returns
// the binary's path. It must run inside the module.
func buildProxy(ctx context.Context, dir string) (string, error) {
	goBin, err := goCommand()
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("finding the module root (run inside the module, or pass -proxy): go env GOMOD: %q %v", gomod, err)
	}
	path := filepath.Join(dir, "proxy")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", path, ".")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the proxy in %s: %w\n%s", cmd.Dir, err, bytes.TrimSpace(out))
	}
	return path, nil
}

// cappedBuffer keeps the first limit bytes written to it and drops the rest,
// so that a chatty child cannot grow the harness.
type cappedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	limit int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.limit - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (b *cappedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// firstLine returns the first non-blank line of s, trimmed.
func firstLine(s string) string {
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return ""
}

// lastLine returns the last non-blank line of s, trimmed.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// proxyProcess is a running server the harness started (the proxy, nginx,
// HAProxy or Caddy); stop ends it, by its PID.
type proxyProcess struct {
	// name says which server it is in messages, such as "the proxy".
	name string
	// usageStatus, if not 0, is the exit status of a command line the server
	// rejects: such an exit is an *UnavailableError.
	usageStatus int
	// lastLine makes an exit's message the last line of the server's output
	// rather than the first: HAProxy prints notices before its alert.
	lastLine bool
	cmd      *exec.Cmd
	addr     string
	stdout   *cappedBuffer
	stderr   *cappedBuffer
	// exited is closed once the process has been waited for; waitErr and
	// cmd.ProcessState are set by then.
	exited  chan struct{}
	waitErr error
}

// URL is the server's base URL.
func (p *proxyProcess) URL() string {
	return "http://" + p.addr
}

// serverSpec is how to start a server that listens on an address it is given.
type serverSpec struct {
	// name, usageStatus and lastLine are those of proxyProcess.
	name        string
	usageStatus int
	lastLine    bool
	path        string
	// args returns the command line for listening on addr; it may write a
	// configuration file first.
	args func(addr string) ([]string, error)
}

// startProxy starts the binary at path in front of endpointURLs with the mode's
// flags on a free port of 127.0.0.1 and returns once it answers HTTP. A proxy
// that rejects its command line gives an *UnavailableError.
func startProxy(ctx context.Context, path string, endpointURLs, modeArgs []string) (*proxyProcess, error) {
	return startServer(ctx, serverSpec{
		name:        "the proxy",
		usageStatus: proxyUsageStatus,
		path:        path,
		args: func(addr string) ([]string, error) {
			return append([]string{
				"-address", addr,
				"-endpoints", strings.Join(endpointURLs, ","),
				"-log-level", "warn",
			}, modeArgs...), nil
		},
	})
}

// startServer starts spec on a free port of 127.0.0.1 and returns once it
// answers HTTP. A server that exits for another reason than its command line
// (such as its port taken in the meantime) is retried on another port a few
// times.
func startServer(ctx context.Context, spec serverSpec) (*proxyProcess, error) {
	var err error
	for range proxyStartTries {
		var p *proxyProcess
		p, err = startServerOnce(ctx, spec)
		if err == nil {
			return p, nil
		}
		var unavailable *UnavailableError
		if errors.As(err, &unavailable) || ctx.Err() != nil {
			return nil, err
		}
	}
	return nil, err
}

func startServerOnce(ctx context.Context, spec serverSpec) (*proxyProcess, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args, err := spec.args(addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.name, err)
	}
	p := &proxyProcess{
		name:        spec.name,
		usageStatus: spec.usageStatus,
		lastLine:    spec.lastLine,
		cmd:         exec.Command(spec.path, args...),
		addr:        addr,
		stdout:      &cappedBuffer{limit: 64 << 10},
		stderr:      &cappedBuffer{limit: 64 << 10},
		exited:      make(chan struct{}),
	}
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = p.stderr
	setParentDeathSignal(p.cmd)
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", spec.name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	if err := p.waitReady(ctx); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls the server until it answers any HTTP request, it exits, ctx
// ends or proxyReadyTimeout passes.
func (p *proxyProcess) waitReady(ctx context.Context) error {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(proxyReadyTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return p.exitError()
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if _, err := get(ctx, client, p.URL()+"/bench-ready", phaseWarmup, nil); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%s did not answer on %s within %s", p.name, p.addr, proxyReadyTimeout)
}

// exitError describes why the exited server ended: an *UnavailableError for a
// usage error, else its status and first line of output.
func (p *proxyProcess) exitError() error {
	pick := firstLine
	if p.lastLine {
		pick = lastLine
	}
	line := pick(p.stderr.String())
	if line == "" {
		line = pick(p.stdout.String())
	}
	if line == "" {
		line = fmt.Sprintf("exited: %v", p.waitErr)
	}
	if p.usageStatus != 0 && p.cmd.ProcessState.ExitCode() == p.usageStatus {
		return &UnavailableError{Line: line}
	}
	return fmt.Errorf("%s exited (%v): %s", p.name, p.waitErr, line)
}

// hasExited reports whether the server ended on its own (before stop).
func (p *proxyProcess) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process's PID, waits up to proxyStopTimeout for
// the drain, then kills it. It returns the CPU time the process used (for
// nginx, its master's and the workers it reaped).
func (p *proxyProcess) stop() time.Duration {
	if !p.hasExited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		timer := time.NewTimer(proxyStopTimeout)
		select {
		case <-p.exited:
		case <-timer.C:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		timer.Stop()
	}
	state := p.cmd.ProcessState
	return state.UserTime() + state.SystemTime()
}

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

// Bounds of a child process's life cycle.
const (
	readyTimeout = 10 * time.Second
	stopTimeout  = 15 * time.Second
	// startTries is how many ports a child is tried on: one that was free a
	// moment ago may have been taken since.
	startTries = 3
	// outputLimit is how much of a child's output is kept, for error messages.
	outputLimit = 64 << 10
)

// buildBinaries builds the proxy and the dummy server into dir and returns
// their paths. It must run inside the module.
func buildBinaries(ctx context.Context, dir string) (proxyPath, dummyPath string, err error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		if root := os.Getenv("GOROOT"); root != "" {
			goBin, err = filepath.Join(root, "bin", "go"), nil
		}
	}
	if err != nil {
		return "", "", fmt.Errorf("finding the go command: %w", err)
	}
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", "", fmt.Errorf("finding the module root (run inside the module): go env GOMOD: %q %v", gomod, err)
	}
	proxyPath, dummyPath = filepath.Join(dir, "proxy"), filepath.Join(dir, "dummy-http-server")
	for path, pkg := range map[string]string{proxyPath: ".", dummyPath: "./dummy-http-server"} {
		cmd := exec.CommandContext(ctx, goBin, "build", "-o", path, pkg)
		cmd.Dir = filepath.Dir(gomod)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("building %s: %w\n%s", pkg, err, bytes.TrimSpace(out))
		}
	}
	return proxyPath, dummyPath, nil
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

// child is a process the harness started; stop ends it. The harness signals
// only its children, by PID, and the kernel ends them if the harness dies.
type child struct {
	name   string
	cmd    *exec.Cmd
	output *cappedBuffer // stdout and stderr together
	// exited is closed once the process has been waited for; waitErr is set
	// by then.
	exited  chan struct{}
	waitErr error
}

// startChild starts path with args.
func startChild(name, path string, args []string) (*child, error) {
	c := &child{
		name:   name,
		cmd:    exec.Command(path, args...),
		output: &cappedBuffer{limit: outputLimit},
		exited: make(chan struct{}),
	}
	c.cmd.Stdout, c.cmd.Stderr = c.output, c.output
	setParentDeathSignal(c.cmd)
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// pid is the child's process id.
func (c *child) pid() int {
	return c.cmd.Process.Pid
}

// hasExited reports whether the child has ended.
func (c *child) hasExited() bool {
	select {
	case <-c.exited:
		return true
	default:
		return false
	}
}

// exitError says how the exited child ended, with the start of its output.
func (c *child) exitError() error {
	out := strings.TrimSpace(c.output.String())
	if len(out) > 500 {
		out = out[:500] + "..."
	}
	return fmt.Errorf("%s exited (%v): %s", c.name, c.waitErr, out)
}

// stop sends SIGTERM, waits up to stopTimeout for the child to drain, then
// kills it. It reports a child that had ended by itself before.
func (c *child) stop() error {
	if c.hasExited() {
		return c.exitError()
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-c.exited:
	case <-timer.C:
		_ = c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed it", c.name, stopTimeout)
	}
	return nil
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

// localAddr is 127.0.0.1:port.
func localAddr(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// waitUntil calls ready every 20ms until it returns nil, c exits, ctx ends
// or readyTimeout passes.
func (c *child) waitUntil(ctx context.Context, ready func(context.Context) error) error {
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-c.exited:
			return c.exitError()
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if err = ready(ctx); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%s not ready within %s: %w", c.name, readyTimeout, err)
}

// startOnFreePorts starts a child with the args that ports gives for free
// ports and waits until it is ready; a child that exits (its port taken in
// the meantime) is tried again on other ports, startTries times at most.
func startOnFreePorts(ctx context.Context, name, path string, portCount int,
	args func(ports []int) []string, ready func(ctx context.Context, ports []int) error,
) (*child, []int, error) {
	var err error
	for range startTries {
		ports := make([]int, portCount)
		for i := range ports {
			if ports[i], err = freePort(); err != nil {
				return nil, nil, err
			}
		}
		var c *child
		if c, err = startChild(name, path, args(ports)); err != nil {
			return nil, nil, err
		}
		err = c.waitUntil(ctx, func(ctx context.Context) error { return ready(ctx, ports) })
		if err == nil {
			return c, ports, nil
		}
		_ = c.stop()
		if ctx.Err() != nil {
			return nil, nil, err
		}
	}
	return nil, nil, err
}

// dialAndReset connects to addr and closes with a reset, which leaves no
// TIME_WAIT socket behind to be counted.
func dialAndReset(ctx context.Context, addr string) error {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	return conn.Close()
}

// startDummy starts the dummy server at path with args on a free port of
// 127.0.0.1 and returns it with its port once it accepts connections.
func startDummy(ctx context.Context, path, name string, args []string) (*child, int, error) {
	c, ports, err := startOnFreePorts(ctx, name, path, 1,
		func(ports []int) []string {
			return append([]string{"-address", localAddr(ports[0]), "-name", name}, args...)
		},
		func(ctx context.Context, ports []int) error { return dialAndReset(ctx, localAddr(ports[0])) })
	if err != nil {
		return nil, 0, err
	}
	return c, ports[0], nil
}

// proxyProcess is a proxy started by startProxy.
type proxyProcess struct {
	*child
	port      int
	debugPort int
}

// startProxy starts the proxy at path in front of endpointURLs with args, on
// a free port of 127.0.0.1 and its -debug-address on another, and returns it
// once its debug server answers (it starts after the proxy's listener).
func startProxy(ctx context.Context, path string, endpointURLs, args []string) (*proxyProcess, error) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	c, ports, err := startOnFreePorts(ctx, "the proxy", path, 2,
		func(ports []int) []string {
			return append([]string{
				"-address", localAddr(ports[0]), "-debug-address", localAddr(ports[1]),
				"-endpoints", strings.Join(endpointURLs, ","), "-log-level", "warn",
			}, args...)
		},
		func(ctx context.Context, ports []int) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+localAddr(ports[1])+"/debug/pprof/", nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return errors.New(resp.Status)
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	return &proxyProcess{child: c, port: ports[0], debugPort: ports[1]}, nil
}

// URL is the proxy's base URL.
func (p *proxyProcess) URL() string {
	return "http://" + localAddr(p.port)
}

// debugURL is the base URL of the proxy's -debug-address.
func (p *proxyProcess) debugURL() string {
	return "http://" + localAddr(p.debugPort)
}

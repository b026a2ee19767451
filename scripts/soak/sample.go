package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sample is one look at the proxy process.
type sample struct {
	// At is the time since the mode started; Phase is phaseLoad or phaseRest.
	At    time.Duration
	Phase string
	// Goroutines is the total of the proxy's goroutine profile.
	Goroutines int
	// FDs counts the entries of /proc/PID/fd.
	FDs int
	// RSSKB is VmRSS of /proc/PID/status, in kB.
	RSSKB int64
	// HeapKB is the heap in use right after a garbage collection, in kB: the
	// live heap. Only rest samples have it (a collection disturbs the load).
	HeapKB int64
	// ClientConns counts the proxy's sockets on its listening port, other than
	// the listener; UpstreamConns the proxy's established sockets towards the
	// endpoints' ports; CloseWait the proxy's sockets in CLOSE_WAIT (the peer
	// closed, the proxy has not yet).
	ClientConns   int
	UpstreamConns int
	CloseWait     int
	// TimeWait counts TIME_WAIT sockets towards the endpoints' ports: the ends
	// of connections that the proxy closed first. They belong to the kernel,
	// not to the proxy, and last a minute.
	TimeWait int
}

// Phases of a sample.
const (
	phaseLoad = "load"
	phaseRest = "rest"
)

// goroutinesPerUpstreamConn is what an HTTP/1 connection in the proxy's
// transport costs: its read loop and its write loop.
const goroutinesPerUpstreamConn = 2

// NetGoroutines is the goroutine count net of the connections the proxy holds
// (two per upstream connection, one per client connection), so that a pool of
// idle upstream connections, which the transport keeps for 90s, is not taken
// for a leak.
func (s sample) NetGoroutines() int {
	return s.Goroutines - goroutinesPerUpstreamConn*s.UpstreamConns - s.ClientConns
}

// NetFDs is the open file count net of the connections the proxy holds.
func (s sample) NetFDs() int {
	return s.FDs - s.UpstreamConns - s.ClientConns
}

// TCP states of /proc/net/tcp (include/net/tcp_states.h).
const (
	tcpEstablished = 0x01
	tcpTimeWait    = 0x06
	tcpCloseWait   = 0x08
	tcpListen      = 0x0A
)

// socket is a line of /proc/net/tcp or /proc/net/tcp6.
type socket struct {
	LocalPort  int
	RemotePort int
	State      int
	// Inode is 0 for sockets no process holds, such as TIME_WAIT ones.
	Inode uint64
}

// parseNetTCP reads the table of /proc/net/tcp or /proc/net/tcp6.
func parseNetTCP(r io.Reader) ([]socket, error) {
	var sockets []socket
	scanner := bufio.NewScanner(r)
	header := true
	for scanner.Scan() {
		if header {
			header = false
			continue
		}
		fields := strings.Fields(scanner.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 10 {
			return nil, fmt.Errorf("/proc/net/tcp line %q: want at least 10 fields", scanner.Text())
		}
		local, err := hexPort(fields[1])
		if err != nil {
			return nil, err
		}
		remote, err := hexPort(fields[2])
		if err != nil {
			return nil, err
		}
		state, err := strconv.ParseUint(fields[3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("/proc/net/tcp state %q: %w", fields[3], err)
		}
		inode, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("/proc/net/tcp inode %q: %w", fields[9], err)
		}
		sockets = append(sockets, socket{LocalPort: local, RemotePort: remote, State: int(state), Inode: inode})
	}
	return sockets, scanner.Err()
}

// hexPort returns the port of an address of /proc/net/tcp, such as
// 0100007F:1F40 (IPv4) or 0000000000000000FFFF00000100007F:1F40 (IPv6).
func hexPort(address string) (int, error) {
	_, hex, ok := strings.Cut(address, ":")
	if !ok {
		return 0, fmt.Errorf("/proc/net/tcp address %q: want HEXADDRESS:HEXPORT", address)
	}
	port, err := strconv.ParseUint(hex, 16, 16)
	if err != nil {
		return 0, fmt.Errorf("/proc/net/tcp address %q: %w", address, err)
	}
	return int(port), nil
}

// socketCounts is what classify finds.
type socketCounts struct {
	client, upstream, closeWait, timeWait int
}

// classify counts, of sockets, those the proxy holds (their inode is in
// owned) on its port proxyPort (clients) and towards endpointPorts
// (upstream), and the TIME_WAIT ones towards endpointPorts.
func classify(sockets []socket, owned map[uint64]bool, proxyPort int, endpointPorts []int) socketCounts {
	var c socketCounts
	// The kernel lists the table in pieces, and a socket can show twice
	// when the table changes in between.
	seen := make(map[uint64]bool, len(owned))
	for _, s := range sockets {
		towardsEndpoint := slices.Contains(endpointPorts, s.RemotePort)
		if s.State == tcpTimeWait {
			if towardsEndpoint {
				c.timeWait++
			}
			continue
		}
		if s.Inode == 0 || !owned[s.Inode] || seen[s.Inode] {
			continue
		}
		seen[s.Inode] = true
		if s.State == tcpCloseWait {
			c.closeWait++
		}
		switch {
		case s.LocalPort == proxyPort && s.State != tcpListen:
			c.client++
		case towardsEndpoint && s.State == tcpEstablished:
			c.upstream++
		}
	}
	return c
}

// parseVmRSS returns VmRSS, in kB, from the text of /proc/PID/status.
func parseVmRSS(status []byte) (int64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		fields := strings.Fields(string(rest))
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("/proc/PID/status line %q: want VmRSS: N kB", bytes.TrimSpace(line))
		}
		return strconv.ParseInt(fields[0], 10, 64)
	}
	return 0, errors.New("/proc/PID/status has no VmRSS line")
}

// parseGoroutineTotal returns N from a goroutine profile of debug=1, which
// starts with "goroutine profile: total N".
func parseGoroutineTotal(profile []byte) (int, error) {
	line, _, _ := bytes.Cut(profile, []byte("\n"))
	rest, ok := bytes.CutPrefix(line, []byte("goroutine profile: total "))
	if !ok {
		return 0, fmt.Errorf("goroutine profile starts with %q: want \"goroutine profile: total N\"", line)
	}
	return strconv.Atoi(string(rest))
}

// parseMemStat returns the value of "# name = N" in a heap profile of
// debug=1, which ends with the runtime.MemStats.
func parseMemStat(profile []byte, name string) (int64, error) {
	prefix := []byte("# " + name + " = ")
	for line := range bytes.Lines(profile) {
		if rest, ok := bytes.CutPrefix(line, prefix); ok {
			value, _, _ := bytes.Cut(bytes.TrimSpace(rest), []byte(" "))
			return strconv.ParseInt(string(value), 10, 64)
		}
	}
	return 0, fmt.Errorf("heap profile has no %q line", "# "+name)
}

// sampler takes samples of one proxy process. Its figures come from /proc,
// so it needs Linux, and from the proxy's -debug-address.
type sampler struct {
	pid           int
	proxyPort     int
	endpointPorts []int
	debugURL      string // http://host:port of -debug-address
	// client asks the debug server without keep-alive, so that no connection
	// of the harness's stays in the proxy between samples.
	client *http.Client
	// procRoot is /proc; tests point it elsewhere.
	procRoot string
}

func newSampler(pid, proxyPort int, endpointPorts []int, debugURL string) *sampler {
	return &sampler{
		pid: pid, proxyPort: proxyPort, endpointPorts: endpointPorts, debugURL: debugURL,
		client:   &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second},
		procRoot: "/proc",
	}
}

// take reads every figure. The files come first, so that the connection of
// the goroutine profile's request is in none of them.
func (s *sampler) take(ctx context.Context, at time.Duration, phase string) (sample, error) {
	smp := sample{At: at, Phase: phase}
	fds, owned, err := s.openFiles()
	if err != nil {
		return smp, err
	}
	smp.FDs = fds
	var sockets []socket
	for _, name := range []string{"tcp", "tcp6"} {
		table, err := s.netTCP(name)
		if err != nil {
			return smp, err
		}
		sockets = append(sockets, table...)
	}
	counts := classify(sockets, owned, s.proxyPort, s.endpointPorts)
	smp.ClientConns, smp.UpstreamConns = counts.client, counts.upstream
	smp.CloseWait, smp.TimeWait = counts.closeWait, counts.timeWait
	status, err := os.ReadFile(filepath.Join(s.procRoot, strconv.Itoa(s.pid), "status"))
	if err != nil {
		return smp, err
	}
	if smp.RSSKB, err = parseVmRSS(status); err != nil {
		return smp, err
	}
	profile, err := s.debug(ctx, "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return smp, err
	}
	smp.Goroutines, err = parseGoroutineTotal(profile)
	return smp, err
}

// openFiles counts the proxy's open files and returns the inodes of its
// sockets.
func (s *sampler) openFiles() (int, map[uint64]bool, error) {
	dir := filepath.Join(s.procRoot, strconv.Itoa(s.pid), "fd")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, nil, err
	}
	owned := make(map[uint64]bool, len(entries))
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed since ReadDir
		}
		if rest, ok := strings.CutPrefix(target, "socket:["); ok {
			if inode, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64); err == nil {
				owned[inode] = true
			}
		}
	}
	return len(entries), owned, nil
}

// netTCP reads /proc/net/NAME; a missing table (no IPv6) is empty.
func (s *sampler) netTCP(name string) ([]socket, error) {
	f, err := os.Open(filepath.Join(s.procRoot, "net", name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseNetTCP(f)
}

// debug returns the body of a GET of path on the proxy's debug server.
func (s *sampler) debug(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.debugURL+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return body, nil
}

// liveMemory returns the proxy's heap in use and goroutine stacks in use, in
// bytes, after a garbage collection that the request asks for.
func (s *sampler) liveMemory(ctx context.Context) (heap, stacks int64, err error) {
	profile, err := s.debug(ctx, "/debug/pprof/heap?debug=1&gc=1")
	if err != nil {
		return 0, 0, err
	}
	if heap, err = parseMemStat(profile, "HeapInuse"); err != nil {
		return 0, 0, err
	}
	stacks, err = parseMemStat(profile, "Stack")
	return heap, stacks, err
}

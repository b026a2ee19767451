package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Bounds of the idle-connection measurement.
const (
	// idleTargetKB is the most an idle keep-alive client connection may cost.
	idleTargetKB = 50
	// fileHeadroom is what the harness needs open besides the connections.
	fileHeadroom = 256
	// openParallel is how many connections are being opened at once.
	openParallel = 64
	// openTimeout bounds opening every connection; connTimeout each one.
	openTimeout = 5 * time.Minute
	connTimeout = 30 * time.Second
	// idlePause lets the proxy's connections reach their idle state (its
	// per-request buffers back in their pools) before the second sample.
	idlePause = 2 * time.Second
	// warmupConns are opened, used and closed before the first sample, so
	// that the first-use costs (pools, the upstream connection) are in it.
	warmupConns = 100
)

// openIdleConns opens n connections to addr, at most parallel at a time,
// sends one keep-alive GET on each and reads the whole answer, which must
// be a 200, and returns them open. On an error it closes what it opened.
func openIdleConns(ctx context.Context, addr string, n, parallel int) ([]net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	conns := make([]net.Conn, n)
	next := make(chan int)
	errs := make(chan error, parallel)
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Go(func() {
			for i := range next {
				conn, err := openIdleConn(ctx, addr, i)
				if err != nil {
					errs <- err
					cancel()
					return
				}
				conns[i] = conn
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	err := <-errs
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("opening %d connections: %w", n, ctx.Err())
	}
	if err != nil {
		closeAll(conns)
		return nil, err
	}
	return conns, nil
}

// openIdleConn opens connection i and sends its one request.
func openIdleConn(ctx context.Context, addr string, i int) (net.Conn, error) {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connection %d: %w", i, err)
	}
	_ = conn.SetDeadline(time.Now().Add(connTimeout))
	if _, err := fmt.Fprintf(conn, "GET /idle/%d HTTP/1.1\r\nHost: soak\r\n\r\n", i); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connection %d: %w", i, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("connection %d: %w", i, err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && (resp.StatusCode != http.StatusOK || resp.Close) {
		err = fmt.Errorf("answer %s, closing %t: want 200 on a connection kept open", resp.Status, resp.Close)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("connection %d: %w", i, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// closeAll closes every connection of conns that is not nil.
func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// idleCost is what n idle connections cost, from before and after samples.
type idleCost struct {
	n                       int
	before, after           sample
	heapBefore, heapAfter   int64 // bytes, after a collection
	stackBefore, stackAfter int64
}

// perConnKB is the RSS growth per connection, in kB.
func (c idleCost) perConnKB() float64 {
	return float64(c.after.RSSKB-c.before.RSSKB) / float64(c.n)
}

// print writes the figures and returns whether they are within the target.
func (c idleCost) print(w io.Writer) bool {
	perConn := func(before, after int64) float64 { return float64(after-before) / float64(c.n) }
	fmt.Fprintf(w, "idle keep-alive client connections: %d (the proxy holds %d)\n", c.n, c.after.ClientConns)
	fmt.Fprintf(w, "proxy RSS: %d kB before, %d kB after: %.1f kB per connection\n",
		c.before.RSSKB, c.after.RSSKB, c.perConnKB())
	fmt.Fprintf(w, "of which, after a collection: heap in use %.1f kB, goroutine stacks %.1f kB per connection\n",
		perConn(c.heapBefore, c.heapAfter)/1024, perConn(c.stackBefore, c.stackAfter)/1024)
	fmt.Fprintf(w, "goroutines: %d before, %d after (%.2f per connection); open files: %d before, %d after (%.2f per connection)\n",
		c.before.Goroutines, c.after.Goroutines, perConn(int64(c.before.Goroutines), int64(c.after.Goroutines)),
		c.before.FDs, c.after.FDs, perConn(int64(c.before.FDs), int64(c.after.FDs)))
	ok := c.perConnKB() <= idleTargetKB && c.after.ClientConns >= c.n
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "%s: %.1f kB per idle connection (target: at most %d kB), %d of %d connections held\n",
		verdict, c.perConnKB(), idleTargetKB, c.after.ClientConns, c.n)
	return ok
}

// runIdleConns measures the proxy's memory per idle keep-alive client
// connection with n of them, in front of one quiet dummy endpoint.
func runIdleConns(ctx context.Context, n int, proxyPath, dummyPath string, stdout, stderr io.Writer) int {
	limit, err := raiseFileLimit(uint64(n + fileHeadroom))
	if err != nil {
		fmt.Fprintf(stderr, "soak: -idle-conns %d: %v\n", n, err)
		return exitHarness
	}
	fmt.Fprintf(stderr, "soak: open-file limit of the harness raised to %d\n", limit)
	dummy, port, err := startDummy(ctx, dummyPath, "idle-0", []string{"-delay-responding=false", "-random-errors=false"})
	if err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return exitHarness
	}
	defer dummy.stop()
	// The connections must outlive the measurement: a long -idle-timeout.
	proxy, err := startProxy(ctx, proxyPath, []string{"http://" + localAddr(port)}, []string{"-idle-timeout", "30m"})
	if err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return exitHarness
	}
	defer proxy.stop()
	smp := newSampler(proxy.pid(), proxy.port, []int{port}, proxy.debugURL())
	start := time.Now()
	at := func() time.Duration { return time.Since(start) }
	addr := localAddr(proxy.port)

	cost, err := measureIdle(ctx, smp, at, addr, n, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", proxyFailure(proxy, err))
		return exitHarness
	}
	printSamples(stdout, "idle connections", []sample{cost.before, cost.after})
	fmt.Fprintln(stdout)
	ok := cost.print(stdout)

	// Closing them must give back what they took.
	closed, err := settle(ctx, smp, at)
	if err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", proxyFailure(proxy, err))
		return exitHarness
	}
	back := closed.NetGoroutines()-cost.before.NetGoroutines() <= goroutineSlack && closed.ClientConns == 0
	verdict := "ok  "
	if !back {
		verdict, ok = "FAIL", false
	}
	fmt.Fprintf(stdout, "%s after closing them: %d goroutines net of connections (%d before; tolerance +%d), %d client connections held, RSS %d kB\n",
		verdict, closed.NetGoroutines(), cost.before.NetGoroutines(), goroutineSlack, closed.ClientConns, closed.RSSKB)
	if err := proxy.stop(); err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return exitGrew
	}
	if !ok {
		return exitGrew
	}
	return exitOK
}

// measureIdle warms the proxy up, samples it at rest, opens n idle
// connections, samples it again, and closes them.
func measureIdle(ctx context.Context, smp *sampler, at func() time.Duration, addr string, n int, progress io.Writer) (idleCost, error) {
	cost := idleCost{n: n}
	warm, err := openIdleConns(ctx, addr, warmupConns, openParallel)
	if err != nil {
		return cost, fmt.Errorf("warm-up: %w", err)
	}
	closeAll(warm)
	if cost.before, err = settle(ctx, smp, at); err != nil {
		return cost, err
	}
	if cost.heapBefore, cost.stackBefore, err = smp.liveMemory(ctx); err != nil {
		return cost, err
	}

	fmt.Fprintf(progress, "soak: opening %d idle connections\n", n)
	started := time.Now()
	conns, err := openIdleConns(ctx, addr, n, openParallel)
	if err != nil {
		return cost, err
	}
	defer closeAll(conns)
	fmt.Fprintf(progress, "soak: opened them in %s\n", time.Since(started).Round(time.Millisecond))
	if !sleep(ctx, idlePause) {
		return cost, ctx.Err()
	}
	if cost.after, err = smp.take(ctx, at(), phaseRest); err != nil {
		return cost, err
	}
	cost.heapAfter, cost.stackAfter, err = smp.liveMemory(ctx)
	return cost, err
}

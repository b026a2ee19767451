package h1server

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"balancing-reverse-proxy/scope"
)

// sweepTick is the period of the server's sweep for requests to watch; a
// request is watched once it has run for two to three ticks. Go's server
// starts that read at once, for every request, where most are answered
// before it would find anything; here a request answered within the ticks
// costs two atomic operations and no timer (resetting one per request woke
// the runtime's poller, and cost more than the read).
const sweepTick = 5 * time.Millisecond

// idleSweeps is how many ticks without an armed request the sweep goes on
// before it sleeps until the next one is armed.
const idleSweeps = 200

// watch reads the connection while a request's handler runs, once the
// request is all read and the handler has run for a few sweep ticks: an
// error or the end of the connection means the client has gone, and
// cancels the request's context. A byte that arrives (the next request's) is
// kept for the next read.
type watch struct {
	conn *conn
	// armedAt is the sweep tick at which the watch was armed, 0 if it is
	// not; the sweep reads it without the lock.
	armedAt atomic.Int64
	// done takes a value when a read ends.
	done chan struct{}

	mu      sync.Mutex
	armed   bool
	reading bool
	request *scope.Context
	// aborting tells the read that its deadline error is disarm's.
	aborting bool
	got      [1]byte
	gotByte  bool
	// goneErr is the error that ended a read: the client left.
	goneErr error
}

// arm readies the watch for the request of the context request. It
// does nothing while the connection's buffer holds bytes (the client has
// sent more), nor when the watch is armed.
func (w *watch) arm(request *scope.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.armed || w.conn.br.Buffered() > 0 || len(w.conn.src.held) > 0 {
		return
	}
	w.armed = true
	w.request = request
	w.conn.server.sweep.armed(&w.armedAt)
}

// startIfDue starts the read of a watch armed two ticks before now or
// earlier.
func (w *watch) startIfDue(now int64) {
	if at := w.armedAt.Load(); at == 0 || now-at < 2 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.armed && !w.reading {
		w.reading = true
		w.armedAt.Store(0)
		go w.read()
	}
}

// cancelArmed cancels the context of the request the watch is armed for.
func (w *watch) cancelArmed() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.armed {
		w.request.Cancel()
	}
}

// read is the watch itself, on a goroutine of its own.
func (w *watch) read() {
	n, err := w.conn.raw.Read(w.got[:])
	w.mu.Lock()
	w.gotByte = n == 1
	var timeout net.Error
	if err != nil && !(w.aborting && (errors.As(err, &timeout) && timeout.Timeout() || errors.Is(err, os.ErrDeadlineExceeded))) {
		w.goneErr = err
		w.request.Cancel()
	}
	w.mu.Unlock()
	w.done <- struct{}{}
}

// disarm ends the watch: if its read has started, it makes it return and
// keeps the byte it may have read.
func (w *watch) disarm() {
	w.mu.Lock()
	if !w.armed {
		w.mu.Unlock()
		return
	}
	w.armed = false
	w.armedAt.Store(0)
	w.conn.server.sweep.disarmed()
	if !w.reading {
		w.mu.Unlock()
		return
	}
	w.aborting = true
	w.mu.Unlock()
	_ = w.conn.raw.SetReadDeadline(longAgo)
	<-w.done
	_ = w.conn.raw.SetReadDeadline(time.Time{})
	w.mu.Lock()
	w.reading = false
	w.aborting = false
	if w.gotByte {
		w.conn.src.held = append(w.conn.src.held, w.got[0])
		w.gotByte = false
	}
	w.mu.Unlock()
}

// longAgo is a deadline in the past, to make a read return at once.
var longAgo = time.Unix(1, 0)

// sweep is the server's one clock for its watches: it ticks while any is
// armed, and starts those that are due.
type sweep struct {
	server *Server
	tick   atomic.Int64
	// count is the number of watches armed.
	count atomic.Int64
	// sleeping is set while the sweep waits on wake.
	sleeping atomic.Bool
	wake     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	// running counts the sweep's goroutines, started by Serve: the watches'
	// and the expiry pass's (see expiry.go).
	running sync.WaitGroup
}

func newSweep(s *Server) *sweep {
	sw := &sweep{server: s, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	sw.tick.Store(1)
	return sw
}

// armed notes a watch armed now, at, and wakes the sweep if it sleeps.
func (sw *sweep) armed(at *atomic.Int64) {
	at.Store(sw.tick.Load())
	sw.count.Add(1)
	if sw.sleeping.Load() {
		select {
		case sw.wake <- struct{}{}:
		default:
		}
	}
}

func (sw *sweep) disarmed() { sw.count.Add(-1) }

// run ticks until end: it starts the due watches, and sleeps after
// idleSweeps ticks with none armed.
func (sw *sweep) run() {
	defer sw.running.Done()
	ticker := time.NewTicker(sweepTick)
	defer ticker.Stop()
	idle := 0
	for {
		select {
		case <-sw.stop:
			return
		case <-ticker.C:
		}
		now := sw.tick.Add(1)
		if sw.count.Load() == 0 {
			if idle++; idle < idleSweeps {
				continue
			}
			if !sw.sleep(ticker) {
				return
			}
			idle = 0
			continue
		}
		idle = 0
		sw.server.mu.Lock()
		for c := range sw.server.conns {
			c.watch.startIfDue(now)
		}
		sw.server.mu.Unlock()
	}
}

// sleep waits for a watch to be armed; it reports false when the sweep is
// to end.
func (sw *sweep) sleep(ticker *time.Ticker) bool {
	ticker.Stop()
	sw.sleeping.Store(true)
	defer sw.sleeping.Store(false)
	if sw.count.Load() == 0 {
		select {
		case <-sw.stop:
			return false
		case <-sw.wake:
		}
	}
	ticker.Reset(sweepTick)
	return true
}

// start runs the sweep on a goroutine of its own, and the expiry pass on
// another when the server has timeouts.
func (sw *sweep) start() {
	fallback := sw.server.fallback
	tick := expiryTick(fallback.ReadHeaderTimeout, fallback.IdleTimeout)
	sw.running.Add(1)
	go sw.run()
	if tick > 0 {
		sw.running.Add(1)
		go sw.runExpiry(tick)
	}
}

// end stops the sweep and waits for it, if it runs.
func (sw *sweep) end() {
	sw.stopOnce.Do(func() { close(sw.stop) })
	sw.running.Wait()
}

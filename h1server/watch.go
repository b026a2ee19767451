package h1server

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// watchDelay is how long a request runs before the server starts to watch
// its connection for the client's leaving. Go's server starts that read at
// once, for every request, where most are answered before it would find
// anything; here a request answered within the delay costs a timer's reset
// and stop.
const watchDelay = 5 * time.Millisecond

// watch reads the connection while a request's handler runs, once the
// request is all read and the handler has run for watchDelay: an error or the
// end of the connection means the client has gone, and cancels the
// request's context. A byte that arrives (the next request's) is kept for the
// next read.
type watch struct {
	conn  *conn
	timer *time.Timer
	// done takes a value when a read ends.
	done chan struct{}

	mu     sync.Mutex
	armed  bool
	cancel context.CancelFunc
	// aborting tells the read that its deadline error is disarm's.
	aborting bool
	got      [1]byte
	gotByte  bool
	// goneErr is the error that ended a read: the client left.
	goneErr error
}

// arm starts the watch for the request whose context cancel cancels. It
// does nothing while the connection's buffer holds bytes (the client has
// sent more), nor when the watch is armed.
func (w *watch) arm(cancel context.CancelFunc) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.armed || w.conn.br.Buffered() > 0 || len(w.conn.src.held) > 0 {
		return
	}
	w.armed = true
	w.cancel = cancel
	if w.timer == nil {
		w.timer = time.AfterFunc(watchDelay, w.read)
		return
	}
	w.timer.Reset(watchDelay)
}

// read is the watch itself, on the timer's goroutine.
func (w *watch) read() {
	n, err := w.conn.raw.Read(w.got[:])
	w.mu.Lock()
	w.gotByte = n == 1
	var timeout net.Error
	if err != nil && !(w.aborting && (errors.As(err, &timeout) && timeout.Timeout() || errors.Is(err, os.ErrDeadlineExceeded))) {
		w.goneErr = err
		w.cancel()
	}
	w.mu.Unlock()
	w.done <- struct{}{}
}

// disarm ends the watch: it stops the timer or, if the read has started,
// makes it return, and keeps the byte it may have read.
func (w *watch) disarm() {
	w.mu.Lock()
	if !w.armed {
		w.mu.Unlock()
		return
	}
	w.armed = false
	if w.timer.Stop() {
		w.mu.Unlock()
		return
	}
	w.aborting = true
	w.mu.Unlock()
	_ = w.conn.raw.SetReadDeadline(longAgo)
	<-w.done
	_ = w.conn.raw.SetReadDeadline(time.Time{})
	w.mu.Lock()
	w.aborting = false
	if w.gotByte {
		w.conn.src.held = append(w.conn.src.held, w.got[0])
		w.gotByte = false
	}
	w.mu.Unlock()
}

// longAgo is a deadline in the past, to make a read return at once.
var longAgo = time.Unix(1, 0)

package h1server

import (
	"bufio"
	"io"
	"net/http"
	"sync"
)

// body is a request body of a declared length, read from the connection's
// buffer; it behaves as the body of Go's server.
type body struct {
	mu        sync.Mutex
	src       *bufio.Reader
	remaining int64
	sawEOF    bool
	closed    bool
	// closing tells that the connection ends after this request, so that
	// Close need not read what is left.
	closing    bool
	earlyClose bool
	// onEOF is called once the whole body is read.
	onEOF func()
}

// Read reads the body; after its last byte, io.EOF, and
// io.ErrUnexpectedEOF if the client stops sending before that.
func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	return b.readLocked(p)
}

func (b *body) readLocked(p []byte) (int, error) {
	if b.sawEOF {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.src.Read(p)
	b.remaining -= int64(n)
	if err == io.EOF && b.remaining > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err == nil && b.remaining == 0 {
		err = io.EOF
	}
	if err == io.EOF {
		b.sawEOF = true
		if b.onEOF != nil {
			b.onEOF()
		}
	}
	return n, err
}

// Close reads and drops what is left of the body, up to
// maxPostHandlerReadBytes, so that the connection can carry the next
// request; past that, it gives up and the connection is closed.
func (b *body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	var err error
	switch {
	case b.sawEOF || b.closing:
	case b.remaining > maxPostHandlerReadBytes:
		b.earlyClose = true
	default:
		var n int64
		n, err = io.CopyN(io.Discard, lockedBody{b}, maxPostHandlerReadBytes)
		if err == io.EOF {
			err = nil
		}
		if n == maxPostHandlerReadBytes {
			b.earlyClose = true
		}
	}
	b.closed = true
	return err
}

// state reports whether the body is closed, was read to its end, and how
// much of it is left.
func (b *body) state() (closed, sawEOF bool, unread int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed, b.sawEOF, b.remaining
}

func (b *body) didEarlyClose() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.earlyClose
}

// lockedBody reads a body whose lock is held.
type lockedBody struct{ b *body }

func (l lockedBody) Read(p []byte) (int, error) { return l.b.readLocked(p) }

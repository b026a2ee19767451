package fanout

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
)

// errReplayMemoryFull is the failure of a request whose body would take the
// bytes held for replay, all requests together, over Proxy.MaxReplayMemory.
var errReplayMemoryFull = errors.New("the request bodies held for replay are at --max-replay-memory")

// replayStep is the replay memory a body of unknown length first reserves.
const replayStep = 32 << 10

// ReplayMemory counts the request body bytes held in memory for replay by all
// requests, against a cap, so that many large uploads at once cannot run the
// proxy out of memory. The zero value holds nothing.
type ReplayMemory struct {
	held atomic.Int64
}

// reserve takes n bytes of the cap (none if the cap is zero or less) and
// reports whether they fitted.
func (m *ReplayMemory) reserve(n, limit int64) bool {
	if limit <= 0 {
		return true
	}
	if m.held.Add(n) > limit {
		m.held.Add(-n)
		return false
	}
	return true
}

// requestBody is the inbound request body, captured once so that every attempt
// can send it. A body up to the buffer cap is held in memory and replayed; a
// larger one can be sent once only, streamed.
type requestBody struct {
	buffered   []byte
	stream     io.ReadCloser
	length     int64
	trailer    http.Header
	replayable bool
	// reserved is what the body holds of the replay memory; release gives it
	// back.
	reserved int64
	memory   *ReplayMemory
}

// emptyBody is the body of every request without one. It holds nothing, so
// nothing changes it.
var emptyBody = &requestBody{replayable: true}

// captureBody reads r's body into memory when it fits in limit bytes, holding
// its bytes in memory's count up to memoryLimit; it fails with
// errReplayMemoryFull when they do not fit. A larger body is left to stream:
// what was already read is put back in front of the rest. The caller releases
// the body once no attempt reads it any more.
func captureBody(r *http.Request, limit int64, memory *ReplayMemory, memoryLimit int64) (*requestBody, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return emptyBody, nil
	}
	if r.ContentLength > limit {
		return &requestBody{stream: r.Body, length: r.ContentLength, trailer: r.Trailer}, nil
	}
	body := &requestBody{trailer: r.Trailer, memory: memory}
	// The replay memory counts what is allocated: a body of known length at
	// once; one of unknown length from replayStep, doubling as it arrives,
	// up to one byte over limit (which tells that it is over).
	room := limit + 1
	size := min(replayStep, room)
	if r.ContentLength > 0 {
		room, size = r.ContentLength, r.ContentLength
	}
	if !memory.reserve(size, memoryLimit) {
		return nil, errReplayMemoryFull
	}
	body.reserved = size
	buf := make([]byte, 0, size)
	for int64(len(buf)) < room {
		if len(buf) == cap(buf) {
			grown := min(2*int64(cap(buf)), room)
			if !memory.reserve(grown-body.reserved, memoryLimit) {
				body.release()
				return nil, errReplayMemoryFull
			}
			body.reserved = grown
			buf = append(make([]byte, 0, grown), buf...)
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			body.release()
			return nil, err
		}
	}
	if int64(len(buf)) > limit {
		body.stream = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
		body.length = -1
		return body, nil
	}
	// The end of a chunked body brought its trailer fields, announced or not.
	body.trailer = r.Trailer
	body.buffered, body.length, body.replayable = buf, int64(len(buf)), true
	return body, nil
}

// release gives the body's bytes back to the replay memory.
func (b *requestBody) release() {
	if b.reserved > 0 {
		b.memory.held.Add(-b.reserved)
		b.reserved = 0
	}
}

// forAttempt returns a reader for one attempt and the length to announce (-1 for
// unknown). A replayable body gives each attempt its own reader; a streamed one
// must only be asked for once.
func (b *requestBody) forAttempt() (io.ReadCloser, int64) {
	// Request trailers only travel with a chunked body.
	length := b.length
	if len(b.trailer) > 0 {
		length = -1
	}
	if !b.replayable {
		return b.stream, length
	}
	// Trailers only travel after a (chunked) body: with no body at all, a
	// client's trailers after an empty body would be lost.
	if len(b.buffered) == 0 && len(b.trailer) == 0 {
		return http.NoBody, 0
	}
	return memoryBody{bytes.NewReader(b.buffered)}, length
}

// memoryBody is a replayed body: a bytes.Reader, whose Len lets the
// transport see that the whole body is there to write with the head.
type memoryBody struct{ *bytes.Reader }

// Close does nothing: the bytes stay for the other attempts.
func (memoryBody) Close() error { return nil }

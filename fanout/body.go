package fanout

import (
	"bytes"
	"io"
	"net/http"
)

// requestBody is the inbound request body, captured once so that every attempt
// can send it. A body up to the buffer cap is held in memory and replayed; a
// larger one can be sent once only, streamed.
type requestBody struct {
	buffered   []byte
	stream     io.ReadCloser
	length     int64
	trailer    http.Header
	replayable bool
}

// captureBody reads r's body into memory when it fits in limit bytes. A larger
// body is left to stream: what was already read is put back in front of the rest.
func captureBody(r *http.Request, limit int64) (*requestBody, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return &requestBody{replayable: true}, nil
	}
	if r.ContentLength > limit {
		return &requestBody{stream: r.Body, length: r.ContentLength, trailer: r.Trailer}, nil
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		stream := struct {
			io.Reader
			io.Closer
		}{io.MultiReader(&buf, r.Body), r.Body}
		return &requestBody{stream: stream, length: -1, trailer: r.Trailer}, nil
	}
	return &requestBody{buffered: buf.Bytes(), length: int64(buf.Len()), trailer: r.Trailer, replayable: true}, nil
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
	if len(b.buffered) == 0 {
		return http.NoBody, 0
	}
	return io.NopCloser(bytes.NewReader(b.buffered)), length
}

// Package endpointresponse owns one attempt's outcome (which endpoint, its
// response or error, how long it took) and the copy of a chosen response to the
// client: headers, status, a streamed body and trailers. It also owns the rule
// that every response body is closed exactly once, by Close.
package endpointresponse

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"balancing-reverse-proxy/endpoints"
)

// copyBufferSize is how much of a body is read before it is written on.
const copyBufferSize = 32 << 10

// Outcome is the result of one attempt: either Response (status line and headers
// arrived; the body is still unread) or Err.
type Outcome struct {
	// Endpoint is the endpoint the attempt went to.
	Endpoint endpoints.Endpoint
	// Attempt numbers the attempts of one request, from 1.
	Attempt int
	// Response is the endpoint's response, nil when Err is set. Its body is
	// closed by Close.
	Response *http.Response
	// Err says why the attempt failed, nil when Response is set.
	Err error
	// Elapsed is the time from the attempt's start to its headers or failure.
	Elapsed time.Duration
	// NotSent is true when the attempt failed before any of its request was
	// written to a connection, so the endpoint cannot have acted on it. It is
	// only tracked when the sender asked for it.
	NotSent bool

	// closed records that Close ran, so that the body is closed only once.
	closed bool
}

// Status returns the response's status code, or 0 when the attempt failed.
func (o *Outcome) Status() int {
	if o.Response == nil {
		return 0
	}
	return o.Response.StatusCode
}

// Close closes the response body, if there is one. It is safe to call more than
// once and on a failed outcome.
func (o *Outcome) Close() {
	if o.Response != nil && !o.closed {
		o.closed = true
		o.Response.Body.Close()
	}
}

// ErrClientWrite wraps failures to write to the client, to tell them from
// failures to read from the endpoint.
var ErrClientWrite = errors.New("writing to the client")

// Copy writes the response to w: headers without hop-by-hop ones and the status,
// flushed at once so a slow body does not hold them back; the body as it arrives
// (flushed write by write when its length is unknown, as with Server-Sent Events);
// and the trailers. If the body breaks off, what arrived is flushed before the
// error returns. It returns the body bytes written. An error
// comes after the status was written, so the caller can only abort the exchange.
// Copy does not close the body; Close does.
func (o *Outcome) Copy(w http.ResponseWriter) (int64, error) {
	resp := o.Response
	endpoints.RemoveHopByHop(resp.Header)
	header := w.Header()
	for name, values := range resp.Header {
		header[name] = values
	}
	announced := make(map[string]bool, len(resp.Trailer))
	for name := range resp.Trailer {
		announced[name] = true
		header.Add("Trailer", name)
	}
	w.WriteHeader(resp.StatusCode)
	controller := http.NewResponseController(w)
	// The client learns the status now, even if the body is slow to come.
	if err := flush(controller); err != nil {
		return 0, err
	}

	written, err := copyBody(w, controller, resp.Body, streams(resp))
	if err != nil && !errors.Is(err, ErrClientWrite) {
		return written, fmt.Errorf("endpoint %d: %w", o.Endpoint.Index, err)
	}
	if err != nil {
		return written, err
	}
	for name, values := range resp.Trailer {
		if !announced[name] {
			name = http.TrailerPrefix + name
		}
		header[name] = values
	}
	return written, nil
}

// streams reports whether a response should reach the client write by write
// rather than when the server's buffer fills.
func streams(resp *http.Response) bool {
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return resp.ContentLength < 0 || strings.EqualFold(mediaType, "text/event-stream")
}

func copyBody(w io.Writer, controller *http.ResponseController, body io.Reader, streaming bool) (int64, error) {
	buf := make([]byte, copyBufferSize)
	var written int64
	for {
		n, readErr := body.Read(buf)
		if n > 0 {
			wrote, writeErr := w.Write(buf[:n])
			written += int64(wrote)
			if writeErr != nil {
				return written, fmt.Errorf("%w: %w", ErrClientWrite, writeErr)
			}
			if streaming {
				if err := flush(controller); err != nil {
					return written, err
				}
			}
		}
		if readErr == io.EOF {
			return written, nil
		}
		if readErr != nil {
			// What did arrive is genuine; the caller then cuts the connection.
			_ = flush(controller)
			return written, fmt.Errorf("reading the response body: %w", readErr)
		}
	}
}

func flush(controller *http.ResponseController) error {
	if err := controller.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("%w: %w", ErrClientWrite, err)
	}
	return nil
}

package h1server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"balancing-reverse-proxy/internal/canonical"
)

// bufferBeforeChunking is how much of a body is held before the head is
// written, as in Go's server: a body that ends within it gets a
// Content-Length, a longer one is chunked.
const bufferBeforeChunking = 2048

// maxPostHandlerReadBytes is how much of a request body the server reads, and
// drops, after the handler to keep the connection; past it, it closes.
const maxPostHandlerReadBytes = 256 << 10

// response is the http.ResponseWriter of one request. It answers as Go's
// server does an HTTP/1.1 request (see its chunkWriter), without the sorted
// head.
type response struct {
	conn *conn
	req  *http.Request
	// reqBody is the body the server made, whatever the handler put in
	// req.Body.
	reqBody io.ReadCloser
	// handlerHeader is the handler's header; head is a copy of it from
	// WriteHeader on, what the head is written from.
	handlerHeader http.Header
	head          http.Header
	calledHeader  bool
	// wroteHeader tells that the status is set; committed, that the head is
	// in the connection's buffer.
	wroteHeader bool
	committed   bool
	status      int
	chunking    bool
	// contentLength is the declared length, or -1; written counts the bytes
	// the handler wrote.
	contentLength int64
	written       int64
	// trailers are the names the head declared in its Trailer field.
	trailers    []string
	handlerDone bool
	fullDuplex  bool
	// closeAfter ends the connection after this response; bodyLimitHit has
	// it closed gracefully (the client may still be sending).
	closeAfter   bool
	bodyLimitHit bool
	wantsClose   bool
}

// chunks is what response.body writes to: it writes the head before the
// first bytes, and frames them in chunks when the response is chunked.
type chunks struct{ w *response }

// Header returns the header map the handler fills.
func (w *response) Header() http.Header {
	if w.head == nil && w.wroteHeader && !w.committed {
		w.head = w.handlerHeader.Clone()
	}
	w.calledHeader = true
	return w.handlerHeader
}

// WriteHeader sends an informational head at once, or sets the status of the
// response.
func (w *response) WriteHeader(code int) {
	if w.wroteHeader {
		w.conn.server.logf("h1server: superfluous response.WriteHeader call")
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		bw := w.conn.bw
		writeStatusLine(bw, code)
		writeFields(bw, w.handlerHeader, func(key string) bool { return key == "Content-Length" || key == "Transfer-Encoding" })
		_, _ = bw.WriteString("\r\n")
		w.conn.noteWriteErr(bw.Flush())
		return
	}
	w.wroteHeader = true
	w.status = code
	length := int64(-1)
	cl := canonical.Get(w.handlerHeader, "Content-Length")
	if cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			length = v
		}
	}
	decided := w.calledHeader && w.headIsDecided(length != -1)
	if w.calledHeader && !decided {
		// Go's server takes this copy of every head, before it drops an
		// invalid length: the head is written later, as it was now.
		w.head = w.handlerHeader.Clone()
	}
	w.contentLength = length
	if cl != "" && length == -1 {
		w.conn.server.logf("h1server: invalid Content-Length of %q", cl)
		w.handlerHeader.Del("Content-Length")
	}
	if decided {
		// Written now, from the handler's map, which the head leaves as it
		// is: what the handler does to the map from here on cannot change
		// it, as with the copy.
		w.writeHead(nil)
	}
}

// headIsDecided reports whether the head can be written at WriteHeader:
// when nothing that writeHead decides depends on the body's first bytes, on
// the handler's end, or on what the handler may still read of the request
// body. A proxied answer with a length and a type is such a head.
func (w *response) headIsDecided(lengthKnown bool) bool {
	if w.req.ContentLength != 0 && !w.fullDuplex {
		return false
	}
	if !bodyAllowedForStatus(w.status) {
		return true
	}
	h := w.handlerHeader
	if !lengthKnown || h["Transfer-Encoding"] != nil || h["Trailer"] != nil {
		return false
	}
	if _, typed := h["Content-Type"]; !typed && canonical.Get(h, "Content-Encoding") == "" {
		return false
	}
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return false
		}
	}
	return true
}

// Write writes body bytes, the head first if it is not written yet.
func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !bodyAllowedForStatus(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.contentLength != -1 && w.written > w.contentLength {
		return 0, http.ErrContentLength
	}
	return w.conn.body.Write(p)
}

// FlushError sends what is written so far to the client.
func (w *response) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	err := w.writeBuffered()
	if e := w.conn.bw.Flush(); err == nil {
		err = e
	}
	w.conn.noteWriteErr(err)
	return err
}

// writeBuffered moves the buffered body, and the head before it, into the
// connection's buffer.
func (w *response) writeBuffered() error {
	err := w.conn.body.Flush()
	if !w.committed {
		w.writeHead(nil)
	}
	return err
}

// Flush is FlushError without its error, for http.Flusher.
func (w *response) Flush() { _ = w.FlushError() }

// SetReadDeadline sets the deadline of reads from the client's connection.
func (w *response) SetReadDeadline(deadline time.Time) error {
	w.conn.deadlineSet.Store(true)
	return w.conn.raw.SetReadDeadline(deadline)
}

// SetWriteDeadline sets the deadline of writes to the client's connection.
func (w *response) SetWriteDeadline(deadline time.Time) error {
	return w.conn.raw.SetWriteDeadline(deadline)
}

// EnableFullDuplex lets the handler read the request body while it writes
// the response: the rest of the body is not read, and dropped, as the head
// goes out.
func (w *response) EnableFullDuplex() error {
	w.fullDuplex = true
	return nil
}

// Write is the buffered body's way out: the head before the first bytes, then
// the bytes, in a chunk when chunking.
func (c chunks) Write(p []byte) (int, error) {
	w := c.w
	if !w.committed {
		w.writeHead(p)
	}
	if w.req.Method == http.MethodHead {
		return len(p), nil
	}
	bw := w.conn.bw
	if w.chunking {
		_, _ = bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		_, _ = bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	if w.chunking && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	if err != nil {
		w.conn.noteWriteErr(err)
		_ = w.conn.raw.Close()
	}
	return n, err
}

// finish ends the response once the handler has returned: the head if it
// is not out yet, the last chunk with the trailers, and a flush.
func (w *response) finish() {
	w.handlerDone = true
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	_ = w.writeBuffered()
	bw := w.conn.bw
	if w.chunking {
		_, _ = bw.WriteString("0\r\n")
		if trailers := w.finalTrailers(); trailers != nil {
			_ = trailers.Write(bw)
		}
		_, _ = bw.WriteString("\r\n")
	}
	w.conn.noteWriteErr(bw.Flush())
	// Closed first: a read to its end arms the watch, which is then
	// disarmed before the connection is read again.
	_ = w.reqBody.Close()
	w.conn.watch.disarm()
	if w.req.MultipartForm != nil {
		_ = w.req.MultipartForm.RemoveAll()
	}
}

// shouldReuseConnection reports whether the connection may carry another
// request after this response.
func (w *response) shouldReuseConnection() bool {
	switch {
	case w.closeAfter:
		return false
	case w.req.Method != http.MethodHead && w.contentLength != -1 && bodyAllowedForStatus(w.status) && w.contentLength != w.written:
		return false
	case w.conn.writeErr != nil:
		return false
	}
	return !w.closedRequestBodyEarly()
}

func (w *response) closedRequestBodyEarly() bool {
	b, ok := w.req.Body.(*body)
	return ok && b.didEarlyClose()
}

// finalTrailers are the trailers to send: those named with
// http.TrailerPrefix and those the head declared.
func (w *response) finalTrailers() http.Header {
	var t http.Header
	for k, vv := range w.handlerHeader {
		if kk, found := strings.CutPrefix(k, http.TrailerPrefix); found {
			if t == nil {
				t = make(http.Header)
			}
			t[kk] = vv
		}
	}
	for _, k := range w.trailers {
		if t == nil {
			t = make(http.Header)
		}
		for _, v := range w.handlerHeader[k] {
			t.Add(k, v)
		}
	}
	return t
}

// writeHead writes the head into the connection's buffer, deciding the
// framing of the body from the header, the status, and p, the body's first
// bytes: the same decisions, field for field, as Go's server.
func (w *response) writeHead(p []byte) {
	w.committed = true
	header := w.head
	owned := header != nil
	if !owned {
		header = w.handlerHeader
	}
	var exclude map[string]bool
	del := func(key string) {
		if owned {
			header.Del(key)
			return
		}
		if _, ok := header[key]; !ok {
			return
		}
		if exclude == nil {
			exclude = make(map[string]bool)
		}
		exclude[key] = true
	}
	var extra extraFields

	trailers := false
	for k := range header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			if exclude == nil {
				exclude = make(map[string]bool)
			}
			exclude[k] = true
			trailers = true
		}
	}
	for _, v := range header["Trailer"] {
		trailers = true
		forEachElement(v, w.declareTrailer)
	}

	te := canonical.Get(header, "Transfer-Encoding")
	hasTE := te != ""
	isHEAD := w.req.Method == http.MethodHead
	_, hasLength := header["Content-Length"]
	if w.handlerDone && !trailers && !hasTE && bodyAllowedForStatus(w.status) && !hasLength && (!isHEAD || len(p) > 0) {
		w.contentLength = int64(len(p))
		extra.contentLength = strconv.Itoa(len(p))
	}
	hasCL := w.contentLength != -1
	if w.wantsClose || canonical.Get(header, "Connection") == "close" || w.conn.server.shuttingDown() {
		w.closeAfter = true
	}
	w.dropUnreadBody(del, &extra)

	if bodyAllowedForStatus(w.status) {
		_, haveType := header["Content-Type"]
		if canonical.Get(header, "Content-Encoding") == "" && !haveType && !hasTE && len(p) > 0 {
			extra.contentType = http.DetectContentType(p)
		}
	} else {
		for _, k := range suppressedHeaders(w.status) {
			del(k)
		}
	}
	if _, ok := header["Date"]; !ok {
		extra.date = true
	}
	if hasCL && hasTE && te != "identity" {
		w.conn.server.logf("h1server: WriteHeader called with both Transfer-Encoding of %q and a Content-Length of %d", te, w.contentLength)
		del("Content-Length")
		hasCL = false
	}
	switch {
	case isHEAD || !bodyAllowedForStatus(w.status) || hasCL:
		del("Transfer-Encoding")
	case hasTE && te == "identity":
		w.closeAfter = true
		del("Transfer-Encoding")
	default:
		w.chunking = true
		extra.transferEncoding = "chunked"
		if hasTE && te == "chunked" {
			del("Transfer-Encoding")
		}
	}
	if w.chunking {
		del("Content-Length")
	}
	if w.closeAfter && (w.conn.server.shuttingDown() || !hasToken(canonical.Get(header, "Connection"), "close")) && !isProtocolSwitch(w.status, header) {
		del("Connection")
		extra.connection = "close"
	}

	bw := w.conn.bw
	writeStatusLine(bw, w.status)
	writeFields(bw, header, func(key string) bool { return exclude[key] })
	extra.write(bw, w.conn)
	_, _ = bw.WriteString("\r\n")
}

// dropUnreadBody reads and drops what is left of a request body (up to
// maxPostHandlerReadBytes) as the head goes out, unless the handler asked for
// full duplex, so that a client that sends all of its request before it
// reads is not stuck; past that, the connection closes after the response.
func (w *response) dropUnreadBody(del func(string), extra *extraFields) {
	if w.req.ContentLength == 0 || w.closeAfter || w.fullDuplex {
		return
	}
	var discard, tooBig bool
	if b, ok := w.req.Body.(*body); ok {
		closed, sawEOF, unread := b.state()
		switch {
		case closed:
			if !sawEOF {
				w.closeAfter = true
			}
		case unread >= maxPostHandlerReadBytes:
			tooBig = true
		default:
			discard = true
		}
	} else {
		discard = true
	}
	if discard {
		_, err := io.CopyN(io.Discard, w.reqBody, maxPostHandlerReadBytes+1)
		switch {
		case err == nil:
			tooBig = true
		case errors.Is(err, http.ErrBodyReadAfterClose):
		case err == io.EOF:
			if w.reqBody.Close() != nil {
				w.closeAfter = true
			}
		default:
			w.closeAfter = true
		}
	}
	if tooBig {
		w.closeAfter = true
		w.bodyLimitHit = true
		del("Connection")
		extra.connection = "close"
	}
}

// declareTrailer notes a trailer the head declares, unless it is a field
// that may not be sent as one.
func (w *response) declareTrailer(k string) {
	k = http.CanonicalHeaderKey(k)
	if httpguts.ValidTrailerHeader(k) {
		w.trailers = append(w.trailers, k)
	}
}

// extraFields are the fields the server adds to a head.
type extraFields struct {
	date             bool
	contentLength    string
	contentType      string
	connection       string
	transferEncoding string
}

func (e extraFields) write(bw *bufio.Writer, c *conn) {
	if e.date {
		_, _ = bw.WriteString("Date: ")
		_, _ = bw.Write(c.date())
		_, _ = bw.WriteString("\r\n")
	}
	for _, field := range [...]struct{ name, value string }{
		{"Content-Length", e.contentLength}, {"Content-Type", e.contentType},
		{"Connection", e.connection}, {"Transfer-Encoding", e.transferEncoding},
	} {
		if field.value != "" {
			_, _ = bw.WriteString(field.name)
			_, _ = bw.WriteString(": ")
			_, _ = bw.WriteString(field.value)
			_, _ = bw.WriteString("\r\n")
		}
	}
}

// writeStatusLine writes the status line of an HTTP/1.1 response.
func writeStatusLine(bw *bufio.Writer, code int) {
	_, _ = bw.WriteString("HTTP/1.1 ")
	if text := http.StatusText(code); text != "" {
		// Appended in the writer's own buffer: strconv.Itoa allocates for
		// codes of 100 and over.
		_, _ = bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
		_ = bw.WriteByte(' ')
		_, _ = bw.WriteString(text)
		_, _ = bw.WriteString("\r\n")
		return
	}
	_, _ = fmt.Fprintf(bw, "%03d status code %d\r\n", code, code)
}

// newlineToSpace makes a field value one line, as Go's server does.
var newlineToSpace = strings.NewReplacer("\n", " ", "\r", " ")

// writeFields writes header's fields but the excluded ones and those whose
// names are not tokens (dropped, as Go's server does), in the map's order:
// unlike Go's server, the head is not sorted, since nothing depends on it.
func writeFields(bw *bufio.Writer, header http.Header, excluded func(string) bool) {
	for key, values := range header {
		if excluded(key) || !httpguts.ValidHeaderFieldName(key) {
			continue
		}
		for _, v := range values {
			if strings.ContainsAny(v, "\r\n") {
				v = newlineToSpace.Replace(v)
			}
			_, _ = bw.WriteString(key)
			_, _ = bw.WriteString(": ")
			_, _ = bw.WriteString(textproto.TrimString(v))
			_, _ = bw.WriteString("\r\n")
		}
	}
}

// bodyAllowedForStatus reports whether a response with status may have a
// body.
func bodyAllowedForStatus(status int) bool {
	return (status < 100 || status > 199) && status != http.StatusNoContent && status != http.StatusNotModified
}

// suppressedHeaders are the fields a response without a body does not carry.
func suppressedHeaders(status int) []string {
	switch {
	case status == http.StatusNotModified:
		return []string{"Content-Type", "Content-Length", "Transfer-Encoding"}
	case !bodyAllowedForStatus(status):
		return []string{"Content-Length", "Transfer-Encoding"}
	}
	return nil
}

func isProtocolSwitch(code int, h http.Header) bool {
	return code == http.StatusSwitchingProtocols && canonical.Get(h, "Upgrade") != "" &&
		httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade")
}

// hasToken reports whether v holds token, in any case, between spaces,
// tabs or commas (or its ends), as Go's server reads it.
func hasToken(v, token string) bool {
	for start := 0; start+len(token) <= len(v); start++ {
		end := start + len(token)
		if (start == 0 || isTokenBoundary(v[start-1])) && (end == len(v) || isTokenBoundary(v[end])) &&
			strings.EqualFold(v[start:end], token) {
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool { return b == ' ' || b == ',' || b == '\t' }

// forEachElement calls fn for each non-empty element of the list v.
func forEachElement(v string, fn func(string)) {
	for element := range strings.SplitSeq(v, ",") {
		if element = textproto.TrimString(element); element != "" {
			fn(element)
		}
	}
}

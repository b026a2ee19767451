package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"

	"balancing-reverse-proxy/internal/canonical"
)

// This file reads response heads for h1Client by the rules of Go's
// http.ReadResponse and its Transport, so that an answer means the same
// whichever client read it (FuzzHeadReadsAsGoReadsIt holds it to that), with
// the proxy's own checks done in the same pass: an ambiguous framing
// (ErrAmbiguousFraming) and the cap on header fields (ErrResponseHeaders).
// Where Go makes a string per header value and a map entry at a time, this
// makes one string of the whole head and cuts the values from it.

// errHeadTooLarge is the failure of response heads over the cap on their
// bytes, worded as Go's Transport words it.
type errHeadTooLarge int

func (e errHeadTooLarge) Error() string {
	return fmt.Sprintf("net/http: server response headers exceeded %d bytes; aborted", int(e))
}

// malformed is the failure of a head Go's parser refuses, with the same words.
func malformed(what, value string) error {
	return fmt.Errorf("%s %q", what, value)
}

// headReader reads the heads of responses from one connection.
type headReader struct {
	br *bufio.Reader
	// buf holds the head being read; kept from one head to the next.
	buf []byte
	// maxBytes caps the bytes of the heads of one response, 1xx heads
	// included, as Go's Transport does; maxFields caps its header fields, if
	// positive.
	maxBytes, maxFields int
}

// head is a parsed response head, before its framing is read.
type head struct {
	proto, status        string
	code, major, minor   int
	header               http.Header
	contentLength, chunk bool // whether the head has each header
	fields               int
}

// readResponse reads the response to a request whose method is method into
// resp, 1xx heads (but 101) skipped, and returns how its body is framed. When
// the connection ended before the response's first byte, idleEnd is set: a
// reused connection the endpoint closed just then.
func (r *headReader) readResponse(method string, resp *http.Response) (f framing, idleEnd bool, err error) {
	budget := r.maxBytes
	for first := true; ; first = false {
		h, err := r.readHead(&budget)
		if err != nil {
			return f, first && errors.Is(err, errNoBytes), unexpectedEOF(err)
		}
		f, err := h.transfer(method)
		if err != nil {
			return f, false, err
		}
		if h.code >= 100 && h.code <= 199 && h.code != http.StatusSwitchingProtocols {
			continue
		}
		if h.code == http.StatusSwitchingProtocols {
			// The connection is the upgraded protocol's from here, as Go's
			// Transport hands it over; without an upgrade, a 101 has no body.
			f.spent = true
			if canonical.Get(h.header, "Upgrade") != "" && hasToken(h.header["Connection"], "upgrade") {
				f.body = unboundedBody
			}
		} else if h.contentLength && h.chunk {
			return f, false, ErrAmbiguousFraming
		}
		if r.maxFields > 0 && h.fields > r.maxFields {
			return f, false, fmt.Errorf("%w: %d, over --max-response-headers %d", ErrResponseHeaders, h.fields, r.maxFields)
		}
		resp.Status, resp.StatusCode = h.status, h.code
		resp.Proto, resp.ProtoMajor, resp.ProtoMinor = h.proto, h.major, h.minor
		resp.Header, resp.Trailer = h.header, f.trailer
		resp.ContentLength, resp.Close = f.contentLength, f.close
		if f.chunked {
			resp.TransferEncoding = chunkedEncoding
		}
		return f, false, nil
	}
}

// chunkedEncoding is Response.TransferEncoding of a chunked answer; shared,
// as nothing changes it.
var chunkedEncoding = []string{"chunked"}

// errNoBytes is the end of a connection before a response's first byte.
var errNoBytes = errors.New("connection closed before a response")

// unexpectedEOF returns err as Go's ReadResponse does: an end of the
// connection within a head is an unexpected one.
func unexpectedEOF(err error) error {
	if err == io.EOF || errors.Is(err, errNoBytes) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readHead reads one head, its lines checked as they arrive where Go checks
// them as they arrive (so that a broken head fails without waiting for its
// end), then parses it.
func (r *headReader) readHead(budget *int) (head, error) {
	r.buf = r.buf[:0]
	lines, fields := 0, 0
	lineStart := 0
	for {
		part, err := r.br.ReadSlice('\n')
		if len(part) > *budget {
			return head{}, errHeadTooLarge(r.maxBytes)
		}
		*budget -= len(part)
		r.buf = append(r.buf, part...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(r.buf) == 0 {
				return head{}, errNoBytes
			}
			if err == io.EOF && lines > 0 && len(r.buf) > lineStart {
				// Go's parser takes a last line without its end and then
				// meets the end of the connection.
				err = io.ErrUnexpectedEOF
			}
			return head{}, err
		}
		line := trimEOL(r.buf[lineStart:])
		switch {
		case lines == 0:
			if err := checkStatusLine(line); err != nil {
				return head{}, err
			}
		case len(line) == 0:
			return parseHead(string(r.buf), fields)
		case line[0] == ' ' || line[0] == '\t':
			if lines == 1 {
				return head{}, fmt.Errorf("malformed MIME header initial line: %q", line[:min(len(line), 80)])
			}
		case bytes.IndexByte(line, ':') < 0:
			return head{}, fmt.Errorf("malformed MIME header: missing colon: %q", line)
		default:
			fields++
		}
		lines++
		lineStart = len(r.buf)
	}
}

// trimEOL returns line without its \n or \r\n.
func trimEOL(line []byte) []byte {
	n := len(line)
	if n > 0 && line[n-1] == '\n' {
		n--
		if n > 0 && line[n-1] == '\r' {
			n--
		}
	}
	return line[:n]
}

// checkStatusLine returns why Go's parser refuses a status line, or nil;
// the common lines pass without a string made of them.
func checkStatusLine(line []byte) error {
	if len(line) >= 12 && (string(line[:9]) == "HTTP/1.1 " || string(line[:9]) == "HTTP/1.0 ") &&
		isDigit(line[9]) && isDigit(line[10]) && isDigit(line[11]) && (len(line) == 12 || line[12] == ' ') {
		return nil
	}
	_, err := parseStatusLine(string(line))
	return err
}

// isDigit reports whether c is an ASCII digit.
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parseStatusLine parses the status line of a response, as ReadResponse does.
func parseStatusLine(line string) (head, error) {
	proto, status, ok := strings.Cut(line, " ")
	if !ok {
		return head{}, malformed("malformed HTTP response", line)
	}
	h := head{proto: proto, status: strings.TrimLeft(status, " ")}
	code, _, _ := strings.Cut(h.status, " ")
	if len(code) != 3 {
		return head{}, malformed("malformed HTTP status code", code)
	}
	var err error
	if h.code, err = strconv.Atoi(code); err != nil || h.code < 0 {
		return head{}, malformed("malformed HTTP status code", code)
	}
	if h.major, h.minor, ok = http.ParseHTTPVersion(proto); !ok {
		return head{}, malformed("malformed HTTP version", proto)
	}
	return h, nil
}

// parseHead parses a whole head, s, whose header section has fields fields;
// its lines were checked by readHead as they came.
func parseHead(s string, fields int) (head, error) {
	statusLine, rest, _ := strings.Cut(s, "\n")
	h, err := parseStatusLine(strings.TrimSuffix(statusLine, "\r"))
	if err != nil {
		return head{}, err
	}
	h.fields = fields
	h.header = make(http.Header, fields)
	values := make([]string, fields)
	for {
		line, next, _ := strings.Cut(rest, "\n")
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			break
		}
		// A field's value goes on over the lines that begin with white space
		// (obsolete folding), joined by single spaces.
		field := trimSpaceTab(line)
		for len(next) > 0 && (next[0] == ' ' || next[0] == '\t') {
			var more string
			more, next, _ = strings.Cut(next, "\n")
			field += " " + trimSpaceTab(strings.TrimSuffix(more, "\r"))
		}
		rest = next
		name, value, _ := strings.Cut(field, ":")
		key, ok := fieldKey(name)
		if !ok || !validFieldValue(value) {
			return head{}, fmt.Errorf("malformed MIME header line: %q", field)
		}
		value = strings.TrimLeft(value, " \t")
		switch key {
		case "Content-Length":
			h.contentLength = true
		case "Transfer-Encoding":
			h.chunk = true
		}
		if vv := h.header[key]; vv == nil && len(values) > 0 {
			vv, values = values[:1:1], values[1:]
			vv[0] = value
			h.header[key] = vv
		} else {
			h.header[key] = append(vv, value)
		}
	}
	if pragma := h.header["Pragma"]; len(pragma) > 0 && pragma[0] == "no-cache" {
		// As ReadResponse does (RFC 7234, section 5.4).
		if _, ok := h.header["Cache-Control"]; !ok {
			h.header["Cache-Control"] = []string{"no-cache"}
		}
	}
	return h, nil
}

// trimSpaceTab returns s without the spaces and tabs around it. A loop:
// strings.Trim builds its set of bytes on every call.
func trimSpaceTab(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// asciiEqualFold reports whether a and b are equal ignoring ASCII case
// only: Unicode folding would take "\u212a" (the Kelvin sign) for "k".
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// lower returns c in lower case, if it is an ASCII letter.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// fieldKey returns the canonical form of a field name, and whether it is one
// Go's parser takes: a token, or one with spaces, which Go keeps as it is
// (and which then names no field the proxy knows).
func fieldKey(name string) (string, bool) {
	if name == "" {
		return "", false
	}
	for i := range len(name) {
		if c := name[i]; !tokenByte(c) && c != ' ' {
			return "", false
		}
	}
	return http.CanonicalHeaderKey(name), true
}

// tokenByte reports whether c may be in a token (RFC 9110, section 5.6.2).
func tokenByte(c byte) bool {
	return httpguts.IsTokenRune(rune(c))
}

// validFieldValue reports whether v has only bytes a field value may have:
// no control characters but the tab.
func validFieldValue(v string) bool {
	for i := range len(v) {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// framing is how a response's body is delimited, read from its head as Go's
// ReadResponse reads it.
type framing struct {
	// contentLength is Response.ContentLength: the body's length, or -1.
	contentLength int64
	// chunked is set when the head says Transfer-Encoding: chunked, even
	// where no body follows.
	chunked bool
	// body is how the body ends; length is its length, for lengthBody.
	body   bodyKind
	length int64
	// close is Response.Close: the endpoint closes the connection after
	// the answer. spent is set when the connection cannot carry another
	// request for another reason (it switched protocols).
	close, spent bool
	// trailer has the trailer fields the head announces, if any.
	trailer http.Header
}

// transfer reads the framing of the response, as Go's readTransfer does.
func (h *head) transfer(method string) (framing, error) {
	var f framing
	f.close = h.shouldClose()
	if raw, ok := h.header["Transfer-Encoding"]; ok {
		delete(h.header, "Transfer-Encoding")
		// Go ignores it in HTTP/1.0.
		if h.major > 1 || h.major == 1 && h.minor >= 1 {
			if len(raw) != 1 {
				return f, fmt.Errorf("too many transfer encodings: %q", raw)
			}
			if !asciiEqualFold(raw[0], "chunked") {
				return f, fmt.Errorf("unsupported transfer encoding: %q", raw[0])
			}
			f.chunked = true
		}
	}
	length, err := h.length(method, f.chunked)
	if err != nil {
		return f, err
	}
	f.contentLength = length
	if method == http.MethodHead {
		if f.contentLength, err = parseContentLength(h.header["Content-Length"]); err != nil {
			return f, err
		}
	}
	if f.trailer, err = h.announcedTrailer(f.chunked); err != nil {
		return f, err
	}
	bodyAllowed := bodyAllowedForStatus(h.code)
	if length == -1 && !f.chunked && bodyAllowed {
		f.close = true
	}
	switch {
	case f.chunked:
		if method != http.MethodHead && bodyAllowed {
			f.body = chunkedBody
		}
	case length > 0:
		f.body, f.length = lengthBody, length
	case length < 0 && f.close:
		f.body = unboundedBody
	}
	return f, nil
}

// bodyKind is how a response's body ends.
type bodyKind int

const (
	// noBody: there is none.
	noBody bodyKind = iota
	// lengthBody: after Content-Length bytes.
	lengthBody
	// chunkedBody: at its last chunk and trailer section.
	chunkedBody
	// unboundedBody: with the connection.
	unboundedBody
)

// shouldClose reports whether the connection ends with this response, and
// drops a Connection: close that says so in HTTP/1.1, as Go does.
func (h *head) shouldClose() bool {
	if h.major < 1 {
		return true
	}
	conv := h.header["Connection"]
	hasClose := hasToken(conv, "close")
	if h.major == 1 && h.minor == 0 {
		return hasClose || !hasToken(conv, "keep-alive")
	}
	if hasClose {
		delete(h.header, "Connection")
	}
	return hasClose
}

// hasToken reports whether one of values lists token, by Go's rules for
// Connection.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if asciiEqualFold(trimSpaceTab(part), token) {
				return true
			}
		}
	}
	return false
}

// length returns the body's length as Go's fixLength does: 0 where no body
// may be, -1 for chunked or a body that ends with the connection.
func (h *head) length(method string, chunked bool) (int64, error) {
	lengths := h.header["Content-Length"]
	if len(lengths) > 1 {
		first := textproto.TrimString(lengths[0])
		for _, other := range lengths[1:] {
			if textproto.TrimString(other) != first {
				return 0, fmt.Errorf("http: message cannot contain multiple Content-Length headers; got %q", lengths)
			}
		}
		lengths = []string{first}
		h.header["Content-Length"] = lengths
	}
	var n int64
	if len(lengths) > 0 {
		var err error
		if n, err = parseContentLength(lengths); err != nil {
			return -1, err
		}
	}
	switch {
	case method == http.MethodHead, h.code/100 == 1, h.code == http.StatusNoContent, h.code == http.StatusNotModified:
		return 0, nil
	case chunked:
		delete(h.header, "Content-Length")
		return -1, nil
	case len(lengths) > 0:
		return n, nil
	}
	return -1, nil
}

// parseContentLength parses the first of a head's Content-Length values, as
// Go does: -1 when there is none.
func parseContentLength(values []string) (int64, error) {
	if len(values) == 0 {
		return -1, nil
	}
	value := textproto.TrimString(values[0])
	if value == "" {
		return 0, malformed("invalid empty Content-Length", value)
	}
	n, err := strconv.ParseUint(value, 10, 63)
	if err != nil {
		return 0, malformed("bad Content-Length", value)
	}
	return int64(n), nil
}

// announcedTrailer returns the trailer fields a chunked response announces,
// and drops its Trailer field, as Go's fixTrailer does.
func (h *head) announcedTrailer(chunked bool) (http.Header, error) {
	announced, ok := h.header["Trailer"]
	if !ok || !chunked {
		return nil, nil
	}
	delete(h.header, "Trailer")
	trailer := make(http.Header)
	for _, v := range announced {
		for name := range strings.SplitSeq(v, ",") {
			name = trimSpaceTab(name)
			if name == "" {
				continue
			}
			key := http.CanonicalHeaderKey(name)
			switch key {
			case "Transfer-Encoding", "Trailer", "Content-Length":
				return nil, malformed("bad trailer key", key)
			}
			trailer[key] = nil
		}
	}
	if len(trailer) == 0 {
		return nil, nil
	}
	return trailer, nil
}

// bodyAllowedForStatus reports whether a response with status code may have
// a body (RFC 9110, section 6.4.1).
func bodyAllowedForStatus(code int) bool {
	return !(code >= 100 && code <= 199 || code == http.StatusNoContent || code == http.StatusNotModified)
}

package inbound

import (
	"bytes"
	"net/http"
	"strconv"
)

// Reasons a request is rejected for its framing, as logged.
const (
	reasonObsFold          = "a header line folded onto the next (obs-fold)"
	reasonLengthAndChunked = "both Content-Length and Transfer-Encoding"
	reasonDuplicateLength  = "more than one Content-Length"
	reasonInvalidLength    = "an invalid Content-Length"
	reasonChunkedHTTP10    = "Transfer-Encoding in an HTTP/1.0 request"
	reasonTrailerLF        = "a trailer line ending in a bare LF"
)

// rejectedHead replaces a rejected request's head: it is not a request line
// (nor a trailer field), so Go's server answers 400 Bad Request and closes
// the connection, whatever the request was.
var rejectedHead = []byte("\x00\r\n\r\n")

// maxChunkLine bounds a chunk-size line: Go's own limit is 4096 bytes, and a
// longer line ends the connection there.
const maxChunkLine = 4096

// phase is where a connection's byte stream is.
type phase int

const (
	// inHead: a request head is being collected; it is held back until it is
	// complete and checked.
	inHead phase = iota
	// inBody: the rest of a Content-Length body, or of a chunk's data and its
	// CRLF, passes through.
	inBody
	// inChunkLine: a chunk-size line passes through, followed until its LF.
	inChunkLine
	// inTrailer: the trailer section of a chunked body is being collected and
	// held back, like a head.
	inTrailer
	// unchecked: the rest of the stream passes as it is: the server will
	// reject the request and close the connection, or the connection is no
	// longer HTTP/1 (an upgrade, HTTP/2's preface).
	unchecked
	// rejected: a request was rejected; nothing more is passed on.
	rejected
)

// checker follows a client connection's byte stream request by request, with
// the same framing as Go's server, and holds back each request head (and
// chunked trailer section) until it is whole. A head that Go's server would
// accept but that a proxy must not is replaced by rejectedHead: a request
// whose framing is ambiguous (Content-Length with Transfer-Encoding, two
// Content-Lengths, Transfer-Encoding in HTTP/1.0) can be read one way by
// this proxy and another by the next hop, which is how requests are
// smuggled; a folded header line (obs-fold) is read differently by
// different parsers too.
//
// It is not safe for concurrent use; a connection has one reader.
type checker struct {
	phase phase
	// held is the head or trailer section collected so far.
	held []byte
	// maxHead is the largest head it holds; a larger one goes on unchecked,
	// for the server to answer 431 and close.
	maxHead int
	// remaining counts the bytes left in a body or chunk, CRLF included for
	// a chunk.
	remaining uint64
	// line is the chunk-size line so far.
	line []byte
	// reason says why a request was rejected.
	reason string
}

func newChecker(maxHead int) *checker {
	return &checker{maxHead: maxHead}
}

// feed takes the next bytes read from the client. The first pass bytes of in
// may go on to the server as they are; everything after them that may go on
// now is appended to out and returned (a head completed in this read, and what
// follows it); what is held back is kept.
func (c *checker) feed(in []byte, out []byte) (pass int, queued []byte) {
	queued = out
	// held is set once some of in has been held back: from then on, bytes go
	// on through queued, to keep their order.
	held := false
	emit := func(b []byte) {
		if held {
			queued = append(queued, b...)
		} else {
			pass += len(b)
		}
	}
	for len(in) > 0 {
		switch c.phase {
		case unchecked:
			emit(in)
			return pass, queued
		case rejected:
			return pass, queued
		case inBody:
			n := uint64(len(in))
			n = min(n, c.remaining)
			emit(in[:n])
			in = in[n:]
			c.remaining -= n
			if c.remaining == 0 {
				c.phase = inChunkLine
				if c.line == nil {
					// A Content-Length body (not a chunk) is done.
					c.phase = inHead
				}
			}
		case inChunkLine:
			end := bytes.IndexByte(in, '\n')
			if end < 0 {
				c.line = append(c.line, in...)
				emit(in)
				if len(c.line) > maxChunkLine {
					c.phase = unchecked
				}
				return pass, queued
			}
			c.line = append(c.line, in[:end+1]...)
			emit(in[:end+1])
			in = in[end+1:]
			c.endChunkLine()
		case inHead, inTrailer:
			held = true
			n, complete := c.collect(in)
			in = in[n:]
			if !complete {
				continue
			}
			head := c.held
			c.held = nil
			if c.phase == inTrailer {
				c.endTrailer(head)
			} else {
				c.endHead(head)
			}
			if c.phase == rejected {
				return pass, append(queued, rejectedHead...)
			}
			queued = append(queued, head...)
		}
	}
	return pass, queued
}

// collect adds bytes of in to the held head up to and including the empty
// line that ends it, and returns how many it took and whether the head is
// complete. A head over maxHead is let go unchecked.
func (c *checker) collect(in []byte) (int, bool) {
	// The end is the first empty line: an LF or a CR LF at the start of a
	// line (the start of the held bytes is one).
	from := max(len(c.held)-2, 0)
	c.held = append(c.held, in...)
	lineStart := func(i int) bool { return i == 0 || c.held[i-1] == '\n' }
	for i := from; i < len(c.held); i++ {
		if c.held[i] != '\n' {
			continue
		}
		if lineStart(i) || (c.held[i-1] == '\r' && lineStart(i-1)) {
			took := i + 1 - (len(c.held) - len(in))
			c.held = c.held[:i+1]
			if len(c.held) > c.maxHead {
				c.phase = unchecked
			}
			return took, true
		}
	}
	if len(c.held) > c.maxHead {
		// Go's server answers 431 and closes; the head is released as it is.
		c.phase = unchecked
		return len(in), true
	}
	return len(in), false
}

// endHead checks a complete request head and sets the phase for what follows.
func (c *checker) endHead(head []byte) {
	if c.phase == unchecked {
		return
	}
	lines := splitLines(head)
	if len(lines) == 0 {
		// An empty request line: Go's server rejects it and closes.
		c.phase = unchecked
		return
	}
	requestLine := lines[0]
	if bytes.HasPrefix(requestLine, []byte("PRI * HTTP/2.0")) {
		c.phase = unchecked
		return
	}
	// Split as Go's server does: at the first two spaces.
	_, rest, _ := bytes.Cut(requestLine, []byte(" "))
	_, proto, _ := bytes.Cut(rest, []byte(" "))
	major, minor, ok := http.ParseHTTPVersion(string(proto))
	if !ok || major != 1 {
		// Go's server rejects it and closes the connection.
		c.phase = unchecked
		return
	}
	var lengths, encodings [][]byte
	for _, line := range lines[1:] {
		if line[0] == ' ' || line[0] == '\t' {
			c.reject(reasonObsFold)
			return
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			c.phase = unchecked
			return
		}
		value = bytes.Trim(value, " \t")
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			lengths = append(lengths, value)
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			encodings = append(encodings, value)
		}
	}
	switch {
	case len(encodings) > 0 && len(lengths) > 0:
		c.reject(reasonLengthAndChunked)
	case len(lengths) > 1:
		c.reject(reasonDuplicateLength)
	case len(encodings) > 0 && minor == 0:
		c.reject(reasonChunkedHTTP10)
	case len(encodings) > 0:
		if len(encodings) != 1 || !bytes.EqualFold(encodings[0], []byte("chunked")) {
			// Go's server answers 501 and closes the connection.
			c.phase = unchecked
			return
		}
		c.phase, c.line = inChunkLine, []byte{}
	case len(lengths) == 1:
		n, err := strconv.ParseUint(string(lengths[0]), 10, 63)
		if err != nil {
			c.reject(reasonInvalidLength)
			return
		}
		c.phase, c.remaining, c.line = inBody, n, nil
		if n == 0 {
			c.phase = inHead
		}
	default:
		c.phase = inHead
	}
}

// endChunkLine parses a complete chunk-size line the way Go's server does,
// and sets the phase for what follows. A line Go rejects ends the checking:
// the server closes the connection.
func (c *checker) endChunkLine() {
	line := c.line
	c.line = c.line[:0]
	// Go wants CRLF, and no other CR.
	if len(line) < 2 || line[len(line)-2] != '\r' || bytes.IndexByte(line, '\r') != len(line)-2 {
		c.phase = unchecked
		return
	}
	size := bytes.TrimRight(line[:len(line)-2], " \t")
	size, _, _ = bytes.Cut(size, []byte(";"))
	n, ok := parseHex(size)
	switch {
	case !ok:
		c.phase = unchecked
	case n == 0:
		c.phase = inTrailer
	default:
		// The chunk's data, then its CRLF, which Go checks.
		c.phase, c.remaining = inBody, n+2
	}
}

// endTrailer checks a complete trailer section (or the bare CRLF that ends a
// chunked body without trailers); the next request's head follows it.
func (c *checker) endTrailer(trailer []byte) {
	c.line = nil
	if c.phase == unchecked {
		return
	}
	for i, b := range trailer {
		if b == '\n' && (i == 0 || trailer[i-1] != '\r') {
			c.reject(reasonTrailerLF)
			return
		}
	}
	for _, line := range splitLines(trailer) {
		if line[0] == ' ' || line[0] == '\t' {
			c.reject(reasonObsFold)
			return
		}
	}
	c.phase = inHead
}

func (c *checker) reject(reason string) {
	c.phase, c.reason = rejected, reason
}

// splitLines splits a head (ending in its empty line) into its lines, without
// their line ends, up to the first empty line.
func splitLines(head []byte) [][]byte {
	var lines [][]byte
	for len(head) > 0 {
		line, rest, _ := bytes.Cut(head, []byte("\n"))
		head = rest
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break
		}
		lines = append(lines, line)
	}
	return lines
}

// parseHex parses a chunk size as Go's server does: 1 to 16 hex digits.
func parseHex(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		var digit byte
		switch {
		case '0' <= c && c <= '9':
			digit = c - '0'
		case 'a' <= c && c <= 'f':
			digit = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			digit = c - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | uint64(digit)
	}
	return n, true
}

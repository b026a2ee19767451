package inbound

import (
	"bytes"
	"net/http"
	"strconv"
)

// Reasons a request is rejected for its framing, as logged.
const (
	reasonObsFold          = "a header line folded onto the next (obs-fold)"
	reasonBareCR           = "a line starting with a bare CR"
	reasonLengthAndChunked = "both Content-Length and Transfer-Encoding"
	reasonDuplicateLength  = "more than one Content-Length"
	reasonInvalidLength    = "an invalid Content-Length"
	reasonChunkedHTTP10    = "Transfer-Encoding in an HTTP/1.0 request"
	reasonTrailerLF        = "a trailer line ending in a bare LF"
	reasonHeldTooMuch      = "more than 64 KiB sent behind an upgrade request before its answer"
)

// maxHeld bounds the bytes held behind an upgrade request until its answer
// (a client must wait for the switch before it speaks the new protocol).
const maxHeld = 64 << 10

// rejectedLine takes the place of the line that ends a rejected request's
// head (or its trailer section), or of the folded line: a NUL is valid
// neither in a field name nor in a value, so Go's server answers 400 Bad
// Request and closes the connection, whatever came before it.
var rejectedLine = []byte("\x00\r\n\r\n")

// Bounds of what the checker keeps of a line to parse it. Go's own limit on a
// chunk-size line is 4096 bytes; a Content-Length or Transfer-Encoding line
// longer than maxFieldLine is not one the checker can trust.
const (
	maxChunkLine = 4096
	maxFieldLine = 1024
)

// maxSkippedAfterPOST is how many CR or LF bytes Go's server skips before
// the request that follows a POST (RFC 9112 section 2.2's tolerance for old
// clients that sent an extra CRLF after a body).
const maxSkippedAfterPOST = 4

// phase is where a connection's byte stream is.
type phase int

const (
	// inHead: a request head; its lines pass as they come, the empty line
	// that ends it only once the head is checked.
	inHead phase = iota
	// inBody: the rest of a Content-Length body passes through.
	inBody
	// inChunkLine: a chunk-size line passes through, followed until its LF.
	inChunkLine
	// inChunkData: a chunk's data and its CRLF pass through.
	inChunkData
	// inTrailer: the trailer section of a chunked body, handled like a head.
	inTrailer
	// lastHead: a head the server will refuse (a bad request line, an
	// unsupported Transfer-Encoding): it passes to its end, for the server
	// to answer, and nothing after it.
	lastHead
	// ended: the server has what it will refuse; nothing more passes. The
	// client's later bytes are read and dropped, so that the server sees
	// only the connection's own end or failure: an end made up here would
	// pass for the client's leaving and cancel the request still being
	// served before the refused one.
	ended
	// rejected: a request was rejected; from there on as ended.
	rejected
	// cut: nothing more passes, and the server reads the end of the stream
	// at once: it waits for the rest of something that will never come.
	cut
	// afterUpgrade: an upgrade request's message is over. What follows is
	// held, unchecked, until its answer is known: after a switch (see
	// StopChecking) it is the new protocol's, otherwise (see resume) it is
	// checked as the next request.
	afterUpgrade
	// inPreface: the rest of HTTP/2's client preface, after its first line,
	// passes byte by byte as long as it matches.
	inPreface
	// unchecked: the rest of the stream passes as it is: the connection is
	// no longer HTTP/1 (see StopChecking).
	unchecked
	// deferred: the stream passes as it is to a server that reads plain
	// requests itself, until it gives back the bytes of one it does not
	// (see ListenerOptions.CheckFromUnread); the check starts there.
	deferred
)

// HTTP/2's client preface, sent first by a client that speaks HTTP/2 without
// TLS and with prior knowledge: its first line, as a request line, and the
// bytes that must follow it.
const (
	prefaceLine = "PRI * HTTP/2.0\r\n"
	prefaceRest = "\r\nSM\r\n\r\n"
)

// checker follows a client connection's byte stream request by request, with
// the same framing as Go's server. It passes each head line on as it comes
// (so that the server's header time-out runs as it should), but holds back
// the empty line that ends a head until the head is checked. A head that
// Go's server would accept but that a proxy must not gets rejectedLine in
// place of that empty line: a request whose framing is ambiguous
// (Content-Length with Transfer-Encoding, two Content-Lengths,
// Transfer-Encoding in HTTP/1.0) can be read one way by this proxy and
// another by the next hop, which is how requests are smuggled; a folded
// header line (obs-fold) is read differently by different parsers too.
// Where it cannot follow the stream any more, it lets the server refuse what
// it has and gives it nothing after.
//
// It is not safe for concurrent use; a connection has one reader.
type checker struct {
	phase phase
	// atLineStart is set at the start of a head or trailer line;
	// pendingCR is set when a CR that may begin the ending empty line is
	// held back.
	atLineStart bool
	pendingCR   bool
	// line is what the checker keeps of the current line, to parse it.
	line []byte
	// lineTooLong is set when line was cut at its bound.
	lineTooLong bool
	// prev is the line's byte before the current one.
	prev byte
	// head is what the current head says so far.
	head headFacts
	// afterPOST counts the CR and LF bytes skipped before a head that
	// follows a POST, or is -1 when the previous request was not one.
	afterPOST int
	// remaining counts the bytes left in a body, or in a chunk with its CRLF.
	remaining uint64
	// reason says why a request was rejected.
	reason string
	// h2c lets a connection that opens with HTTP/2's preface go unchecked;
	// requests counts the heads seen, since only the first can be that, and
	// prefaceAt the bytes of prefaceRest seen.
	h2c       bool
	requests  int
	prefaceAt int
	// held is what came after an upgrade request, in afterUpgrade.
	held []byte
}

// headFacts is what a request head says that the checker needs.
type headFacts struct {
	started bool // the request line is complete
	post    bool
	minor   int // HTTP/1.minor
	// lengths and encodings count the Content-Length and Transfer-Encoding
	// fields; length is the value of the first, badLength set when it is
	// not a valid length, chunked when the first encoding is chunked.
	lengths, encodings int
	length             uint64
	badLength, chunked bool
	// fieldError is set for a field line the server refuses.
	fieldError bool
	// connectionUpgrade is set when a Connection field may name upgrade,
	// and upgrade when there is an Upgrade field: with both, the request
	// may switch protocols. Err on the side of yes: a request held as an
	// upgrade that is not one only waits for its answer, while bytes of a
	// switched connection checked as HTTP would be mangled.
	connectionUpgrade, upgrade bool
	// preface is set for HTTP/2's preface line as a request line (outside
	// of h2c, or not first on the connection).
	preface bool
}

// newChecker returns a checker for a new connection; with h2c, one that
// opens with HTTP/2's preface is let go unchecked. With later, it checks
// nothing until startAt.
func newChecker(h2c, later bool) *checker {
	c := &checker{atLineStart: true, afterPOST: -1, h2c: h2c}
	if later {
		c.phase = deferred
	}
	return c
}

// startAt has a deferred checker check from here on, the start of a
// request; served is set when requests came before it, which were not
// checked (so this one cannot open with HTTP/2's preface).
func (c *checker) startAt(served bool) {
	c.phase = inHead
	if served {
		c.requests = 1
	}
}

// feed takes the next bytes read from the client. The first pass bytes of in
// may go on to the server as they are; everything after them that may go on
// now is appended to out and returned (what comes after a held-back byte, or
// the replacement of a rejected request); what is held back is kept.
func (c *checker) feed(in []byte, out []byte) (pass int, queued []byte) {
	queued = out
	// moved is set once the stream as passed differs from in (a held-back
	// byte, an insertion): from then on, bytes go on through queued.
	moved := false
	emit := func(b []byte) {
		if moved {
			queued = append(queued, b...)
		} else {
			pass += len(b)
		}
	}
	insert := func(b []byte) {
		moved = true
		queued = append(queued, b...)
	}
	for i := 0; i < len(in); {
		switch c.phase {
		case unchecked:
			emit(in[i:])
			return pass, queued
		case ended, rejected, cut:
			return pass, queued
		case afterUpgrade:
			c.held = append(c.held, in[i:]...)
			if len(c.held) > maxHeld {
				c.held = nil
				c.phase, c.reason = cut, reasonHeldTooMuch
			}
			return pass, queued
		case inPreface:
			if in[i] != prefaceRest[c.prefaceAt] {
				// Neither HTTP/2 nor a request Go's server takes, which
				// waits for the rest of the preface.
				c.phase = cut
				return pass, queued
			}
			emit(in[i : i+1])
			i++
			if c.prefaceAt++; c.prefaceAt == len(prefaceRest) {
				c.phase = unchecked
			}
		case inBody, inChunkData:
			n := min(uint64(len(in)-i), c.remaining)
			emit(in[i : i+int(n)])
			i += int(n)
			c.remaining -= n
			if c.remaining == 0 {
				if c.phase == inBody {
					c.endMessage()
				} else {
					c.startLine(inChunkLine)
				}
			}
		case inChunkLine:
			end := bytes.IndexByte(in[i:], '\n')
			if end < 0 {
				c.keep(in[i:], maxChunkLine)
				emit(in[i:])
				return pass, queued
			}
			c.keep(in[i:i+end+1], maxChunkLine)
			emit(in[i : i+end+1])
			i += end + 1
			c.endChunkLine()
		case inHead, inTrailer, lastHead:
			b := in[i]
			i++
			switch verdict := c.headByte(b); verdict {
			case pass1:
				emit(in[i-1 : i])
			case holdCR:
				moved = true
			case passHeldCR:
				insert([]byte{'\r'})
				queued = append(queued, b)
			case rejectHere:
				insert(rejectedLine)
				return pass, queued
			}
		}
	}
	return pass, queued
}

// What headByte decides about one byte of a head or trailer section.
type byteVerdict int

const (
	// pass1: the byte goes on.
	pass1 byteVerdict = iota
	// holdCR: the byte (a CR at a line start) is held back.
	holdCR
	// passHeldCR: the held CR goes on, then the byte.
	passHeldCR
	// rejectHere: rejectedLine goes on instead of the byte.
	rejectHere
)

// headByte takes one byte of a head or a trailer section.
func (c *checker) headByte(b byte) byteVerdict {
	if c.phase == inHead && !c.head.started && c.atLineStart && !c.pendingCR &&
		(b == '\r' || b == '\n') && c.afterPOST >= 0 && c.afterPOST < maxSkippedAfterPOST {
		// Go's server skips these before the request after a POST.
		c.afterPOST++
		return pass1
	}
	if c.atLineStart {
		if c.pendingCR {
			c.pendingCR = false
			if b != '\n' {
				c.reject(reasonBareCR)
				return rejectHere
			}
			return c.endSection(false)
		}
		switch b {
		case '\r':
			c.pendingCR = true
			return holdCR
		case '\n':
			return c.endSection(true)
		case ' ', '\t':
			if c.phase != lastHead {
				c.reject(reasonObsFold)
				return rejectHere
			}
		}
		c.atLineStart = false
		c.line, c.lineTooLong, c.prev = c.line[:0], false, 0
	}
	c.keep([]byte{b}, maxFieldLine)
	prev := c.prev
	c.prev = b
	if b == '\n' {
		if c.phase == inTrailer && prev != '\r' {
			c.reject(reasonTrailerLF)
			return rejectHere
		}
		c.endLine()
		c.atLineStart = true
	}
	return pass1
}

// keep adds b to what is kept of the current line, up to limit bytes.
func (c *checker) keep(b []byte, limit int) {
	room := limit - len(c.line)
	if len(b) > room {
		b = b[:max(room, 0)]
		c.lineTooLong = true
	}
	c.line = append(c.line, b...)
}

// endLine parses a complete line of a head (the request line, then fields).
func (c *checker) endLine() {
	if c.phase != inHead {
		return
	}
	line := bytes.TrimSuffix(bytes.TrimSuffix(c.line, []byte("\n")), []byte("\r"))
	if !c.head.started {
		c.head.started = true
		c.requestLine(line)
		return
	}
	name, value, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		c.head.fieldError = true
		return
	}
	isLength := bytes.EqualFold(name, []byte("Content-Length"))
	isEncoding := bytes.EqualFold(name, []byte("Transfer-Encoding"))
	if (isLength || isEncoding) && c.lineTooLong {
		c.head.fieldError = true
		return
	}
	value = bytes.Trim(value, " \t")
	switch {
	case bytes.EqualFold(name, []byte("Connection")):
		// A line cut at its bound may name upgrade past the cut.
		c.head.connectionUpgrade = c.head.connectionUpgrade || c.lineTooLong || hasToken(value, "upgrade")
	case bytes.EqualFold(name, []byte("Upgrade")):
		c.head.upgrade = true
	case isLength:
		c.head.lengths++
		if c.head.lengths == 1 {
			n, err := strconv.ParseUint(string(value), 10, 63)
			c.head.length, c.head.badLength = n, err != nil
		}
	case isEncoding:
		c.head.encodings++
		if c.head.encodings == 1 {
			c.head.chunked = bytes.EqualFold(value, []byte("chunked"))
		}
	}
}

// requestLine parses the request line as Go's server splits it: at the first
// two spaces. A line it refuses makes this the last head passed on.
func (c *checker) requestLine(line []byte) {
	c.requests++
	if c.h2c && c.requests == 1 && string(c.line) == prefaceLine {
		// HTTP/2 with prior knowledge, for the server to speak, once the
		// rest of the preface follows.
		c.phase = inPreface
		return
	}
	method, rest, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(rest, []byte(" "))
	major, minor, ok := http.ParseHTTPVersion(string(proto))
	if !ok1 || !ok2 || !ok || major != 1 || c.lineTooLong {
		c.phase = lastHead
		// Go's server takes the rest of the connection for the body of
		// HTTP/2's preface as a request.
		c.head.preface = string(method) == "PRI" && string(target) == "*" && string(proto) == "HTTP/2.0"
		return
	}
	c.head.post = string(method) == http.MethodPost
	c.head.minor = minor
}

// endSection handles the empty line that ends a head or a trailer section
// (bare, an LF alone, or after a held CR) and says what goes on in its place.
func (c *checker) endSection(bare bool) byteVerdict {
	verdict := passHeldCR
	if bare {
		verdict = pass1
	}
	switch c.phase {
	case lastHead:
		c.phase = ended
		if c.head.preface && c.requests == 1 {
			// The server reads the rest of the connection as its body; with
			// no request before it that could still be in flight, it may as
			// well have the end at once.
			c.phase = cut
		}
		return verdict
	case inTrailer:
		if bare {
			c.reject(reasonTrailerLF)
			return rejectHere
		}
		c.endMessage()
		return verdict
	}
	if !c.head.started {
		// An empty request line: the server refuses it.
		c.phase = ended
		return verdict
	}
	c.endHead()
	if c.phase == rejected {
		return rejectHere
	}
	return verdict
}

// endHead checks the framing of a complete head and sets the phase for what
// follows it.
func (c *checker) endHead() {
	head := c.head
	c.afterPOST = -1
	if head.post {
		c.afterPOST = 0
	}
	switch {
	case head.fieldError:
		c.phase = ended
	case head.encodings > 0 && head.lengths > 0:
		c.reject(reasonLengthAndChunked)
	case head.lengths > 1:
		c.reject(reasonDuplicateLength)
	case head.encodings > 0 && head.minor == 0:
		c.reject(reasonChunkedHTTP10)
	case head.encodings > 1 || head.encodings == 1 && !head.chunked:
		// The server answers 501.
		c.phase = ended
	case head.encodings == 1:
		c.startLine(inChunkLine)
	case head.lengths == 1 && head.badLength:
		c.reject(reasonInvalidLength)
	case head.lengths == 1 && head.length > 0:
		c.phase, c.remaining = inBody, head.length
	default:
		c.endMessage()
	}
}

// endMessage follows the end of a request's message: the next head, or the
// wait for an upgrade's answer.
func (c *checker) endMessage() {
	if c.head.connectionUpgrade && c.head.upgrade {
		c.phase = afterUpgrade
		return
	}
	c.startHead()
}

// resume checks what was held behind an upgrade request that did not switch
// protocols as the next request, as feed does: pass goes on as it is, then
// queued. The checker must be in afterUpgrade.
func (c *checker) resume() (pass []byte, queued []byte) {
	held := c.held
	c.held = nil
	c.startHead()
	n, queued := c.feed(held, nil)
	return held[:n], queued
}

// endChunkLine parses a complete chunk-size line the way Go's server does,
// and sets the phase for what follows. After a line the server refuses,
// nothing more passes.
func (c *checker) endChunkLine() {
	line := c.line
	// Go wants CRLF, and no other CR.
	if c.lineTooLong || len(line) < 2 || line[len(line)-2] != '\r' || bytes.IndexByte(line, '\r') != len(line)-2 {
		c.phase = ended
		return
	}
	size := bytes.TrimRight(line[:len(line)-2], " \t")
	size, _, _ = bytes.Cut(size, []byte(";"))
	n, ok := parseHex(size)
	switch {
	case !ok:
		c.phase = ended
	case n == 0:
		c.startLine(inTrailer)
		c.atLineStart = true
	default:
		c.phase, c.remaining = inChunkData, n+2
	}
}

// startHead begins the next request's head.
func (c *checker) startHead() {
	c.startLine(inHead)
	c.atLineStart = true
	c.head = headFacts{}
}

// startLine enters phase at the start of a line.
func (c *checker) startLine(phase phase) {
	c.phase = phase
	c.line, c.lineTooLong = c.line[:0], false
}

func (c *checker) reject(reason string) {
	c.phase, c.reason = rejected, reason
}

// hasToken reports whether the comma-separated list value has token, in any
// case.
func hasToken(value []byte, token string) bool {
	for element := range bytes.SplitSeq(value, []byte(",")) {
		if bytes.EqualFold(bytes.Trim(element, " \t"), []byte(token)) {
			return true
		}
	}
	return false
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

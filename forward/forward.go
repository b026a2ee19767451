// Package forward owns what the proxy changes in a request on its way to an
// endpoint, and in the headers of an answer on its way back: hop-by-hop
// headers dropped both ways, forwarding headers (X-Forwarded-*, Forwarded)
// set, the request id and the attempt number added, and each attempt's
// target, its URL under the endpoint's prefix and its Host. A request is
// prepared once; each attempt then changes only what is its own.
package forward

import (
	"context"
	"io"
	"iter"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/internal/canonical"
)

// Headers that the proxy adds to every request it sends.
const (
	// AttemptHeader numbers the attempts of one request, from 1, so that an
	// endpoint can recognise copies.
	AttemptHeader = "X-Proxy-Attempt"
	// RequestIDHeader carries the request's id to every attempt, unless the
	// client sent one, which then travels on as it is.
	RequestIDHeader = "X-Request-Id"
)

// Options say how Prepare prepares a request.
type Options struct {
	// Trusted are the proxies in front of this one whose forwarding headers
	// are extended; any other client's are replaced.
	Trusted TrustedProxies
	// RequestID is the id every attempt carries in RequestIDHeader when the
	// client sent none. If empty, none is added.
	RequestID string
	// Upgrade is the protocol the request switches its connection to, such
	// as "websocket": the one pair of hop-by-hop headers that is sent on.
	Upgrade string
	// BodyRead is set when the client's body is already here (the server
	// answered its Expect with 100 Continue): asking the endpoint again
	// would only add a wait, so Expect is dropped.
	BodyRead bool
}

// Request is a client's request made ready to forward. Its zero value is not
// ready; Prepare makes one.
type Request struct {
	in *http.Request
	// header is what every attempt sends, the first one as it is; later
	// attempts send a copy with their own number.
	header http.Header
}

// Prepare makes in ready to forward, once for all its attempts: its headers
// are copied without hop-by-hop ones, and X-Forwarded-For, -Host and -Proto
// and Forwarded are set, extending the chains of a trusted proxy (see
// TrustedProxies). in is not modified.
func Prepare(in *http.Request, opts Options) Request {
	peer, err := netip.ParseAddrPort(in.RemoteAddr)
	// Not an IP connection (a test pipe): nothing is known of the client.
	known := err == nil
	var listed [4]string
	drop := hopByHopOf(in.Header, listed[:0])
	drop.forwarding, drop.expect = !known || !opts.Trusted.trusts(peer.Addr()), opts.BodyRead
	header := copyForwarded(in.Header, drop)
	// Trailers can only travel when the endpoint is told the client accepts them.
	if HasToken(in.Header, "Te", "trailers") {
		header.Set("Te", "trailers")
	}
	if _, ok := header["User-Agent"]; !ok {
		// Keep Go's default agent out of requests whose client sent none.
		header["User-Agent"] = noAgent
	}
	if known {
		setForwarded(header, in, peer.Addr().Unmap())
	}
	if opts.Upgrade != "" {
		// Hop-by-hop, so dropped from the copy, but this hop is the one that
		// upgrades.
		header.Set("Connection", "Upgrade")
		header.Set("Upgrade", opts.Upgrade)
	}
	header[AttemptHeader] = firstAttempt
	if opts.RequestID != "" && canonical.Get(header, RequestIDHeader) == "" {
		header[RequestIDHeader] = []string{opts.RequestID}
	}
	return Request{in: in, header: header}
}

// dropped says which headers of a message do not travel on, beside the
// hop-by-hop ones: those named in its Connection header (kept in canonical
// form), and, of a client's request, the forwarding headers of a client not
// trusted (see setForwarded) and Expect once the body is read.
type dropped struct {
	connection []string
	forwarding bool
	expect     bool
}

// hopByHopOf returns what of h describes one connection only: the
// hop-by-hop headers and those named in its Connection header, appended in
// canonical form to listed.
func hopByHopOf(h http.Header, listed []string) dropped {
	for name := range tokens(h, "Connection") {
		listed = append(listed, http.CanonicalHeaderKey(name))
	}
	return dropped{connection: listed}
}

// has reports whether the header name is dropped.
func (d dropped) has(name string) bool {
	return slices.Contains(hopByHop, name) || slices.Contains(d.connection, name) ||
		d.expect && name == "Expect" || d.forwarding && isForwarding(name)
}

// copyForwarded returns a copy of header without what d drops, its values
// in one block, as http.Header.Clone makes them, with room for what
// Prepare adds.
func copyForwarded(header http.Header, d dropped) http.Header {
	count := 0
	for _, values := range header {
		count += len(values)
	}
	block := make([]string, count)
	out := make(http.Header, len(header)+6)
	for name, values := range header {
		if d.has(name) {
			continue
		}
		if values == nil {
			out[name] = nil
			continue
		}
		n := copy(block, values)
		out[name] = block[:n:n]
		block = block[n:]
	}
	return out
}

// Values that every prepared request shares, as its attempts share theirs:
// no attempt's header is written to once it is made.
var (
	noAgent      = []string{""}
	firstAttempt = []string{"1"}
)

// To returns the request that attempt number attempt sends to e, made with
// ctx: the client's escaped path and raw query joined under e's path prefix,
// e's Host, e's own headers over the client's, and body sent with length (-1
// for unknown; the transport closes it). Attempts may be made at once, from
// several goroutines.
func (r *Request) To(ctx context.Context, e endpoints.Endpoint, attempt int, body io.ReadCloser, length int64) *http.Request {
	header := r.header
	if attempt != 1 || len(e.Header) > 0 {
		header = maps.Clone(r.header)
		if attempt != 1 {
			header[AttemptHeader] = []string{strconv.Itoa(attempt)}
		}
		// The values are shared, never changed: an attempt's header is not
		// written to once it is made.
		maps.Copy(header, e.Header)
	}
	out := (&http.Request{
		Method:        r.in.Method,
		URL:           e.URLFor(r.in.URL),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		Body:          body,
		ContentLength: length,
		Host:          e.URL.Host,
		Trailer:       r.in.Trailer,
	}).WithContext(ctx)
	if body == nil || body == http.NoBody {
		out.Body, out.ContentLength = http.NoBody, 0
	}
	return out
}

// hopByHop lists the headers that describe one connection, not the message
// (RFC 9110, section 7.6.1), plus the non-standard Proxy-Connection.
var hopByHop = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// RemoveHopByHop deletes from h the hop-by-hop headers and every header named in
// its Connection header. It is used on the answers coming back; the requests
// going up are copied without them (see Prepare).
func RemoveHopByHop(h http.Header) {
	var listed [4]string
	drop := hopByHopOf(h, listed[:0])
	// A pass over h's few fields rather than a delete for each of
	// hopByHop's names, each a hash of the name.
	for name := range h {
		if drop.has(name) {
			delete(h, name)
		}
	}
}

// HasToken reports whether one of the comma-separated values of name (in
// canonical form) in h is token, in any case.
func HasToken(h http.Header, name, token string) bool {
	for element := range tokens(h, name) {
		if strings.EqualFold(element, token) {
			return true
		}
	}
	return false
}

// tokens yields the non-empty elements of the comma-separated values of name
// (in canonical form) in h, trimmed.
func tokens(h http.Header, name string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for _, value := range h[name] {
			for element := range strings.SplitSeq(value, ",") {
				if element = strings.TrimSpace(element); element != "" && !yield(element) {
					return
				}
			}
		}
	}
}

// Package endpoints owns the configured upstream endpoints: parsing and checking
// their base URLs, and building the outgoing request of one attempt (path prefix
// joined, Host set, X-Forwarded-* added, hop-by-hop headers removed).
package endpoints

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Accepted describes the accepted spelling of an endpoint, for error messages.
const Accepted = "http://, https:// or h2c:// (HTTP/2 without TLS) base URLs with a host and an optional path prefix, " +
	"comma-separated (http://host:8000,https://host/prefix)"

// Endpoint is one upstream: a mirror of the API that the proxy serves.
type Endpoint struct {
	// Index is the endpoint's place in the configured list, from 0.
	Index int
	// URL is the base URL: scheme, host and optional path prefix.
	URL *url.URL
}

// String returns the endpoint's base URL as configured.
func (e Endpoint) String() string {
	return e.URL.String()
}

// List is the configured endpoints, in priority order.
type List []Endpoint

// Parse parses a comma-separated list of base URLs. Each must be http, https or h2c,
// name a host, and carry no credentials, query or fragment.
func Parse(spec string) (List, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, fmt.Errorf("no endpoints given; accepted: %s", Accepted)
	}
	var list List
	for i, raw := range strings.Split(spec, ",") {
		u, err := parseURL(strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("endpoint %d %q: %w; accepted: %s", i, raw, err, Accepted)
		}
		list = append(list, Endpoint{Index: i, URL: u})
	}
	return list, nil
}

func parseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("empty endpoint")
	}
	// Without "://", url.Parse reads "localhost:8000" as scheme "localhost" and
	// fails on "127.0.0.1:8000"; either way the scheme is what is missing.
	if !strings.Contains(raw, "://") {
		return nil, fmt.Errorf("no scheme: it must start with http:// or https://")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the URL, which the caller already names.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return nil, err
	}
	u.Scheme = strings.ToLower(u.Scheme)
	switch {
	case u.Scheme != "http" && u.Scheme != "https" && u.Scheme != schemeH2C:
		if u.Scheme == "" {
			return nil, fmt.Errorf("no scheme")
		}
		return nil, fmt.Errorf("unknown scheme %q", u.Scheme)
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("no host")
	case u.User != nil:
		return nil, fmt.Errorf("credentials in the URL are not supported")
	case u.RawQuery != "" || u.ForceQuery:
		return nil, fmt.Errorf("a query is not allowed in a base URL")
	case u.Fragment != "":
		return nil, fmt.Errorf("a fragment is not allowed in a base URL")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("port %q is not within 1-65535", port)
		}
	}
	return u, nil
}

// UnmarshalText parses a comma-separated list, so that command-line parsers can
// fill a List.
func (l *List) UnmarshalText(text []byte) error {
	parsed, err := Parse(string(text))
	if err != nil {
		return err
	}
	*l = parsed
	return nil
}

// Outgoing builds the request that one attempt sends to e. The inbound request's
// escaped path and raw query are joined under e's path prefix; headers are copied
// without hop-by-hop ones, and X-Forwarded-For, -Host, -Proto and Forwarded are
// set, extending the chains of a client in trusted (see TrustedProxies). body is
// sent with the given length (-1 for unknown); the transport closes it. in is not
// modified.
func (e Endpoint) Outgoing(ctx context.Context, in *http.Request, body io.ReadCloser, length int64, trusted TrustedProxies) *http.Request {
	target := *e.URL
	inPath, inEscaped := in.URL.Path, in.URL.EscapedPath()
	if !strings.HasPrefix(inEscaped, "/") {
		inPath, inEscaped = "/"+inPath, "/"+inEscaped
	}
	target.Path = strings.TrimSuffix(e.URL.Path, "/") + inPath
	// RawPath keeps the client's escaping (a%2Fb stays so) where it differs
	// from the default one.
	target.RawPath = strings.TrimSuffix(e.URL.EscapedPath(), "/") + inEscaped
	target.RawQuery = in.URL.RawQuery

	header := in.Header.Clone()
	if header == nil {
		header = http.Header{}
	}
	RemoveHopByHop(header)
	// Trailers can only travel when the endpoint is told the client accepts them.
	if acceptsTrailers(in.Header) {
		header.Set("Te", "trailers")
	}
	if _, ok := header["User-Agent"]; !ok {
		// Keep Go's default agent out of requests whose client sent none.
		header["User-Agent"] = []string{""}
	}
	setForwarded(header, in, trusted)

	out := (&http.Request{
		Method:        in.Method,
		URL:           &target,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		Body:          body,
		ContentLength: length,
		Host:          e.URL.Host,
		Trailer:       in.Trailer,
	}).WithContext(ctx)
	if body == nil || body == http.NoBody {
		out.Body, out.ContentLength = http.NoBody, 0
	}
	return out
}

func acceptsTrailers(h http.Header) bool {
	for _, te := range h.Values("Te") {
		for _, token := range strings.Split(te, ",") {
			if strings.EqualFold(strings.TrimSpace(token), "trailers") {
				return true
			}
		}
	}
	return false
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
// its Connection header. It is used on requests going up and responses coming
// back.
func RemoveHopByHop(h http.Header) {
	for _, field := range h.Values("Connection") {
		for _, name := range strings.Split(field, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

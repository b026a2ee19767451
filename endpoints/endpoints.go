// Package endpoints owns the configured upstream endpoints: parsing and
// checking their base URLs, the URL a request has at each, and their state at
// run time (health, attempts in flight, latency) with the order in which a
// request tries them (see Pool).
package endpoints

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Accepted describes the accepted spelling of an endpoint, for error messages.
const Accepted = "http://, https:// or h2c:// (HTTP/2 without TLS) base URLs with a host and an optional path prefix, " +
	"comma-separated (http://host:8000,https://host/prefix)"

// SchemeH2C is the scheme of endpoints spoken to in HTTP/2 without TLS.
const SchemeH2C = "h2c"

// Endpoint is one upstream: a mirror of the API that the proxy serves.
type Endpoint struct {
	// Index is the endpoint's place in the configured list, from 0.
	Index int
	// URL is the base URL: scheme, host and optional path prefix.
	URL *url.URL
	// Header, if not empty, is set on every attempt to the endpoint, over the
	// client's headers of the same names (credentials of its own, say).
	Header http.Header
	// Weight is the endpoint's share under the weighted order; 0 is 1.
	Weight int
	// MaxInflight, if positive, is the endpoint's own in-flight cap, instead
	// of the pool's.
	MaxInflight int
	// Transport, if set, carries the attempts to the endpoint instead of the
	// proxy's (one with TLS settings of its own).
	Transport http.RoundTripper
}

// weight is e's weight, at least 1.
func (e Endpoint) weight() int {
	return max(e.Weight, 1)
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
	case u.Scheme != "http" && u.Scheme != "https" && u.Scheme != SchemeH2C:
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

// URLFor returns the URL that a request for target (its escaped path and raw
// query) has at e: the path joined under e's path prefix, the escaping of
// both kept (a%2Fb stays so), the query byte for byte. e's URL is not
// modified.
func (e Endpoint) URLFor(target *url.URL) *url.URL {
	joined := *e.URL
	path, escaped := target.Path, target.EscapedPath()
	if !strings.HasPrefix(escaped, "/") {
		path, escaped = "/"+path, "/"+escaped
	}
	joined.Path = strings.TrimSuffix(e.URL.Path, "/") + path
	// RawPath keeps the request's escaping where it differs from the
	// default one.
	joined.RawPath = strings.TrimSuffix(e.URL.EscapedPath(), "/") + escaped
	joined.RawQuery, joined.ForceQuery = target.RawQuery, target.ForceQuery
	return &joined
}

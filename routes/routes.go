// Package routes owns which route a request takes: matching by host (exact,
// or a wildcard of labels in front) and by path (a prefix on whole segments),
// the precedence between routes that both match, the stripping of the matched
// prefix, redirects, and the 404 of a request that no route matches. What a
// route then does with the request is its Handler's business.
package routes

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"balancing-reverse-proxy/inbound"
)

// Route is one route: which requests it takes, and what it does with them.
type Route struct {
	// Name names the route in logs and errors.
	Name string
	// Host, if not empty, is the host the request must have: a name
	// (case-insensitive, the request's port ignored), or "*.example.com",
	// which takes one or more labels in front of example.com but not
	// example.com itself.
	Host string
	// Path is the prefix the request's path must have, on whole segments:
	// "/api" and "/api/" both take /api, /api/ and /api/x, never /apix.
	// Empty is "/", every path.
	Path string
	// StripPrefix removes the matched prefix before the Handler sees the
	// request: /search/v1/x goes on as /v1/x, /search as /.
	StripPrefix bool
	// Redirect, if set, answers every request of the route with a redirect,
	// and Handler is not called.
	Redirect *Redirect
	// Handler serves the route's requests.
	Handler http.Handler
}

// Redirect is a route that sends its requests elsewhere.
type Redirect struct {
	// To is where: an http(s) URL or an absolute path, to which the rest of
	// the request's path after the matched prefix is appended, and its query.
	To string
	// Status is 301, 302, 303, 307 or 308; 0 is 308.
	Status int
}

// Table is a set of routes in the order they are tried: a route with a host
// before one without, an exact host before a wildcard (a longer wildcard
// before a shorter one), then the longest path prefix, then the order given. It is an http.Handler, and is not changed
// once made.
type Table struct {
	routes []compiled
}

// compiled is a route with its match in the form the lookup uses.
type compiled struct {
	*Route
	// host is the lowercase host; wildcard is set when it is "*." + a
	// suffix, then held in host with its leading dot.
	host     string
	wildcard bool
	// prefix is the path prefix without a trailing slash; "" for every path.
	prefix string
}

// New returns the table of routes, or every problem with them.
func New(routes []Route) (*Table, error) {
	t := &Table{}
	var problems []error
	for i := range routes {
		c, err := compile(&routes[i])
		if err != nil {
			problems = append(problems, fmt.Errorf("route %q: %w", routes[i].Name, err))
			continue
		}
		t.routes = append(t.routes, c)
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	slices.SortStableFunc(t.routes, func(a, b compiled) int {
		if d := b.hostRank() - a.hostRank(); d != 0 {
			return d
		}
		if d := len(b.host) - len(a.host); d != 0 && a.wildcard && b.wildcard {
			return d
		}
		return len(b.prefix) - len(a.prefix)
	})
	return t, nil
}

// redirectStatuses are the statuses a Redirect may have.
var redirectStatuses = []int{
	http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect,
}

// Check reports what is wrong with r's match and redirect, as New would; a
// missing Handler is not checked.
func Check(r Route) error {
	if r.Handler == nil {
		r.Handler = http.NotFoundHandler()
	}
	_, err := compile(&r)
	return err
}

// compile checks r and puts its match in the lookup's form.
func compile(r *Route) (compiled, error) {
	c := compiled{Route: r, host: strings.ToLower(r.Host)}
	if rest, ok := strings.CutPrefix(c.host, "*."); ok {
		c.host, c.wildcard = "."+rest, true
		if err := checkHost(rest); err != nil {
			return c, fmt.Errorf("host %q: %w; accepted: a host name such as api.example.com, or *.example.com", r.Host, err)
		}
	} else if c.host != "" {
		if err := checkHost(c.host); err != nil {
			return c, fmt.Errorf("host %q: %w; accepted: a host name such as api.example.com, or *.example.com", r.Host, err)
		}
	}
	path := r.Path
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, "?#") || strings.Contains(path, "//") {
		return c, fmt.Errorf("path %q: accepted: a path starting with /, such as /api/, without a query, a fragment or an empty segment", r.Path)
	}
	c.prefix = strings.TrimSuffix(path, "/")
	if r.Redirect != nil {
		if err := checkRedirect(r.Redirect); err != nil {
			return c, err
		}
	} else if r.Handler == nil {
		return c, errors.New("no endpoints and no redirect; accepted: one of them")
	}
	return c, nil
}

// checkHost reports what is wrong with a host name of a route.
func checkHost(host string) error {
	if host == "" || strings.ContainsAny(host, ":/*@ ") {
		return errors.New("not a host name")
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" {
			return errors.New("an empty label")
		}
	}
	return nil
}

// checkRedirect reports what is wrong with r, setting its default status.
func checkRedirect(r *Redirect) error {
	if r.Status == 0 {
		r.Status = http.StatusPermanentRedirect
	}
	if !slices.Contains(redirectStatuses, r.Status) {
		return fmt.Errorf("redirect status %d: accepted: 301, 302, 303, 307 or 308", r.Status)
	}
	u, err := url.Parse(r.To)
	switch {
	case err != nil || r.To == "":
		return fmt.Errorf("redirect to %q: accepted: an http:// or https:// URL, or a path starting with /", r.To)
	case u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(r.To, "?#"):
		return fmt.Errorf("redirect to %q: accepted: no query or fragment (the request's query is kept)", r.To)
	case u.Scheme == "" && u.Host == "" && strings.HasPrefix(r.To, "/") && !strings.HasPrefix(r.To, "//"):
		return nil
	case (u.Scheme == "http" || u.Scheme == "https") && u.Host != "":
		return nil
	}
	return fmt.Errorf("redirect to %q: accepted: an http:// or https:// URL, or a path starting with /", r.To)
}

// hostRank orders routes by their host: exact, wildcard, none.
func (c *compiled) hostRank() int {
	switch {
	case c.host == "":
		return 0
	case c.wildcard:
		return 1
	}
	return 2
}

// matchesHost reports whether host (lowercase, without its port) is the route's.
func (c *compiled) matchesHost(host string) bool {
	switch {
	case c.host == "":
		return true
	case c.wildcard:
		return len(host) > len(c.host) && strings.HasSuffix(host, c.host)
	}
	return host == c.host
}

// matchesPath reports whether path is under the route's prefix, on whole
// segments.
func (c *compiled) matchesPath(path string) bool {
	if !strings.HasPrefix(path, c.prefix) {
		return false
	}
	rest := path[len(c.prefix):]
	return rest == "" || rest[0] == '/'
}

// Lookup returns the route a request for host (as the Host header has it)
// and path takes, or nil.
func (t *Table) Lookup(host, path string) *Route {
	if c := t.lookup(requestHost(host), path); c != nil {
		return c.Route
	}
	return nil
}

func (t *Table) lookup(host, path string) *compiled {
	for i := range t.routes {
		c := &t.routes[i]
		if c.matchesHost(host) && c.matchesPath(path) {
			return c
		}
	}
	return nil
}

// requestHost is a Host header's host in lowercase, without its port or a
// trailing dot.
func requestHost(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// ServeHTTP passes r to the route it takes, answers its redirect, or answers
// 404 when no route takes it. A path with a dot segment (/api/../admin, in
// any escaping) gets 400: an endpoint that resolves it would serve what is
// outside the route.
func (t *Table) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if hasDotSegment(r.URL.Path) {
		inbound.WriteError(w, http.StatusBadRequest, fmt.Sprintf("path %q has a . or .. segment", r.URL.Path))
		return
	}
	c := t.lookup(requestHost(r.Host), r.URL.Path)
	if c == nil {
		inbound.WriteError(w, http.StatusNotFound, fmt.Sprintf("no route matches host %q and path %q", r.Host, r.URL.Path))
		return
	}
	if c.Redirect != nil {
		http.Redirect(w, r, c.redirectTarget(r.URL), c.Redirect.Status)
		return
	}
	if c.StripPrefix && c.prefix != "" {
		r = c.stripped(r)
	}
	c.Handler.ServeHTTP(w, r)
}

// hasDotSegment reports whether path has a "." or ".." segment.
func hasDotSegment(path string) bool {
	for segment := range strings.SplitSeq(path, "/") {
		if segment == "." || segment == ".." {
			return true
		}
	}
	return false
}

// rest returns what of u's path follows the route's prefix, escaped as
// the request had it where that can be kept, with one leading slash (or
// empty). The match is on the decoded path, so the escaped one is used only
// when the prefix ends it on a segment there too: /docs%2F@evil.com is
// /docs/@evil.com, whose rest is /@evil.com, never %2F@evil.com.
func (c *compiled) rest(u *url.URL) (escaped string, raw bool) {
	rest := u.Path[len(c.prefix):]
	if r, ok := strings.CutPrefix(u.EscapedPath(), c.prefix); ok && (r == "" || r[0] == '/') {
		return collapseLeadingSlashes(r), true
	}
	return collapseLeadingSlashes((&url.URL{Path: rest}).EscapedPath()), false
}

// collapseLeadingSlashes makes //x /x, so that no rest turns a target into
// a protocol-relative URL (//evil.com).
func collapseLeadingSlashes(path string) string {
	if strings.HasPrefix(path, "//") {
		return "/" + strings.TrimLeft(path, "/")
	}
	return path
}

// redirectTarget is where a request for u goes: To, the rest of u's path
// after the prefix, and u's query.
func (c *compiled) redirectTarget(u *url.URL) string {
	rest, _ := c.rest(u)
	target := strings.TrimSuffix(c.Redirect.To, "/") + rest
	if rest == "" {
		target = c.Redirect.To
	}
	if u.RawQuery != "" {
		target += "?" + u.RawQuery
	}
	return target
}

// stripped returns r with the route's prefix removed from its path: what
// is left (see rest), or /.
func (c *compiled) stripped(r *http.Request) *http.Request {
	out := r.WithContext(r.Context())
	u := *r.URL
	escaped, raw := c.rest(r.URL)
	u.Path, u.RawPath = collapseLeadingSlashes(u.Path[len(c.prefix):]), ""
	if raw && escaped != u.Path {
		u.RawPath = escaped
	}
	if u.Path == "" {
		u.Path, u.RawPath = "/", ""
	}
	out.URL = &u
	return out
}

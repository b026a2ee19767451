package routes

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// echo is a handler that answers with its route's name and the path it got.
func echo(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, name+" "+r.URL.EscapedPath())
	})
}

// serve sends a GET for host and target through t and returns the answer.
func serve(t *testing.T, table *Table, host, target string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.Host = host
	w := httptest.NewRecorder()
	table.ServeHTTP(w, r)
	return w.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestPathsMatchOnWholeSegments(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"/api", "/api/"} {
		table, err := New([]Route{{Name: "api", Path: prefix, Handler: echo("api")}})
		require.NoError(t, err)
		for path, match := range map[string]bool{"/api": true, "/api/": true, "/api/x": true, "/api/x/y": true, "/apix": false, "/ap": false, "/": false, "/x/api": false} {
			assert.Equal(t, match, table.Lookup("h", path) != nil, "prefix %s, path %s", prefix, path)
		}
	}
	everything, err := New([]Route{{Name: "all", Handler: echo("all")}})
	require.NoError(t, err)
	for _, path := range []string{"/", "/x", "/x/y"} {
		assert.NotNil(t, everything.Lookup("h", path), "an empty path takes %s", path)
	}
}

func TestHostsMatchExactlyOrByWildcard(t *testing.T) {
	t.Parallel()
	table, err := New([]Route{
		{Name: "exact", Host: "API.example.com", Handler: echo("exact")},
		{Name: "wild", Host: "*.example.com", Handler: echo("wild")},
	})
	require.NoError(t, err)
	for host, want := range map[string]string{
		"api.example.com":       "exact",
		"Api.Example.COM:8443":  "exact",
		"api.example.com.":      "exact",
		"a.example.com":         "wild",
		"a.b.example.com:80":    "wild",
		"example.com":           "",
		"badexample.com":        "",
		"api.example.com.evil":  "",
		"[::1]:8080":            "",
		"a.example.com.example": "",
	} {
		got := table.Lookup(host, "/")
		if want == "" {
			assert.Nil(t, got, host)
			continue
		}
		require.NotNil(t, got, host)
		assert.Equal(t, want, got.Name, host)
	}
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	table, err := New([]Route{
		{Name: "any-long", Path: "/a/b/c", Handler: echo("any-long")},
		{Name: "wild", Host: "*.example.com", Path: "/a", Handler: echo("wild")},
		{Name: "wild-deeper", Host: "*.x.example.com", Handler: echo("wild-deeper")},
		{Name: "exact-short", Host: "api.example.com", Handler: echo("exact-short")},
		{Name: "exact-long", Host: "api.example.com", Path: "/a/b", Handler: echo("exact-long")},
		{Name: "first", Path: "/same", Handler: echo("first")},
		{Name: "second", Path: "/same/", Handler: echo("second")},
	})
	require.NoError(t, err)
	for _, tt := range []struct{ host, path, want string }{
		{"api.example.com", "/a/b/c", "exact-long"}, // a host beats none, however long its path
		{"api.example.com", "/a/x", "exact-short"},  // an exact host beats a wildcard
		{"api.example.com", "/z", "exact-short"},    //
		{"w.example.com", "/a/b/c", "wild"},         // a wildcard beats no host
		{"w.x.example.com", "/a", "wild-deeper"},    // the longer wildcard first
		{"other.org", "/a/b/c/d", "any-long"},       // then the longest prefix
		{"other.org", "/same/x", "first"},           // then the order given
	} {
		got := table.Lookup(tt.host, tt.path)
		require.NotNil(t, got, "%s%s", tt.host, tt.path)
		assert.Equal(t, tt.want, got.Name, "%s%s", tt.host, tt.path)
	}
	assert.Nil(t, table.Lookup("other.org", "/z"))
}

func TestStripPrefix(t *testing.T) {
	t.Parallel()
	table, err := New([]Route{
		{Name: "search", Path: "/search/", StripPrefix: true, Handler: echo("search")},
		{Name: "kept", Path: "/kept", Handler: echo("kept")},
	})
	require.NoError(t, err)
	for target, want := range map[string]string{
		"/search/v1/x":     "search /v1/x",
		"/search":          "search /",
		"/search/":         "search /",
		"/search/a%2Fb?q=": "search /a%2Fb",
		"/kept/x":          "kept /kept/x",
	} {
		assert.Equal(t, want, body(t, serve(t, table, "h", target)), target)
	}
}

func TestRedirectKeepsTheRestOfThePathAndTheQuery(t *testing.T) {
	t.Parallel()
	table, err := New([]Route{
		{Name: "docs", Path: "/docs/", Redirect: &Redirect{To: "https://docs.example/"}},
		{Name: "moved", Path: "/old", Redirect: &Redirect{To: "/new", Status: http.StatusFound}},
	})
	require.NoError(t, err)
	for target, want := range map[string]string{
		"/docs/guide/x?q=1&r=2": "https://docs.example/guide/x?q=1&r=2",
		"/docs":                 "https://docs.example/",
		"/docs/":                "https://docs.example/",
		"/docs/a%20b":           "https://docs.example/a%20b",
	} {
		resp := serve(t, table, "h", target)
		assert.Equal(t, http.StatusPermanentRedirect, resp.StatusCode, target)
		assert.Equal(t, want, resp.Header.Get("Location"), target)
	}
	resp := serve(t, table, "h", "/old/page?x=1")
	assert.Equal(t, http.StatusFound, resp.StatusCode)
	assert.Equal(t, "/new/page?x=1", resp.Header.Get("Location"))
}

func TestNoRouteIs404NamingHostAndPath(t *testing.T) {
	t.Parallel()
	table, err := New([]Route{{Name: "api", Host: "api.example.com", Handler: echo("api")}})
	require.NoError(t, err)
	resp := serve(t, table, "other.example.com", "/x")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Equal(t, "404 Not Found: no route matches host \"other.example.com\" and path \"/x\"\n", body(t, resp))
}

func TestDotSegmentsCannotLeaveARoute(t *testing.T) {
	t.Parallel()
	table, err := New([]Route{{Name: "api", Path: "/api", StripPrefix: true, Handler: echo("api")}})
	require.NoError(t, err)
	for _, target := range []string{"/api/../admin", "/api/%2e%2e/admin", "/api/./x", "/api/x/.."} {
		resp := serve(t, table, "h", target)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, target)
	}
	assert.Equal(t, "api /..x", body(t, serve(t, table, "h", "/api/..x")), "a name that starts with dots is no dot segment")
}

func TestBadRoutesAreEveryOneNamed(t *testing.T) {
	t.Parallel()
	_, err := New([]Route{
		{Name: "no-target", Path: "/a"},
		{Name: "bad-host", Host: "api.example.com:8080", Handler: echo("x")},
		{Name: "bad-wildcard", Host: "*.", Handler: echo("x")},
		{Name: "mid-wildcard", Host: "a.*.example.com", Handler: echo("x")},
		{Name: "bad-path", Path: "api", Handler: echo("x")},
		{Name: "query-path", Path: "/a?b", Handler: echo("x")},
		{Name: "bad-status", Redirect: &Redirect{To: "https://x.example/", Status: 200}},
		{Name: "bad-to", Redirect: &Redirect{To: "ftp://x.example/"}},
		{Name: "query-to", Redirect: &Redirect{To: "https://x.example/?a=b"}},
		{Name: "good", Path: "/ok", Handler: echo("x")},
	})
	require.Error(t, err)
	for _, want := range []string{
		`route "no-target": no endpoints and no redirect`,
		`route "bad-host": host "api.example.com:8080"`,
		`route "bad-wildcard": host "*."`,
		`route "mid-wildcard": host "a.*.example.com"`,
		`route "bad-path": path "api"`,
		`route "query-path": path "/a?b"`,
		`route "bad-status": redirect status 200: accepted: 301, 302, 303, 307 or 308`,
		`route "bad-to": redirect to "ftp://x.example/"`,
		`route "query-to": redirect to "https://x.example/?a=b"`,
	} {
		assert.Contains(t, err.Error(), want)
	}
	assert.NotContains(t, err.Error(), `"good"`)
}

func TestAnEscapedSlashAtThePrefixCannotLeaveTheTarget(t *testing.T) {
	t.Parallel()
	table, err := New([]Route{
		{Name: "docs", Path: "/docs/", Redirect: &Redirect{To: "https://docs.example/"}},
		{Name: "root", Path: "/old", Redirect: &Redirect{To: "/"}},
		{Name: "search", Path: "/search", StripPrefix: true, Handler: echo("search")},
	})
	require.NoError(t, err)
	for target, want := range map[string]string{
		"/docs%2F@evil.com": "https://docs.example/@evil.com",
		"/old//evil.com":    "/evil.com",
		"/old%2F%2Fevil":    "/evil",
	} {
		assert.Equal(t, want, serve(t, table, "h", target).Header.Get("Location"), target)
	}
	assert.Equal(t, "search /v1", body(t, serve(t, table, "h", "/search%2Fv1")))
	assert.Equal(t, "search /v1", body(t, serve(t, table, "h", "/search//v1")))
}

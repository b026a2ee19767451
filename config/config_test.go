package config

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/endpoints"
	"balancing-reverse-proxy/session"
)

// env is an environment of the given variables only.
func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

const good = `
listen: 127.0.0.1:8080
defaults:
  mode: hedged
  hedge: {delay: p95, budget: 5%}
  terminal: 2xx,3xx,404
  timeout: 30s
  try_timeout: 10s
  order: priority
routes:
  - name: search
    match: {host: api.example.com, path: /search/}
    strip_prefix: true
    endpoints:
      - url: https://one.example/apis
      - https://two.example/public-apis
    session: {header: Mcp-Session-Id, unknown: reject}
    max_inflight: ${MAX}
    try_timeout: 2s
  - name: old-docs
    match: {path: /docs/}
    redirect: {to: "https://docs.example/", status: 308}
`

func TestAGoodFile(t *testing.T) {
	t.Parallel()
	file, err := Parse("proxy.yaml", []byte(good), env(map[string]string{"MAX": "100"}))
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:8080", file.Listen)
	assert.Equal(t, Hedged, *file.Defaults.Mode)
	assert.Equal(t, "p95", file.Defaults.Hedge.Delay.Value.String())
	assert.Equal(t, 30*time.Second, time.Duration(*file.Defaults.Timeout))
	assert.Equal(t, endpoints.Priority, file.Defaults.Order.Value)
	require.Len(t, file.Routes, 2)
	search := file.Routes[0]
	assert.Equal(t, "search", search.Name)
	assert.Equal(t, Match{Host: "api.example.com", Path: "/search/"}, search.Match)
	assert.True(t, search.StripPrefix)
	assert.Equal(t, []Endpoint{{URL: "https://one.example/apis"}, {URL: "https://two.example/public-apis"}}, search.Endpoints)
	assert.Equal(t, Token("Mcp-Session-Id"), *search.Session.Header)
	assert.Equal(t, session.Reject, search.Session.Unknown.Value)
	assert.Equal(t, Count(100), *search.MaxInflight, "${MAX}, typed as a number")
	assert.Equal(t, 2*time.Second, time.Duration(*search.TryTimeout))
	assert.Nil(t, search.Timeout, "not set in the route")
	assert.Equal(t, &Redirect{To: "https://docs.example/", Status: 308}, file.Routes[1].Redirect)
	assert.Equal(t, sha256.Sum256([]byte(good)), file.Digest, "the digest of the bytes read")
}

func TestEnvironmentValuesStayStrings(t *testing.T) {
	t.Parallel()
	file, err := Parse("f.yaml", []byte(`
routes:
  - name: "${NAME}"
    endpoints: ["https://${HOST}/v1"]
`), env(map[string]string{"NAME": "a: b # not YAML", "HOST": "api.example"}))
	require.NoError(t, err)
	assert.Equal(t, "a: b # not YAML", file.Routes[0].Name, "a value is never read as YAML")
	assert.Equal(t, "https://api.example/v1", file.Routes[0].Endpoints[0].URL)

	file, err = Parse("f.yaml", []byte("routes:\n  - name: r\n    endpoints: [http://a.example]\n    health:\n      path: ${EMPTY}\n"), env(map[string]string{"EMPTY": ""}))
	require.NoError(t, err)
	require.NotNil(t, file.Routes[0].Health.Path, "an empty variable does not unset the key")
	assert.Empty(t, *file.Routes[0].Health.Path)
}

func TestBadFilesNameFileLineAndKey(t *testing.T) {
	t.Parallel()
	route := "routes:\n  - name: r\n    endpoints: [http://a.example]\n"
	tests := []struct {
		name, file string
		want       []string
	}{
		{"empty", "", []string{"f.yaml: the file is empty"}},
		{"not YAML", "routes: [\n", []string{"f.yaml:", "accepted: YAML"}},
		{"unknown top key", "lisen: :8080\n" + route, []string{"f.yaml:1: lisen: unknown key; accepted: admin, defaults, listen, routes"}},
		{"unknown route key", "routes:\n  - name: r\n    endpoint: [http://a.example]\n", []string{
			"f.yaml:3: routes[0].endpoint: unknown key; accepted:", "f.yaml:2: routes[0]: no endpoints and no redirect"}},
		{"unknown nested key", route + "    hedge: {dely: 5ms}\n", []string{"f.yaml:4: routes[0].hedge.dely: unknown key; accepted: budget, delay, delay_max, delay_min"}},
		{"bad mode", "defaults: {mode: fast}\n" + route, []string{`f.yaml:1: defaults.mode: "fast": accepted: serial, fanout or hedged`}},
		{"bad duration", route + "    timeout: soon\n", []string{`f.yaml:4: routes[0].timeout: "soon": accepted: a duration such as 500ms, 10s or 0`}},
		{"negative count", route + "    max_attempts: -1\n", []string{`f.yaml:4: routes[0].max_attempts: "-1": accepted: a whole number, 0 or more`}},
		{"bad bool", route + "    idempotent_only: maybe\n", []string{`f.yaml:4: routes[0].idempotent_only: "maybe": accepted: true or false`}},
		{"bad terminal", route + "    terminal: 150\n", []string{`f.yaml:4: routes[0].terminal:`, `"150"`}},
		{"bad order", route + "    order: random\n", []string{`f.yaml:4: routes[0].order:`, "random"}},
		{"bad budget", route + "    hedge: {budget: 5}\n", []string{`f.yaml:4: routes[0].hedge.budget:`, `"5"`}},
		{"bad size", route + "    max_body_buffer: lots\n", []string{`f.yaml:4: routes[0].max_body_buffer: size "lots"`}},
		{"bad endpoint", "routes:\n  - name: r\n    endpoints: [ftp://a.example]\n", []string{`f.yaml:3: routes[0].endpoints[0]:`, `unknown scheme "ftp"`}},
		{"two URLs in one", "routes:\n  - name: r\n    endpoints: [\"http://a,http://b\"]\n", []string{`f.yaml:3: routes[0].endpoints[0]: "http://a,http://b": accepted: one URL per endpoint`}},
		{"endpoint as a mapping", "routes:\n  - name: r\n    endpoints:\n      - {url: http://a.example, wieght: 3}\n", []string{`f.yaml:4: routes[0].endpoints[0].wieght: unknown key; accepted: headers, max_inflight, tls, url, weight`}},
		{"list for a value", route + "    timeout: [1s]\n", []string{`f.yaml:4: routes[0].timeout: accepted: a single value`}},
		{"mapping for a list", "routes: {name: r}\n", []string{`f.yaml:1: routes: a mapping: accepted: a list`}},
		{"bad session header", route + "    session: {header: \"X Session\"}\n", []string{`f.yaml:4: routes[0].session.header: "X Session": accepted: a header or cookie name`}},
		{"session without an id", route + "    session: {unknown: reject}\n", []string{`f.yaml:4: routes[0].session: no header and no cookie`}},
		{"bad session choice", route + "    session: {header: X-S, failover: retry}\n", []string{`f.yaml:4: routes[0].session.failover: "retry": accepted: repin or fail`}},
		{"no routes", "listen: :8080\n", []string{`f.yaml:1: routes: none; accepted: a list of at least one route`}},
		{"no name", "routes:\n  - endpoints: [http://a.example]\n", []string{`f.yaml:2: routes[0]: no name`}},
		{"empty endpoints", "routes:\n  - name: r\n    endpoints: []\n", []string{`f.yaml:3: routes[0].endpoints: none; accepted: a list of at least one endpoint`}},
		{"null endpoints", "routes:\n  - name: r\n    endpoints:\n", []string{`routes[0].endpoints: none`}},
		{"aliases", "x: &r [{name: a, endpoints: [http://a.example]}]\nroutes: *r\n", []string{`f.yaml:1: x: unknown key`}},
		{"same name", route + "  - name: r\n    endpoints: [http://b.example]\n", []string{`f.yaml:4: routes[1].name: "r" is the name of an earlier route`}},
		{"both targets", route + "    redirect: {to: /x}\n", []string{`f.yaml:2: routes[0]: both endpoints and a redirect`}},
		{"bad redirect", "routes:\n  - name: r\n    redirect: {to: /x, status: 200}\n", []string{`f.yaml:2: routes[0]: redirect status 200: accepted: 301, 302, 303, 307 or 308`}},
		{"bad host", route + "    match: {host: \"a.*.example\"}\n", []string{`f.yaml:2: routes[0]: host "a.*.example"`}},
		{"unset variable", route + "    try_timeout: ${NOPE}\n", []string{`f.yaml:4: routes[0].try_timeout: ${NOPE}: NOPE is not set in the environment`}},
		{"bad variable", route + "    try_timeout: ${1X}\n", []string{`f.yaml:4: routes[0].try_timeout: ${1X}: accepted: ${NAME}`}},
		{"several at once", "lisen: x\ndefaults: {mode: fast, timeout: soon}\n" + route, []string{
			"f.yaml:1: lisen: unknown key", `f.yaml:2: defaults.mode: "fast"`, `f.yaml:2: defaults.timeout: "soon"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("f.yaml", []byte(tt.file), env(nil))
			require.Error(t, err)
			var problems Problems
			require.ErrorAs(t, err, &problems)
			for _, want := range tt.want {
				assert.Contains(t, err.Error(), want)
			}
			for _, p := range problems {
				assert.NotContains(t, p, "\n", "one line per problem")
				assert.True(t, strings.HasPrefix(p, "f.yaml:"), "%q names the file", p)
			}
		})
	}
}

func TestLoadNamesAFileThatCannotBeRead(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "missing.yaml")
	_, err := Load(path, nil)
	assert.ErrorContains(t, err, path)
	require.NoError(t, os.WriteFile(path, []byte(good), 0o600))
	_, err = Load(path, env(map[string]string{"MAX": "1"}))
	assert.NoError(t, err)
}

// FuzzParse feeds arbitrary files to Parse: it must return a file or
// problems that each name the file, and never panic.
//
//	go test -run XXX -fuzz FuzzParse -fuzztime 1m ./config/
func FuzzParse(f *testing.F) {
	f.Add(good)
	f.Add("routes: {name: r}\n")
	f.Add("hello")
	f.Add("routes:\n  - name: r\n    endpoints: [http://a]\n    session: {}\n")
	f.Fuzz(func(t *testing.T, data string) {
		file, err := Parse("f.yaml", []byte(data), env(map[string]string{"MAX": "3"}))
		if err == nil {
			require.NotNil(t, file)
			return
		}
		var problems Problems
		require.ErrorAs(t, err, &problems)
		for _, p := range problems {
			require.True(t, strings.HasPrefix(p, "f.yaml"), p)
		}
	})
}

func TestRouteSettingsOverTheDefaults(t *testing.T) {
	t.Parallel()
	file, err := Parse("f.yaml", []byte(`
defaults:
  mode: hedged
  hedge: {delay: p95, budget: 5%}
  timeout: 30s
  session: {header: X-S, unknown: reject}
routes:
  - name: r
    endpoints: [http://a.example]
    hedge: {budget: 10%}
    timeout: 5s
    session: {cookie: sid}
`), nil)
	require.NoError(t, err)
	merged := file.Routes[0].Settings.Over(file.Defaults)
	assert.Equal(t, Hedged, *merged.Mode, "inherited")
	assert.Equal(t, 5*time.Second, time.Duration(*merged.Timeout), "the route's own")
	assert.Equal(t, "p95", merged.Hedge.Delay.Value.String(), "a block merges key by key")
	assert.InDelta(t, 0.10, float64(merged.Hedge.Budget.Value), 1e-9)
	assert.Equal(t, Token("X-S"), *merged.Session.Header)
	assert.Equal(t, Token("sid"), *merged.Session.Cookie)
	assert.Equal(t, session.Reject, merged.Session.Unknown.Value)
	assert.InDelta(t, 0.05, float64(file.Defaults.Hedge.Budget.Value), 1e-9, "the defaults are not changed")
	assert.Nil(t, file.Routes[0].Session.Header, "nor the route's own")
}

func TestARouteSessionMayTakeItsHeaderFromTheDefaults(t *testing.T) {
	t.Parallel()
	_, err := Parse("f.yaml", []byte(`
defaults: {session: {header: X-S}}
routes:
  - {name: r, endpoints: [http://a.example], session: {unknown: reject}}
`), nil)
	assert.NoError(t, err)
}

func TestEndpointHeaders(t *testing.T) {
	t.Parallel()
	file, err := Parse("f.yaml", []byte(`
routes:
  - name: r
    endpoints:
      - url: https://one.example
        headers: {Authorization: "Bearer ${TOKEN}", X-Api-Key: k}
      - https://two.example
`), env(map[string]string{"TOKEN": "t0k"}))
	require.NoError(t, err)
	assert.Equal(t, map[string]HeaderValue{"Authorization": "Bearer t0k", "X-Api-Key": "k"}, file.Routes[0].Endpoints[0].Headers)
	assert.Empty(t, file.Routes[0].Endpoints[1].Headers)
	for text, want := range map[string]string{
		"{Host: x}":              `f.yaml:5: header "Host" is the proxy's own`,
		"{transfer-encoding: x}": `f.yaml:5: header "transfer-encoding" is the proxy's own`,
		`{"X Y": x}`:             `f.yaml:5: header "X Y": accepted: a header name`,
		`{X-A: "a\nb"}`:          `f.yaml:5: routes[0].endpoints[0].headers.X-A: a value with a line break`,
		"{X-A: [a, b]}":          `f.yaml:5: routes[0].endpoints[0].headers.X-A: accepted: a single value`,
	} {
		_, err := Parse("f.yaml", []byte("routes:\n  - name: r\n    endpoints:\n      - url: https://one.example\n        headers: "+text+"\n"), nil)
		require.Error(t, err, text)
		assert.Contains(t, err.Error(), want, text)
	}
}

func TestEndpointWeightAndCap(t *testing.T) {
	t.Parallel()
	file, err := Parse("f.yaml", []byte(`
routes:
  - name: r
    order: weighted
    endpoints:
      - {url: https://one.example, weight: 3, max_inflight: 100}
      - https://two.example
`), nil)
	require.NoError(t, err)
	one := file.Routes[0].Endpoints[0]
	assert.Equal(t, Weight(3), *one.Weight)
	assert.Equal(t, Count(100), *one.MaxInflight)
	assert.Equal(t, endpoints.Weighted, file.Routes[0].Order.Value)
	assert.Nil(t, file.Routes[0].Endpoints[1].Weight)
	_, err = Parse("f.yaml", []byte("routes:\n  - name: r\n    endpoints:\n      - {url: https://one.example, weight: 0}\n"), nil)
	assert.ErrorContains(t, err, `f.yaml:4: routes[0].endpoints[0].weight: "0": accepted: a whole number from 1 to 1000000`)
}

func TestEndpointTLSFilesAreCheckedWhenTheFileIsRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))
	for tlsBlock, want := range map[string]string{
		"{ca: " + filepath.Join(dir, "missing.pem") + "}": "routes[0].endpoints[0].tls: ca: open",
		"{ca: " + notPEM + "}":                            `routes[0].endpoints[0].tls: ca "` + notPEM + `": no certificate in it`,
		"{cert: " + notPEM + "}":                          "routes[0].endpoints[0].tls: cert and key: accepted: both",
		"{cert: " + notPEM + ", key: " + notPEM + "}":     `routes[0].endpoints[0].tls: cert "` + notPEM + `", key`,
		"{cipher: x}": "routes[0].endpoints[0].tls.cipher: unknown key; accepted: ca, cert, insecure_skip_verify, key, server_name",
	} {
		_, err := Parse("f.yaml", []byte("routes:\n  - name: r\n    endpoints:\n      - url: https://one.example\n        tls: "+tlsBlock+"\n"), nil)
		require.Error(t, err, tlsBlock)
		assert.Contains(t, err.Error(), "f.yaml:5: "+want, tlsBlock)
	}
	_, err := Parse("f.yaml", []byte("routes:\n  - name: r\n    endpoints:\n      - url: http://one.example\n        tls: {insecure_skip_verify: true}\n"), nil)
	assert.ErrorContains(t, err, `f.yaml:5: routes[0].endpoints[0].tls: for "http://one.example"; accepted: tls on https:// endpoints only`)
}

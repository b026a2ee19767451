package main

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/internal/testcert"
)

// pathEndpoint is an endpoint that answers with its name and the path it got.
func pathEndpoint(t *testing.T, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", name, r.URL.RequestURI())
	}))
	t.Cleanup(srv.Close)
	return srv
}

// writeConfig writes text to a file of the test's and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "proxy.yaml")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	return path
}

// fetch sends a GET for target with host to the proxy at address, without
// following redirects, and returns the answer and its body.
func fetch(t *testing.T, address, host, target string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+address+target, nil)
	require.NoError(t, err)
	req.Host = host
	client := &http.Client{Timeout: hangGuard, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func TestConfigRoutesEachRequest(t *testing.T) {
	t.Parallel()
	one, two, three := pathEndpoint(t, "one"), pathEndpoint(t, "two"), pathEndpoint(t, "three")
	path := writeConfig(t, fmt.Sprintf(`
defaults:
  mode: fanout
  debug_headers: true
routes:
  - name: api
    match: {host: api.example.com}
    endpoints: [%s]
  - name: search
    match: {path: /search/}
    strip_prefix: true
    mode: serial
    endpoints: ["%s/s", "%s/s"]
  - name: docs
    match: {path: /docs}
    redirect: {to: "https://docs.example/"}
  - name: rest
    match: {path: /}
    endpoints: ["${THREE}"]
`, one.URL, two.URL, three.URL))
	p := startProxy(t, []string{"THREE=" + three.URL}, "-config", path)

	_, body := fetch(t, p.address, "API.example.com:8080", "/search/x")
	assert.Equal(t, "one /search/x", body, "a host route beats a longer path")
	resp, body := fetch(t, p.address, "other", "/search/v1/x?q=1")
	assert.Equal(t, "two /s/v1/x?q=1", body, "stripped, under the endpoint's prefix")
	assert.Equal(t, "1", resp.Header.Get("X-Proxy-Attempts"), "serial: the route's own mode")
	resp, body = fetch(t, p.address, "other", "/other")
	assert.Equal(t, "three /other", body, "${THREE} from the environment")
	assert.Equal(t, "1", resp.Header.Get("X-Proxy-Attempts"))
	resp, _ = fetch(t, p.address, "other", "/docs/guide?x=1")
	assert.Equal(t, http.StatusPermanentRedirect, resp.StatusCode)
	assert.Equal(t, "https://docs.example/guide?x=1", resp.Header.Get("Location"))
}

func TestNoRouteGets404(t *testing.T) {
	t.Parallel()
	one := pathEndpoint(t, "one")
	p := startProxy(t, nil, "-config", writeConfig(t, fmt.Sprintf("routes:\n  - {name: api, match: {path: /api}, endpoints: [%s]}\n", one.URL)))
	resp, body := fetch(t, p.address, "h.example", "/x")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Equal(t, "404 Not Found: no route matches host \"h.example\" and path \"/x\"\n", body)
}

func TestAFlagOnTheCommandLineWinsOverTheFile(t *testing.T) {
	t.Parallel()
	one := pathEndpoint(t, "one")
	path := writeConfig(t, fmt.Sprintf("defaults: {debug_headers: true}\nroutes:\n  - {name: r, endpoints: [%s]}\n", one.URL))
	resp, _ := fetch(t, startProxy(t, nil, "-config", path).address, "h", "/")
	assert.Equal(t, "1", resp.Header.Get("X-Proxy-Attempts"), "the file's setting")
	resp, _ = fetch(t, startProxy(t, nil, "-config", path, "-debug-headers=false").address, "h", "/")
	assert.Empty(t, resp.Header.Get("X-Proxy-Attempts"), "the command line's")
	resp, _ = fetch(t, startProxy(t, []string{"BALANCING_REVERSE_PROXY_DEBUG_HEADERS=false"}, "-config", path).address, "h", "/")
	assert.Empty(t, resp.Header.Get("X-Proxy-Attempts"), "the environment's")
}

func TestListenComesFromTheFileUnlessGiven(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	address := ln.Addr().String()
	require.NoError(t, ln.Close())
	one := pathEndpoint(t, "one")
	path := writeConfig(t, fmt.Sprintf("listen: %s\nroutes:\n  - {name: r, endpoints: [%s]}\n", address, one.URL))
	code, stdout, stderr := runToEnd(t, nil, "-config", path, "-stop-after", "200ms")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "listening address="+address, "the file's listen")
	p := startProxy(t, nil, "-config", path)
	assert.NotEqual(t, address, p.address, "-address on the command line wins")
}

func TestARouteModeDecidesWhatAnInheritedHedgeDelayDoes(t *testing.T) {
	t.Parallel()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond)
		fmt.Fprint(w, "slow")
	}))
	t.Cleanup(slow.Close)
	fast := pathEndpoint(t, "fast")
	path := writeConfig(t, fmt.Sprintf(`defaults: {mode: hedged, hedge: {delay: 5ms}, debug_headers: true}
routes:
  - {name: serial, match: {path: /serial}, mode: serial, endpoints: [%[1]s, %[2]s]}
  - {name: fanout, match: {path: /fanout}, mode: fanout, endpoints: [%[1]s, %[2]s]}
  - {name: hedged, match: {path: /hedged}, endpoints: [%[1]s, %[2]s]}
`, slow.URL, fast.URL))
	p := startProxy(t, nil, "-config", path)
	for target, attempts := range map[string]string{"/serial": "1", "/fanout": "2", "/hedged": "2"} {
		resp, _ := fetch(t, p.address, "h", target)
		assert.Equal(t, http.StatusOK, resp.StatusCode, target)
		assert.Equal(t, attempts, resp.Header.Get("X-Proxy-Attempts"), target)
	}
	// -f wins for every route, and the file's hedge delay does not stand in
	// its way.
	resp, _ := fetch(t, startProxy(t, nil, "-config", path, "-f").address, "h", "/serial")
	assert.Equal(t, "2", resp.Header.Get("X-Proxy-Attempts"))
}

func TestRoutesHaveTheirOwnPinsInOneRedis(t *testing.T) {
	t.Parallel()
	redis := startRedis(t, 0)
	one := pathEndpoint(t, "one")
	path := writeConfig(t, fmt.Sprintf(`defaults: {session: {header: X-Session-ID, store: %s}}
routes:
  - {name: a, match: {path: /a}, endpoints: [%s]}
  - {name: b, match: {path: /b}, endpoints: [%s]}
`, redis.url(), one.URL, one.URL))
	p := startProxy(t, nil, "-config", path)
	for _, target := range []string{"/a", "/b"} {
		req, err := http.NewRequest(http.MethodGet, "http://"+p.address+target, nil)
		require.NoError(t, err)
		req.Header.Set("X-Session-ID", "s")
		resp, err := (&http.Client{Timeout: hangGuard}).Do(req)
		require.NoError(t, err)
		resp.Body.Close()
	}
	client := goredis.NewClient(&goredis.Options{Addr: redis.address()})
	defer client.Close()
	keys, err := client.Keys(t.Context(), "*").Result()
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"brp:session:a:s", "brp:session:b:s"}, keys)
}

func TestCheckConfig(t *testing.T) {
	t.Parallel()
	good := writeConfig(t, "routes:\n  - {name: r, endpoints: [http://127.0.0.1:1]}\n")
	code, stdout, stderr := runToEnd(t, nil, "-check-config", "-config", good)
	assert.Equal(t, 0, code)
	assert.Equal(t, good+": good, 1 routes\n", stdout)
	assert.Empty(t, stderr)

	bad := writeConfig(t, `lisen: x
defaults: {mode: fast}
routes:
  - {name: r, endpoints: [ftp://a]}
  - {name: h, endpoints: [http://a], hedge: {delay_min: 2s, delay_max: 1s}, mode: hedged}
`)
	code, stdout, stderr = runToEnd(t, nil, "-check-config", "-config", bad)
	badProblems := stderr
	assert.Equal(t, 2, code)
	assert.Empty(t, stdout)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	assert.Len(t, lines, 3, stderr)
	assert.Contains(t, stderr, bad+":1: lisen: unknown key")
	assert.Contains(t, stderr, bad+`:2: defaults.mode: "fast"`)
	assert.Contains(t, stderr, bad+`:4: routes[0].endpoints[0]:`)

	settings := writeConfig(t, "routes:\n  - {name: h, endpoints: [http://a], hedge: {delay_min: 2s, delay_max: 1s}, mode: hedged}\n")
	code, _, stderr = runToEnd(t, nil, "-check-config", "-config", settings)
	assert.Equal(t, 2, code)
	assert.Equal(t, settings+":2: routes[0] (h): --hedge-delay-min 2s is above --hedge-delay-max 1s; accepted: min <= max\n", stderr)

	code, _, normalStart := runToEnd(t, nil, "-config", bad)
	assert.Equal(t, 2, code)
	assert.Equal(t, badProblems, normalStart, "a bad file at a normal start: the same problems")
}

func TestConfigAndEndpointsTogetherIsAnError(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "routes:\n  - {name: r, endpoints: [http://a]}\n")
	code, _, stderr := runToEnd(t, nil, "-config", path, "-e", "http://b")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "--config")
	assert.Contains(t, stderr, "accepted: one of them")
	code, _, stderr = runToEnd(t, nil, "-check-config", "-e", "http://b")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "--check-config needs --config FILE")
}

func TestTheExampleConfigurationIsAccepted(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"memory", "redis://redis.internal:6379/0"} {
		code, stdout, stderr := runToEnd(t, []string{"SESSION_STORE=" + store}, "-check-config", "-config", "deploy/config.example.yaml")
		assert.Equal(t, 0, code, stderr)
		assert.Equal(t, "deploy/config.example.yaml: good, 4 routes\n", stdout)
	}
}

func TestTheSystemdUnitRunsTheCheckedConfiguration(t *testing.T) {
	t.Parallel()
	unit, err := os.ReadFile("deploy/balancing-reverse-proxy.service")
	require.NoError(t, err)
	// systemd-analyze checks the unit's syntax, with the binary where the unit
	// expects it replaced by the tests' one.
	analyze, err := exec.LookPath("systemd-analyze")
	require.NoError(t, err, "needs systemd-analyze: apt-get install systemd (scripts/test.sh does)")
	local := filepath.Join(t.TempDir(), "balancing-reverse-proxy.service")
	require.NoError(t, os.WriteFile(local, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/balancing-reverse-proxy", binary)), 0o600))
	out, err := exec.Command(analyze, "verify", local).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Empty(t, strings.TrimSpace(string(out)), "no warnings")
	for _, line := range []string{
		"ExecStartPre=/usr/local/bin/balancing-reverse-proxy -check-config -config /etc/balancing-reverse-proxy/config.yaml",
		"ExecStart=/usr/local/bin/balancing-reverse-proxy -config /etc/balancing-reverse-proxy/config.yaml",
		"ExecReload=/bin/kill -HUP $MAINPID",
		"DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict",
	} {
		assert.Contains(t, string(unit), line)
	}
}

func TestEachEndpointGetsItsOwnHeaders(t *testing.T) {
	t.Parallel()
	seen := make(chan string, 2)
	recording := func() *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen <- r.Host + " " + r.Header.Get("Authorization")
			w.WriteHeader(http.StatusInternalServerError) // so that the next endpoint is tried too
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	vendor, plain := recording(), recording()
	path := writeConfig(t, fmt.Sprintf(`routes:
  - name: r
    endpoints:
      - url: %s
        headers: {Authorization: "Bearer ${VENDOR_TOKEN}"}
      - %s
`, vendor.URL, plain.URL))
	p := startProxy(t, []string{"VENDOR_TOKEN=s3cret"}, "-config", path)
	req, err := http.NewRequest(http.MethodGet, "http://"+p.address+"/", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer client")
	resp, err := (&http.Client{Timeout: hangGuard}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	got := []string{<-seen, <-seen}
	assert.ElementsMatch(t, []string{
		strings.TrimPrefix(vendor.URL, "http://") + " Bearer s3cret",
		strings.TrimPrefix(plain.URL, "http://") + " Bearer client",
	}, got, "the endpoint's own header wins over the client's; the other endpoint gets the client's")
	for _, line := range p.startLines {
		assert.NotContains(t, line, "s3cret", "a header's value is never logged")
	}
}

func TestWeightedOrderSplitsByTheEndpointsWeights(t *testing.T) {
	t.Parallel()
	a, b, c := pathEndpoint(t, "a"), pathEndpoint(t, "b"), pathEndpoint(t, "c")
	path := writeConfig(t, fmt.Sprintf(`routes:
  - name: r
    order: weighted
    endpoints:
      - {url: %s, weight: 5}
      - %s
      - {url: %s, weight: 1}
`, a.URL, b.URL, c.URL))
	p := startProxy(t, nil, "-config", path)
	counts := map[string]int{}
	var first []string
	for i := range 700 {
		_, body := fetch(t, p.address, "h", "/")
		name, _, _ := strings.Cut(body, " ")
		counts[name]++
		if i < 7 {
			first = append(first, name)
		}
	}
	assert.Equal(t, []string{"a", "a", "b", "a", "c", "a", "a"}, first, "smooth: never a burst")
	assert.Equal(t, map[string]int{"a": 500, "b": 100, "c": 100}, counts)
}

// caFile writes srv's certificate as a PEM file of the test's and returns
// its path: the CA that an endpoint's tls.ca names.
func caFile(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	require.NoError(t, os.WriteFile(path, block, 0o600))
	return path
}

func TestEndpointTLS(t *testing.T) {
	t.Parallel()
	// The refused handshakes are the test's point, not news for its log.
	quiet := log.New(io.Discard, "", 0)
	secure := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "secure") }))
	secure.Config.ErrorLog = quiet
	secure.StartTLS()
	t.Cleanup(secure.Close)
	client := testcert.New(t)
	certFile, keyFile := client.WriteFiles(t)
	mutual := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "client certificate %v", bytes.Equal(r.TLS.PeerCertificates[0].Raw, client.TLS.Certificate[0]))
	}))
	// The test certificate is a server's (its key usage), so the endpoint
	// checks the one it gets is that one, rather than verifying it.
	mutual.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	mutual.Config.ErrorLog = quiet
	mutual.StartTLS()
	t.Cleanup(mutual.Close)
	// httptest's certificate is for 127.0.0.1 and example.com.
	path := writeConfig(t, fmt.Sprintf(`defaults: {debug_headers: true, eject: {after: 0}}
routes:
  - {name: ca, match: {path: /ca}, endpoints: [{url: %[1]s, tls: {ca: %[2]s}}]}
  - {name: named, match: {path: /named}, endpoints: [{url: %[1]s, tls: {ca: %[2]s, server_name: example.com}}]}
  - {name: misnamed, match: {path: /misnamed}, endpoints: [{url: %[1]s, tls: {ca: %[2]s, server_name: wrong.example}}]}
  - {name: system, match: {path: /system}, endpoints: [%[1]s]}
  - {name: insecure, match: {path: /insecure}, endpoints: [{url: %[1]s, tls: {insecure_skip_verify: true}}]}
  - {name: mutual, match: {path: /mutual}, endpoints: [{url: %[3]s, tls: {ca: %[4]s, cert: %[5]s, key: %[6]s}}]}
  - {name: anonymous, match: {path: /anonymous}, endpoints: [{url: %[3]s, tls: {ca: %[4]s}}]}
`, secure.URL, caFile(t, secure), mutual.URL, caFile(t, mutual), certFile, keyFile))
	p := startProxy(t, nil, "-config", path)
	for target, want := range map[string]string{
		"/ca": "secure", "/named": "secure", "/insecure": "secure", "/mutual": "client certificate true",
		"/misnamed": "", "/system": "", "/anonymous": "",
	} {
		resp, body := fetch(t, p.address, "h", target)
		if want == "" {
			assert.Equal(t, http.StatusBadGateway, resp.StatusCode, "%s: the endpoint's certificate or ours is refused", target)
			continue
		}
		assert.Equal(t, http.StatusOK, resp.StatusCode, target)
		assert.Equal(t, want, body, target)
	}
	warned := false
	for _, line := range p.startLines {
		warned = warned || strings.Contains(line, "WRN insecure_skip_verify") && strings.Contains(line, "route=insecure")
	}
	assert.True(t, warned, "insecure_skip_verify is a warning at start-up:\n%s", strings.Join(p.startLines, "\n"))
}

func TestTheREADMEsExamplesAreAccepted(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	_, examples, ok := strings.Cut(string(readme), "**Examples.**")
	require.True(t, ok, "the README has its examples")
	examples, _, _ = strings.Cut(examples, "**Running it under systemd.**")
	blocks := strings.Split(examples, "```yaml\n")[1:]
	require.Len(t, blocks, 3)
	for i, block := range blocks {
		text, _, _ := strings.Cut(block, "```")
		path := writeConfig(t, text)
		code, _, stderr := runToEnd(t, []string{"ONE_KEY=1", "TWO_KEY=2"}, "-check-config", "-config", path)
		assert.Equal(t, 0, code, "example %d: %s", i+1, stderr)
	}
}

func TestABadAdminInTheFileIsOneProblemNamingIt(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "admin: localhost\nroutes:\n  - {name: r, endpoints: [http://127.0.0.1:1]}\n")
	code, _, stderr := runToEnd(t, nil, "-check-config", "-config", path)
	assert.Equal(t, 2, code)
	assert.Equal(t, path+`: admin "localhost": address localhost: missing port in address; accepted: [host]:port, such as :8080 or 127.0.0.1:8080`+"\n", stderr)
}

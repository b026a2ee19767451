package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/internal/syncbuffer"
)

// rewrite replaces the file at path with text, as an editor saving it does.
func rewrite(t *testing.T, path, text string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path+".tmp", []byte(text), 0o600))
	require.NoError(t, os.Rename(path+".tmp", path))
}

// collectLines copies the proxy's log lines into a buffer the test reads.
func collectLines(p *proxyProcess) *syncbuffer.Buffer {
	logs := &syncbuffer.Buffer{}
	for _, line := range p.startLines {
		fmt.Fprintln(logs, line)
	}
	go func() {
		for line := range p.lines {
			fmt.Fprintln(logs, line)
		}
	}()
	return logs
}

// answeredBy returns the name of the endpoint that answered a GET of
// target, or the error that kept it from an answer. It may run on a
// goroutine of require.Eventually's, so it fails nothing itself.
func answeredBy(address, target string) string {
	resp, err := (&http.Client{Timeout: hangGuard}).Get("http://" + address + target)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err.Error()
	}
	name, _, _ := strings.Cut(string(body), " ")
	return name
}

func TestAChangedFileIsReloadedAndABrokenOneIsNot(t *testing.T) {
	t.Parallel()
	one, two := pathEndpoint(t, "one"), pathEndpoint(t, "two")
	path := writeConfig(t, fmt.Sprintf("routes:\n  - {name: r, endpoints: [%s]}\n", one.URL))
	p := startProxy(t, nil, "-config", path)
	logs := collectLines(p)
	require.Equal(t, "one", answeredBy(p.address, "/"))

	rewrite(t, path, fmt.Sprintf("routes:\n  - {name: r, endpoints: [%s]}\n  - {name: s, match: {path: /s}, endpoints: [%s]}\n", two.URL, one.URL))
	// The bound: a change is noticed within 2 s.
	require.Eventually(t, func() bool { return answeredBy(p.address, "/") == "two" }, 2*time.Second, 10*time.Millisecond)
	assert.Equal(t, "one", answeredBy(p.address, "/s"))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "configuration reloaded") }, hangGuard, 10*time.Millisecond)
	assert.Contains(t, logs.String(), `"route r changed","route r: endpoint `+two.URL+` added","route r: endpoint `+one.URL+` removed","route s added"`)

	rewrite(t, path, "routes: [\n")
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "configuration not reloaded") }, hangGuard, 10*time.Millisecond)
	assert.Equal(t, "two", answeredBy(p.address, "/"), "the configuration in force stays")
	assert.Contains(t, logs.String(), path+":1: did not find expected node content")

	rewrite(t, path, fmt.Sprintf("routes:\n  - {name: r, endpoints: [%s]}\n", one.URL))
	require.Eventually(t, func() bool { return answeredBy(p.address, "/") == "one" }, 2*time.Second, 10*time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), `because=SIGHUP`) }, hangGuard, 10*time.Millisecond,
		"SIGHUP reloads, the file changed or not")
	assert.Equal(t, 1, strings.Count(logs.String(), "configuration not reloaded"), "a broken file is logged once:\n%s", logs.String())
}

func TestAReloadKeepsWhatStays(t *testing.T) {
	t.Parallel()
	a, b := pathEndpoint(t, "a"), pathEndpoint(t, "b")
	dead := "http://127.0.0.1:1"
	config := func(order string) string {
		return fmt.Sprintf(`defaults: {debug_headers: true, eject: {after: 1, backoff: 1m}}
routes:
  - {name: sessions, match: {path: /sessions}, session: {header: X-Session-ID}, endpoints: [%s]}
  - {name: ejecting, match: {path: /ejecting}, endpoints: [%s, %s]}
`, order, dead, a.URL)
	}
	path := writeConfig(t, config(a.URL+", "+b.URL))
	p := startProxy(t, nil, "-config", path)
	logs := collectLines(p)
	resp, _ := fetch(t, p.address, "h", "/ejecting")
	require.Equal(t, "2", resp.Header.Get("X-Proxy-Attempts"), "the dead endpoint failed, and is ejected")
	pinned := func() string {
		req, err := http.NewRequest(http.MethodGet, "http://"+p.address+"/sessions", nil)
		require.NoError(t, err)
		req.Header.Set("X-Session-ID", "kept")
		resp, err := (&http.Client{Timeout: hangGuard}).Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		return resp.Header.Get("X-Proxy-Endpoint") + " " + resp.Request.URL.Path
	}
	before := pinned()
	require.Equal(t, "0 /sessions", before, "pinned to a, the first")

	// b first now: a new pin would be b's.
	rewrite(t, path, config(b.URL+", "+a.URL))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "configuration reloaded") }, hangGuard, 10*time.Millisecond)
	assert.Equal(t, "1 /sessions", pinned(), "the pin stays with a, now the second endpoint")
	resp, _ = fetch(t, p.address, "h", "/ejecting")
	assert.Equal(t, []string{"1", "1"}, []string{resp.Header.Get("X-Proxy-Attempts"), resp.Header.Get("X-Proxy-Endpoint")},
		"the dead endpoint is still ejected")
}

func TestReloadsUnderLoadLoseNoRequest(t *testing.T) {
	t.Parallel()
	a, b := pathEndpoint(t, "a"), pathEndpoint(t, "b")
	good := []string{
		fmt.Sprintf("routes:\n  - {name: r, endpoints: [%s]}\n", a.URL),
		fmt.Sprintf("routes:\n  - {name: r, mode: fanout, endpoints: [%s, %s]}\n", b.URL, a.URL),
	}
	path := writeConfig(t, good[0])
	p := startProxy(t, nil, "-config", path, "-debug-address", "127.0.0.1:0")
	logs := collectLines(p)
	var debugAddress string
	require.Eventually(t, func() bool {
		m := regexp.MustCompile(`admin listener:.* address=(\S+)`).FindStringSubmatch(logs.String())
		if m != nil {
			debugAddress = m[1]
		}
		return m != nil
	}, hangGuard, 10*time.Millisecond)
	goroutines := func() int { return proxyGoroutines(debugAddress) }
	fds := func() int {
		entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
		require.NoError(t, err)
		return len(entries)
	}
	baseline, baseFDs := goroutines(), fds()
	require.Positive(t, baseline)

	// 500 requests a second for 10 s, from 16 clients.
	var sent, failed atomic.Int64
	var wrong sync.Map
	stop := make(chan struct{})
	var load sync.WaitGroup
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	work := make(chan struct{}, 64)
	for range 16 {
		load.Go(func() {
			client := &http.Client{Timeout: hangGuard}
			defer client.CloseIdleConnections()
			for range work {
				sent.Add(1)
				resp, err := client.Get("http://" + p.address + "/x")
				if err != nil {
					failed.Add(1)
					continue
				}
				body := make([]byte, 1)
				_, _ = resp.Body.Read(body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
				} else if body[0] != 'a' && body[0] != 'b' {
					wrong.Store(string(body), true)
				}
			}
		})
	}
	load.Go(func() {
		defer close(work)
		deadline := time.After(10 * time.Second)
		for {
			select {
			case <-deadline:
				return
			case <-stop:
				return
			case <-tick.C:
				select {
				case work <- struct{}{}:
				default: // the clients are behind: the rate drops, nothing piles up
				}
			}
		}
	})
	// 25 rewrites, 400 ms apart: 20 between the two good files, 5 to a broken one.
	for i := range 25 {
		time.Sleep(400 * time.Millisecond)
		if i%5 == 4 {
			rewrite(t, path, "routes: [\n")
			continue
		}
		rewrite(t, path, good[i%2])
	}
	load.Wait()
	close(stop)
	assert.Positive(t, sent.Load())
	assert.Zero(t, failed.Load(), "of %d requests", sent.Load())
	t.Logf("%d requests in 10 s, %d failed, across 25 rewrites", sent.Load(), failed.Load())
	wrong.Range(func(k, _ any) bool { t.Errorf("an answer from no configured endpoint: %q", k); return true })
	assert.Eventually(t, func() bool { return strings.Count(logs.String(), "configuration not reloaded") == 5 }, hangGuard, 10*time.Millisecond,
		"each broken file, once")
	// Retired sets stop once their last request is done: no goroutine is left
	// waiting for one.
	require.Eventually(t, func() bool {
		stacks := proxyStacks(debugAddress)
		return strings.HasPrefix(stacks, "goroutine ") && !strings.Contains(stacks, "liveRoutes")
	}, hangGuard, 50*time.Millisecond)
	// What may stay is the connections to the two endpoints, kept idle for
	// the next requests: at most one per client each, two goroutines each
	// (Go's transport); the load's own connections are closed. Anything
	// that grew with the 25 reloads would be far over.
	const kept = 2 * 16
	require.Eventually(t, func() bool { n := goroutines(); return n > 0 && n <= baseline+2*kept+4 }, hangGuard, 50*time.Millisecond,
		"goroutines: %d at the start, %d now", baseline, goroutines())
	assert.LessOrEqual(t, fds(), baseFDs+kept+4, "open files: %d at the start", baseFDs)
}

// proxyStacks returns the stacks of the proxy's goroutines, from its
// profile server at address, or the error that kept it from them. It may
// run on a goroutine of require.Eventually's, so it fails nothing itself.
func proxyStacks(address string) string {
	resp, err := (&http.Client{Timeout: hangGuard}).Get("http://" + address + "/debug/pprof/goroutine?debug=2")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	stacks, err := io.ReadAll(resp.Body)
	if err != nil {
		return err.Error()
	}
	return string(stacks)
}

// proxyGoroutines reads the proxy's goroutine count from its profile server
// at address, or -1 if it cannot. It may run on a goroutine of
// require.Eventually's, so it fails nothing itself.
func proxyGoroutines(address string) int {
	resp, err := (&http.Client{Timeout: hangGuard}).Get("http://" + address + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var n int
	if _, err := fmt.Fscanf(resp.Body, "goroutine profile: total %d", &n); err != nil {
		return -1
	}
	return n
}

// connCountingEndpoint answers with its name and counts the connections
// made to it and those open.
type connCountingEndpoint struct {
	*httptest.Server
	made, open atomic.Int32
}

func newConnCountingEndpoint(t *testing.T, name string) *connCountingEndpoint {
	t.Helper()
	e := &connCountingEndpoint{}
	e.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
	e.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		switch state {
		case http.StateNew:
			e.made.Add(1)
			e.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			e.open.Add(-1)
		}
	}
	e.Start()
	t.Cleanup(e.Close)
	return e
}

func TestAReloadKeepsTheConnectionsOfEndpointsThatStayAndClosesTheOthers(t *testing.T) {
	t.Parallel()
	stays, goes := newConnCountingEndpoint(t, "stays"), newConnCountingEndpoint(t, "goes")
	path := writeConfig(t, fmt.Sprintf(`routes:
  - {name: a, match: {path: /a}, endpoints: [%s]}
  - {name: b, match: {path: /b}, endpoints: [%s]}
`, stays.URL, goes.URL))
	p := startProxy(t, nil, "-config", path)
	logs := collectLines(p)
	for range 3 {
		require.Equal(t, "stays", answeredBy(p.address, "/a"))
		require.Equal(t, "goes", answeredBy(p.address, "/b"))
	}
	require.Equal(t, int32(1), goes.open.Load())
	rewrite(t, path, fmt.Sprintf("routes:\n  - {name: a, match: {path: /a}, endpoints: [%s]}\n", stays.URL))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "configuration reloaded") }, hangGuard, 10*time.Millisecond)
	require.Eventually(t, func() bool { return goes.open.Load() == 0 }, hangGuard, 10*time.Millisecond,
		"the removed endpoint's idle connection is closed once its requests are done")
	for range 3 {
		require.Equal(t, "stays", answeredBy(p.address, "/a"))
	}
	assert.Equal(t, int32(1), stays.made.Load(), "the endpoint that stays keeps its one connection")
}

func TestAChangedListenIsReportedAsTakingARestart(t *testing.T) {
	t.Parallel()
	one := pathEndpoint(t, "one")
	route := fmt.Sprintf("routes:\n  - {name: r, endpoints: [%s]}\n", one.URL)
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		return ln.Addr().String()
	}
	first, second := free(), free()
	path := writeConfig(t, "listen: "+first+"\n"+route)
	// Without -address, which would win over the file (startProxy gives one).
	logs := &syncbuffer.Buffer{}
	cmd := exec.Command(binary, "-config", path)
	cmd.Stdout = logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "listening address="+first) }, hangGuard, 10*time.Millisecond)
	rewrite(t, path, "listen: "+second+"\n"+route)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "configuration reloaded") }, hangGuard, 10*time.Millisecond)
	assert.Contains(t, logs.String(), "listen changed: it takes a restart; the listener stays in_force="+first+" listen="+second)
	assert.Equal(t, "one", answeredBy(first, "/"), "still on the first address")
}

func TestTheFilesAdminServesMetricsThatCountTheReloads(t *testing.T) {
	t.Parallel()
	one, two := pathEndpoint(t, "one"), pathEndpoint(t, "two")
	config := func(endpoint string) string {
		return fmt.Sprintf("admin: 127.0.0.1:0\nroutes:\n  - {name: r, session: {header: X-Session-ID}, endpoints: [%s]}\n", endpoint)
	}
	path := writeConfig(t, config(one.URL))
	p := startProxy(t, nil, "-config", path)
	logs := collectLines(p)
	admin := adminAddressOf(t, logs)
	loaded := metricValue(admin, "brp_config_last_reload_success_timestamp_seconds")
	require.Positive(t, loaded, "stamped at start-up")
	assert.InDelta(t, 0, metricValue(admin, `brp_config_reloads_total{result="success"}`), 0)

	req, err := http.NewRequest(http.MethodGet, "http://"+p.address+"/", nil)
	require.NoError(t, err)
	req.Header.Set("X-Session-ID", "s1")
	for range 2 {
		resp, err := (&http.Client{Timeout: hangGuard}).Do(req)
		require.NoError(t, err)
		resp.Body.Close()
	}
	assert.InDelta(t, 1, metricValue(admin, `brp_session_lookups_total{result="miss",route="r"}`), 0, "the first finds no pin")
	assert.InDelta(t, 1, metricValue(admin, `brp_session_lookups_total{result="hit",route="r"}`), 0)
	assert.InDelta(t, 1, metricValue(admin, `brp_sessions{route="r"}`), 0)

	time.Sleep(10 * time.Millisecond) // so that the stamp moves
	rewrite(t, path, config(two.URL))
	require.Eventually(t, func() bool { return metricValue(admin, `brp_config_reloads_total{result="success"}`) == 1 }, hangGuard, 10*time.Millisecond)
	assert.Greater(t, metricValue(admin, "brp_config_last_reload_success_timestamp_seconds"), loaded)
	assert.InDelta(t, 1, metricValue(admin, `brp_endpoint_up{endpoint="`+two.URL+`",route="r"}`), 0, "the new endpoint's state")
	assert.InDelta(t, -1, metricValue(admin, `brp_endpoint_up{endpoint="`+one.URL+`",route="r"}`), 0, "the removed one's is gone")
	assert.InDelta(t, 1, metricValue(admin, `brp_sessions{route="r"}`), 0, "the pins stay")

	rewrite(t, path, "routes: [\n")
	require.Eventually(t, func() bool { return metricValue(admin, `brp_config_reloads_total{result="failure"}`) == 1 }, hangGuard, 10*time.Millisecond)
	assert.InDelta(t, 1, metricValue(admin, `brp_config_reloads_total{result="success"}`), 0)
}

func TestTheFileWatchsErrorsAreReadAndLogged(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "routes:\n  - {name: r, endpoints: [http://127.0.0.1:1]}\n")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	logs := &syncbuffer.Buffer{}
	// The file's digest is the one in force: the re-read after an error
	// finds nothing to reload, so the reloader needs no engine here.
	rl := &reloader{cli: &CLI{Config: path}, logger: zerolog.New(logs), digest: sha256.Sum256(data)}
	watcher, err := fsnotify.NewWatcher()
	require.NoError(t, err)
	require.NoError(t, watcher.Add(t.TempDir()))
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); rl.run(ctx, triggers{hup: make(chan os.Signal, 1), watcher: watcher}) }()
	defer func() { cancel(); <-ran }()
	// fsnotify sends its errors on an unbuffered channel from the goroutine
	// that also sends the events: an error nobody reads stalls the watch.
	for range 2 {
		select {
		case watcher.Errors <- fsnotify.ErrEventOverflow:
		case <-time.After(hangGuard):
			t.Fatal("nobody reads the watcher's errors")
		}
	}
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "reading it again in case a change was missed")
	}, hangGuard, 10*time.Millisecond)
	assert.Contains(t, logs.String(), fsnotify.ErrEventOverflow.Error())
}

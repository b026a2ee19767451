package main

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// adminAddressOf waits for the admin listener's address in p's log.
func adminAddressOf(t *testing.T, logs interface{ String() string }) string {
	t.Helper()
	var address string
	require.Eventually(t, func() bool {
		m := regexp.MustCompile(`admin listener:.* address=(\S+)`).FindStringSubmatch(logs.String())
		if m != nil {
			address = m[1]
		}
		return m != nil
	}, hangGuard, 10*time.Millisecond)
	return address
}

// adminGet returns the status and body of the admin listener's path, or 0
// and the error that kept it from them. It may run on a goroutine of
// require.Eventually's, so it fails nothing itself.
func adminGet(address, path string) (int, string) {
	resp, err := (&http.Client{Timeout: hangGuard}).Get("http://" + address + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, string(body)
}

func TestTheAdminListener(t *testing.T) {
	t.Parallel()
	one := pathEndpoint(t, "one")
	p := startProxy(t, nil, "-e", one.URL+",http://127.0.0.1:1", "-admin-address", "127.0.0.1:0", "-eject-after", "1", "-eject-backoff", "1m")
	logs := collectLines(p)
	admin := adminAddressOf(t, logs)
	status, body := adminGet(admin, "/healthz")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "ok\n", body)
	status, body = adminGet(admin, "/readyz")
	assert.Equal(t, http.StatusOK, status, body)

	for range 3 {
		_, body := fetch(t, p.address, "h", "/x")
		require.Equal(t, "one /x", body)
	}
	status, body = adminGet(admin, "/metrics")
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, `brp_requests_total{code="200",route="default"} 3`)
	assert.Contains(t, body, `brp_request_duration_seconds_count{route="default"} 3`)
	assert.Contains(t, body, `brp_requests_in_flight{route="default"} 0`)
	assert.Contains(t, body, `brp_attempts_total{endpoint="`+one.URL+`",result="won",route="default"} 3`)
	assert.Contains(t, body, `brp_attempts_total{endpoint="http://127.0.0.1:1",result="failed",route="default"} 0`,
		"every endpoint's series from start-up")
	assert.Contains(t, body, `brp_attempt_duration_seconds_count{endpoint="`+one.URL+`",route="default"} 3`)
	assert.Contains(t, body, `brp_hedges_total{result="sent",route="default"} 0`)
	assert.Contains(t, body, "go_goroutines ")
	assert.Contains(t, body, "process_resident_memory_bytes ")
	status, _ = adminGet(admin, "/debug/pprof/goroutine?debug=1")
	assert.Equal(t, http.StatusOK, status, "the profiles, as -debug-address served them")
}

func TestReadyzSaysWhenARouteCannotServe(t *testing.T) {
	t.Parallel()
	dead := "http://127.0.0.1:1"
	p := startProxy(t, nil, "-e", dead, "-admin-address", "127.0.0.1:0", "-eject-after", "1", "-eject-backoff", "1m")
	admin := adminAddressOf(t, collectLines(p))
	status, _ := adminGet(admin, "/readyz")
	require.Equal(t, http.StatusOK, status)
	resp, _ := fetch(t, p.address, "h", "/") // fails, and ejects the only endpoint
	require.Equal(t, http.StatusBadGateway, resp.StatusCode)
	status, body := adminGet(admin, "/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Equal(t, "not ready: route default: every endpoint is ejected or paused by Retry-After\n", body)
}

func TestReadyzSays503AsSoonAsAShutdownBegins(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	slow := pathEndpoint(t, "unused")
	slow.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release; io.WriteString(w, "slow") })
	p := startProxy(t, nil, "-e", slow.URL, "-admin-address", "127.0.0.1:0", "-shutdown-timeout", "20s")
	admin := adminAddressOf(t, collectLines(p))
	inFlight := make(chan string, 1)
	go func() {
		resp, err := (&http.Client{Timeout: hangGuard}).Get("http://" + p.address + "/")
		if err != nil {
			inFlight <- err.Error()
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		inFlight <- string(body)
	}()
	require.Eventually(t, func() bool {
		_, body := adminGet(admin, "/metrics")
		return strings.Contains(body, `brp_requests_in_flight{route="default"} 1`)
	}, hangGuard, 10*time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool {
		status, body := adminGet(admin, "/readyz")
		return status == http.StatusServiceUnavailable && body == "not ready: shutting down\n"
	}, hangGuard, 10*time.Millisecond, "503 while the drain runs, the admin listener still up")
	close(release)
	assert.Equal(t, "slow", <-inFlight, "the request in flight finishes")
}

// metricValue returns the value of the series of /metrics whose name and
// labels are series, such as `brp_hedges_total{result="won",route="default"}`,
// or -1 when it is not there.
func metricValue(admin, series string) float64 {
	_, body := adminGet(admin, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if value, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(value, 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

func TestAHedgeThatWinsMovesItsMetrics(t *testing.T) {
	t.Parallel()
	slow := pathEndpoint(t, "slow")
	slow.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
			io.WriteString(w, "slow")
		case <-r.Context().Done():
		}
	})
	fast := pathEndpoint(t, "fast")
	p := startProxy(t, nil, "-e", slow.URL+","+fast.URL, "-hedge-delay", "20ms", "-hedge-budget", "100%", "-admin-address", "127.0.0.1:0")
	admin := adminAddressOf(t, collectLines(p))
	route := `route="default"`
	assert.InDelta(t, 0, metricValue(admin, `brp_hedge_saved_seconds_count{`+route+`}`), 0)
	assert.InDelta(t, 0.02, metricValue(admin, `brp_hedge_delay_seconds{`+route+`}`), 1e-9, "the delay in force")
	_, body := fetch(t, p.address, "h", "/x")
	require.Equal(t, "fast /x", body)
	for series, want := range map[string]float64{
		`brp_hedges_total{result="sent",` + route + `}`:                                      1,
		`brp_hedges_total{result="won",` + route + `}`:                                       1,
		`brp_attempts_total{endpoint="` + fast.URL + `",result="won",` + route + `}`:         1,
		`brp_endpoint_hedges_total{endpoint="` + fast.URL + `",result="won",` + route + `}`:  1,
		`brp_endpoint_hedges_total{endpoint="` + slow.URL + `",result="sent",` + route + `}`: 0,
		`brp_hedge_saved_seconds_count{` + route + `}`:                                       1,
	} {
		assert.Eventually(t, func() bool { return metricValue(admin, series) == want }, hangGuard, 10*time.Millisecond, series)
	}
	assert.Eventually(t, func() bool {
		return metricValue(admin, `brp_attempts_total{endpoint="`+slow.URL+`",result="cancelled",`+route+`}`) == 1
	}, hangGuard, 10*time.Millisecond, "the loser is cancelled")
	assert.GreaterOrEqual(t, metricValue(admin, `brp_hedge_saved_seconds_sum{`+route+`}`), 0.019,
		"the first attempt had waited the delay longer than the hedge took")
	assert.Greater(t, metricValue(admin, `brp_budget_available{`+route+`}`), 0.0)
}

func TestAnEjectionDropsEndpointUpAndARefusalIsCounted(t *testing.T) {
	t.Parallel()
	one := pathEndpoint(t, "one")
	dead := "http://127.0.0.1:1"
	p := startProxy(t, nil, "-e", dead+","+one.URL, "-admin-address", "127.0.0.1:0", "-eject-after", "1", "-eject-backoff", "1m",
		"-idempotent-only")
	admin := adminAddressOf(t, collectLines(p))
	up := `brp_endpoint_up{endpoint="` + dead + `",route="default"}`
	require.InDelta(t, 1, metricValue(admin, up), 0, "every endpoint's series from start-up")
	_, body := fetch(t, p.address, "h", "/x")
	require.Equal(t, "one /x", body, "the dead one refused the connection: a fail-over")
	assert.InDelta(t, 0, metricValue(admin, up), 0, "ejected")
	assert.InDelta(t, 1, metricValue(admin, `brp_endpoint_ejections_total{endpoint="`+dead+`",route="default"}`), 0)
	assert.InDelta(t, 1, metricValue(admin, `brp_endpoint_up{endpoint="`+one.URL+`",route="default"}`), 0)
	assert.InDelta(t, 0, metricValue(admin, `brp_endpoint_in_flight{endpoint="`+one.URL+`",route="default"}`), 0)

	// A POST that its endpoint fails after it was sent gets no other.
	failing := pathEndpoint(t, "failing")
	failing.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	q := startProxy(t, nil, "-e", failing.URL+","+one.URL, "-admin-address", "127.0.0.1:0", "-idempotent-only")
	qAdmin := adminAddressOf(t, collectLines(q))
	resp, err := (&http.Client{Timeout: hangGuard}).Post("http://"+q.address+"/x", "text/plain", strings.NewReader("order"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.InDelta(t, 1, metricValue(qAdmin, `brp_extra_attempts_denied_total{reason="not_idempotent",route="default"}`), 0)
	assert.InDelta(t, 0, metricValue(qAdmin, `brp_extra_attempts_denied_total{reason="budget_spent",route="default"}`), 0)
}

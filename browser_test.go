package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/stats"
)

// screenshotDir is where the browser test leaves its screenshot of the
// stats page, next to the test output.
const screenshotDir = "test-output"

// headless runs Debian's chromium headless on url with args, letting the
// page's timers run for 5 s of virtual time, and returns its standard output.
func headless(t *testing.T, url string, args ...string) string {
	t.Helper()
	browser, err := exec.LookPath("chromium")
	require.NoError(t, err, "the stats page test needs chromium: apt-get install chromium (scripts/test.sh does)")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	profile := t.TempDir()
	cmd := exec.CommandContext(ctx, browser, append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--user-data-dir=" + profile, "--virtual-time-budget=5000",
	}, append(args, url)...)...)
	out, err := cmd.Output()
	require.NoError(t, err, "chromium %v", args)
	return string(out)
}

func TestTheStatsPageInARealBrowser(t *testing.T) {
	t.Parallel()
	one := pathEndpoint(t, "one")
	dead := "http://127.0.0.1:1"
	p := startProxy(t, nil, "-e", dead+","+one.URL, "-admin-address", "127.0.0.1:0", "-eject-after", "1", "-eject-backoff", "1m")
	admin := adminAddressOf(t, collectLines(p))
	for range 3 {
		_, body := fetch(t, p.address, "h", "/x")
		require.Equal(t, "one /x", body)
	}
	status, body := adminGet(admin, "/stats.json")
	require.Equal(t, http.StatusOK, status, body)
	var before stats.Report
	require.NoError(t, json.Unmarshal([]byte(body), &before))
	require.Len(t, before.Routes, 1)
	attemptsBefore := before.Routes[0].Endpoints[1].Attempts

	// Traffic while the browser has the page, so that its refresh shows
	// more than the server's first render: bounded in count and time.
	stop := make(chan struct{})
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		client := &http.Client{Timeout: hangGuard}
		for range 500 {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if resp, err := client.Get("http://" + p.address + "/load"); err == nil {
				resp.Body.Close()
			}
		}
	}()
	defer func() { close(stop); <-loaded }()

	dom := headless(t, "http://"+admin+"/", "--dump-dom")
	refreshes := regexp.MustCompile(`data-f="refreshes">(\d+)<`).FindStringSubmatch(dom)
	require.NotNil(t, refreshes, dom)
	n, _ := strconv.Atoi(refreshes[1])
	assert.GreaterOrEqual(t, n, 1, "the script refreshed the figures from /stats.json")
	rows := regexp.MustCompile(`(?s)<tr class="(\w+)" data-e="\d">\s*<td>([^<]+)</td>(.*?)</tr>`).FindAllStringSubmatch(dom, -1)
	require.Len(t, rows, 2, dom)
	assert.Equal(t, []string{"ejected", dead}, rows[0][1:3], "the dead endpoint, coloured by its state")
	assert.Equal(t, []string{"up", one.URL}, rows[1][1:3])
	attempts := regexp.MustCompile(`data-f="attempts">(\d+)<`).FindStringSubmatch(rows[1][3])
	require.NotNil(t, attempts, rows[1][3])
	after, _ := strconv.ParseUint(attempts[1], 10, 64)
	assert.Greater(t, after, attemptsBefore, "the refresh brought the traffic since the first render")
	assert.Regexp(t, `data-f="p50">[0-9.]+ ms<`, rows[1][3], "a time to headers")
	assert.Regexp(t, `<polyline points="[0-9., ]+"`, rows[1][3], "a sparkline")
	assert.Regexp(t, `data-f="ejections">1<`, rows[0][3])

	require.NoError(t, os.MkdirAll(screenshotDir, 0o755))
	shot, err := filepath.Abs(filepath.Join(screenshotDir, "stats-page.png"))
	require.NoError(t, err)
	_ = os.Remove(shot)
	headless(t, "http://"+admin+"/", "--screenshot="+shot, "--window-size=1280,420", "--hide-scrollbars")
	info, err := os.Stat(shot)
	require.NoError(t, err, "the screenshot")
	assert.Positive(t, info.Size())
	t.Logf("screenshot of the stats page: %s", shot)
}

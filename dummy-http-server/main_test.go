package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"balancing-reverse-proxy/internal/syncbuffer"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testConfig returns a config without random delays or errors.
func testConfig() config {
	return config{
		address:     "127.0.0.1:0",
		maxDelay:    time.Second,
		errorRate:   0.25,
		errorStatus: http.StatusInternalServerError,
		status:      http.StatusOK,
		name:        "dummy-test",
	}
}

// newTestHandler returns a handler with a seeded random source and the
// buffer it logs to.
func newTestHandler(t *testing.T, cfg config) (http.Handler, *syncbuffer.Buffer) {
	t.Helper()
	logs := &syncbuffer.Buffer{}
	return newHandler(cfg, rand.New(rand.NewPCG(1, 2)), log.New(logs, "", 0)), logs
}

// serve sends one request to h and returns the recorded response.
func serve(t *testing.T, h http.Handler, method, target string, body io.Reader) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, body))
	return rec
}

func TestParseFlags(t *testing.T) {
	t.Parallel()

	defaults := config{
		address:         ":8000",
		delayResponding: true,
		maxDelay:        time.Second,
		randomErrors:    true,
		errorRate:       0.25,
		errorStatus:     500,
		status:          200,
		name:            "dummy-8000",
		faultStall:      10 * time.Second,
	}

	tests := []struct {
		name string
		args []string
		want func(c *config)
	}{
		{
			name: "defaults",
			want: func(*config) {},
		},
		{
			name: "name follows the port of address",
			args: []string{"-address", "127.0.0.1:8002"},
			want: func(c *config) { c.address, c.name = "127.0.0.1:8002", "dummy-8002" },
		},
		{
			name: "explicit name",
			args: []string{"-address", ":9000", "-name", "left"},
			want: func(c *config) { c.address, c.name = ":9000", "left" },
		},
		{
			name: "every flag",
			args: []string{
				"-stop-after", "5s", "-delay-responding=false", "-max-delay", "50ms",
				"-random-errors=false", "-error-rate", "1", "-error-status", "503",
				"-status", "201", "-delay", "10ms", "-tail-delay", "2s", "-tail-rate", "0.01",
				"-body-size", "1048576", "-faults", "reset, junk", "-fault-rate", "0.5", "-fault-stall", "2s",
			},
			want: func(c *config) {
				c.stopAfter = 5 * time.Second
				c.delayResponding = false
				c.maxDelay = 50 * time.Millisecond
				c.randomErrors = false
				c.errorRate = 1
				c.errorStatus = 503
				c.status = 201
				c.delay = 10 * time.Millisecond
				c.tailDelay = 2 * time.Second
				c.tailRate = 0.01
				c.bodySize = 1 << 20
				c.faults = []fault{faultReset, faultJunk}
				c.faultRate = 0.5
				c.faultStall = 2 * time.Second
			},
		},
		{
			name: "every fault at the largest rate",
			args: []string{"-faults", "all", "-fault-rate", "0.125"},
			want: func(c *config) { c.faults, c.faultRate = allFaults, 0.125 },
		},
		{
			name: "faults without a rate are only for ?fault=",
			args: []string{"-faults", "hang", "-fault-stall", "0s"},
			want: func(c *config) { c.faults, c.faultStall = []fault{faultHang}, 0 },
		},
		{
			name: "zero rates and durations",
			args: []string{"-error-rate", "0", "-max-delay", "0s", "-tail-rate", "1"},
			want: func(c *config) { c.errorRate, c.maxDelay, c.tailRate = 0, 0, 1 },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := defaults
			tt.want(&want)

			got, err := parseFlags(tt.args, io.Discard)
			require.NoError(t, err)
			assert.Equal(t, want, got)
		})
	}
}

func TestParseFlagsRejectsBadValues(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		args []string
		want []string // substrings of the error
	}{
		{"error rate above 1", []string{"-error-rate", "1.5"}, []string{"-error-rate 1.5", "from 0 to 1"}},
		{"negative error rate", []string{"-error-rate", "-0.1"}, []string{"-error-rate -0.1", "from 0 to 1"}},
		{"NaN error rate", []string{"-error-rate", "NaN"}, []string{"-error-rate NaN", "from 0 to 1"}},
		{"tail rate above 1", []string{"-tail-rate", "2"}, []string{"-tail-rate 2", "from 0 to 1"}},
		{"informational status", []string{"-status", "101"}, []string{"-status 101", "from 200 to 599"}},
		{"status too large", []string{"-status", "600"}, []string{"-status 600", "from 200 to 599"}},
		{"error status too small", []string{"-error-status", "199"}, []string{"-error-status 199", "from 200 to 599"}},
		{"negative stop after", []string{"-stop-after", "-1s"}, []string{"-stop-after -1s", "zero or more"}},
		{"negative max delay", []string{"-max-delay", "-1ms"}, []string{"-max-delay -1ms", "zero or more"}},
		{"negative delay", []string{"-delay", "-2s"}, []string{"-delay -2s", "zero or more"}},
		{"negative tail delay", []string{"-tail-delay", "-3s"}, []string{"-tail-delay -3s", "zero or more"}},
		{"negative body size", []string{"-body-size", "-1"}, []string{"-body-size -1", "zero or more"}},
		{"fault rate above 1", []string{"-faults", "reset", "-fault-rate", "1.01"}, []string{"-fault-rate 1.01", "from 0 to 1"}},
		{"fault rate without faults", []string{"-fault-rate", "0.01"}, []string{"-fault-rate 0.01 without -faults", "reset, hang"}},
		{"fault shares above 1", []string{"-faults", "all", "-fault-rate", "0.2"}, []string{"-fault-rate 0.2 for 8 -faults", "at most 0.125"}},
		{"unknown fault", []string{"-faults", "reset,boom"}, []string{`-faults "reset,boom"`, `unknown fault "boom"`, "stall-after-headers, or all"}},
		{"empty fault in the list", []string{"-faults", "reset,"}, []string{`unknown fault ""`}},
		{"fault twice", []string{"-faults", "junk,reset,junk"}, []string{`"junk" is listed twice`}},
		{"negative fault stall", []string{"-fault-stall", "-1s"}, []string{"-fault-stall -1s", "zero or more"}},
		{"address without port", []string{"-address", "localhost"}, []string{`-address "localhost"`, "host:port"}},
		{"empty name", []string{"-name", ""}, []string{"-name is empty"}},
		{"name with newline", []string{"-name", "a\nb"}, []string{`-name "a\nb"`, "control characters"}},
		{"unparsable duration", []string{"-max-delay", "soon"}, []string{`"soon"`, "-max-delay"}},
		{"unparsable status", []string{"-status", "ok"}, []string{`"ok"`, "-status"}},
		{"unknown flag", []string{"-colour"}, []string{"-colour"}},
		{"positional argument", []string{"extra"}, []string{`unexpected argument "extra"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var usage bytes.Buffer

			_, err := parseFlags(tt.args, &usage)
			require.Error(t, err)
			for _, want := range tt.want {
				assert.Contains(t, err.Error(), want)
			}
			assert.NotContains(t, err.Error(), "\n", "errors are one line")
			assert.Empty(t, usage.String(), "usage is printed only on request")
		})
	}
}

func TestParseFlagsHelp(t *testing.T) {
	t.Parallel()
	var usage bytes.Buffer

	_, err := parseFlags([]string{"-h"}, &usage)

	require.ErrorIs(t, err, flag.ErrHelp)
	assert.Contains(t, usage.String(), "-stop-after")
	assert.Contains(t, usage.String(), "?status=")
}

func TestHandlerStatus(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		config func(c *config)
		target string
		want   int
	}{
		{"default", func(*config) {}, "/", http.StatusOK},
		{"status flag", func(c *config) { c.status = http.StatusCreated }, "/", http.StatusCreated},
		{"query overrides status flag", func(c *config) { c.status = http.StatusCreated }, "/?status=404", http.StatusNotFound},
		{
			name:   "error rate 1 gives the error status",
			config: func(c *config) { c.randomErrors, c.errorRate, c.errorStatus = true, 1, http.StatusServiceUnavailable },
			want:   http.StatusServiceUnavailable,
		},
		{
			name:   "query overrides a random error",
			config: func(c *config) { c.randomErrors, c.errorRate = true, 1 },
			target: "/?status=202",
			want:   http.StatusAccepted,
		},
		{
			name:   "random errors off ignores the error rate",
			config: func(c *config) { c.randomErrors, c.errorRate = false, 1 },
			want:   http.StatusOK,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			tt.config(&cfg)
			h, _ := newTestHandler(t, cfg)
			target := tt.target
			if target == "" {
				target = "/"
			}

			// Several requests, so a random outcome would show.
			for range 20 {
				rec := serve(t, h, http.MethodGet, target, nil)
				assert.Equal(t, tt.want, rec.Code)
				assert.True(t, strings.HasPrefix(rec.Body.String(), "Hello from dummy-test: GET "), rec.Body.String())
			}
		})
	}
}

func TestHandlerErrorRate(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name       string
		rate       float64
		minErrors  int
		maxErrors  int
		iterations int
	}{
		{name: "never at 0", rate: 0, minErrors: 0, maxErrors: 0, iterations: 1000},
		{name: "always at 1", rate: 1, minErrors: 1000, maxErrors: 1000, iterations: 1000},
		// The source is seeded, so this share is the same on every run.
		{name: "about a quarter at 0.25", rate: 0.25, minErrors: 200, maxErrors: 300, iterations: 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			cfg.randomErrors, cfg.errorRate = true, tt.rate
			h, _ := newTestHandler(t, cfg)

			errs := 0
			for range tt.iterations {
				if serve(t, h, http.MethodGet, "/", nil).Code == http.StatusInternalServerError {
					errs++
				}
			}
			assert.GreaterOrEqual(t, errs, tt.minErrors)
			assert.LessOrEqual(t, errs, tt.maxErrors)
		})
	}
}

func TestHandlerRejectsBadQuery(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		target string
		want   string
	}{
		{"status not a number", "/?status=abc", `bad status "abc"`},
		{"status empty", "/?status=", `bad status ""`},
		{"informational status", "/?status=100", `bad status "100"`},
		{"status too large", "/?status=600", `bad status "600"`},
		{"delay not a duration", "/?delay=soon", `bad delay "soon"`},
		{"delay without unit", "/?delay=5", `bad delay "5"`},
		{"negative delay", "/?delay=-1s", `bad delay "-1s"`},
		{"unknown fault", "/?fault=boom", `bad fault "boom": want none or one of reset, hang,`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, logs := newTestHandler(t, testConfig())

			rec := serve(t, h, http.MethodGet, tt.target, nil)

			assert.Equal(t, http.StatusBadRequest, rec.Code)
			body := rec.Body.String()
			assert.True(t, strings.HasPrefix(body, tt.want), body)
			assert.Equal(t, 1, strings.Count(body, "\n"), "one line: %q", body)
			assert.Contains(t, logs.String(), "status=400")
		})
	}
}

func TestHandlerHelloBody(t *testing.T) {
	t.Parallel()
	h, logs := newTestHandler(t, testConfig())

	rec := serve(t, h, http.MethodGet, "/some/path?x=1", nil)

	require.Equal(t, http.StatusOK, rec.Code)
	want := "Hello from dummy-test: GET /some/path?x=1 after 0s\n"
	assert.Equal(t, want, rec.Body.String())
	assert.Equal(t, "dummy-test", rec.Header().Get("X-Dummy-Name"))
	assert.Equal(t, strconv.Itoa(len(want)), rec.Header().Get("Content-Length"))
	assert.Equal(t, "GET /some/path?x=1 delay=0s status=200\n", logs.String())
}

func TestHandlerEchoesRequestBody(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		method string
		body   string
		want   string
	}{
		{"post", http.MethodPost, "ping", "Hello from dummy-test: POST /echo after 0s\nreceived 4 bytes\nping"},
		{"put with newlines", http.MethodPut, "a\nb\n", "Hello from dummy-test: PUT /echo after 0s\nreceived 4 bytes\na\nb\n"},
		{"empty post", http.MethodPost, "", "Hello from dummy-test: POST /echo after 0s\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, _ := newTestHandler(t, testConfig())

			rec := serve(t, h, tt.method, "/echo", strings.NewReader(tt.body))

			assert.Equal(t, http.StatusOK, rec.Code)
			assert.Equal(t, tt.want, rec.Body.String())
			assert.Equal(t, strconv.Itoa(len(tt.want)), rec.Header().Get("Content-Length"))
		})
	}
}

func TestHandlerBodySize(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		size int64
	}{
		{"one byte", 1},
		{"one filler line", int64(len(fillerLine))},
		{"exactly one chunk", fillerBufferSize},
		{"several chunks and a partial one", 3*fillerBufferSize + 17},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			cfg.bodySize = tt.size
			h, _ := newTestHandler(t, cfg)

			rec := serve(t, h, http.MethodPost, "/", strings.NewReader("ignored"))

			assert.Equal(t, http.StatusOK, rec.Code)
			assert.Equal(t, "dummy-test", rec.Header().Get("X-Dummy-Name"))
			assert.Equal(t, strconv.FormatInt(tt.size, 10), rec.Header().Get("Content-Length"))
			body := rec.Body.Bytes()
			require.Len(t, body, int(tt.size))
			for i, b := range body {
				if b != fillerLine[i%len(fillerLine)] {
					t.Fatalf("byte %d is %q, want %q", i, b, fillerLine[i%len(fillerLine)])
				}
			}
		})
	}
}

func TestHandlerResponsesWithoutBody(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name          string
		method        string
		target        string
		bodySize      int64
		wantStatus    int
		wantCLength   string
		wantNoCLength bool
	}{
		{name: "head keeps the content length", method: http.MethodHead, target: "/", wantStatus: 200, wantCLength: strconv.Itoa(len("Hello from dummy-test: HEAD / after 0s\n"))},
		{name: "head with body size", method: http.MethodHead, target: "/", bodySize: 1 << 30, wantStatus: 200, wantCLength: "1073741824"},
		{name: "no content", method: http.MethodGet, target: "/?status=204", wantStatus: 204, wantNoCLength: true},
		{name: "not modified", method: http.MethodGet, target: "/?status=304", wantStatus: 304, wantNoCLength: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			cfg.bodySize = tt.bodySize
			h, logs := newTestHandler(t, cfg)

			rec := serve(t, h, tt.method, tt.target, nil)

			assert.Equal(t, tt.wantStatus, rec.Code)
			assert.Empty(t, rec.Body.String())
			if tt.wantNoCLength {
				assert.Empty(t, rec.Header().Values("Content-Length"))
			} else {
				assert.Equal(t, tt.wantCLength, rec.Header().Get("Content-Length"))
			}
			assert.NotContains(t, logs.String(), "failed")
		})
	}
}

func TestHandlerDelay(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		config func(c *config)
		target string
		want   string
	}{
		{"query delay", func(*config) {}, "/?delay=1ms", "after 1ms\n"},
		{"fixed delay flag", func(c *config) { c.delay = time.Millisecond }, "/", "after 1ms\n"},
		{"tail delay at rate 1", func(c *config) { c.tailRate, c.tailDelay = 1, 2*time.Millisecond }, "/", "after 2ms\n"},
		{"tail delay at rate 0", func(c *config) { c.tailRate, c.tailDelay = 0, time.Hour }, "/", "after 0s\n"},
		{"fixed and tail add up", func(c *config) { c.delay, c.tailRate, c.tailDelay = time.Millisecond, 1, time.Millisecond }, "/", "after 2ms\n"},
		{
			// Would hang for an hour if the query did not replace every part.
			name: "query delay replaces fixed, random and tail delays",
			config: func(c *config) {
				c.delay, c.delayResponding, c.maxDelay, c.tailRate, c.tailDelay = time.Hour, true, time.Hour, 1, time.Hour
			},
			target: "/?delay=0s",
			want:   "after 0s\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			tt.config(&cfg)
			h, _ := newTestHandler(t, cfg)

			rec := serve(t, h, http.MethodGet, tt.target, nil)

			assert.Equal(t, http.StatusOK, rec.Code)
			assert.True(t, strings.HasSuffix(rec.Body.String(), tt.want), rec.Body.String())
		})
	}
}

func TestHandlerRandomDelayBelowMax(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.delayResponding, cfg.maxDelay = true, 2*time.Millisecond
	h, _ := newTestHandler(t, cfg)

	seen := map[time.Duration]bool{}
	for range 20 {
		body := serve(t, h, http.MethodGet, "/", nil).Body.String()
		_, after, ok := strings.Cut(strings.TrimSuffix(body, "\n"), " after ")
		require.True(t, ok, body)
		delay, err := time.ParseDuration(after)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, delay, time.Duration(0))
		assert.Less(t, delay, cfg.maxDelay)
		seen[delay] = true
	}
	assert.Greater(t, len(seen), 1, "delays should vary")
}

func TestHandlerCancelledDuringDelay(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		config func(c *config)
		target string
	}{
		{"query delay", func(*config) {}, "/?delay=1h"},
		{"fixed delay", func(c *config) { c.delay = time.Hour }, "/"},
		{"tail delay", func(c *config) { c.tailRate, c.tailDelay = 1, time.Hour }, "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			tt.config(&cfg)
			h, logs := newTestHandler(t, cfg)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req := httptest.NewRequestWithContext(ctx, http.MethodGet, tt.target, nil)
			rec := httptest.NewRecorder()

			done := make(chan struct{})
			go func() {
				defer close(done)
				h.ServeHTTP(rec, req)
			}()
			cancel()

			// The delay is an hour: returning at all shows the cancel was seen.
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("handler still waiting after its request was cancelled")
			}
			assert.Empty(t, rec.Body.String())
			assert.False(t, rec.Flushed)
			assert.Contains(t, logs.String(), "delay=1h0m0s cancelled: context canceled")
		})
	}
}

func TestHandlerConcurrentRequests(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.delayResponding, cfg.maxDelay = true, time.Millisecond
	cfg.randomErrors, cfg.errorRate = true, 0.5
	cfg.tailRate, cfg.tailDelay = 0.1, time.Millisecond
	h, logs := newTestHandler(t, cfg)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	const requests = 50
	var wg sync.WaitGroup
	for range requests {
		wg.Go(func() {
			resp, err := srv.Client().Get(srv.URL + "/concurrent")
			if !assert.NoError(t, err) {
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			assert.NoError(t, err)
			assert.Contains(t, []int{http.StatusOK, http.StatusInternalServerError}, resp.StatusCode)
			assert.True(t, strings.HasPrefix(string(body), "Hello from dummy-test: GET /concurrent after "), string(body))
		})
	}
	wg.Wait()
	assert.Equal(t, requests, strings.Count(logs.String(), "GET /concurrent delay="))
}

func TestRunStopsAfter(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg := testConfig()
	cfg.stopAfter = 20 * time.Millisecond
	logs := &syncbuffer.Buffer{}

	done := make(chan error, 1)
	go func() { done <- run(context.Background(), cfg, ln, log.New(logs, "", 0)) }()

	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop after -stop-after")
	}
	assert.Contains(t, logs.String(), "dummy-test stopping after 20ms")
	_, err = net.Dial("tcp", ln.Addr().String())
	assert.Error(t, err, "listener should be closed")
}

func TestRunServesUntilCancelled(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, testConfig(), ln, log.New(io.Discard, "", 0)) }()
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	client := &http.Client{Transport: transport}

	// The listener already accepts, so the request cannot race the start.
	resp, err := client.Get("http://" + ln.Addr().String() + "/run?status=202")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, resp.Body.Close())
	require.NoError(t, err)
	assert.Equal(t, http.StatusAccepted, resp.StatusCode)
	assert.Equal(t, "dummy-test", resp.Header.Get("X-Dummy-Name"))
	assert.Equal(t, "Hello from dummy-test: GET /run?status=202 after 0s\n", string(body))

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop after its context was cancelled")
	}
}

func TestRunReportsServeError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, ln.Close())

	err = run(context.Background(), testConfig(), ln, log.New(io.Discard, "", 0))

	require.Error(t, err)
	assert.True(t, errors.Is(err, net.ErrClosed), err.Error())
}

func TestParseFaults(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		list string
		want []fault
	}{
		{"empty", "", nil},
		{"blank", "  ", nil},
		{"all", "all", allFaults},
		{"one", "hang", []fault{faultHang}},
		{"several with spaces, in the given order", "mid-body-close , reset", []fault{faultMidBodyClose, faultReset}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseFaults(tt.list)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestHandlerDrawsFaults(t *testing.T) {
	t.Parallel()

	const draws = 10000
	tests := []struct {
		name   string
		faults []fault
		rate   float64
		want   map[fault][2]int // fault to the least and most draws of it
	}{
		{"none at rate 0", []fault{faultReset}, 0, map[fault][2]int{faultNone: {draws, draws}}},
		// The source is seeded, so these counts are the same on every run.
		{
			name:   "each fault its own share",
			faults: []fault{faultReset, faultJunk},
			rate:   0.1,
			want:   map[fault][2]int{faultReset: {900, 1100}, faultJunk: {900, 1100}, faultNone: {7700, 8300}},
		},
		{
			name:   "shares filling the whole draw",
			faults: []fault{faultHang, faultDupLength},
			rate:   0.5,
			want:   map[fault][2]int{faultHang: {4800, 5200}, faultDupLength: {4800, 5200}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			cfg.faults, cfg.faultRate = tt.faults, tt.rate
			h, _ := newTestHandler(t, cfg)

			got := map[fault]int{}
			for range draws {
				_, _, injected := h.(*handler).draw()
				got[injected]++
			}
			for f, bounds := range tt.want {
				assert.GreaterOrEqual(t, got[f], bounds[0], "fault %q", f)
				assert.LessOrEqual(t, got[f], bounds[1], "fault %q", f)
			}
			for f := range got {
				assert.Contains(t, tt.want, f, "only the listed outcomes: %v", got)
			}
		})
	}
}

// startTestServer serves a test handler on a real listener of 127.0.0.1,
// since most faults take the connection over.
func startTestServer(t *testing.T, cfg config) (addr string, logs *syncbuffer.Buffer) {
	t.Helper()
	h, logs := newTestHandler(t, cfg)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), logs
}

// rawGet sends a GET of target on a new connection, closed at cleanup, and
// returns it with a reader of what comes back.
func rawGet(t *testing.T, addr, target string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: dummy\r\n\r\n", target)
	require.NoError(t, err)
	return conn, bufio.NewReader(conn)
}

// waitForLog waits until logs contain want.
func waitForLog(t *testing.T, logs *syncbuffer.Buffer, want string) {
	t.Helper()
	assert.Eventually(t, func() bool { return strings.Contains(logs.String(), want) }, 10*time.Second, time.Millisecond,
		"log %q lacks %q", logs.String(), want)
}

func TestHandlerInjectsFaults(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		target string
		faults []fault // drawn at rate 1 when set
		check  func(t *testing.T, answer *bufio.Reader)
	}{
		{
			name:   "reset",
			target: "/?fault=reset",
			check: func(t *testing.T, answer *bufio.Reader) {
				_, err := io.ReadAll(answer)
				assert.ErrorIs(t, err, syscall.ECONNRESET)
			},
		},
		{
			name:   "junk",
			target: "/?fault=junk",
			check: func(t *testing.T, answer *bufio.Reader) {
				got, err := io.ReadAll(answer)
				require.NoError(t, err)
				assert.Equal(t, "\x00\xff\xfejunk instead of a status line\r\n\r\n", string(got))
			},
		},
		{
			name:   "bad status",
			target: "/?fault=bad-status",
			check: func(t *testing.T, answer *bufio.Reader) {
				_, err := http.ReadResponse(answer, nil)
				require.Error(t, err)
				assert.Contains(t, err.Error(), "malformed HTTP status code")
			},
		},
		{
			name:   "early hints then close",
			target: "/?fault=early-hints-close",
			check: func(t *testing.T, answer *bufio.Reader) {
				hints, err := http.ReadResponse(answer, nil)
				require.NoError(t, err)
				assert.Equal(t, http.StatusEarlyHints, hints.StatusCode)
				assert.Equal(t, "</style.css>; rel=preload; as=style", hints.Header.Get("Link"))
				_, err = http.ReadResponse(answer, nil)
				assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "nothing after the 103")
			},
		},
		{
			name:   "two content lengths",
			target: "/?fault=dup-length",
			check: func(t *testing.T, answer *bufio.Reader) {
				_, err := http.ReadResponse(answer, nil)
				require.Error(t, err)
				assert.Contains(t, err.Error(), "multiple Content-Length")
			},
		},
		{
			name:   "body cut in the middle",
			target: "/?fault=mid-body-close",
			check: func(t *testing.T, answer *bufio.Reader) {
				resp, err := http.ReadResponse(answer, nil)
				require.NoError(t, err)
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				assert.Equal(t, "dummy-test", resp.Header.Get("X-Dummy-Name"))
				assert.Equal(t, int64(midBodySize), resp.ContentLength)
				body, err := io.ReadAll(resp.Body)
				assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
				assert.Equal(t, strings.Repeat(fillerLine, midBodySize/2/len(fillerLine)), string(body))
			},
		},
		{
			name:   "drawn from -faults",
			target: "/drawn",
			faults: []fault{faultJunk},
			check: func(t *testing.T, answer *bufio.Reader) {
				got, err := io.ReadAll(answer)
				require.NoError(t, err)
				assert.Contains(t, string(got), "junk instead of a status line")
			},
		},
		{
			name:   "none in the query overrides -faults",
			target: "/?fault=none",
			faults: []fault{faultReset},
			check: func(t *testing.T, answer *bufio.Reader) {
				resp, err := http.ReadResponse(answer, nil)
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				assert.Equal(t, "Hello from dummy-test: GET /?fault=none after 0s\n", string(body))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			if tt.faults != nil {
				cfg.faults, cfg.faultRate = tt.faults, 1
			}
			addr, logs := startTestServer(t, cfg)

			_, answer := rawGet(t, addr, tt.target)

			tt.check(t, answer)
			want := fmt.Sprintf("GET %s delay=0s fault=", tt.target)
			if tt.target == "/?fault=none" {
				want = "GET /?fault=none delay=0s status=200\n"
			}
			waitForLog(t, logs, want)
		})
	}
}

func TestHandlerHangsUntilTheClientLeaves(t *testing.T) {
	t.Parallel()
	addr, logs := startTestServer(t, testConfig())
	conn, answer := rawGet(t, addr, "/?fault=hang")

	require.NoError(t, conn.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	_, err := answer.ReadByte()
	var netErr net.Error
	require.ErrorAs(t, err, &netErr, "no answer at all")
	assert.True(t, netErr.Timeout())
	require.NoError(t, conn.Close())

	// Ending at all shows the client's leaving was seen.
	waitForLog(t, logs, "GET /?fault=hang delay=0s fault=hang: hung until the request ended: context canceled\n")
}

func TestHandlerStallsAfterTheHeaders(t *testing.T) {
	t.Parallel()

	t.Run("client leaves during the stall", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig()
		cfg.faultStall = time.Hour
		addr, logs := startTestServer(t, cfg)
		conn, answer := rawGet(t, addr, "/?fault=stall-after-headers")

		resp, err := http.ReadResponse(answer, nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Positive(t, resp.ContentLength)
		require.NoError(t, conn.Close())

		// The stall is an hour: ending at all shows the cancel was seen.
		waitForLog(t, logs, "fault=stall-after-headers write failed: stalled after the headers for less than 1h0m0s: context canceled\n")
	})

	t.Run("body after the stall", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig()
		cfg.faultStall = time.Millisecond
		addr, logs := startTestServer(t, cfg)
		_, answer := rawGet(t, addr, "/?fault=stall-after-headers")

		resp, err := http.ReadResponse(answer, nil)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, "Hello from dummy-test: GET /?fault=stall-after-headers after 0s\n", string(body))
		waitForLog(t, logs, "GET /?fault=stall-after-headers delay=0s status=200 fault=stall-after-headers\n")
	})
}

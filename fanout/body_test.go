package fanout

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCaptureBodyHoldsReplayMemory(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		body          string
		contentLength int64
		limit         int64
		wantReplay    bool
	}{
		{name: "known length", body: strings.Repeat("k", 40_000), contentLength: 40_000, limit: 64 << 10, wantReplay: true},
		{name: "unknown length, several steps", body: strings.Repeat("u", 100_000), contentLength: -1, limit: 128 << 10, wantReplay: true},
		{name: "unknown length over the buffer", body: strings.Repeat("o", 100_000), contentLength: -1, limit: 50_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.body))
			r.ContentLength = tt.contentLength
			var memory ReplayMemory
			body, err := captureBody(r, tt.limit, &memory, 1<<20)
			require.NoError(t, err)
			assert.Equal(t, tt.wantReplay, body.replayable)
			assert.Positive(t, memory.held.Load(), "the bytes held are counted")
			assert.LessOrEqual(t, memory.held.Load(), tt.limit+1)
			reader, _ := body.forAttempt()
			got, err := io.ReadAll(reader)
			require.NoError(t, err)
			assert.Equal(t, tt.body, string(got), "the body is whole, in order")
			body.release()
			assert.Zero(t, memory.held.Load(), "release gives every byte back")
		})
	}
}

func TestCaptureBodyRefusesWhenReplayMemoryIsFull(t *testing.T) {
	t.Parallel()
	var memory ReplayMemory
	first, err := captureBody(httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("a", 80))), 100, &memory, 100)
	require.NoError(t, err)
	for _, contentLength := range []int64{50, -1} {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("b", 50)))
		r.ContentLength = contentLength
		_, err = captureBody(r, 100, &memory, 100)
		assert.ErrorIs(t, err, errReplayMemoryFull, "length %d", contentLength)
		assert.Equal(t, int64(80), memory.held.Load(), "a refused body holds nothing")
	}
	first.release()
	second, err := captureBody(httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("b", 50))), 100, &memory, 100)
	require.NoError(t, err, "released memory is free again")
	second.release()
}

func TestReplayMemoryFullGets503(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}, 2), make(chan struct{})
	upstream := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	})
	// A second endpoint, so that bodies are kept for a replay.
	spare := newBackend(t, answer(http.StatusOK, "spare"))
	p := buildProxy(t, Serial(), []string{upstream.srv.URL, spare.srv.URL}, func(p *Proxy) {
		p.MaxBodyBuffer, p.MaxReplayMemory = 100, 100
	})
	proxy := serve(t, p)
	held := make(chan int, 1)
	go func() {
		// Not do: a helper that may fail the test must run on its goroutine.
		resp, err := http.Post(proxy.URL+"/", "text/plain", strings.NewReader(strings.Repeat("a", 80)))
		if err != nil {
			held <- 0
			return
		}
		resp.Body.Close()
		held <- resp.StatusCode
	}()
	waitFor(t, entered, "the first request to reach the endpoint")

	resp, body := do(t, http.MethodPost, proxy.URL+"/", strings.NewReader(strings.Repeat("b", 50)))
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.Equal(t, int32(1), upstream.hits.Load(), "the refused request reached no endpoint")

	close(release)
	assert.Equal(t, http.StatusOK, <-held)
	// The client has its answer a moment before the handler returns and
	// gives the memory back.
	require.Eventually(t, func() bool { return p.replayMemory.held.Load() == 0 }, 10*time.Second, time.Millisecond)
	resp, _ = do(t, http.MethodPost, proxy.URL+"/", strings.NewReader(strings.Repeat("c", 50)))
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the memory is given back when a request ends")
}

func TestASingleAttemptStreamsItsBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		endpoints int
		configure func(*Proxy)
	}{
		{"one endpoint", 1, func(*Proxy) {}},
		{"one attempt at most", 2, func(p *Proxy) { p.MaxAttempts = 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			firstHalf := make(chan struct{})
			// The endpoint reads the first part of the body, over what a
			// single attempt reads whole, before the client sends the rest: a
			// proxy that held the body would wait for all of it first, and
			// never get there.
			first := strings.Repeat("f", singleAttemptBuffer+1)
			upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				half := make([]byte, len(first))
				if _, err := io.ReadFull(r.Body, half); err == nil {
					close(firstHalf)
				}
				_, _ = io.Copy(io.Discard, r.Body)
			}))
			t.Cleanup(upstream.Close)
			urls := []string{upstream.URL}
			if tt.endpoints == 2 {
				urls = append(urls, upstream.URL)
			}
			proxy := newProxy(t, Serial(), urls, func(p *Proxy) { p.MaxBodyBuffer = 1 << 20 }, tt.configure)
			body, send := io.Pipe()
			streamed := make(chan bool, 1)
			go func() {
				_, _ = io.WriteString(send, first)
				select {
				case <-firstHalf:
					streamed <- true
				case <-time.After(hangGuard):
					streamed <- false
				}
				_, _ = io.WriteString(send, "second")
				send.Close()
			}()
			req, err := http.NewRequest(http.MethodPost, proxy.URL+"/", body)
			require.NoError(t, err)
			resp, err := client(t).Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.True(t, <-streamed, "the endpoint had no part of the body before the client sent all of it")
		})
	}
}

func TestProxiesSharingReplayMemoryShareItsCap(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}, 1), make(chan struct{})
	slow := newBackend(t, func(http.ResponseWriter, *http.Request) {
		entered <- struct{}{}
		<-release
	})
	spare := newBackend(t, answer(http.StatusOK, "spare"))
	shared := &ReplayMemory{}
	capped := func(p *Proxy) { p.MaxBodyBuffer, p.MaxReplayMemory, p.ReplayMemory = 100, 100, shared }
	first := serve(t, buildProxy(t, Serial(), []string{slow.srv.URL, spare.srv.URL}, capped))
	second := serve(t, buildProxy(t, Serial(), []string{spare.srv.URL, slow.srv.URL}, capped))
	held := make(chan int, 1)
	go func() {
		resp, err := http.Post(first.URL+"/", "text/plain", strings.NewReader(strings.Repeat("a", 80)))
		if err != nil {
			held <- 0
			return
		}
		resp.Body.Close()
		held <- resp.StatusCode
	}()
	waitFor(t, entered, "the first proxy's request at its endpoint")
	resp, _ := do(t, http.MethodPost, second.URL+"/", strings.NewReader(strings.Repeat("b", 50)))
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the other proxy's body holds the shared cap")
	close(release)
	assert.Equal(t, http.StatusOK, <-held)
}

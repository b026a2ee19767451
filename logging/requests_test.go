package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/scope"
)

func TestRequestsGiveEachRequestAnIDInTheHeaderAndTheLog(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	var seen []string
	handler := Requests(zerolog.New(&logs).Level(zerolog.InfoLevel), "x-request-id")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, RequestID(r))
		Log(r, zerolog.InfoLevel).Str("path", r.URL.Path).Msg("served")
		assert.Nil(t, Log(r, zerolog.DebugLevel), "a level not logged starts no line")
	}))
	var answered []string
	for range 2 {
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/p", nil))
		answered = append(answered, w.Header().Get("X-Request-Id"))
	}
	assert.Equal(t, answered, seen, "the id answered is the request's")
	assert.Len(t, answered[0], 20, "an xid")
	assert.NotEqual(t, answered[0], answered[1])
	lines := bytes.Split(bytes.TrimSpace(logs.Bytes()), []byte("\n"))
	require.Len(t, lines, 2)
	for i, line := range lines {
		assert.True(t, bytes.HasPrefix(line, []byte(`{"level":"info","request_id":"`+answered[i]+`"`)), "the id is the first field after the level: %s", line)
		var fields map[string]string
		require.NoError(t, json.Unmarshal(line, &fields))
		assert.Equal(t, map[string]string{"level": "info", "request_id": answered[i], "path": "/p", "message": "served"}, fields)
	}
}

func TestARequestThatDidNotComeThroughRequestsHasNoIDAndNoLog(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	assert.Empty(t, RequestID(r))
	assert.Nil(t, Log(r, zerolog.ErrorLevel))
}

func TestTheRequestsContextKeepsItsParentsValuesAndCancellation(t *testing.T) {
	t.Parallel()
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "kept"))
	done := make(chan struct{})
	handler := Requests(zerolog.Nop(), "X-Request-Id")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "kept", r.Context().Value(key{}))
		child, stop := context.WithCancel(r.Context())
		defer stop()
		cancel()
		select {
		case <-child.Done():
		case <-time.After(5 * time.Second):
			t.Error("a child of the request's context outlived its parent")
		}
		close(done)
	}))
	handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil).WithContext(parent))
	<-done
}

func TestContextsMadeFromTheRequestsHookToItsScopeWithoutAGoroutine(t *testing.T) {
	t.Parallel()
	parent := scope.New(context.Background())
	handler := Requests(zerolog.Nop(), "X-Request-Id")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		before := runtime.NumGoroutine()
		var stops []context.CancelFunc
		for range 50 {
			_, stop := context.WithCancelCause(r.Context())
			stops = append(stops, func() { stop(nil) })
		}
		assert.Less(t, runtime.NumGoroutine()-before, 25, "no goroutine watches each child")
		parent.Cancel()
		for _, stop := range stops {
			stop()
		}
	}))
	handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil).WithContext(parent))
}

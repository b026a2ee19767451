package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestModelDecide(t *testing.T) {
	t.Parallel()
	m := Model{Base: 5 * time.Millisecond, Tail: 500 * time.Millisecond, TailFraction: 0.02, ErrorFraction: 0.05}
	tests := []struct {
		name      string
		u         float64
		wantDelay time.Duration
		wantFail  bool
	}{
		{name: "bottom of the error share", u: 0, wantFail: true},
		{name: "top of the error share", u: 0.0499, wantFail: true},
		{name: "bottom of the tail share", u: 0.05, wantDelay: 500 * time.Millisecond},
		{name: "top of the tail share", u: 0.0699, wantDelay: 500 * time.Millisecond},
		{name: "base", u: 0.07, wantDelay: 5 * time.Millisecond},
		{name: "top", u: 0.9999, wantDelay: 5 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			delay, fail := m.decide(tt.u)
			assert.Equal(t, tt.wantFail, fail)
			assert.Equal(t, tt.wantDelay, delay)
		})
	}
}

func TestModelString(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "5ms, 2% 500ms, 5% 503", tailErrorModel.String())
	assert.Equal(t, "50ms", slowModel.String())
}

// fixedEndpoint returns an endpoint whose every request draws u.
func fixedEndpoint(m Model, u float64) *endpoint {
	e := newEndpoint(m)
	e.uniform = func() float64 { return u }
	return e
}

func TestEndpointAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		model      Model
		phase      string
		wantStatus int
		wantBody   int
		wantCount  int64
	}{
		{name: "success", model: Model{Base: time.Millisecond}, phase: phaseMeasured, wantStatus: http.StatusOK, wantBody: bodySize, wantCount: 1},
		{name: "injected error", model: Model{Base: time.Hour, ErrorFraction: 1}, phase: phaseMeasured, wantStatus: http.StatusServiceUnavailable, wantCount: 1},
		{name: "warm-up not counted as measured", model: Model{}, phase: phaseWarmup, wantStatus: http.StatusOK, wantBody: bodySize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := fixedEndpoint(tt.model, 0.5)
			req := httptest.NewRequest(http.MethodGet, "/bench", nil)
			req.Header.Set(phaseHeader, tt.phase)
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			assert.Equal(t, tt.wantStatus, rec.Code)
			if tt.wantBody > 0 {
				assert.Len(t, rec.Body.Bytes(), tt.wantBody)
			}
			assert.Equal(t, int64(1), e.received.Load())
			assert.Equal(t, tt.wantCount, e.measured.Load())
		})
	}
}

func TestEndpointHonoursCancellation(t *testing.T) {
	t.Parallel()
	e := fixedEndpoint(Model{Base: time.Hour}, 0.5)
	ctx, cancel := context.WithCancel(t.Context())
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/bench", nil)
	rec := httptest.NewRecorder()
	returned := make(chan struct{})
	go func() {
		e.ServeHTTP(rec, req)
		close(returned)
	}()
	require.Eventually(t, func() bool { return e.received.Load() == 1 }, 5*time.Second, time.Millisecond)
	cancel()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler still waits for its hour-long delay after the cancel")
	}
	assert.Equal(t, int64(1), e.cancelled.Load())
	assert.Empty(t, rec.Body.Bytes(), "a cancelled request gets no answer")
}

func TestEndpointModelSwitch(t *testing.T) {
	t.Parallel()
	e := fixedEndpoint(Model{}, 0.5)
	e.setModel(Model{ErrorFraction: 1})
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
}

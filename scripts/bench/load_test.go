package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPhaseCounts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		rate             float64
		warmup, duration time.Duration
		wantWarm, wantM  int
	}{
		{name: "defaults", rate: 200, warmup: 3 * time.Second, duration: 20 * time.Second, wantWarm: 600, wantM: 4000},
		{name: "smoke", rate: 100, warmup: 500 * time.Millisecond, duration: 2 * time.Second, wantWarm: 50, wantM: 200},
		{name: "no warm-up", rate: 10, duration: time.Second, wantWarm: 0, wantM: 10},
		{name: "at least one measured", rate: 1, duration: time.Millisecond, wantWarm: 0, wantM: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			warm, measured := phaseCounts(tt.rate, tt.warmup, tt.duration)
			assert.Equal(t, tt.wantWarm, warm)
			assert.Equal(t, tt.wantM, measured)
		})
	}
}

func TestIntendedTime(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		i    int
		rate float64
		want time.Duration
	}{
		{i: 0, rate: 200, want: 0},
		{i: 1, rate: 200, want: 5 * time.Millisecond},
		{i: 200, rate: 200, want: time.Second},
		{i: 4599, rate: 200, want: 22*time.Second + 995*time.Millisecond},
		{i: 1, rate: 3, want: 333333333 * time.Nanosecond},
		{i: 3, rate: 3, want: time.Second},
	}
	for _, tt := range tests {
		assert.Equal(t, start.Add(tt.want), intendedTime(start, tt.i, tt.rate), "request %d at %g/s", tt.i, tt.rate)
	}
	// Send times never go backwards and keep their spacing whatever i is: no drift.
	for i := 1; i < 10_000; i++ {
		gap := intendedTime(start, i, 200).Sub(intendedTime(start, i-1, 200))
		require.InDelta(t, float64(5*time.Millisecond), float64(gap), 1, "gap before request %d", i)
	}
}

func TestRecordDurationClamps(t *testing.T) {
	t.Parallel()
	h := newHistogram()
	recordDuration(h, 0)
	recordDuration(h, 2*time.Minute)
	assert.Equal(t, int64(2), h.TotalCount())
	assert.InDelta(t, 60_000.0, maxMs(h), 60, "a value above the range is kept at the top")
}

package hedge

import (
	"sync"
	"testing"
	"time"

	"balancing-reverse-proxy/internal/fakeclock"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newTestDelay returns a Delay on a fake clock.
func newTestDelay(t *testing.T, spec Spec, opts Options) (*Delay, *fakeclock.Clock) {
	t.Helper()
	clock := &fakeclock.Clock{}
	return newDelay(spec, opts, clock.Now), clock
}

// assertNear checks a delay to within the histogram's precision.
func assertNear(t *testing.T, want, got time.Duration, msgAndArgs ...any) {
	t.Helper()
	assert.InEpsilon(t, float64(want), float64(got), 0.01, msgAndArgs...)
}

func TestDelayFixed(t *testing.T) {
	t.Parallel()
	for _, fixed := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run(fixed.String(), func(t *testing.T) {
			t.Parallel()
			d, clock := newTestDelay(t, Spec{Fixed: fixed}, Options{Min: time.Millisecond, Max: time.Second})
			assert.Equal(t, fixed, d.Current())
			for range 100 {
				d.Observe(500 * time.Millisecond)
				clock.Advance(time.Second)
			}
			assert.Equal(t, fixed, d.Current(), "observations do not move a fixed delay")
		})
	}
}

func TestDelayBeforeSamplesIsMax(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		want time.Duration
	}{
		{name: "given max", opts: Options{Max: 250 * time.Millisecond}, want: 250 * time.Millisecond},
		{name: "default max", opts: Options{}, want: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, clock := newTestDelay(t, Spec{Percentile: 95}, tt.opts)
			assert.Equal(t, tt.want, d.Current())
			for range defaultMinSamples - 1 {
				d.Observe(5 * time.Millisecond)
			}
			clock.Advance(defaultRefresh)
			assert.Equal(t, tt.want, d.Current(), "a refresh with too few samples gives no estimate")
		})
	}
}

func TestDelayEstimateAfterMinSamples(t *testing.T) {
	t.Parallel()
	d, _ := newTestDelay(t, Spec{Percentile: 95}, Options{MinSamples: 20})
	for range 19 {
		d.Observe(5 * time.Millisecond)
	}
	assert.Equal(t, time.Second, d.Current())
	d.Observe(5 * time.Millisecond)
	// The clock has not moved: the estimate must not wait for Refresh.
	assertNear(t, 5*time.Millisecond, d.Current())
}

func TestDelayPercentile(t *testing.T) {
	t.Parallel()
	type group struct {
		count   int
		latency time.Duration
	}
	tests := []struct {
		name    string
		spec    Spec
		max     time.Duration
		samples []group
		want    time.Duration
	}{
		{
			name:    "p95 of 95 fast and 5 slow is fast",
			spec:    Spec{Percentile: 95},
			samples: []group{{95, 5 * time.Millisecond}, {5, 500 * time.Millisecond}},
			want:    5 * time.Millisecond,
		},
		{
			name:    "p95 of 90 fast and 10 slow is slow",
			spec:    Spec{Percentile: 95},
			samples: []group{{90, 5 * time.Millisecond}, {10, 500 * time.Millisecond}},
			want:    500 * time.Millisecond,
		},
		{
			name:    "slow percentile clamped to max",
			spec:    Spec{Percentile: 95},
			max:     100 * time.Millisecond,
			samples: []group{{90, 5 * time.Millisecond}, {10, 500 * time.Millisecond}},
			want:    100 * time.Millisecond,
		},
		{
			name:    "p99 of 95 fast and 5 slow is slow",
			spec:    Spec{Percentile: 99},
			samples: []group{{95, 5 * time.Millisecond}, {5, 500 * time.Millisecond}},
			want:    500 * time.Millisecond,
		},
		{
			name:    "p99.9 of 999 fast and 1 slow is fast",
			spec:    Spec{Percentile: 99.9},
			samples: []group{{999, 5 * time.Millisecond}, {1, 500 * time.Millisecond}},
			want:    5 * time.Millisecond,
		},
		{
			name:    "p50 of 50 at 10ms and 50 at 20ms",
			spec:    Spec{Percentile: 50},
			samples: []group{{50, 20 * time.Millisecond}, {50, 10 * time.Millisecond}},
			want:    10 * time.Millisecond,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			total := 0
			for _, g := range tt.samples {
				total += g.count
			}
			// One estimate, as soon as every sample is in.
			d, _ := newTestDelay(t, tt.spec, Options{Max: tt.max, MinSamples: total})
			for _, g := range tt.samples {
				for range g.count {
					d.Observe(g.latency)
				}
			}
			assertNear(t, tt.want, d.Current())
		})
	}
}

func TestDelayClamp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    Options
		latency time.Duration
		want    time.Duration
	}{
		{name: "to min", opts: Options{Min: time.Millisecond}, latency: 100 * time.Microsecond, want: time.Millisecond},
		{name: "to max", opts: Options{Max: time.Second}, latency: 3 * time.Second, want: time.Second},
		{name: "within bounds", opts: Options{Min: time.Millisecond, Max: time.Second}, latency: 7 * time.Millisecond, want: 7 * time.Millisecond},
		{name: "min above max: max wins", opts: Options{Min: time.Second, Max: 10 * time.Millisecond}, latency: 5 * time.Millisecond, want: 10 * time.Millisecond},
		{name: "longer than the histogram", opts: Options{Max: 3 * time.Hour}, latency: 2 * time.Hour, want: highestLatency},
		{name: "zero latency", opts: Options{}, latency: 0, want: lowestLatency},
		{name: "negative latency", opts: Options{}, latency: -time.Second, want: lowestLatency},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, _ := newTestDelay(t, Spec{Percentile: 95}, tt.opts)
			for range defaultMinSamples {
				d.Observe(tt.latency)
			}
			assertNear(t, tt.want, d.Current())
		})
	}
}

func TestDelayCurrentRefreshes(t *testing.T) {
	t.Parallel()
	const refresh = 3 * time.Second
	d, clock := newTestDelay(t, Spec{Percentile: 95}, Options{Refresh: refresh, MinSamples: 20})
	for range 20 {
		d.Observe(5 * time.Millisecond)
	}
	for range 20 {
		d.Observe(500 * time.Millisecond)
	}
	assertNear(t, 5*time.Millisecond, d.Current(), "the first estimate stands until the next refresh")

	clock.Advance(refresh - time.Nanosecond)
	assertNear(t, 5*time.Millisecond, d.Current(), "not yet a refresh later")

	// No Observe: Current alone must notice the refresh is due.
	clock.Advance(time.Nanosecond)
	assertNear(t, 500*time.Millisecond, d.Current())
}

func TestDelayAdapts(t *testing.T) {
	t.Parallel()
	const (
		window  = 30 * time.Second
		refresh = 3 * time.Second
		tick    = 100 * time.Millisecond
		fast    = 5 * time.Millisecond
		slow    = 50 * time.Millisecond
	)
	d, clock := newTestDelay(t, Spec{Percentile: 95}, Options{Min: time.Millisecond, Max: time.Second, Window: window, Refresh: refresh})
	// serve answers one request per tick, all at latency, for span.
	serve := func(latency, span time.Duration) {
		t.Helper()
		for range span / tick {
			d.Current()
			d.Observe(latency)
			clock.Advance(tick)
		}
	}

	serve(fast, window)
	assertNear(t, fast, d.Current(), "steady fast traffic")

	d.Observe(slow)
	assertNear(t, fast, d.Current(), "nothing changes before the next refresh")

	serve(slow, 2*refresh)
	assertNear(t, slow, d.Current(), "follows the slowdown within two refreshes")
	serve(slow, window)
	assertNear(t, slow, d.Current(), "steady slow traffic")

	serve(fast, window/2)
	assertNear(t, slow, d.Current(), "slow samples still fill half the window")
	serve(fast, window/2)
	assertNear(t, fast, d.Current(), "back down once the slow samples have aged out")
}

func TestDelayKeepsEstimateWhenWindowIsThin(t *testing.T) {
	t.Parallel()
	const refresh = 3 * time.Second
	d, clock := newTestDelay(t, Spec{Percentile: 95}, Options{Window: 30 * time.Second, Refresh: refresh, MinSamples: 20})
	for range 20 {
		d.Observe(5 * time.Millisecond)
	}
	assertNear(t, 5*time.Millisecond, d.Current())

	clock.Advance(time.Minute)
	assertNear(t, 5*time.Millisecond, d.Current(), "an empty window keeps the last estimate")

	for range 19 {
		d.Observe(500 * time.Millisecond)
	}
	clock.Advance(refresh)
	assertNear(t, 5*time.Millisecond, d.Current(), "too few samples keep the last estimate")

	d.Observe(500 * time.Millisecond)
	clock.Advance(refresh)
	assertNear(t, 500*time.Millisecond, d.Current(), "enough samples make a new estimate")
}

func TestDelayConcurrent(t *testing.T) {
	t.Parallel()
	opts := Options{Min: time.Millisecond, Max: time.Second, Window: 10 * time.Second, Refresh: time.Second}
	d, clock := newTestDelay(t, Spec{Percentile: 95}, opts)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				d.Observe(time.Duration(1+(g+i)%10) * time.Millisecond)
				got := d.Current()
				assert.True(t, got >= opts.Min && got <= opts.Max, "delay %v out of bounds", got)
				if i%100 == 0 {
					clock.Advance(100 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	got := d.Current()
	require.Less(t, got, opts.Max, "an estimate exists")
	assert.GreaterOrEqual(t, got, 9*time.Millisecond)
	assert.LessOrEqual(t, got, 11*time.Millisecond)
}

func BenchmarkDelayCurrent(b *testing.B) {
	d := NewDelay(Spec{Percentile: 95}, Options{})
	for range defaultMinSamples {
		d.Observe(5 * time.Millisecond)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d.Current()
		}
	})
}

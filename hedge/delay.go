package hedge

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Defaults for zero Options fields.
const (
	defaultMax        = time.Second
	defaultWindow     = 30 * time.Second
	defaultRefresh    = 3 * time.Second
	defaultMinSamples = 20
)

// Range and precision of the latency histogram. Latencies are recorded in
// microseconds; samples outside the range are clamped into it.
const (
	lowestLatency  = time.Microsecond
	highestLatency = time.Hour
	sigFigs        = 3
)

// Options tune an adaptive Delay. A fixed Delay ignores them.
type Options struct {
	// Min and Max bound the adaptive delay (--hedge-delay-min and
	// --hedge-delay-max). If Min is zero there is no lower bound; if Max is
	// zero it is 1s. If Min exceeds Max, Max wins.
	Min, Max time.Duration
	// Window is the span of the sliding window of recent latencies. If zero
	// or negative, it is 30s.
	Window time.Duration
	// Refresh is how often the percentile is recomputed, and the width of the
	// window's slots: the window holds Window/Refresh slots, rounded up, and
	// the oldest falls out every Refresh. If zero or negative, it is 3s.
	Refresh time.Duration
	// MinSamples is how many latencies the window must hold for an estimate.
	// If zero or negative, it is 20.
	MinSamples int
}

// withDefaults returns o with zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.Max <= 0 {
		o.Max = defaultMax
	}
	if o.Min < 0 {
		o.Min = 0
	}
	if o.Window <= 0 {
		o.Window = defaultWindow
	}
	if o.Refresh <= 0 {
		o.Refresh = defaultRefresh
	}
	if o.MinSamples <= 0 {
		o.MinSamples = defaultMinSamples
	}
	return o
}

// Delay answers "how long to wait before the next hedge" for one proxy. It is
// safe for concurrent use and starts no goroutines: an adaptive Delay
// recomputes its estimate lazily, from Observe and Current.
//
// An adaptive Delay keeps the latencies of about the last Options.Window in a
// ring of Options.Refresh-wide slots. The estimate is the spec's percentile of
// the window, clamped to [Options.Min, Options.Max]. The first estimate is
// computed as soon as the window holds Options.MinSamples latencies; after
// that it is recomputed every Options.Refresh, when the oldest slot falls out,
// so the delay follows the endpoints as they speed up and slow down. A
// recomputation that finds fewer than Options.MinSamples latencies in the
// window (for example after a quiet spell) keeps the previous estimate.
type Delay struct {
	spec Spec
	opts Options
	now  func() time.Time

	// start is when the Delay was made; times below are offsets from it, so
	// they use the monotonic clock.
	start time.Time
	// current is the delay Current returns, in nanoseconds.
	current atomic.Int64
	// nextRefresh is when the current slot ends and the estimate is due to be
	// recomputed.
	nextRefresh atomic.Int64

	// mu guards the fields below.
	mu        sync.Mutex
	slots     []*hdrhistogram.Histogram // ring of slots; slots[slot] is being filled
	slot      int
	merged    *hdrhistogram.Histogram // scratch for the whole window
	slotEnd   time.Duration           // end of slots[slot], as an offset from start
	estimated bool
}

// NewDelay returns the Delay for spec. opts only matter for an adaptive spec.
func NewDelay(spec Spec, opts Options) *Delay {
	return newDelay(spec, opts, time.Now)
}

// newDelay is NewDelay with a clock that tests control.
func newDelay(spec Spec, opts Options, now func() time.Time) *Delay {
	d := &Delay{spec: spec, now: now}
	if !spec.Adaptive() {
		return d
	}
	d.opts = opts.withDefaults()
	d.start = now()
	// Before the first estimate, be conservative: the longest delay sends the
	// fewest hedges.
	d.current.Store(int64(d.opts.Max))
	slots := int((d.opts.Window + d.opts.Refresh - 1) / d.opts.Refresh)
	d.slots = make([]*hdrhistogram.Histogram, slots)
	for i := range d.slots {
		d.slots[i] = newHistogram()
	}
	d.merged = newHistogram()
	d.slotEnd = d.opts.Refresh
	d.nextRefresh.Store(int64(d.slotEnd))
	return d
}

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(int64(lowestLatency/time.Microsecond), int64(highestLatency/time.Microsecond), sigFigs)
}

// Current returns how long to wait before the next hedge. For a fixed spec it
// is the fixed delay. For an adaptive spec it is the latest estimate, or
// Options.Max while there is none. It is cheap enough to call per request.
func (d *Delay) Current() time.Duration {
	if !d.spec.Adaptive() {
		return d.spec.Fixed
	}
	if elapsed := d.now().Sub(d.start); int64(elapsed) >= d.nextRefresh.Load() {
		d.mu.Lock()
		d.advance(elapsed)
		d.mu.Unlock()
	}
	return time.Duration(d.current.Load())
}

// Observe records the latency of one answered attempt (the time to its
// response headers). It does nothing for a fixed spec.
func (d *Delay) Observe(latency time.Duration) {
	if !d.spec.Adaptive() {
		return
	}
	latency = min(max(latency, lowestLatency), highestLatency)

	d.mu.Lock()
	defer d.mu.Unlock()
	d.advance(d.now().Sub(d.start))
	// In range after the clamp, so RecordValue cannot fail.
	_ = d.slots[d.slot].RecordValue(int64(latency / time.Microsecond))
	// Estimate as soon as there are enough samples, so that a new proxy adapts
	// within its first requests rather than after Refresh.
	if !d.estimated && d.samples() >= d.opts.MinSamples {
		d.estimate()
	}
}

// advance moves the window to elapsed: once per Refresh it drops the oldest
// slots and recomputes the estimate. d.mu must be held.
func (d *Delay) advance(elapsed time.Duration) {
	if elapsed < d.slotEnd {
		return
	}
	steps := (elapsed-d.slotEnd)/d.opts.Refresh + 1
	for range min(int(steps), len(d.slots)) {
		d.slot = (d.slot + 1) % len(d.slots)
		d.slots[d.slot].Reset()
	}
	d.slotEnd += steps * d.opts.Refresh
	d.nextRefresh.Store(int64(d.slotEnd))
	d.estimate()
}

// samples returns how many latencies the window holds. d.mu must be held.
func (d *Delay) samples() int {
	var n int64
	for _, h := range d.slots {
		n += h.TotalCount()
	}
	return int(n)
}

// estimate recomputes the delay from the window, unless the window holds too
// few samples to say anything, in which case the last estimate stands. d.mu
// must be held.
func (d *Delay) estimate() {
	if d.samples() < d.opts.MinSamples {
		return
	}
	d.merged.Reset()
	for _, h := range d.slots {
		d.merged.Merge(h)
	}
	latency := time.Duration(d.merged.ValueAtPercentile(d.spec.Percentile)) * time.Microsecond
	d.current.Store(int64(min(max(latency, d.opts.Min), d.opts.Max)))
	d.estimated = true
}

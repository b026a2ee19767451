// Package heapfloor keeps Go's garbage collector from running on a small
// heap far more often than its work is worth. A proxy keeps little alive
// (a few megabytes) and allocates fast, so at Go's default pace (a
// collection each time the heap doubles) it collects dozens of times a
// second, for a tenth of its CPU. Keep lets the heap grow to a floor
// before a collection, and paces as Go does once what is alive needs more:
// the memory given to it is bounded by the floor, not proportional to
// what is alive, as raising GOGC would make it.
package heapfloor

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// defaultPercent is Go's own pace, GOGC=100: a collection when the heap has
// grown by what the last one found alive.
const defaultPercent = 100

// minimumHeap is the heap below which Go does not collect at its default
// pace. The runtime scales it by the percent too: for the floor to hold,
// the percent may be at most floor*100/minimumHeap.
const minimumHeap = 4 << 20

// What the pace applies to: the heap the last collection found alive, and
// the stacks and globals it scanned. The heap's goal is the live heap plus
// the percent of all three.
var paceMetrics = []string{"/gc/heap/live:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes"}

// Keep paces the collector, after each collection, so that the next one
// comes when the heap reaches floor bytes, or at Go's default pace when
// that comes later. It does nothing when GOGC is set: the user's pace
// stands. After ctx is done, the pace is Go's default again from the next
// collection on.
func Keep(ctx context.Context, floor uint64) {
	if os.Getenv("GOGC") != "" {
		return
	}
	p := &pacer{ctx: ctx, floor: floor, percent: defaultPercent}
	for _, name := range paceMetrics {
		p.sample = append(p.sample, metrics.Sample{Name: name})
	}
	p.repace()
}

// pacer sets the pace after each collection; only the runtime's cleanup
// goroutine runs it, one collection at a time.
type pacer struct {
	ctx     context.Context
	floor   uint64
	percent int
	sample  []metrics.Sample
}

// sentinel is what each collection frees, so that its cleanup runs once per
// collection. It holds a pointer: pointer-free objects this small may share
// a slot with others and never be freed alone.
type sentinel struct{ _ *byte }

// repace sets the pace from what the last collection found alive and waits
// for the next collection, unless ctx is done.
func (p *pacer) repace() {
	done := p.ctx.Err() != nil
	percent := defaultPercent
	if !done {
		metrics.Read(p.sample)
		live, stacks, globals := p.sample[0].Value.Uint64(), p.sample[1].Value.Uint64(), p.sample[2].Value.Uint64()
		percent = percentFor(live, live+stacks+globals, p.floor)
	}
	if percent != p.percent {
		debug.SetGCPercent(percent)
		p.percent = percent
	}
	if !done {
		runtime.AddCleanup(new(sentinel), (*pacer).repace, p)
	}
}

// percentFor returns the GOGC percent that lets a heap of live bytes, with
// scanned bytes in all (the live heap, stacks and globals), grow to floor
// before the next collection, and never less than Go's default. It is at
// most the percent that scales Go's minimum heap to floor, which bounds the
// heap of a program that keeps almost nothing alive.
func percentFor(live, scanned, floor uint64) int {
	scanned = max(scanned, live, 1)
	if floor <= live+scanned {
		return defaultPercent
	}
	return int(max(min((floor-live)*100/scanned, floor*100/minimumHeap), defaultPercent))
}

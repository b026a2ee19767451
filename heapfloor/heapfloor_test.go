package heapfloor

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPercentForLetsTheHeapGrowToTheFloor(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name                 string
		live, scanned, floor uint64
		want                 int
	}{
		{name: "small heap", live: 4 * mib, scanned: 4 * mib, floor: 16 * mib, want: 300},
		{name: "stacks and globals scanned too", live: 4 * mib, scanned: 6 * mib, floor: 16 * mib, want: 200},
		{name: "at the floor: Go's pace", live: 8 * mib, scanned: 8 * mib, floor: 16 * mib, want: 100},
		{name: "over the floor: Go's pace", live: 64 * mib, scanned: 64 * mib, floor: 16 * mib, want: 100},
		{name: "tiny heap: Go's minimum heap scaled to the floor", live: 2 * mib, scanned: 2 * mib, floor: 16 * mib, want: 400},
		{name: "nothing measured yet", live: 0, scanned: 0, floor: 16 * mib, want: 400},
		{name: "a floor under Go's minimum: Go's pace", live: 0, scanned: 0, floor: 2 * mib, want: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, percentFor(tt.live, tt.scanned, tt.floor))
		})
	}
}

// gogc is the pace in force.
func gogc() uint64 {
	sample := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}

// collectUntil runs collections until ok holds, for up to 2 s: cleanups run
// on a goroutine of their own, after the collection.
func collectUntil(ok func() bool) bool {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		if ok() {
			return true
		}
	}
	return false
}

func TestKeepRaisesThePaceOfASmallHeapAndGivesItBackWhenDone(t *testing.T) {
	t.Setenv("GOGC", "")
	defer debug.SetGCPercent(defaultPercent)
	ctx, cancel := context.WithCancel(context.Background())
	Keep(ctx, 1<<30)
	assert.True(t, collectUntil(func() bool { return gogc() > 1000 }), "a 1 GiB floor over a heap of a few MiB: pace %d", gogc())
	cancel()
	assert.True(t, collectUntil(func() bool { return gogc() == defaultPercent }), "done: Go's pace again, not %d", gogc())
}

func TestKeepHoldsTheHeapGoalAtTheFloor(t *testing.T) {
	t.Setenv("GOGC", "")
	defer debug.SetGCPercent(defaultPercent)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const floor = 64 << 20
	Keep(ctx, floor)
	goal := func() uint64 {
		sample := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	require.True(t, collectUntil(func() bool { return gogc() > defaultPercent }), "paced: %d", gogc())
	assert.LessOrEqual(t, goal(), uint64(floor)*21/20, "the goal of a heap of a few MiB is the floor, not beyond")
	assert.Greater(t, goal(), uint64(floor)/2, "and not Go's default, a few MiB")
}

func TestKeepLeavesThePaceAloneWhenGOGCIsSet(t *testing.T) {
	t.Setenv("GOGC", "150")
	defer debug.SetGCPercent(defaultPercent)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	Keep(ctx, 1<<30)
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	runtime.GC()
	assert.Equal(t, uint64(defaultPercent), gogc(), "the process's pace (read from GOGC at its start) stands")
}

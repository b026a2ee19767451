package coarsetimer

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestATimerFiresOnceItsDurationHasPassed(t *testing.T) {
	var g Group
	start := time.Now()
	fired := make(chan time.Duration, 1)
	g.AfterFunc(20*time.Millisecond, func() { fired <- time.Since(start) })
	select {
	case elapsed := <-fired:
		assert.GreaterOrEqual(t, elapsed, 20*time.Millisecond, "never early")
	case <-time.After(5 * time.Second):
		t.Fatal("the timer never fired")
	}
}

func TestAStoppedTimerDoesNotFire(t *testing.T) {
	var g Group
	var fired atomic.Bool
	timer := g.AfterFunc(5*time.Millisecond, func() { fired.Store(true) })
	require.True(t, timer.Stop(), "stopped before it fired")
	assert.False(t, timer.Stop(), "a second Stop has nothing to stop")
	// A later timer fires after the stopped one's time: the stopped one had
	// its pass and was dropped.
	done := make(chan struct{})
	g.AfterFunc(30*time.Millisecond, func() { close(done) })
	<-done
	assert.False(t, fired.Load())
}

func TestStopAfterTheTimerFiredReportsFalse(t *testing.T) {
	var g Group
	done := make(chan struct{})
	timer := g.AfterFunc(time.Millisecond, func() { close(done) })
	<-done
	assert.False(t, timer.Stop())
}

func TestAnEarlierTimerIsNotHeldBackByALaterOne(t *testing.T) {
	var g Group
	g.AfterFunc(time.Hour, func() {})
	done := make(chan struct{})
	start := time.Now()
	g.AfterFunc(10*time.Millisecond, func() { close(done) })
	select {
	case <-done:
		assert.GreaterOrEqual(t, time.Since(start), 10*time.Millisecond)
	case <-time.After(5 * time.Second):
		t.Fatal("the earlier timer waited for the later one")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	assert.Len(t, g.timers, 1, "the hour's timer is left, the fired one dropped")
	g.timers[0].Stop()
}

func TestStoppedTimersLeaveTheListByTheNextPass(t *testing.T) {
	var g Group
	for range 100 {
		g.AfterFunc(time.Hour, func() {}).Stop()
	}
	// Passes come every maxSlack while timers are listed, and drop the
	// stopped ones, which would otherwise keep their functions for an hour.
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.timers) == 0
	}, 5*time.Second, maxSlack/5)
}

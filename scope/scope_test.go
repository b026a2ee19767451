package scope

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// valueOver is a context that adds a value over its parent, as a request's
// id does: it changes nothing of its cancellation.
type valueOver struct{ context.Context }

func (v valueOver) Value(k any) any {
	if k == "name" {
		return "value"
	}
	return v.Context.Value(k)
}

func requireDone(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not done")
	}
}

func TestCancelEndsTheScopeItsChildrenAndHooks(t *testing.T) {
	root := New(context.Background())
	child := New(valueOver{root})
	grandchild := New(child)
	var ran atomic.Int32
	After(grandchild, func() { ran.Add(1) })
	After(valueOver{child}, func() { ran.Add(1) })
	require.NoError(t, grandchild.Err())

	root.Cancel()
	for _, c := range []*Context{root, child, grandchild} {
		requireDone(t, c)
		assert.ErrorIs(t, c.Err(), context.Canceled)
	}
	assert.Equal(t, int32(2), ran.Load(), "each hook, once, before Cancel returns")
	assert.Equal(t, "value", grandchild.Value("name"), "values of the parents")
}

func TestAChildCancelledAloneLeavesItsParent(t *testing.T) {
	root := New(context.Background())
	child := New(root)
	child.Cancel()
	assert.ErrorIs(t, child.Err(), context.Canceled)
	assert.NoError(t, root.Err())
	assert.Empty(t, usedSlots(root), "the child's slot is given back")
	root.Cancel()
}

func usedSlots(c *Context) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var used []int
	for i, h := range c.hooks {
		if !h.free() {
			used = append(used, i)
		}
	}
	return used
}

func TestAStoppedHookDoesNotRunAndItsSlotIsReused(t *testing.T) {
	c := New(context.Background())
	ran := false
	h := After(c, func() { ran = true })
	assert.True(t, h.Stop(), "stopped before it ran")
	for range 10 {
		After(c, func() {}).Stop()
	}
	assert.Len(t, c.hooks, 1, "one slot, used by one hook at a time")
	c.Cancel()
	assert.False(t, ran)
	assert.False(t, After(c, func() {}).Stop(), "a hook to a cancelled scope runs at once")
}

func TestAHookThatRanCannotBeStopped(t *testing.T) {
	c := New(context.Background())
	h := After(c, func() {})
	c.Cancel()
	assert.False(t, h.Stop())
}

func TestManyHooksAllRun(t *testing.T) {
	c := New(context.Background())
	var ran atomic.Int32
	for range 20 {
		After(c, func() { ran.Add(1) })
	}
	c.Cancel()
	assert.Equal(t, int32(20), ran.Load())
}

func TestAScopeUnderAnOrdinaryContextIsCancelledWithIt(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	c := New(parent)
	cancel()
	requireDone(t, c)
	assert.ErrorIs(t, c.Err(), context.Canceled)

	expired, stop := context.WithTimeout(context.Background(), time.Nanosecond)
	defer stop()
	<-expired.Done()
	assert.ErrorIs(t, New(expired).Err(), context.DeadlineExceeded, "made under a context already done")
}

func TestAScopeUnderADoneScopeIsDone(t *testing.T) {
	parent := New(context.Background())
	parent.Cancel()
	assert.ErrorIs(t, New(valueOver{parent}).Err(), context.Canceled)
}

func TestAHookIsNotTakenByAScopeBehindAnotherCancellation(t *testing.T) {
	root := New(context.Background())
	between, cancel := context.WithCancel(root)
	ran := make(chan struct{})
	h := After(between, func() { close(ran) })
	cancel()
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("a hook under a context the scope does not cancel did not run at its cancellation")
	}
	assert.False(t, h.Stop())
	assert.NoError(t, root.Err())
	root.Cancel()
}

func TestContextsMadeFromAScopeFollowIt(t *testing.T) {
	c := New(context.Background())
	child, stop := context.WithCancelCause(c)
	defer stop(nil)
	var after sync.WaitGroup
	after.Add(1)
	context.AfterFunc(c, after.Done)
	c.Cancel()
	requireDone(t, child)
	after.Wait()
	deadline, ok := child.Deadline()
	assert.False(t, ok)
	assert.True(t, deadline.IsZero())
}

func TestConcurrentCancelsAndHooks(t *testing.T) {
	for range 100 {
		root := New(context.Background())
		var wg sync.WaitGroup
		var ran atomic.Int32
		var stopped atomic.Int32
		for range 4 {
			wg.Go(func() {
				h := After(New(root), func() {})
				_ = h
				h2 := After(root, func() { ran.Add(1) })
				if h2.Stop() {
					stopped.Add(1)
				}
			})
		}
		wg.Go(root.Cancel)
		wg.Wait()
		assert.Equal(t, int32(4), ran.Load()+stopped.Load(), "each hook ran or was stopped, not both")
	}
}

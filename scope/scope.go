// Package scope has cancellation scopes: contexts that are cancelled with
// their parent or on their own, as context.WithCancel's, and that run the
// functions hooked to them when they are. A request and each of its
// attempts is one, and the connection carrying an attempt hooks its abort
// to it. context.WithCancel and context.AfterFunc cost a map of children in
// the parent, a closure and a goroutine's worth of bookkeeping each; here a
// scope is one allocation (and its Done channel, once asked for: a scope
// found through a context over it is checked by it), and hooking a function
// or a child scope to a scope costs none for the first few. context.Cause
// of a scope is its error only when no context of the context package's own
// is cancellable above it.
package scope

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Context is a cancellation scope. Its zero value is not ready; New makes
// one.
type Context struct {
	parent context.Context

	mu  sync.Mutex
	err error
	// done holds the Done channel once asked for (or cancelled): read
	// without the lock, as Done is asked for several times a request.
	done atomic.Value
	// hooks are what runs at the cancellation; a free slot is the zero
	// hook. The first few live in hooksArray.
	hooks      []hook
	hooksArray [4]hook
	// detach undoes the hook to the parent: a slot of a parent scope's, or
	// context.AfterFunc's stop.
	parentScope *Context
	parentSlot  int
	stopParent  func() bool
}

// hook is one function, or one child scope, to cancel with a scope.
type hook struct {
	f     func()
	child *Context
}

// free reports whether the slot of h is free.
func (h hook) free() bool { return h.f == nil && h.child == nil }

// key is the context key a scope answers with itself.
type key struct{}

// closed is the Done channel of a scope cancelled before anyone asked for it.
var closed = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// New returns a scope cancelled with parent, or by its Cancel.
func New(parent context.Context) *Context {
	c := &Context{parent: parent}
	c.hooks = c.hooksArray[:0]
	if parent.Done() == nil {
		// Never cancelled, as context.Background.
		return c
	}
	if p := scopeOf(parent); p != nil {
		slot, ok := p.add(hook{child: c})
		if !ok {
			c.cancel(parent.Err())
			return c
		}
		// The parent may cancel c from now on, and read these.
		c.mu.Lock()
		if c.err == nil {
			c.parentScope, c.parentSlot = p, slot
		}
		c.mu.Unlock()
		return c
	}
	if err := parent.Err(); err != nil {
		c.cancel(err)
		return c
	}
	stop := context.AfterFunc(parent, func() { c.cancel(parent.Err()) })
	c.mu.Lock()
	if c.err == nil {
		c.stopParent = stop
	}
	c.mu.Unlock()
	return c
}

// scopeOf returns the scope ctx is cancelled with when nothing between
// them cancels it otherwise: ctx itself, or the nearest scope among its
// parents when ctx is done exactly when that scope is (values added over a
// scope, as a request's, do not change its cancellation).
func scopeOf(ctx context.Context) *Context {
	if c, ok := ctx.(*Context); ok {
		return c
	}
	c, ok := ctx.Value(key{}).(*Context)
	if !ok || c.Done() != ctx.Done() {
		return nil
	}
	return c
}

// add hooks h and returns its slot; ok is false when the scope is
// cancelled already, and h not hooked.
func (c *Context) add(h hook) (slot int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, false
	}
	for i := range c.hooks {
		if c.hooks[i].free() {
			c.hooks[i] = h
			return i, true
		}
	}
	c.hooks = append(c.hooks, h)
	return len(c.hooks) - 1, true
}

// remove unhooks slot, and reports whether it was still hooked (not run,
// nor running).
func (c *Context) remove(slot int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || slot >= len(c.hooks) || c.hooks[slot].free() {
		return false
	}
	c.hooks[slot] = hook{}
	return true
}

// Cancel cancels the scope, its children and its hooks, with
// context.Canceled. Only the first cancellation counts.
func (c *Context) Cancel() { c.cancel(context.Canceled) }

// cancel cancels the scope with err and runs its hooks, on this goroutine.
func (c *Context) cancel(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	if done, _ := c.done.Load().(chan struct{}); done == nil {
		c.done.Store(closed)
	} else {
		close(done)
	}
	hooks := c.hooks
	c.hooks = nil
	parent, slot, stop := c.parentScope, c.parentSlot, c.stopParent
	c.mu.Unlock()
	for _, h := range hooks {
		switch {
		case h.child != nil:
			h.child.cancel(err)
		case h.f != nil:
			h.f()
		}
	}
	if parent != nil {
		parent.remove(slot)
	}
	if stop != nil {
		stop()
	}
}

// Deadline is the parent's.
func (c *Context) Deadline() (time.Time, bool) { return c.parent.Deadline() }

// Done returns a channel closed once the scope is cancelled.
func (c *Context) Done() <-chan struct{} {
	if done, ok := c.done.Load().(chan struct{}); ok {
		return done
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	done, ok := c.done.Load().(chan struct{})
	if !ok {
		done = make(chan struct{})
		c.done.Store(done)
	}
	return done
}

// Err returns nil until the scope is cancelled, then why: context.Canceled,
// or the parent's error.
func (c *Context) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Value returns the parent's value for k; the scope itself answers its
// own key, so that scopes made under it, through values added to it, find
// it.
func (c *Context) Value(k any) any {
	if k == (key{}) {
		return c
	}
	return c.parent.Value(k)
}

// AfterFunc runs f once the scope is cancelled, and is what
// context.AfterFunc and the contexts made from a scope by the context
// package use, in place of a goroutine each. stop unhooks f and reports
// whether it did so before f ran.
func (c *Context) AfterFunc(f func()) (stop func() bool) {
	slot, ok := c.add(hook{f: f})
	if !ok {
		go f()
		return func() bool { return false }
	}
	return func() bool { return c.remove(slot) }
}

// Hook is a function hooked to a context by After.
type Hook struct {
	scope *Context
	slot  int
	stop  func() bool
}

// After runs f once ctx is done: on the goroutine that cancels ctx when ctx
// is a scope, or one a scope is found through (f must not block; if the
// scope is cancelled already, f runs at once, on this goroutine), and as
// context.AfterFunc does otherwise (on a goroutine of its own). Its Stop
// unhooks f.
func After(ctx context.Context, f func()) Hook {
	if c := scopeOf(ctx); c != nil {
		slot, ok := c.add(hook{f: f})
		if !ok {
			f()
			return Hook{}
		}
		return Hook{scope: c, slot: slot}
	}
	return Hook{stop: context.AfterFunc(ctx, f)}
}

// Stop unhooks the function and reports whether it did so before it ran:
// false when it ran, or runs. Stop is for one call.
func (h Hook) Stop() bool {
	switch {
	case h.scope != nil:
		return h.scope.remove(h.slot)
	case h.stop != nil:
		return h.stop()
	}
	return false
}

package session

import (
	"context"
	"sync"
	"time"
)

// Store keeps the pins: for each session id, the endpoint it is pinned to,
// named by its URL as configured (so that replicas agree whatever order they
// list their endpoints in). A pin not used for the store's time-to-live is
// forgotten; every method that reads or writes a pin refreshes it. Every
// method is bounded by its context; an error means the store could not
// answer, not that the id has no pin.
type Store interface {
	// Lookup returns the endpoint id is pinned to, or "" if none.
	Lookup(ctx context.Context, id string) (string, error)
	// Claim pins id to endpoint unless it has a pin, atomically, and returns
	// the pin in force: endpoint, or the one another request claimed first.
	Claim(ctx context.Context, id, endpoint string) (string, error)
	// Repin moves id's pin to to if it still names from (or is gone), and
	// returns the pin in force: to, or the one another request moved it to.
	Repin(ctx context.Context, id, from, to string) (string, error)
	// Forget removes id's pin if it names endpoint.
	Forget(ctx context.Context, id, endpoint string) error
	// Ping reports whether the store can be reached.
	Ping(ctx context.Context) error
	// Close lets go of the store's connections.
	Close() error
}

// Memory is a Store in the process's memory: pins are not shared with other
// replicas and do not outlive the process. It is safe for concurrent use.
type Memory struct {
	ttl time.Duration
	now func() time.Time

	mu   sync.Mutex
	pins map[string]memoryPin
	// sweepAt is when the map is next cleared of expired pins.
	sweepAt time.Time
}

// memoryPin is one pin of a Memory store.
type memoryPin struct {
	endpoint string
	expires  time.Time
}

// NewMemory returns an empty Memory store whose pins expire ttl after their
// last use. now is the clock (time.Now if nil).
func NewMemory(ttl time.Duration, now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{ttl: ttl, now: now, pins: make(map[string]memoryPin)}
}

// Lookup implements Store.
func (m *Memory) Lookup(_ context.Context, id string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.touch(id), nil
}

// Claim implements Store.
func (m *Memory) Claim(_ context.Context, id, endpoint string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if owner := m.touch(id); owner != "" {
		return owner, nil
	}
	m.set(id, endpoint)
	return endpoint, nil
}

// Repin implements Store.
func (m *Memory) Repin(_ context.Context, id, from, to string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if owner := m.touch(id); owner != "" && owner != from {
		return owner, nil
	}
	m.set(id, to)
	return to, nil
}

// Forget implements Store.
func (m *Memory) Forget(_ context.Context, id, endpoint string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.touch(id) == endpoint {
		delete(m.pins, id)
	}
	return nil
}

// Ping implements Store: memory is always there.
func (m *Memory) Ping(context.Context) error { return nil }

// Close implements Store.
func (m *Memory) Close() error { return nil }

// Len returns the number of pins held, expired ones left out.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(m.now(), true)
	return len(m.pins)
}

// touch returns id's pin and refreshes it, or "" if it has none (an expired
// one is dropped). m.mu is held.
func (m *Memory) touch(id string) string {
	now := m.now()
	m.sweep(now, false)
	p, ok := m.pins[id]
	if !ok {
		return ""
	}
	if !now.Before(p.expires) {
		delete(m.pins, id)
		return ""
	}
	p.expires = now.Add(m.ttl)
	m.pins[id] = p
	return p.endpoint
}

// set pins id to endpoint for the time-to-live. m.mu is held.
func (m *Memory) set(id, endpoint string) {
	m.pins[id] = memoryPin{endpoint: endpoint, expires: m.now().Add(m.ttl)}
}

// sweep drops the expired pins, at most once per time-to-live unless now
// force is set, so that ids never used again do not pile up. m.mu is held.
func (m *Memory) sweep(now time.Time, force bool) {
	if !force && now.Before(m.sweepAt) {
		return
	}
	m.sweepAt = now.Add(m.ttl)
	for id, p := range m.pins {
		if !now.Before(p.expires) {
			delete(m.pins, id)
		}
	}
}

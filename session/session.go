// Package session owns session affinity: where a request carries its session
// id (a header or a cookie), where an answer gives one out, what the proxy does
// with an id that has no pin, and the pins themselves, from ids to endpoints,
// kept in a Store (in memory, or in Redis shared by replicas). Every call to
// the store is bounded, and the store's going down and coming back is logged
// once per change. Which endpoint a request then goes to is the engine's.
package session

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Unknown is what a request gets whose id has no pin.
type Unknown string

// The values of Unknown.
const (
	// Pin: the id is the client's own; the proxy picks an endpoint and pins
	// the id to it before sending.
	Pin Unknown = "pin"
	// Reject: 404, no endpoint called; ids are given out by the endpoints.
	Reject Unknown = "reject"
)

// UnmarshalText accepts pin or reject.
func (u *Unknown) UnmarshalText(text []byte) error {
	switch v := Unknown(text); v {
	case Pin, Reject:
		*u = v
		return nil
	}
	return fmt.Errorf("%q: accepted: pin or reject", text)
}

// Failover is what a request gets whose pinned endpoint fails or is out.
type Failover string

// The values of Failover.
const (
	// Repin: the other endpoints are tried one at a time, and the id is
	// pinned to the one that answers.
	Repin Failover = "repin"
	// Fail: 503 with Retry-After; the pin stays.
	Fail Failover = "fail"
)

// UnmarshalText accepts repin or fail.
func (f *Failover) UnmarshalText(text []byte) error {
	switch v := Failover(text); v {
	case Repin, Fail:
		*f = v
		return nil
	}
	return fmt.Errorf("%q: accepted: repin or fail", text)
}

// Options configures an Affinity.
type Options struct {
	// Header and Cookie name where a request carries its id; the header is
	// read first. At least one is set.
	Header, Cookie string
	// Unknown is what an id with no pin gets.
	Unknown Unknown
	// Required refuses (400) a request that carries no id.
	Required bool
	// Failover is what a request gets whose pinned endpoint fails.
	Failover Failover
	// Timeout bounds every call to the store.
	Timeout time.Duration
	// Log receives a line when the store goes down and when it is back.
	Log zerolog.Logger
}

// MaxIDBytes is the longest session id a request may carry: a pin is kept for
// every new id, so an id is no place for a payload.
const MaxIDBytes = 1024

// ErrStoreUnavailable wraps every error of the store.
var ErrStoreUnavailable = errors.New("session store unavailable")

// Affinity is the session settings with their store. It is safe for
// concurrent use.
type Affinity struct {
	Options
	store Store
	// down is set while the store's last call failed.
	down atomic.Bool
}

// New returns the affinity of opts, whose pins are in store.
func New(store Store, opts Options) *Affinity {
	return &Affinity{Options: opts, store: store}
}

// Pins returns the number of pins held, and false when the store cannot
// count them cheaply (Redis: every replica's pins are there, under a prefix).
func (a *Affinity) Pins() (int, bool) {
	if m, ok := a.store.(*Memory); ok {
		return m.Len(), true
	}
	return 0, false
}

// ID returns the session id r carries, or "".
func (a *Affinity) ID(r *http.Request) string {
	if a.Header != "" {
		if id := r.Header.Get(a.Header); id != "" {
			return id
		}
	}
	if a.Cookie != "" {
		if c, err := r.Cookie(a.Cookie); err == nil && c.Value != "" {
			return c.Value
		}
	}
	return ""
}

// Given returns the session id an answer's header gives out, in the session
// header or a Set-Cookie of the session cookie, or "". A cookie being deleted
// (expired, or with an empty value) gives none.
func (a *Affinity) Given(h http.Header) string {
	if a.Header != "" {
		if id := h.Get(a.Header); id != "" {
			return id
		}
	}
	if a.Cookie != "" {
		for _, line := range h.Values("Set-Cookie") {
			c, err := http.ParseSetCookie(line)
			if err != nil || c.Name != a.Cookie || c.Value == "" || c.MaxAge < 0 {
				continue
			}
			if !c.Expires.IsZero() && c.Expires.Before(time.Now()) {
				continue
			}
			return c.Value
		}
	}
	return ""
}

// Where says where a request's id is expected, for error bodies: header
// "X-Session-ID", cookie "sid", or both.
func (a *Affinity) Where() string {
	var places []string
	if a.Header != "" {
		places = append(places, "header "+strconv.Quote(a.Header))
	}
	if a.Cookie != "" {
		places = append(places, "cookie "+strconv.Quote(a.Cookie))
	}
	return strings.Join(places, " or ")
}

// Lookup returns the endpoint id is pinned to, or "".
func (a *Affinity) Lookup(id string) (string, error) {
	return a.call(func(ctx context.Context) (string, error) { return a.store.Lookup(ctx, id) })
}

// Claim pins id to endpoint unless it has a pin, and returns the pin in force.
func (a *Affinity) Claim(id, endpoint string) (string, error) {
	return a.call(func(ctx context.Context) (string, error) { return a.store.Claim(ctx, id, endpoint) })
}

// Repin moves id's pin from from to to unless another request moved it
// first, and returns the pin in force.
func (a *Affinity) Repin(id, from, to string) (string, error) {
	return a.call(func(ctx context.Context) (string, error) { return a.store.Repin(ctx, id, from, to) })
}

// Forget removes id's pin if it still names endpoint.
func (a *Affinity) Forget(id, endpoint string) error {
	_, err := a.call(func(ctx context.Context) (string, error) { return "", a.store.Forget(ctx, id, endpoint) })
	return err
}

// Watch pings the store now and then every interval while it is down, until
// ctx ends, so that its coming back is noticed (and logged) without waiting
// for a request. A store unreachable at start-up is so logged, not fatal.
func (a *Affinity) Watch(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for first := true; ; first = false {
		if first || a.down.Load() {
			_, _ = a.call(func(ctx context.Context) (string, error) { return "", a.store.Ping(ctx) })
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// call runs one store call within the time-out, whatever the request's
// context (a client leaving says nothing about the store), and logs the
// store's change of state.
func (a *Affinity) call(f func(context.Context) (string, error)) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), a.Timeout)
	defer cancel()
	result, err := f(ctx)
	if err != nil {
		if !a.down.Swap(true) {
			a.Log.Warn().Err(err).Msg("session store unavailable: requests that need a pin get 503")
		}
		return "", fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	if a.down.Load() && a.down.Swap(false) {
		a.Log.Info().Msg("session store back")
	}
	return result, nil
}

// Close closes the store.
func (a *Affinity) Close() error {
	return a.store.Close()
}

package endpoints

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Order says in which order a request tries the endpoints.
type Order string

const (
	// Priority tries the endpoints in the configured order: the first one
	// first, always. It suits endpoints that cost money per call.
	Priority Order = "priority"
	// RoundRobin starts each request one endpoint further down the list.
	RoundRobin Order = "round-robin"
	// Fastest starts with the endpoint of lowest recent latency (a decaying
	// average, weighted by the requests it has in flight), picked as the
	// better of two chosen at random, so that one fast endpoint is not
	// swamped; the rest follow from fastest to slowest.
	Fastest Order = "fastest"
	// Weighted starts each request with the endpoint that smooth weighted
	// round-robin picks (nginx's: weights 5:1:1 give a a b a c a a, never a
	// burst), and follows with the ones it would pick next.
	Weighted Order = "weighted"
)

// Orders lists the accepted orders, for help and error messages.
const Orders = "priority, round-robin, fastest or weighted"

// UnmarshalText parses an order's name.
func (o *Order) UnmarshalText(text []byte) error {
	switch order := Order(text); order {
	case Priority, RoundRobin, Fastest, Weighted:
		*o = order
		return nil
	}
	return fmt.Errorf("unknown order %q; accepted: %s", text, Orders)
}

// PoolOptions configures a Pool. The zero value orders by priority, caps
// nothing and never ejects.
type PoolOptions struct {
	// Order is the order in which a request tries the endpoints; empty means
	// Priority.
	Order Order
	// MaxInflight caps the attempts one endpoint has in flight; an endpoint at
	// its cap is skipped. If zero, there is no cap.
	MaxInflight int
	// EjectAfter is the number of failures in a row after which an endpoint is
	// skipped for EjectBackoff. If zero, endpoints are never ejected.
	EjectAfter int
	// EjectBackoff is how long an ejected endpoint is first skipped. Each
	// failure after it comes back doubles it, up to EjectBackoffMax; an answer
	// resets it.
	EjectBackoff time.Duration
	// EjectBackoffMax bounds the back-off, and how long a Retry-After may pause
	// an endpoint.
	EjectBackoffMax time.Duration
	// Log receives one line per change of an endpoint's state.
	Log zerolog.Logger
}

// latencyDecay is how fast an endpoint's average latency forgets: a sample
// this old weighs 1/e of a new one. An endpoint that has not been asked for a
// while also looks faster by the same factor, so that it is tried again.
const latencyDecay = 2 * time.Second

// Pool is the endpoints with their runtime state: health, attempts in flight
// and recent latency. It decides the order in which each request tries them.
// It is safe for concurrent use.
type Pool struct {
	list List
	// byURL has each endpoint's index by its base URL.
	byURL   map[string]int
	opts    PoolOptions
	states  []*state
	started atomic.Uint64 // requests planned, for round-robin
	// turns are smooth weighted round-robin's current weights, by index.
	turnsMu sync.Mutex
	turns   []int
	now     func() time.Time
}

// state is one endpoint's runtime state.
type state struct {
	inflight atomic.Int64

	mu sync.Mutex
	// failures counts failures in a row.
	failures int
	// ejections counts ejections in a row, for the back-off.
	ejections    int
	ejectedUntil time.Time
	pausedUntil  time.Time
	// latency is the decaying average time to response headers, in seconds,
	// as of sampled.
	latency float64
	sampled time.Time
	// ejectionsTotal counts every ejection, for the metrics; changed is when
	// the state last changed by an event (an ejection, a return, a pause).
	ejectionsTotal uint64
	changed        time.Time
}

// The states of an endpoint, as Status gives them.
const (
	StateUp      = "up"
	StateEjected = "ejected"
	StatePaused  = "paused"
)

// Status is one endpoint's state, as the admin listener shows it.
type Status struct {
	// State is StateUp, StateEjected or StatePaused (by Retry-After).
	State string
	// InFlight counts its attempts in flight.
	InFlight int64
	// Ejections counts its ejections since it joined the pool (a reload that
	// keeps it keeps them).
	Ejections uint64
	// Since is when its state last changed: an ejection, a return, a pause or
	// its end; the pool's making for one that never changed.
	Since time.Time
}

// NewPool returns the pool of list's endpoints.
func NewPool(list List, opts PoolOptions) *Pool {
	if opts.Order == "" {
		opts.Order = Priority
	}
	opts.EjectBackoffMax = max(opts.EjectBackoffMax, opts.EjectBackoff)
	p := &Pool{list: list, byURL: make(map[string]int, len(list)), opts: opts, states: make([]*state, len(list)), turns: make([]int, len(list)), now: time.Now}
	for i := range p.states {
		p.states[i] = &state{changed: p.now()}
		p.byURL[list[i].String()] = i
	}
	return p
}

// Len returns the number of endpoints.
func (p *Pool) Len() int {
	return len(p.list)
}

// Plan returns the endpoints one request may try, in the order it should try
// them. Ejected and paused endpoints are left out, unless every endpoint is,
// in which case all are tried anyway.
func (p *Pool) Plan() List {
	now := p.now()
	plan := make(List, 0, len(p.list))
	for i, e := range p.list {
		if p.states[i].available(now) {
			plan = append(plan, e)
		}
	}
	if len(plan) == 0 {
		plan = append(plan, p.list...)
	}
	switch p.opts.Order {
	case RoundRobin:
		turn := int((p.started.Add(1) - 1) % uint64(len(plan)))
		slices.Reverse(plan[:turn])
		slices.Reverse(plan[turn:])
		slices.Reverse(plan)
	case Fastest:
		p.orderByLatency(plan, now)
	case Weighted:
		p.orderByWeight(plan)
	}
	return plan
}

// orderByWeight puts plan in smooth weighted round-robin order: first the
// endpoint it picks for this request (which moves its turns on), then the
// ones it would pick next among the others.
func (p *Pool) orderByWeight(plan List) {
	p.turnsMu.Lock()
	defer p.turnsMu.Unlock()
	pick := func(among List, turns []int) int {
		best, total := -1, 0
		for i, e := range among {
			turns[e.Index] += e.weight()
			total += e.weight()
			if best < 0 || turns[e.Index] > turns[among[best].Index] {
				best = i
			}
		}
		turns[among[best].Index] -= total
		return best
	}
	first := pick(plan, p.turns)
	plan[0], plan[first] = plan[first], plan[0]
	// The rest, on a copy of the turns: only a request's first endpoint
	// counts as its pick.
	turns := slices.Clone(p.turns)
	for rest := plan[1:]; len(rest) > 1; rest = rest[1:] {
		next := pick(rest, turns)
		rest[0], rest[next] = rest[next], rest[0]
	}
}

// orderByLatency sorts plan from fastest to slowest, then puts first the better
// of two endpoints picked at random (the power of two choices).
func (p *Pool) orderByLatency(plan List, now time.Time) {
	scores := make(map[int]float64, len(plan))
	for _, e := range plan {
		scores[e.Index] = p.states[e.Index].score(now)
	}
	slices.SortStableFunc(plan, func(a, b Endpoint) int { return cmp.Compare(scores[a.Index], scores[b.Index]) })
	if len(plan) <= 2 {
		return
	}
	first, second := rand.IntN(len(plan)), rand.IntN(len(plan)-1)
	if second >= first {
		second++
	}
	pick := min(first, second) // plan is sorted, so the lower index scores better
	chosen := plan[pick]
	copy(plan[1:pick+1], plan[:pick])
	plan[0] = chosen
}

// Inherit takes over old's state (health, ejection, latency, attempts in
// flight) for each endpoint whose base URL old has too, so that a reload
// changes nothing for an endpoint that stays. Call it before p is used.
func (p *Pool) Inherit(old *Pool) {
	for i, e := range p.list {
		if j, ok := old.byURL[e.String()]; ok {
			p.states[i] = old.states[j]
		}
	}
}

// Usable reports whether some endpoint may be tried now: not ejected, not
// paused by Retry-After.
func (p *Pool) Usable() bool {
	now := p.now()
	for _, s := range p.states {
		if s.available(now) {
			return true
		}
	}
	return false
}

// List returns the endpoints, in their configured order.
func (p *Pool) List() List {
	return p.list
}

// Status returns the state of the endpoint at index.
func (p *Pool) Status(index int) Status {
	s, now := p.states[index], p.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	status := Status{State: StateUp, InFlight: s.inflight.Load(), Ejections: s.ejectionsTotal, Since: s.changed}
	switch {
	case now.Before(s.ejectedUntil):
		status.State = StateEjected
	case now.Before(s.pausedUntil):
		status.State = StatePaused
	}
	for _, end := range []time.Time{s.ejectedUntil, s.pausedUntil} {
		if !now.Before(end) && end.After(status.Since) {
			status.Since = end
		}
	}
	return status
}

// Find returns the endpoint whose base URL, as configured, is url.
func (p *Pool) Find(url string) (Endpoint, bool) {
	i, ok := p.byURL[url]
	if !ok {
		return Endpoint{}, false
	}
	return p.list[i], true
}

// HasRoom reports whether e is under its in-flight cap now.
func (p *Pool) HasRoom(e Endpoint) bool {
	limit := p.maxInflight(e)
	return limit <= 0 || p.states[e.Index].inflight.Load() < int64(limit)
}

// maxInflight is e's in-flight cap: its own, else the pool's; 0 for none.
func (p *Pool) maxInflight(e Endpoint) int {
	if own := p.list[e.Index].MaxInflight; own > 0 {
		return own
	}
	return p.opts.MaxInflight
}

// RetryIn returns how long e stays ejected or paused, 0 if it is neither.
func (p *Pool) RetryIn(e Endpoint) time.Duration {
	s := p.states[e.Index]
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.ejectedUntil.Sub(p.now()), s.pausedUntil.Sub(p.now()), 0)
}

// Acquire takes one of e's in-flight places. It returns false, taking nothing,
// when e is at its cap. Every true must be matched by one Release.
func (p *Pool) Acquire(e Endpoint) bool {
	inflight, limit := &p.states[e.Index].inflight, p.maxInflight(e)
	if limit <= 0 {
		inflight.Add(1)
		return true
	}
	for {
		n := inflight.Load()
		if n >= int64(limit) {
			return false
		}
		if inflight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Release gives back the place taken by Acquire, once e's attempt is over,
// body included.
func (p *Pool) Release(e Endpoint) {
	p.states[e.Index].inflight.Add(-1)
}

// Answered records that e answered (with a terminal status) after latency: it
// counts as healthy again and its latency joins its average.
func (p *Pool) Answered(e Endpoint, latency time.Duration) {
	s := p.states[e.Index]
	now := p.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sample(latency, now)
	p.recover(e, s, "answered")
}

// Outpaced records that e had not answered after waited when another endpoint
// won the race: its average latency learns that it was at least that slow.
func (p *Pool) Outpaced(e Endpoint, waited time.Duration) {
	s := p.states[e.Index]
	now := p.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sample(waited, now)
}

// Failed records one failure of e (an error, a time-out or a non-terminal
// status); EjectAfter of them in a row eject it.
func (p *Pool) Failed(e Endpoint, reason error) {
	if p.opts.EjectAfter <= 0 {
		return
	}
	s := p.states[e.Index]
	now := p.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.ejectedUntil) {
		// Attempts that started before the ejection say nothing new.
		return
	}
	s.failures++
	if s.failures < p.opts.EjectAfter {
		return
	}
	backoff := p.opts.EjectBackoff << min(s.ejections, 30)
	if backoff <= 0 || backoff > p.opts.EjectBackoffMax {
		backoff = p.opts.EjectBackoffMax
	}
	s.ejections++
	s.ejectionsTotal++
	s.ejectedUntil, s.changed = now.Add(backoff), now
	p.opts.Log.Warn().Int("endpoint", e.Index).Str("url", e.String()).Int("failures", s.failures).
		Stringer("for", backoff).AnErr("last_failure", reason).Msg("endpoint ejected")
}

// Pause skips e for d, as its Retry-After asked; d is capped at
// EjectBackoffMax, or an hour when that is zero.
func (p *Pool) Pause(e Endpoint, d time.Duration) {
	limit := p.opts.EjectBackoffMax
	if limit <= 0 {
		limit = time.Hour
	}
	d = min(d, limit)
	s := p.states[e.Index]
	until := p.now().Add(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !until.After(s.pausedUntil) {
		return
	}
	wasPaused := s.pausedUntil.After(p.now())
	s.pausedUntil = until
	if !wasPaused {
		s.changed = p.now()
		p.opts.Log.Warn().Int("endpoint", e.Index).Str("url", e.String()).Stringer("for", d).Msg("endpoint paused by Retry-After")
	}
}

// Probed records the result of an active health check of the endpoint at
// index: a success brings an ejected endpoint back at once; a failure counts
// like a failed attempt. A pause asked for by Retry-After is kept either way.
func (p *Pool) Probed(index int, err error) {
	e := p.list[index]
	if err != nil {
		p.Failed(e, fmt.Errorf("health check: %w", err))
		return
	}
	s := p.states[index]
	s.mu.Lock()
	defer s.mu.Unlock()
	p.recover(e, s, "health check passed")
}

// recover resets s after a success, logging the return of an ejected endpoint.
// s.mu is held.
func (p *Pool) recover(e Endpoint, s *state, why string) {
	if s.ejections > 0 {
		if now := p.now(); now.Before(s.ejectedUntil) {
			s.changed = now
		}
		p.opts.Log.Info().Int("endpoint", e.Index).Str("url", e.String()).Str("because", why).Msg("endpoint back")
	}
	s.failures, s.ejections, s.ejectedUntil = 0, 0, time.Time{}
}

// available reports whether the endpoint may be tried at now.
func (s *state) available(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !now.Before(s.ejectedUntil) && !now.Before(s.pausedUntil)
}

// sample adds one latency to the decaying average. s.mu is held.
func (s *state) sample(latency time.Duration, now time.Time) {
	weight := math.Exp(-now.Sub(s.sampled).Seconds() / latencyDecay.Seconds())
	s.latency = weight*s.latency + (1-weight)*latency.Seconds()
	s.sampled = now
}

// score is the endpoint's expected cost of one more request: its average
// latency, faded by how long ago it was measured, times the attempts it
// already has in flight plus this one.
func (s *state) score(now time.Time) float64 {
	s.mu.Lock()
	faded := s.latency * math.Exp(-now.Sub(s.sampled).Seconds()/(5*latencyDecay.Seconds()))
	s.mu.Unlock()
	return faded * float64(s.inflight.Load()+1)
}

package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

	"balancing-reverse-proxy/config"
	"balancing-reverse-proxy/fanout"
	"balancing-reverse-proxy/wire"
)

// liveRoutes serves every request through the set of engines in force, and
// swaps a new set in on a reload: requests that started keep the set they
// started with, which stops once the last of them is done.
type liveRoutes struct {
	current atomic.Pointer[routedEngines]
	// cache has the endpoints' transports, closed when no set uses them.
	cache *transportCache
	mu    sync.Mutex
	// sets are every set not stopped yet: the one in force and those
	// retiring.
	sets map[*routedEngines]bool
	// retiring counts the sets waiting for their last request.
	retiring sync.WaitGroup
}

// newLiveRoutes serves r, whose endpoints' transports are in cache.
func newLiveRoutes(r *routedEngines, cache *transportCache) *liveRoutes {
	l := &liveRoutes{cache: cache, sets: map[*routedEngines]bool{r: true}}
	l.current.Store(r)
	return l
}

// ServeHTTP serves req through the set in force when it arrived.
func (l *liveRoutes) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r := l.acquire()
	defer r.refs.Add(-1)
	r.handler.ServeHTTP(w, req)
}

// acquire returns the set in force with a reference taken: one that a swap
// has replaced in the meantime is let go and the new one taken, so that a
// retired set is never used after its last reference is given back.
func (l *liveRoutes) acquire() *routedEngines {
	for {
		r := l.current.Load()
		r.refs.Add(1)
		if l.current.Load() == r {
			return r
		}
		r.refs.Add(-1)
	}
}

// swap puts next in force and retires the set it replaces: that one stops
// once its last request is done.
func (l *liveRoutes) swap(next *routedEngines) *routedEngines {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range next.engines {
		e.handOver()
	}
	l.sets[next] = true
	previous := l.current.Swap(next)
	l.retiring.Add(1)
	go func() {
		defer l.retiring.Done()
		for previous.refs.Load() > 0 {
			time.Sleep(10 * time.Millisecond)
		}
		previous.stop()
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.sets, previous)
		// The connections to endpoints no set has any more are closed now.
		inUse := map[string]bool{}
		for r := range l.sets {
			maps.Copy(inUse, r.transportKeys)
		}
		l.cache.keep(inUse)
	}()
	return previous
}

// closeTunnels closes the upgraded connections of every set not stopped.
func (l *liveRoutes) closeTunnels() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for r := range l.sets {
		r.closeTunnels()
	}
}

// retireWait bounds how long stop waits for the retiring sets' last
// requests, which the server's shutdown has ended or cut already.
const retireWait = 5 * time.Second

// stop waits (a while) for the retiring sets, then stops the one in force and
// closes every endpoint's connections.
func (l *liveRoutes) stop() {
	retired := make(chan struct{})
	go func() { l.retiring.Wait(); close(retired) }()
	select {
	case <-retired:
	case <-time.After(retireWait):
	}
	l.current.Load().stop()
	l.cache.keep(nil)
}

// reloader reads --config again on SIGHUP and when the file changes, and
// swaps the new routes in when the file is good.
type reloader struct {
	cli       *CLI
	live      *liveRoutes
	transport *wire.Transport
	cache     *transportCache
	replay    *fanout.ReplayMemory
	logger    zerolog.Logger
	// listen and admin are the addresses of the listener and the admin
	// listener, which a reload cannot move.
	listen, admin string
	// digest is the SHA-256 of the file last read (the one in force, or a
	// bad one since), so that an event that did not change it (a touch)
	// reloads nothing and a bad file is logged once.
	digest [sha256.Size]byte
}

// settleDelay is how long a change of the file must be quiet before it is
// read: an editor writes in steps, and a config map swaps a symlink.
const settleDelay = 200 * time.Millisecond

// triggers are what reloads the configuration: SIGHUP, and the events of
// the file's directory (none when it cannot be watched).
type triggers struct {
	hup     chan os.Signal
	watcher *fsnotify.Watcher
}

// watch starts taking the triggers. It runs before the proxy says it
// listens, so that neither a SIGHUP (whose default ends the process) nor a
// change of the file made right after goes by unseen.
func (rl *reloader) watch() triggers {
	t := triggers{hup: make(chan os.Signal, 1)}
	signal.Notify(t.hup, syscall.SIGHUP)
	watcher, err := fsnotify.NewWatcher()
	if err == nil {
		if err = watcher.Add(filepath.Dir(rl.cli.Config)); err != nil {
			watcher.Close()
		}
	}
	if err != nil {
		rl.logger.Warn().Err(err).Msg("not watching --config for changes; SIGHUP still reloads it")
		return t
	}
	t.watcher = watcher
	return t
}

// stop stops taking the triggers.
func (t triggers) stop() {
	signal.Stop(t.hup)
	if t.watcher != nil {
		t.watcher.Close()
	}
}

// run reloads until ctx ends: on SIGHUP whatever the file holds, on a change
// in the file's directory when its content changed. It stops t at its end.
func (rl *reloader) run(ctx context.Context, t triggers) {
	defer t.stop()
	var events chan fsnotify.Event
	var errs chan error
	if t.watcher != nil {
		events, errs = t.watcher.Events, t.watcher.Errors
	}
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.hup:
			rl.reload("SIGHUP", true)
		case event := <-events:
			if rl.concerns(event) {
				settle.Reset(settleDelay)
			}
		case err := <-errs:
			// Read, or the watcher stalls on its next error and sends no more
			// events. Events may be lost (an overflow): the file is read again,
			// and reloaded if its content changed.
			rl.logger.Warn().Err(err).Msg("watching --config; reading it again in case a change was missed")
			settle.Reset(settleDelay)
		case <-settle.C:
			rl.reload("file changed", false)
		}
	}
}

// concerns reports whether event in the file's directory may have changed
// the file: one on its name (a write, or an editor's rename over it), or on
// a name starting with "..", as the symlinks of a Kubernetes config map
// swapped in one step. The others (a log file next to it) are not its.
func (rl *reloader) concerns(event fsnotify.Event) bool {
	return filepath.Clean(event.Name) == filepath.Clean(rl.cli.Config) || strings.HasPrefix(filepath.Base(event.Name), "..")
}

// reload reads the file and, when it is good (and changed, unless always),
// swaps its routes in; a bad file leaves the routes in force and is logged
// problem by problem.
func (rl *reloader) reload(why string, always bool) {
	data, err := os.ReadFile(rl.cli.Config)
	if err != nil {
		rl.counted(false)
		rl.logger.Error().Err(err).Str("because", why).Msg("configuration not reloaded; the one in force stays")
		return
	}
	digest := sha256.Sum256(data)
	if digest == rl.digest && !always {
		return
	}
	// A bad file is logged once, not again at every event until it changes.
	rl.digest = digest
	c := *rl.cli
	previous := rl.live.current.Load()
	next, err := c.routed(rl.transport, rl.cache, rl.replay, previous, rl.logger)
	if err != nil {
		rl.counted(false)
		var problems config.Problems
		if errors.As(err, &problems) {
			for _, p := range problems {
				rl.logger.Error().Str("problem", p).Msg("configuration not reloaded; the one in force stays")
			}
			return
		}
		rl.logger.Error().Err(err).Str("because", why).Msg("configuration not reloaded; the one in force stays")
		return
	}
	if next.file.Listen != "" && !rl.cli.given["address"] && next.file.Listen != rl.listen {
		rl.logger.Warn().Str("listen", next.file.Listen).Str("in_force", rl.listen).Msg("listen changed: it takes a restart; the listener stays")
	}
	// What was loaded, which may be newer than what was read above: a
	// change between the two reads is then not missed.
	if _, admin := c.adminAddress(); admin != rl.admin {
		rl.logger.Warn().Str("admin", admin).Str("in_force", rl.admin).Msg("admin changed: it takes a restart; the admin listener stays")
	}
	rl.digest = next.file.Digest
	rl.live.swap(next)
	if m := rl.cli.metrics; m != nil {
		m.Serve(next.observed())
	}
	rl.counted(true)
	line := rl.logger.Info().Str("because", why).Int("routes", len(next.file.Routes))
	if changes := describeChanges(previous.file, next.file); len(changes) > 0 {
		line = line.Strs("changes", changes)
	}
	line.Msg("configuration reloaded")
}

// counted counts a reload in the metrics, if there are any.
func (rl *reloader) counted(ok bool) {
	if m := rl.cli.metrics; m != nil {
		m.Reloaded(ok)
	}
}

// describeChanges says what changed from old to next: routes added,
// removed or changed, and of a changed route the endpoints added and removed.
func describeChanges(old, next *config.File) []string {
	var changes []string
	before := map[string]config.Route{}
	for _, r := range old.Routes {
		before[r.Name] = r
	}
	seen := map[string]bool{}
	for _, r := range next.Routes {
		seen[r.Name] = true
		o, ok := before[r.Name]
		switch {
		case !ok:
			changes = append(changes, "route "+r.Name+" added")
			continue
		case sameRoute(o, r):
			continue
		}
		changes = append(changes, "route "+r.Name+" changed")
		urls := map[string]bool{}
		for _, e := range o.Endpoints {
			urls[e.URL] = true
		}
		for _, e := range r.Endpoints {
			if !urls[e.URL] {
				changes = append(changes, fmt.Sprintf("route %s: endpoint %s added", r.Name, e.URL))
			}
			delete(urls, e.URL)
		}
		for _, e := range o.Endpoints {
			if urls[e.URL] {
				changes = append(changes, fmt.Sprintf("route %s: endpoint %s removed", r.Name, e.URL))
			}
		}
	}
	for _, r := range old.Routes {
		if !seen[r.Name] {
			changes = append(changes, "route "+r.Name+" removed")
		}
	}
	return changes
}

// sameRoute reports whether a and b are the same route, wherever they are in
// their files.
func sameRoute(a, b config.Route) bool {
	a.Line, b.Line = 0, 0
	return reflect.DeepEqual(a, b)
}

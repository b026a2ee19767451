// Package stats owns the admin listener's stats page (/) and its figures as
// JSON (/stats.json): the metrics' snapshot of each route, sampled every
// Interval into a minute of history, from which come each endpoint's recent
// latency quantiles and its sparkline. The page is one embedded HTML file,
// rendered on the server first and then refreshed by its own script from
// /stats.json.
package stats

import (
	"context"
	_ "embed"
	"encoding/json"
	"html/template"
	"net/http"
	"sync"
	"time"

	"balancing-reverse-proxy/metrics"
)

// Interval is how often the history is sampled and the page refreshes.
const Interval = 2 * time.Second

// historyLength is the samples kept: a minute.
const historyLength = int(time.Minute/Interval) + 1

//go:embed page.html
var pageHTML string

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"ms": formatMs, "ago": formatAgo, "spark": sparkPoints, "share": formatShare,
}).Parse(pageHTML))

// Stats serves the page and the JSON from m's snapshots.
type Stats struct {
	metrics *metrics.Metrics
	mu      sync.Mutex
	// history has the samples, oldest first, at most historyLength.
	history []metrics.Snapshot
}

// New returns the stats of m, with one sample taken.
func New(m *metrics.Metrics) *Stats {
	s := &Stats{metrics: m}
	s.sample()
	return s
}

// Run samples every Interval until ctx ends.
func (s *Stats) Run(ctx context.Context) {
	ticker := time.NewTicker(Interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			s.sample()
		}
	}
}

// sample adds a snapshot to the history.
func (s *Stats) sample() {
	snapshot := s.metrics.Snapshot()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.history = append(s.history, snapshot)
	if len(s.history) > historyLength {
		s.history = s.history[len(s.history)-historyLength:]
	}
}

// Page serves the stats page, rendered with the figures of now.
func (s *Stats) Page(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = page.Execute(w, s.Report())
}

// JSON serves the figures of now, as the page's script reads them.
func (s *Stats) JSON(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(s.Report())
}

// Report returns the figures of now, with the history's.
func (s *Stats) Report() Report {
	now := s.metrics.Snapshot()
	s.mu.Lock()
	samples := append(append([]metrics.Snapshot(nil), s.history...), now)
	s.mu.Unlock()
	return report(samples)
}

package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range: 1µs to 60s, 3 significant figures; values are microseconds.
const (
	histogramLowest  = 1
	histogramHighest = int64(60 * time.Second / time.Microsecond)
	histogramFigures = 3
)

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histogramLowest, histogramHighest, histogramFigures)
}

// recordDuration records d in microseconds, clamped to the histogram's range
// so that nothing is lost.
func recordDuration(h *hdrhistogram.Histogram, d time.Duration) {
	us := max(int64(d/time.Microsecond), histogramLowest)
	_ = h.RecordValue(min(us, histogramHighest))
}

// load is one open-loop run: Rate requests per second to URL, first for Warmup
// (sent but not recorded), then for Duration (recorded). Each request is due at
// its intended time, start + i/Rate, and fired then in its own goroutine
// whatever the earlier ones are doing; its latency is counted from the intended
// time, so a proxy (or harness) that falls behind cannot hide its queueing.
type load struct {
	Client   *http.Client
	URL      string
	Rate     float64
	Warmup   time.Duration
	Duration time.Duration
	// Timeout bounds each request from its actual send; a request that runs
	// out counts as an error.
	Timeout time.Duration
	// MaxInFlight bounds the requests outstanding at once; a request due while
	// that many are outstanding is not sent and counts as dropped.
	MaxInFlight int
	// Header, if not nil, is sent with every request.
	Header http.Header
	// OnMeasure, if not nil, is called once, at the intended time of the first
	// measured request and before it is sent.
	OnMeasure func()
}

// loadResult is what a load run measured; warm-up requests are in none of it.
type loadResult struct {
	// Requests counts the measured requests sent (dropped ones are not).
	Requests int64
	// Non2xx counts answers with a status outside 200-299, Errors requests with
	// no answer or a broken body (time-outs included). Every sent request's
	// latency is in Latency, whatever its outcome.
	Non2xx  int64
	Errors  int64
	Dropped int64
	// Latency is from the intended send time to the end of the body, SendLag
	// from the intended to the actual send time, both in microseconds.
	Latency *hdrhistogram.Histogram
	SendLag *hdrhistogram.Histogram
	// FirstError is the first request error, for the report's notes.
	FirstError string
}

// phaseCounts returns how many requests the warm-up and the measured phase
// have at rate per second; the measured phase has at least one.
func phaseCounts(rate float64, warmup, duration time.Duration) (warm, measured int) {
	warm = int(math.Round(warmup.Seconds() * rate))
	measured = max(int(math.Round(duration.Seconds()*rate)), 1)
	return warm, measured
}

// intendedTime returns when request i (from 0, warm-up included) is due.
func intendedTime(start time.Time, i int, rate float64) time.Time {
	return start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
}

// recorder collects the measured requests' outcomes from their goroutines.
type recorder struct {
	mu     sync.Mutex
	result loadResult
}

func (rec *recorder) record(latency, lag time.Duration, status int, err error) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	recordDuration(rec.result.Latency, latency)
	recordDuration(rec.result.SendLag, lag)
	switch {
	case err != nil:
		rec.result.Errors++
		if rec.result.FirstError == "" {
			rec.result.FirstError = err.Error()
		}
	case status < 200 || status > 299:
		rec.result.Non2xx++
	}
}

// run sends the load and returns when every request sent has finished, which
// Timeout bounds. When ctx ends it stops sending, cancels what is in flight and
// returns what it measured with ctx's error.
func (l load) run(ctx context.Context) (loadResult, error) {
	warm, measured := phaseCounts(l.Rate, l.Warmup, l.Duration)
	rec := &recorder{result: loadResult{Latency: newHistogram(), SendLag: newHistogram()}}
	var sent, dropped atomic.Int64
	inFlight := make(chan struct{}, l.MaxInFlight)
	var wg sync.WaitGroup

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// Start a little ahead so that the first requests are not late already.
	start := time.Now().Add(10 * time.Millisecond)
	for i := 0; i < warm+measured && ctx.Err() == nil; i++ {
		due := intendedTime(start, i, l.Rate)
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				continue
			}
		}
		isMeasured := i >= warm
		if i == warm && l.OnMeasure != nil {
			l.OnMeasure()
		}
		select {
		case inFlight <- struct{}{}:
		default:
			if isMeasured {
				dropped.Add(1)
			}
			continue
		}
		if isMeasured {
			sent.Add(1)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-inFlight }()
			l.fire(ctx, due, isMeasured, rec)
		}()
	}
	wg.Wait()
	return rec.snapshot(sent.Load(), dropped.Load()), ctx.Err()
}

func (rec *recorder) snapshot(sent, dropped int64) loadResult {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	result := rec.result
	result.Requests = sent
	result.Dropped = dropped
	return result
}

// fire sends one request due at due, reads its body and records it if it
// belongs to the measured phase.
func (l load) fire(ctx context.Context, due time.Time, isMeasured bool, rec *recorder) {
	lag := time.Since(due)
	ctx, cancel := context.WithTimeout(ctx, l.Timeout)
	defer cancel()
	phase := phaseWarmup
	if isMeasured {
		phase = phaseMeasured
	}
	status, err := get(ctx, l.Client, l.URL, phase, l.Header)
	latency := time.Since(due)
	if isMeasured {
		rec.record(latency, lag, status, err)
	}
}

// get sends a GET tagged with phase, with header (which may be nil), and
// reads the whole body.
func get(ctx context.Context, client *http.Client, url, phase string, header http.Header) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	for name, values := range header {
		req.Header[name] = values
	}
	req.Header.Set(phaseHeader, phase)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return resp.StatusCode, fmt.Errorf("reading the body: %w", err)
	}
	return resp.StatusCode, nil
}

// requestHeader returns the header of a row's "Name: value", nil for "".
func requestHeader(line string) http.Header {
	name, value, ok := strings.Cut(line, ":")
	if !ok {
		return nil
	}
	return http.Header{http.CanonicalHeaderKey(strings.TrimSpace(name)): {strings.TrimSpace(value)}}
}

// newClient returns the load generator's client: keep-alive connections enough
// for a burst of slow answers, no environment proxy, no compression. The
// per-request time-out is the load's, not the client's.
func newClient() *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext:         dialer.DialContext,
		MaxIdleConns:        1000,
		MaxIdleConnsPerHost: 1000,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
}

package fanout

import (
	"context"
	"io"
	"sync/atomic"
	"time"

	"balancing-reverse-proxy/endpointresponse"
)

// smallAnswer bounds the answers whose copy the losers may outlast, and the
// loser bodies read out rather than cut: over HTTP/1 a loser can only be
// stopped by closing its connection, and the next request then needs a new
// one, which costs more than reading a small body that is already there.
const smallAnswer = 64 << 10

// drainWait bounds how long the losers may outlast a small answer's copy,
// and then the time spent reading out the bodies of those that answered.
const drainWait = 5 * time.Millisecond

// losers settles a request's attempts other than the winner: it cuts them at
// once, or lets them run on while a small winner is copied and then reads out
// those that answered, so that their connections carry other requests. It
// holds each attempt's cancel function, numbered from 1.
type losers struct {
	cancels []context.CancelFunc
	// cancelsArray backs cancels for requests with few attempts, saving an
	// allocation.
	cancelsArray [3]context.CancelFunc
	// answered has bit n-1 set once attempt n has its headers (attempts past
	// the 64th are never marked, and so always cut).
	answered atomic.Uint64
	// cut cancels the losers still waiting for their headers once a small
	// winner's copy takes longer than drainWait.
	cut *time.Timer
	// drainBy is when reading out the losers' bodies stops, set by the first.
	drainBy time.Time
}

// add records the cancel function of the next attempt.
func (l *losers) add(cancel context.CancelFunc) {
	if l.cancels == nil {
		l.cancels = l.cancelsArray[:0]
	}
	l.cancels = append(l.cancels, cancel)
}

// markAnswered records that attempt number has its headers. It may be called
// from the attempt's goroutine.
func (l *losers) markAnswered(number int) {
	if number <= 64 {
		l.answered.Or(1 << (number - 1))
	}
}

// settle stops the attempts other than winner: at once, unless the winner's
// answer is small, in which case they may go on while it is copied, for up
// to drainWait (inline attempts have all ended already).
func (l *losers) settle(winner *endpointresponse.Outcome, inline bool) {
	if length := winner.Response.ContentLength; length < 0 || length > smallAnswer {
		l.cancelAllBut(winner)
		return
	}
	if !inline && len(l.cancels) > 1 {
		l.cut = time.AfterFunc(drainWait, func() { l.cancelUnanswered(winner) })
	}
}

// cancelUnanswered cancels the attempts other than keep (nil: none kept)
// that have no answer yet; those that have one are left to be read out.
func (l *losers) cancelUnanswered(keep *endpointresponse.Outcome) {
	answered := l.answered.Load()
	for i, cancel := range l.cancels {
		if (keep == nil || i != keep.Attempt-1) && (i >= 64 || answered&(1<<i) == 0) {
			cancel()
		}
	}
}

// cancelAllBut cancels every attempt except keep's (nil: every one).
func (l *losers) cancelAllBut(keep *endpointresponse.Outcome) {
	for i, cancel := range l.cancels {
		if keep == nil || i != keep.Attempt-1 {
			cancel()
		}
	}
}

// stopCut stops the timer of settle, once the winner is copied.
func (l *losers) stopCut() {
	if l.cut != nil {
		l.cut.Stop()
	}
}

// drain reads out the body of a loser's small answer, within drainWait of the
// first one drained, so that its HTTP/1 connection goes back to the pool
// rather than being closed; then it closes the outcome.
func (l *losers) drain(outcome *endpointresponse.Outcome) {
	defer outcome.Close()
	resp := outcome.Response
	if resp == nil || resp.ContentLength < 0 || resp.ContentLength > smallAnswer || outcome.Cancel == nil {
		return
	}
	if l.drainBy.IsZero() {
		l.drainBy = time.Now().Add(drainWait)
	}
	left := time.Until(l.drainBy)
	if left <= 0 {
		return
	}
	cut := time.AfterFunc(left, outcome.Cancel)
	defer cut.Stop()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, smallAnswer+1))
}

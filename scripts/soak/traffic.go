package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Outcomes of a client's request: the columns of the traffic table.
const (
	// outcomeOK is a 2xx answer whose body is the one asked for.
	outcomeOK = "ok"
	// outcomeNon2xx is a whole answer of another status: 502 or 504 when every
	// attempt met a fault, an endpoint's 503, a 400 for a malformed request.
	outcomeNon2xx = "non-2xx"
	// outcomeError is no answer or a cut body: the proxy passing on a fault
	// it cannot hide (a body cut mid-way), or cutting a slow client.
	outcomeError = "error"
	// outcomeLeft is a client that left before or during the answer on purpose.
	outcomeLeft = "left"
	// outcomeCorrupt is a 2xx answer whose body is not the one asked for,
	// such as another request's: never acceptable.
	outcomeCorrupt = "corrupt"
)

// outcomes lists the outcomes in table order.
var outcomes = []string{outcomeOK, outcomeNon2xx, outcomeError, outcomeLeft, outcomeCorrupt}

// Request body sizes.
const (
	smallBody = 1 << 10
	largeBody = 1 << 20
	// hugeBody is over the proxy's default -max-body-buffer (8 MiB), so the
	// proxy streams it to one endpoint instead of replaying it.
	hugeBody = 9 << 20
	// slowBody is sent slowly by slow-upload, in slowPieces pieces.
	slowBody   = 64 << 10
	slowPieces = 8
	// readPiece is what slow-reader reads at a time.
	readPiece = 32 << 10
	// leaveDuringRead is what leave-during reads of a body before it leaves.
	leaveDuringRead = 16 << 10
)

// clientKind is one kind of client of the traffic mix.
type clientKind struct {
	name string
	// weight is its share of the requests, in percent.
	weight int
	do     func(t *traffic, ctx context.Context, id int64) string
}

// clientKinds is the traffic mix; the weights add up to 100.
var clientKinds = []clientKind{
	{"get", 40, (*traffic).get},
	{"get-new-conn", 8, (*traffic).getNewConn},
	{"post-1KiB", 15, func(t *traffic, ctx context.Context, id int64) string { return t.post(ctx, id, "post", smallBody) }},
	{"post-1MiB", 5, func(t *traffic, ctx context.Context, id int64) string { return t.post(ctx, id, "post", largeBody) }},
	{"post-9MiB", 1, func(t *traffic, ctx context.Context, id int64) string { return t.post(ctx, id, "post", hugeBody) }},
	{"leave-before", 8, (*traffic).leaveBefore},
	{"leave-during", 6, (*traffic).leaveDuring},
	{"malformed", 8, (*traffic).malformed},
	{"slow-headers", 3, (*traffic).slowHeaders},
	{"slow-upload", 3, (*traffic).slowUpload},
	{"slow-reader", 3, (*traffic).slowReader},
}

// pickKind returns the kind that owns draw, from 0 to 99.
func pickKind(draw int) clientKind {
	for _, k := range clientKinds {
		if draw < k.weight {
			return k
		}
		draw -= k.weight
	}
	return clientKinds[0]
}

// malformedRequests are sent over raw connections by the malformed kind,
// in turn. Each one should get a 4xx or 5xx, or the connection closed.
var malformedRequests = []string{
	"GARBAGE\r\n\r\n",
	"GET /soak/malformed HTTP/1.1\r\nHost: soak\r\nContent-Length: abc\r\n\r\n",
	"POST /soak/malformed HTTP/1.1\r\nHost: soak\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
	"GET /soak/malformed HTTP/1.1\r\nHost: soak\r\nno colon in this header\r\n\r\n",
	"GET /soak/malformed HTTP/1.1\r\n\r\n",
	"GET /soak/malformed HTTP/9.9\r\nHost: soak\r\n\r\n",
	"POST /soak/malformed HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n",
	"POST /soak/malformed HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
	"GET /soak/malformed HTTP/1.1\r\nHost: soak\r\nX-Nul: a\x00b\r\n\r\n",
	"G\x01T /soak/malformed HTTP/1.1\r\nHost: soak\r\n\r\n",
	"GET /soak/malformed HTTP/1.1\r\nHost: soak\r\nX-Big: " + string(bytes.Repeat([]byte("a"), 1100<<10)) + "\r\n\r\n",
	"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n",
}

// timing holds how long the slow and leaving clients take; tests shorten it.
type timing struct {
	// request bounds every request, from its start to the end of its body.
	request time.Duration
	// leaveBefore is the longest a leave-before client waits before it
	// leaves; its requests ask for leaveBeforeDelay.
	leaveBefore      time.Duration
	leaveBeforeDelay time.Duration
	// slowGap is the pause between the pieces a slow client sends or reads.
	slowGap time.Duration
	// slowHeaders is how long slow-headers keeps sending its headers, a
	// byte per slowGap: longer than the proxy's -read-header-timeout.
	slowHeaders time.Duration
}

// defaultTiming suits a proxy run with -read-header-timeout 2s.
var defaultTiming = timing{
	request:          20 * time.Second,
	leaveBefore:      100 * time.Millisecond,
	leaveBeforeDelay: time.Second,
	slowGap:          100 * time.Millisecond,
	slowHeaders:      3 * time.Second,
}

// traffic is the clients of one proxy.
type traffic struct {
	baseURL string // http://127.0.0.1:port
	addr    string // 127.0.0.1:port
	timing  timing
	// keepAlive keeps connections between requests; fresh opens one per
	// request and closes it after.
	keepAlive *http.Client
	fresh     *http.Client
	nextID    atomic.Int64
}

// newTraffic returns the clients of the proxy at addr (host:port), keeping
// up to maxIdle connections between requests.
func newTraffic(addr string, maxIdle int, tm timing) *traffic {
	return &traffic{
		baseURL: "http://" + addr,
		addr:    addr,
		timing:  tm,
		keepAlive: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: maxIdle,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}},
		fresh: &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true}},
	}
}

// closeIdle closes the connections kept between requests, so that the
// proxy's connections to the clients can go.
func (t *traffic) closeIdle() {
	t.keepAlive.CloseIdleConnections()
	t.fresh.CloseIdleConnections()
}

// trafficStats counts outcomes per kind; it is safe for concurrent use.
type trafficStats struct {
	mu      sync.Mutex
	counts  map[string]map[string]int64 // kind, outcome
	dropped int64
	// firstCorrupt describes the first corrupt answer.
	firstCorrupt string
}

func newTrafficStats() *trafficStats {
	return &trafficStats{counts: make(map[string]map[string]int64)}
}

func (s *trafficStats) add(kind, outcome string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counts[kind] == nil {
		s.counts[kind] = make(map[string]int64)
	}
	s.counts[kind][outcome]++
}

func (s *trafficStats) drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropped++
}

func (s *trafficStats) corrupt(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.firstCorrupt == "" {
		s.firstCorrupt = what
	}
}

// total returns the requests of outcome over every kind, or of every outcome
// when outcome is empty.
func (s *trafficStats) total(outcome string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, byOutcome := range s.counts {
		for o, c := range byOutcome {
			if outcome == "" || o == outcome {
				n += c
			}
		}
	}
	return n
}

// run sends rate requests per second, of kinds drawn by weight, for
// duration, with at most maxInFlight outstanding: one due while that many
// are is dropped and counted. It returns once every request sent has ended,
// each within t.timing.request.
func (t *traffic) run(ctx context.Context, rate float64, maxInFlight int, duration time.Duration, stats *trafficStats) {
	count := int(rate * duration.Seconds())
	slots := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	start := time.Now()
	for i := 0; i < count && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		timer.Reset(time.Until(due))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			stats.drop()
			continue
		}
		kind := pickKind(rand.IntN(100))
		id := t.nextID.Add(1)
		wg.Go(func() {
			defer func() { <-slots }()
			reqCtx, cancel := context.WithTimeout(ctx, t.timing.request)
			defer cancel()
			outcome := kind.do(t, reqCtx, id)
			if outcome == outcomeCorrupt {
				stats.corrupt(fmt.Sprintf("%s request %d", kind.name, id))
			}
			stats.add(kind.name, outcome)
		})
	}
}

// payload returns size bytes that name request id, so that an answer carrying
// another request's body shows.
func payload(id int64, size int) []byte {
	line := fmt.Appendf(nil, "soak request %d\n", id)
	return bytes.Repeat(line, size/len(line)+1)[:size]
}

// helloMatches reports whether body is the dummy server's answer to method
// path with the request body sent: its hello line, then the echo.
func helloMatches(body []byte, method, path string, sent []byte) bool {
	line, rest, ok := bytes.Cut(body, []byte("\n"))
	if !ok || !bytes.HasPrefix(line, []byte("Hello from ")) || !bytes.Contains(line, []byte(": "+method+" "+path+" after ")) {
		return false
	}
	if len(sent) == 0 {
		return len(rest) == 0
	}
	echo, ok := bytes.CutPrefix(rest, fmt.Appendf(nil, "received %d bytes\n", len(sent)))
	return ok && bytes.Equal(echo, sent)
}

// judge names the outcome of an exchange that the client saw through.
func judge(status int, body []byte, err error, method, path string, sent []byte) string {
	switch {
	case err != nil:
		return outcomeError
	case status < 200 || status > 299:
		return outcomeNon2xx
	case !helloMatches(body, method, path, sent):
		return outcomeCorrupt
	}
	return outcomeOK
}

// send sends method path with body, of size bytes, through client and
// returns the answer with its body unread.
func (t *traffic) send(ctx context.Context, client *http.Client, method, path string, body io.Reader, size int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, t.baseURL+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = int64(size)
	}
	return client.Do(req)
}

// exchange sends method path with body through client and reads the whole
// answer.
func (t *traffic) exchange(ctx context.Context, client *http.Client, method, path string, body io.Reader, size int) (int, []byte, error) {
	resp, err := t.send(ctx, client, method, path, body, size)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	return resp.StatusCode, got, err
}

func (t *traffic) get(ctx context.Context, id int64) string {
	path := fmt.Sprintf("/soak/get/%d", id)
	status, body, err := t.exchange(ctx, t.keepAlive, http.MethodGet, path, nil, 0)
	return judge(status, body, err, http.MethodGet, path, nil)
}

func (t *traffic) getNewConn(ctx context.Context, id int64) string {
	path := fmt.Sprintf("/soak/get-new-conn/%d", id)
	status, body, err := t.exchange(ctx, t.fresh, http.MethodGet, path, nil, 0)
	return judge(status, body, err, http.MethodGet, path, nil)
}

func (t *traffic) post(ctx context.Context, id int64, name string, size int) string {
	path := fmt.Sprintf("/soak/%s/%d", name, id)
	sent := payload(id, size)
	status, body, err := t.exchange(ctx, t.keepAlive, http.MethodPost, path, bytes.NewReader(sent), size)
	return judge(status, body, err, http.MethodPost, path, sent)
}

// leaveBefore asks for an answer that takes timing.leaveBeforeDelay, and
// leaves before it comes.
func (t *traffic) leaveBefore(ctx context.Context, id int64) string {
	path := fmt.Sprintf("/soak/leave-before/%d", id)
	wait := time.Duration(1 + rand.Int64N(int64(t.timing.leaveBefore)))
	leaveCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	status, body, err := t.exchange(leaveCtx, t.keepAlive, http.MethodGet, path+"?delay="+t.timing.leaveBeforeDelay.String(), nil, 0)
	if err != nil && leaveCtx.Err() != nil && ctx.Err() == nil {
		return outcomeLeft
	}
	return judge(status, body, err, http.MethodGet, path+"?delay="+t.timing.leaveBeforeDelay.String(), nil)
}

// leaveDuring leaves once the answer has begun: every other request after
// the headers of an answer that stalls after them, the others after a part
// of a 1 MiB echo.
func (t *traffic) leaveDuring(ctx context.Context, id int64) string {
	path := fmt.Sprintf("/soak/leave-during/%d", id)
	var resp *http.Response
	var err error
	if id%2 == 0 {
		resp, err = t.send(ctx, t.keepAlive, http.MethodGet, path+"?fault=stall-after-headers", nil, 0)
	} else {
		resp, err = t.send(ctx, t.keepAlive, http.MethodPost, path, bytes.NewReader(payload(id, largeBody)), largeBody)
	}
	if err != nil {
		return outcomeError
	}
	// Closing an unread body closes the connection: the proxy sees the
	// client go.
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return outcomeNon2xx
	}
	if id%2 != 0 {
		if _, err := io.CopyN(io.Discard, resp.Body, leaveDuringRead); err != nil {
			return outcomeError
		}
	}
	return outcomeLeft
}

// raw opens a connection to the proxy with a deadline from ctx.
func (t *traffic) raw(ctx context.Context) (net.Conn, error) {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	return conn, nil
}

// rawOutcome reads an answer from conn: 2xx ok, another status non-2xx, none
// (the connection closed or broken) error.
func rawOutcome(conn net.Conn) string {
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return outcomeError
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return outcomeNon2xx
	}
	return outcomeOK
}

// malformed sends one of malformedRequests over a new connection.
func (t *traffic) malformed(ctx context.Context, id int64) string {
	conn, err := t.raw(ctx)
	if err != nil {
		return outcomeError
	}
	defer conn.Close()
	// The proxy may answer and close before it has read all of it; the
	// answer is still there to read.
	_, _ = io.WriteString(conn, malformedRequests[int(id)%len(malformedRequests)])
	return rawOutcome(conn)
}

// sleep waits d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// slowHeaders sends its headers a byte per timing.slowGap for
// timing.slowHeaders, longer than the proxy's -read-header-timeout: the
// proxy should cut it (an error) rather than wait.
func (t *traffic) slowHeaders(ctx context.Context, id int64) string {
	conn, err := t.raw(ctx)
	if err != nil {
		return outcomeError
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /soak/slow-headers/%d HTTP/1.1\r\nHost: soak\r\nX-Slow: ", id); err != nil {
		return outcomeError
	}
	for end := time.Now().Add(t.timing.slowHeaders); time.Now().Before(end); {
		if !sleep(ctx, t.timing.slowGap) {
			return outcomeError
		}
		if _, err := conn.Write([]byte("s")); err != nil {
			return outcomeError
		}
	}
	if _, err := io.WriteString(conn, "\r\n\r\n"); err != nil {
		return outcomeError
	}
	return rawOutcome(conn)
}

// slowBodyReader hands out data a piece at a time, pausing gap before every
// piece but the first.
type slowBodyReader struct {
	ctx     context.Context
	data    []byte
	piece   int
	gap     time.Duration
	started bool
}

func (r *slowBodyReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	if r.started && !sleep(r.ctx, r.gap) {
		return 0, r.ctx.Err()
	}
	r.started = true
	n := copy(p[:min(len(p), r.piece)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// slowUpload sends a 64 KiB body in pieces, timing.slowGap apart.
func (t *traffic) slowUpload(ctx context.Context, id int64) string {
	path := fmt.Sprintf("/soak/slow-upload/%d", id)
	sent := payload(id, slowBody)
	body := &slowBodyReader{ctx: ctx, data: sent, piece: slowBody / slowPieces, gap: t.timing.slowGap}
	status, got, err := t.exchange(ctx, t.keepAlive, http.MethodPost, path, body, slowBody)
	return judge(status, got, err, http.MethodPost, path, sent)
}

// slowReader reads a 1 MiB echo in pieces, a fifth of timing.slowGap apart.
func (t *traffic) slowReader(ctx context.Context, id int64) string {
	path := fmt.Sprintf("/soak/slow-reader/%d", id)
	sent := payload(id, largeBody)
	resp, err := t.send(ctx, t.keepAlive, http.MethodPost, path, bytes.NewReader(sent), largeBody)
	if err != nil {
		return outcomeError
	}
	defer resp.Body.Close()
	var got bytes.Buffer
	for {
		n, err := io.CopyN(&got, resp.Body, readPiece)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return outcomeError
		}
		if n == readPiece && !sleep(ctx, t.timing.slowGap/5) {
			return outcomeError
		}
	}
	return judge(resp.StatusCode, got.Bytes(), nil, http.MethodPost, path, sent)
}

// kindNames lists the kinds' names in table order.
func kindNames() []string {
	names := make([]string, len(clientKinds))
	for i, k := range clientKinds {
		names[i] = k.name
	}
	return names
}

// formatCount is n, or "-" for zero, to keep the tables readable.
func formatCount(n int64) string {
	if n == 0 {
		return "-"
	}
	return strconv.FormatInt(n, 10)
}

package fanout

// What a request's attempts share and what they must not: every attempt
// sends the same request body and trailers, byte for byte, however the client
// framed and paced them; and nothing of an attempt that lost (headers, 1xx
// responses, body bytes) reaches the client. The client side speaks over a bare
// TCP connection where Go's client would frame a request differently or hide
// an interim response.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawClient speaks HTTP/1.1 over a bare TCP connection, so that a test can
// send any bytes, paced as it likes, and see every byte of the answer,
// interim responses included.
type rawClient struct {
	conn net.Conn
	// raw is every byte read from the connection so far.
	raw    bytes.Buffer
	reader *bufio.Reader
}

// dialRaw connects to the server at url. The connection's deadline is a hang
// guard, and it is closed when the test ends.
func dialRaw(t *testing.T, url string) *rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(hangGuard)))
	c := &rawClient{conn: conn}
	c.reader = bufio.NewReader(io.TeeReader(conn, &c.raw))
	return c
}

func (c *rawClient) write(t *testing.T, s string) {
	t.Helper()
	_, err := io.WriteString(c.conn, s)
	require.NoError(t, err)
}

// readResponse reads the next response head, interim or final.
func (c *rawClient) readResponse(t *testing.T) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(c.reader, nil)
	require.NoError(t, err)
	return resp
}

// readAll reads up to the server's closing the connection and returns every
// byte the server sent.
func (c *rawClient) readAll(t *testing.T) string {
	t.Helper()
	_, err := io.Copy(io.Discard, c.reader)
	require.NoError(t, err)
	return c.raw.String()
}

// reportBodyReads wraps next so that each read of a request body that returns
// bytes is reported on reads, without waiting for anyone to take the report.
func reportBodyReads(next http.Handler, reads chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != http.NoBody {
			// In place, not on a clone: the server fills in r.Trailer once
			// the body is read.
			r.Body = &reportingBody{ReadCloser: r.Body, reads: reads}
		}
		next.ServeHTTP(w, r)
	})
}

type reportingBody struct {
	io.ReadCloser
	reads chan<- struct{}
}

func (b *reportingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		select {
		case b.reads <- struct{}{}:
		default:
		}
	}
	return n, err
}

// chunked frames body in chunks of the given sizes, in turn, and ends it with
// the last chunk and trailer, field lines each ended by CRLF.
func chunked(body []byte, sizes []int, trailer string) string {
	var b strings.Builder
	for i := 0; len(body) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(body))
		fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
		body = body[n:]
	}
	b.WriteString("0\r\n" + trailer + "\r\n")
	return b.String()
}

// split cuts s at the given offsets.
func split(s string, at ...int) []string {
	var pieces []string
	last := 0
	for _, i := range at {
		pieces = append(pieces, s[last:i])
		last = i
	}
	return append(pieces, s[last:])
}

// binaryBody returns n bytes that hold every byte value and do not repeat, so
// that a lost, doubled or moved block shows.
func binaryBody(n int) []byte {
	body := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{7}).Read(body)
	for i := range 256 {
		body[i] = byte(i)
	}
	return body
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// replayModes are the ways a request gets more than one attempt. In serial
// mode the endpoints before the last fail after reading the body; otherwise
// they read it and hang until cancelled, so only the schedule can start the
// next attempt.
var replayModes = []struct {
	name     string
	schedule func() Schedule
	failOver bool
}{
	{"serial fail-over", Serial, true},
	{"fan-out", FanOut, false},
	{"hedged", func() Schedule { return hedgedAfter(time.Millisecond) }, false},
}

func TestReplayedBodiesAreIdenticalOnEveryAttempt(t *testing.T) {
	t.Parallel()
	text := []byte(strings.Repeat("every attempt gets these same bytes; ", 300))
	slow := []byte("a body that arrives in pieces, with pauses between them")
	binary := binaryBody(384 << 10)
	const trailerHead = "Transfer-Encoding: chunked\r\nTrailer: X-Checksum, X-Count\r\n"
	trailer := http.Header{"X-Checksum": {digest(text)}, "X-Count": {"1", "2"}}
	trailerLines := "X-Checksum: " + digest(text) + "\r\nX-Count: 1\r\nX-Count: 2\r\n"
	slowChunked := chunked(slow, []int{5, 11}, "X-Checksum: "+digest(slow)+"\r\n")
	require.True(t, strings.HasPrefix(slowChunked, "5\r\na bod\r\nb\r\ny that arri\r\n"), "the cuts below are where they should be")
	tests := []struct {
		name string
		// header is the request's framing headers, each line ended by CRLF.
		header string
		// pieces are written after the head, one at a time: the client waits
		// between two until the proxy has read some of the body.
		pieces      []string
		want        []byte
		wantTrailer http.Header
	}{
		{"Content-Length", "Content-Length: " + strconv.Itoa(len(text)) + "\r\n", []string{string(text)}, text, nil},
		{"chunked", "Transfer-Encoding: chunked\r\n", []string{chunked(text, []int{1, 100, 4093}, "")}, text, nil},
		{"chunked with trailers", trailerHead, []string{chunked(text, []int{777}, trailerLines)}, text, trailer},
		{"trailers after no data", trailerHead, []string{chunked(nil, nil, trailerLines)}, []byte{}, trailer},
		{"trailers not announced", "Transfer-Encoding: chunked\r\n", []string{chunked(text, []int{500}, trailerLines)}, text, trailer},
		{"Content-Length: 0", "Content-Length: 0\r\n", nil, []byte{}, nil},
		{"no body at all", "", nil, []byte{}, nil},
		{"slowly, Content-Length", "Content-Length: " + strconv.Itoa(len(slow)) + "\r\n", split(string(slow), 1, 20, 40), slow, nil},
		{
			// Cut inside a size line, at the end of a chunk's data and after
			// the last data, so the trailer comes last, after a pause. Each
			// piece but the last ends where Go's chunked reader hands over
			// what it has rather than wait for more.
			"slowly, chunked with trailers", "Transfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n",
			split(slowChunked, len("5\r\na bod\r\nb"), len("5\r\na bod\r\nb\r\ny that arri"), strings.LastIndex(slowChunked, "\r\n0\r\n")),
			slow, http.Header{"X-Checksum": {digest(slow)}},
		},
		{"binary, Content-Length", "Content-Length: " + strconv.Itoa(len(binary)) + "\r\n", []string{string(binary)}, binary, nil},
		{"binary, chunked", "Transfer-Encoding: chunked\r\n", []string{chunked(binary, []int{1, 4096, 33333, 65536}, "")}, binary, nil},
	}
	for _, mode := range replayModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					const n = 3
					read, cancelled := make(chan struct{}, n-1), make(chan struct{}, n-1)
					backends := make([]*backend, n)
					trailers := make([]chan http.Header, n)
					urls := make([]string, n)
					for i := range n {
						handler := func(w http.ResponseWriter, r *http.Request) {
							read <- struct{}{}
							hang(cancelled)(w, r)
						}
						if mode.failOver {
							handler = answer(http.StatusServiceUnavailable, "try another")
						}
						if i == n-1 {
							handler = func(w http.ResponseWriter, r *http.Request) {
								// The others must have the whole body before
								// a winner cancels them.
								for range n - 1 {
									if mode.failOver {
										break
									}
									select {
									case <-read:
									case <-r.Context().Done():
										return
									}
								}
								answer(http.StatusOK, "ok")(w, r)
							}
						}
						trailers[i] = make(chan http.Header, 1)
						// newBackend has read the body, so the trailer is in.
						backends[i] = newBackend(t, func(w http.ResponseWriter, r *http.Request) {
							trailers[i] <- r.Trailer.Clone()
							handler(w, r)
						})
						urls[i] = backends[i].srv.URL
					}
					reads := make(chan struct{}, 1)
					proxy := serve(t, reportBodyReads(buildProxy(t, mode.schedule(), urls), reads))

					c := dialRaw(t, proxy.URL)
					c.write(t, "POST /upload HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n"+tt.header+"\r\n")
					for i, piece := range tt.pieces {
						if i > 0 {
							waitFor(t, reads, "the proxy's reading the body so far")
						}
						c.write(t, piece)
					}
					resp := c.readResponse(t)
					body, err := io.ReadAll(resp.Body)
					require.NoError(t, err)
					assert.Equal(t, http.StatusOK, resp.StatusCode)
					assert.Equal(t, "ok", string(body))

					for i, b := range backends {
						got := receive(t, b.bodies)
						assert.Equal(t, len(tt.want), len(got), "body length at endpoint %d", i)
						assert.Equal(t, digest(tt.want), digest([]byte(got)), "body at endpoint %d", i)
						// Sent before the endpoint answered or hung, so before
						// the client had its answer.
						select {
						case got := <-trailers[i]:
							assert.Equal(t, tt.wantTrailer, got, "trailer at endpoint %d", i)
						default:
							t.Errorf("endpoint %d got no request", i)
						}
						assert.Equal(t, int32(1), b.hits.Load(), "requests at endpoint %d", i)
					}
					if !mode.failOver {
						for range n - 1 {
							waitFor(t, cancelled, "the cancel of a loser")
						}
					}
				})
			}
		})
	}
}

func TestABodyOverTheReplayCapGoesToOneEndpointOnly(t *testing.T) {
	t.Parallel()
	const maxBodyBuffer = 1024
	upload := binaryBody(64 << 10)
	reply := string(binaryBody(256 << 10))
	modes := []struct {
		name     string
		schedule func() Schedule
		// failOverOnly is set when the schedule wants another attempt only
		// after a failure.
		failOverOnly bool
	}{
		{"serial", Serial, true},
		{"fan-out", FanOut, false},
		// A delay that has passed by the time the loop looks: the hedge is
		// wanted at once, and so deterministically refused.
		{"hedged", func() Schedule { return hedgedAfter(time.Nanosecond) }, false},
	}
	firsts := []struct {
		name    string
		handler http.HandlerFunc
		// wantStatus is what the client gets: the endpoint's status, or
		// 502 when it gave none.
		wantStatus int
		wantBody   string
		// wantEndpoint is the debug header naming who answered.
		wantEndpoint string
	}{
		{"it answers 200", answer(http.StatusOK, reply), http.StatusOK, reply, "0"},
		{"it answers 503", answer(http.StatusServiceUnavailable, reply), http.StatusServiceUnavailable, reply, "0"},
		{"it drops the connection", resetConnection, http.StatusBadGateway, "502 Bad Gateway: no endpoint answered\n", ""},
	}
	framings := []struct {
		name string
		body func() io.Reader
	}{
		{"Content-Length", func() io.Reader { return bytes.NewReader(upload) }},
		// A reader of unknown length makes Go's client send it chunked.
		{"chunked", func() io.Reader { return io.MultiReader(bytes.NewReader(upload[:100]), bytes.NewReader(upload[100:])) }},
	}
	for _, mode := range modes {
		for _, first := range firsts {
			for _, framing := range framings {
				t.Run(mode.name+"/"+first.name+"/"+framing.name, func(t *testing.T) {
					t.Parallel()
					endpoint := newBackend(t, first.handler)
					others := []*backend{newBackend(t, answer(http.StatusOK, "other")), newBackend(t, answer(http.StatusOK, "other"))}
					proxy := newProxy(t, mode.schedule(), []string{endpoint.srv.URL, others[0].srv.URL, others[1].srv.URL}, withDebugHeaders, func(p *Proxy) {
						p.MaxBodyBuffer = maxBodyBuffer
					})

					resp, body := do(t, http.MethodPut, proxy.URL+"/upload", framing.body())
					assert.Equal(t, first.wantStatus, resp.StatusCode)
					assert.Equal(t, len(first.wantBody), len(body), "the answer is whole")
					assert.Equal(t, digest([]byte(first.wantBody)), digest([]byte(body)), "the answer is whole")
					got := receive(t, endpoint.bodies)
					assert.Equal(t, digest(upload), digest([]byte(got)), "the one endpoint gets the whole body")
					wantReason := RefusedBody.String()
					if mode.failOverOnly && first.wantStatus == http.StatusOK {
						wantReason = ""
					}
					assert.Equal(t, []string{first.wantEndpoint, "1", wantReason}, debug(resp))
					for i, other := range others {
						assert.Zero(t, other.hits.Load(), "requests at endpoint %d", i+1)
					}
				})
			}
		}
	}
}

// TestAStreamedBodyFlowsWhileTheAnswerIsCopied: an endpoint may answer
// before it has all of a body too large to replay, and the client may send the
// rest only once it has the head of the answer; the body must still reach the
// endpoint whole, and the answer the client.
func TestAStreamedBodyFlowsWhileTheAnswerIsCopied(t *testing.T) {
	t.Parallel()
	const answerHead, answerTail = "answer-head,", "answer-tail"
	const sent = 16 << 10
	upload := binaryBody(64 << 10)
	for _, mode := range replayModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			received := make(chan []byte, 1)
			early := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// Or its own server would hold the answer until it had read
				// the rest.
				if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
					t.Error(err)
					return
				}
				body := make([]byte, sent)
				if _, err := io.ReadFull(r.Body, body); err != nil {
					return
				}
				_, _ = io.WriteString(w, answerHead)
				w.(http.Flusher).Flush()
				rest, _ := io.ReadAll(r.Body)
				received <- append(body, rest...)
				_, _ = io.WriteString(w, answerTail)
			}))
			other := newBackend(t, answer(http.StatusOK, "other"))
			proxy := newProxy(t, mode.schedule(), []string{early.URL, other.srv.URL}, func(p *Proxy) { p.MaxBodyBuffer = 1024 })

			c := dialRaw(t, proxy.URL)
			// Kept alive: a server that will close the connection anyway
			// leaves the body alone.
			c.write(t, "PUT /upload HTTP/1.1\r\nHost: proxy\r\nContent-Length: "+strconv.Itoa(len(upload))+"\r\n\r\n"+string(upload[:sent]))
			resp := c.readResponse(t)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			head := make([]byte, len(answerHead))
			_, err := io.ReadFull(resp.Body, head)
			require.NoError(t, err)
			c.write(t, string(upload[sent:]))
			tail, err := io.ReadAll(resp.Body)
			require.NoError(t, err, "the answer is whole")
			assert.Equal(t, answerHead+answerTail, string(head)+string(tail))
			select {
			case got := <-received:
				assert.Equal(t, digest(upload), digest(got), "the endpoint gets the whole body")
			case <-time.After(hangGuard):
				t.Fatal("the endpoint did not get the body")
			}
			assert.Zero(t, other.hits.Load())
		})
	}
}

// earlyHint sends a 103 Early Hints whose Link names name.
func earlyHint(w http.ResponseWriter, name string) {
	w.Header().Set("Link", "</"+name+".css>; rel=preload")
	w.WriteHeader(http.StatusEarlyHints)
	// Go sends the header map with a 1xx; the final answer is marked alone.
	w.Header().Del("Link")
}

// answerMarked answers status with a header, a cookie and a body that all
// carry name, and flushes them.
func answerMarked(w http.ResponseWriter, status int, name string) {
	w.Header().Set("X-"+name, "1")
	w.Header().Add("Set-Cookie", name+"=1")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, name+"-body")
	w.(http.Flusher).Flush()
}

// marked is an endpoint that answers with answerMarked, after an early hint
// when hint is set.
func marked(status int, name string, hint bool) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if hint {
			earlyHint(w, name)
		}
		answerMarked(w, status, name)
	}
}

// assertNothingOf checks that raw, everything the client got, holds nothing
// that an endpoint marked with name sent.
func assertNothingOf(t *testing.T, raw string, name string) {
	t.Helper()
	lower := strings.ToLower(raw)
	for _, mark := range []string{"x-" + name + ":", name + "=1", name + "-body", "/" + name + ".css"} {
		assert.NotContains(t, lower, mark, "the client got %q of the attempt that lost", mark)
	}
}

// assertOnlyAnswer checks that the client's resp and raw bytes are the one
// answer of the endpoint marked with name, with status, and nothing else.
func assertOnlyAnswer(t *testing.T, raw string, resp *http.Response, body string, status int, name string) {
	t.Helper()
	assert.True(t, strings.HasPrefix(raw, fmt.Sprintf("HTTP/1.1 %d ", status)), "the first response the client gets is the final one, got %q", raw[:min(len(raw), 40)])
	assert.Equal(t, status, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("X-"+name))
	assert.Equal(t, []string{name + "=1"}, resp.Header.Values("Set-Cookie"))
	assert.Empty(t, resp.Header.Values("Link"))
	assert.Equal(t, name+"-body", body)
}

// getRaw sends a GET to the server at url over a bare connection and returns
// the response, its body and every byte the server sent.
func getRaw(t *testing.T, url string) (resp *http.Response, body, raw string) {
	t.Helper()
	c := dialRaw(t, url)
	c.write(t, "GET / HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n")
	resp = c.readResponse(t)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b), c.readAll(t)
}

// TestOnlyTheChosenAnswerReachesTheClient: in serial mode, the answers before
// the chosen one (non-terminal, some after a 103 Early Hints) leave no trace;
// when nothing is terminal, the last answer is passed on alone.
func TestOnlyTheChosenAnswerReachesTheClient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		endpoints  []http.HandlerFunc
		wantStatus int
		// want marks the answer the client must get, losers those it must
		// not see anything of.
		want   string
		losers []string
	}{
		{
			"a 500 then a 200",
			[]http.HandlerFunc{marked(http.StatusInternalServerError, "first", true), marked(http.StatusOK, "second", false)},
			http.StatusOK, "second", []string{"first"},
		},
		{
			"nothing terminal: the last answer",
			[]http.HandlerFunc{
				marked(http.StatusInternalServerError, "first", true),
				marked(http.StatusBadGateway, "second", true),
				marked(http.StatusServiceUnavailable, "third", false),
			},
			http.StatusServiceUnavailable, "third", []string{"first", "second"},
		},
		{
			"nothing terminal, the last attempt failed: the last answer",
			[]http.HandlerFunc{
				marked(http.StatusInternalServerError, "first", true),
				marked(http.StatusServiceUnavailable, "second", false),
				resetConnection,
			},
			http.StatusServiceUnavailable, "second", []string{"first"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var urls []string
			for _, handler := range tt.endpoints {
				urls = append(urls, newBackend(t, handler).srv.URL)
			}
			proxy := newProxy(t, Serial(), urls)
			resp, body, raw := getRaw(t, proxy.URL)
			assertOnlyAnswer(t, raw, resp, body, tt.wantStatus, tt.want)
			for _, loser := range tt.losers {
				assertNothingOf(t, raw, loser)
			}
		})
	}
}

// TestNothingOfAFanOutLoserReachesTheClient: a loser's answer, early hints
// and body stay out of the client's answer, whether they come before the
// winner's or while it is being copied.
func TestNothingOfAFanOutLoserReachesTheClient(t *testing.T) {
	t.Parallel()
	// The winner's answer is the one answerMarked would give, in two parts.
	const winnerHead, winnerTail = "winner-", "body"
	tests := []struct {
		name string
		// before is what the loser does before the winner answers, after what
		// it does once the client has the winner's head and part of its body.
		before, after func(w http.ResponseWriter)
	}{
		{
			"it answers 500 before the winner",
			func(w http.ResponseWriter) { answerMarked(w, http.StatusInternalServerError, "loser") },
			nil,
		},
		{
			"it sends 103 Early Hints before the winner and answers after",
			func(w http.ResponseWriter) { earlyHint(w, "loser") },
			func(w http.ResponseWriter) { answerMarked(w, http.StatusOK, "loser") },
		},
		{
			"it answers while the winner's answer is being copied",
			nil,
			func(w http.ResponseWriter) { answerMarked(w, http.StatusOK, "loser") },
		},
		{
			"it sends 103 Early Hints while the winner's answer is being copied",
			nil,
			func(w http.ResponseWriter) {
				earlyHint(w, "loser")
				answerMarked(w, http.StatusOK, "loser")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			loserReady, loserDone := make(chan struct{}), make(chan struct{})
			copying, more := make(chan struct{}), make(chan struct{})
			loser := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.before != nil {
					tt.before(w)
				}
				close(loserReady)
				// Whether or not it was cancelled: it must be heard of nowhere.
				<-copying
				if tt.after != nil {
					tt.after(w)
				}
				close(loserDone)
			})
			winner := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-loserReady:
				case <-r.Context().Done():
					return
				}
				w.Header().Set("X-Winner", "1")
				w.Header().Add("Set-Cookie", "winner=1")
				// Of unknown length, so the proxy passes on each part as it comes.
				_, _ = io.WriteString(w, winnerHead)
				w.(http.Flusher).Flush()
				select {
				case <-more:
				case <-r.Context().Done():
					return
				}
				_, _ = io.WriteString(w, winnerTail)
			})
			proxy := newProxy(t, FanOut(), []string{loser.srv.URL, winner.srv.URL})
			// Registered after the servers, so run before they are closed:
			// the handlers waiting on these return, whatever the test did.
			openCopying := sync.OnceFunc(func() { close(copying) })
			t.Cleanup(openCopying)
			openMore := sync.OnceFunc(func() { close(more) })
			t.Cleanup(openMore)

			c := dialRaw(t, proxy.URL)
			c.write(t, "GET / HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n")
			resp := c.readResponse(t)
			head := make([]byte, len(winnerHead))
			_, err := io.ReadFull(resp.Body, head)
			require.NoError(t, err)
			openCopying()
			waitFor(t, loserDone, "the loser's late sending")
			openMore()
			tail, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			raw := c.readAll(t)

			assertOnlyAnswer(t, raw, resp, string(head)+string(tail), http.StatusOK, "winner")
			assertNothingOf(t, raw, "loser")
		})
	}
}

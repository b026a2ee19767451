package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/internal/rawendpoint"
)

// These tests hold the proxy, as a built binary, to the rule that every
// answer goes to the request it answers: on the client's side, with bytes
// behind a request; on the endpoints' side, with bytes past an answer.

// modes are the three schedules, as command-line flags.
var modes = []struct {
	name string
	args []string
}{
	{"serial", nil},
	{"fan-out", []string{"-f"}},
	{"hedged", []string{"-hedge-delay", "1ms"}},
}

// poison is a whole answer that an endpoint sends past the end of its real
// one: no client may ever get it.
const poison = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Answer-To: POISON\r\n\r\nPOISON"

// surplusAnswer answers req, naming it in X-Answer-To and in the body where
// there is one, and sends bytes past the answer's end as its path asks.
func surplusAnswer(req *http.Request) string {
	to := req.URL.RequestURI()
	switch req.URL.Path {
	case "/length-then-bytes":
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Answer-To: %s\r\nContent-Length: %d\r\n\r\n%s0123456789", to, len(to), to)
	case "/length-then-answer":
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Answer-To: %s\r\nContent-Length: %d\r\n\r\n%s%s", to, len(to), to, poison)
	case "/chunked-then-answer":
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Answer-To: %s\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n%s", to, len(to), to, poison)
	case "/head-with-body":
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Answer-To: %s\r\nContent-Length: %d\r\n\r\n%s", to, len(to), to)
	case "/204-with-body":
		return fmt.Sprintf("HTTP/1.1 204 No Content\r\nX-Answer-To: %s\r\n\r\n%s", to, poison)
	case "/304-with-body":
		return fmt.Sprintf("HTTP/1.1 304 Not Modified\r\nX-Answer-To: %s\r\nContent-Length: 6\r\n\r\nPOISON", to)
	}
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Answer-To: %s\r\nContent-Length: %d\r\n\r\n%s", to, len(to), to)
}

// surplusKinds are the kinds of surplusAnswer: path, method, status, and
// whether the answer has a body.
var surplusKinds = []struct {
	path, method string
	status       int
	body         bool
}{
	{"/length-then-bytes", http.MethodGet, 200, true},
	{"/length-then-answer", http.MethodGet, 200, true},
	{"/chunked-then-answer", http.MethodGet, 200, true},
	{"/head-with-body", http.MethodHead, 200, false},
	{"/204-with-body", http.MethodGet, 204, false},
	{"/304-with-body", http.MethodGet, 304, false},
}

func TestBytesPastAnAnswerNeverReachAClient(t *testing.T) {
	t.Parallel()
	const clients, rounds = 6, 300
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			one, two := rawendpoint.New(t, surplusAnswer), rawendpoint.New(t, surplusAnswer)
			p := startProxy(t, nil, append([]string{"-e", one.URL + "," + two.URL}, mode.args...)...)
			// The log is not read here; a line per request would fill the
			// pipe to it and hold the proxy up.
			go func() {
				for range p.lines {
				}
			}()
			var wrong atomic.Int32
			var wg sync.WaitGroup
			for client := range clients {
				wg.Go(func() {
					// One keep-alive connection per client, as a browser or an
					// SDK has.
					transport := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
					defer transport.CloseIdleConnections()
					httpClient := &http.Client{Transport: transport, Timeout: hangGuard}
					for round := range rounds {
						kind := surplusKinds[round%len(surplusKinds)]
						uri := fmt.Sprintf("%s?client=%d&round=%d", kind.path, client, round)
						req, err := http.NewRequest(kind.method, "http://"+p.address+uri, nil)
						require.NoError(t, err)
						resp, err := httpClient.Do(req)
						if !assert.NoError(t, err, uri) {
							wrong.Add(1)
							return
						}
						body, err := io.ReadAll(resp.Body)
						resp.Body.Close()
						want := ""
						if kind.body {
							want = uri
						}
						if !assert.NoError(t, err, uri) ||
							!assert.Equal(t, kind.status, resp.StatusCode, uri) ||
							!assert.Equal(t, uri, resp.Header.Get("X-Answer-To"), "the answer to another request") ||
							!assert.Equal(t, want, string(body), "the answer is cut at its framing") {
							wrong.Add(1)
							return
						}
					}
				})
			}
			wg.Wait()
			assert.Zero(t, wrong.Load(), "clients that got an answer not theirs")
		})
	}
}

func TestEveryAcceptedRequestGetsItsOwnAnswer(t *testing.T) {
	t.Parallel()
	// What follows a good request in the same write: the request before it
	// is served as it is, and only then is the rest refused.
	followUps := []struct{ name, raw string }{
		{"bytes that are no request", "hello\r\n\r\n"},
		{"Content-Length with Transfer-Encoding", "POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"two Content-Lengths", "POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"},
		{"an obs-fold", "GET /two HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n"},
		{"a bad chunk size", "POST /two HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"},
		{"a bad request line", "GET /two HTTP/9\r\nHost: x\r\n\r\n"},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			one, two := newCountingBackend(t), newCountingBackend(t)
			p := startProxy(t, nil, append([]string{"-e", one.URL + "," + two.URL}, mode.args...)...)
			for _, followUp := range followUps {
				t.Run(followUp.name, func(t *testing.T) {
					got := rawExchange(t, p.address, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n"+followUp.raw)
					answers := readAnswers(t, got)
					require.Len(t, answers, 2, "%q", got)
					assert.Equal(t, 200, answers[0].status, "%q", got)
					assert.Contains(t, answers[0].body, "GET /one", "the endpoint's own answer: %q", got)
					assert.Equal(t, 400, answers[1].status, "%q", got)
				})
			}
		})
	}
}

// answer is one answer read off a client's connection.
type answer struct {
	status int
	body   string
}

// readAnswers reads the answers in raw, the bytes a client got.
func readAnswers(t *testing.T, raw string) []answer {
	t.Helper()
	reader := bufio.NewReader(strings.NewReader(raw))
	var answers []answer
	for {
		resp, err := http.ReadResponse(reader, nil)
		if err != nil {
			return answers
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		answers = append(answers, answer{resp.StatusCode, string(body)})
	}
}

func TestBytesBehindAnUpgradeWaitForItsAnswer(t *testing.T) {
	t.Parallel()
	// An endpoint that switches /ws and echoes what follows, and answers
	// anything else plainly.
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ws" {
			fmt.Fprintf(w, "plain %s", r.URL.Path)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		_, _ = io.Copy(conn, rw)
	}))
	t.Cleanup(endpoint.Close)
	const upgrade = "Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			p := startProxy(t, nil, append([]string{"-e", endpoint.URL}, mode.args...)...)

			t.Run("switched: they are the tunnel's first bytes", func(t *testing.T) {
				conn, err := net.Dial("tcp", p.address)
				require.NoError(t, err)
				defer conn.Close()
				require.NoError(t, conn.SetDeadline(time.Now().Add(hangGuard)))
				// Bytes a request check would refuse, right behind the request.
				frame := "hello\r\n folded\r\n\r\n"
				_, err = io.WriteString(conn, "GET /ws HTTP/1.1\r\n"+upgrade+frame)
				require.NoError(t, err)
				reader := bufio.NewReader(conn)
				resp, err := http.ReadResponse(reader, nil)
				require.NoError(t, err)
				require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
				echoed := make([]byte, len(frame))
				_, err = io.ReadFull(reader, echoed)
				require.NoError(t, err)
				assert.Equal(t, frame, string(echoed))
			})
			t.Run("not switched: they are the next request", func(t *testing.T) {
				got := rawExchange(t, p.address, "GET /not-ws HTTP/1.1\r\n"+upgrade+"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
				answers := readAnswers(t, got)
				require.Len(t, answers, 2, "%q", got)
				assert.Equal(t, answer{200, "plain /not-ws"}, answers[0])
				assert.Equal(t, answer{200, "plain /next"}, answers[1])
			})
		})
	}
}

func TestResponseHeadsAreCapped(t *testing.T) {
	t.Parallel()
	manyFields := rawendpoint.New(t, func(*http.Request) string {
		return "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Many: 1\r\n", 200) + "Content-Length: 4\r\n\r\nmany"
	})
	bigField := rawendpoint.New(t, func(*http.Request) string {
		return "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 100<<10) + "\r\nContent-Length: 3\r\n\r\nbig"
	})
	good := newCountingBackend(t)
	tests := []struct {
		name   string
		args   []string
		status int
		body   string
	}{
		{"200 header fields fail over to the next endpoint", []string{"-e", manyFields.URL + "," + good.URL}, 200, "GET /x host="},
		{"200 header fields from the only endpoint are a 502", []string{"-e", manyFields.URL}, 502, "502 Bad Gateway"},
		{"a 100 KiB header fails over to the next endpoint", []string{"-e", bigField.URL + "," + good.URL}, 200, "GET /x host="},
		{"a 100 KiB header from the only endpoint is a 502", []string{"-e", bigField.URL}, 502, "502 Bad Gateway"},
		{"--max-response-headers lets more through", []string{"-e", manyFields.URL, "-max-response-headers", "300"}, 200, "many"},
		{"--max-response-header-bytes lets more through", []string{"-e", bigField.URL, "-max-response-header-bytes", "1MiB"}, 200, "big"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startProxy(t, nil, tt.args...)
			resp, body := getBody(t, "http://"+p.address+"/x")
			assert.Equal(t, tt.status, resp.StatusCode)
			assert.Contains(t, body, tt.body)
		})
	}
}

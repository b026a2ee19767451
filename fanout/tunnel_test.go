package fanout

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// echoUpgrade is an endpoint handler that switches to protocol "echo" and
// sends back every byte it gets until the connection closes; it reports the
// request headers it got on headers and its end on ended.
func echoUpgrade(t *testing.T, headers chan<- http.Header, ended chan<- struct{}) http.HandlerFunc {
	var handlers sync.WaitGroup
	t.Cleanup(handlers.Wait)
	return func(w http.ResponseWriter, r *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		headers <- r.Header.Clone()
		if r.Header.Get("Upgrade") != "echo" {
			_, _ = io.WriteString(w, "plain answer")
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_, _ = io.Copy(conn, rw)
		ended <- struct{}{}
	}
}

// dialUpgrade opens a connection to the proxy at url, asks to upgrade it to
// protocol and returns the connection, a reader on it and the response head.
func dialUpgrade(t *testing.T, url, protocol string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: "+protocol+"\r\n\r\n")
	require.NoError(t, err)
	reader := bufio.NewReader(conn)
	resp, err := http.ReadResponse(reader, nil)
	require.NoError(t, err)
	return conn, reader, resp
}

func TestUpgradeIsTunnelledToOneEndpoint(t *testing.T) {
	t.Parallel()
	for _, schedule := range []Schedule{Serial(), FanOut()} {
		t.Run(schedule.String(), func(t *testing.T) {
			t.Parallel()
			headers, ended := make(chan http.Header, 4), make(chan struct{}, 4)
			first := newBackend(t, echoUpgrade(t, headers, ended))
			second := newBackend(t, echoUpgrade(t, headers, ended))
			proxy := newProxy(t, schedule, []string{first.srv.URL, second.srv.URL})

			conn, reader, resp := dialUpgrade(t, proxy.URL, "echo")
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			assert.Equal(t, "echo", resp.Header.Get("Upgrade"))
			got := <-headers
			assert.Equal(t, "echo", got.Get("Upgrade"), "the upgrade reaches the endpoint")
			assert.Equal(t, "Upgrade", got.Get("Connection"))

			// Bytes that are not HTTP go both ways, untouched.
			for _, message := range []string{"X: 1\r\n folded\r\n\r\n", "\x00\x81binary", "last"} {
				_, err := io.WriteString(conn, message)
				require.NoError(t, err)
				back := make([]byte, len(message))
				_, err = io.ReadFull(reader, back)
				require.NoError(t, err)
				assert.Equal(t, message, string(back))
			}
			// The client leaving ends the endpoint's side too.
			require.NoError(t, conn.Close())
			waitFor(t, ended, "the endpoint's side of the tunnel to close")
			assert.Equal(t, int32(1), first.hits.Load()+second.hits.Load(), "an upgrade is never fanned out")
		})
	}
}

func TestUpgradeIsNotHedged(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	slow := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "echo")
		w.WriteHeader(http.StatusSwitchingProtocols)
	})
	other := newBackend(t, answer(200, "other"))
	proxy := newProxy(t, hedgedAfter(time.Millisecond), []string{slow.srv.URL, other.srv.URL})
	// The request is written here and its answer read on another goroutine,
	// which must not fail the test itself.
	conn, err := net.Dial("tcp", strings.TrimPrefix(proxy.URL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	require.NoError(t, err)
	status := make(chan int, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			status <- 0
			return
		}
		status <- resp.StatusCode
	}()
	require.Eventually(t, func() bool { return slow.hits.Load() == 1 }, 10*time.Second, time.Millisecond)
	// Well past the hedge delay, the other endpoint is still not asked. (This
	// can only miss a hedge on a very slow machine, never fail a right proxy.)
	time.Sleep(50 * time.Millisecond)
	close(release)
	assert.Equal(t, http.StatusSwitchingProtocols, <-status)
	assert.Zero(t, other.hits.Load())
}

func TestTunnelEndsWhenTheEndpointCloses(t *testing.T) {
	t.Parallel()
	upstream := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nbye")
		conn.Close()
	})
	proxy := newProxy(t, Serial(), []string{upstream.srv.URL})
	_, reader, resp := dialUpgrade(t, proxy.URL, "echo")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	rest, err := io.ReadAll(reader)
	require.NoError(t, err, "the client's side is closed, not left hanging")
	assert.Equal(t, "bye", string(rest))
}

func TestCloseTunnelsTearsThemDown(t *testing.T) {
	t.Parallel()
	headers, ended := make(chan http.Header, 4), make(chan struct{}, 4)
	upstream := newBackend(t, echoUpgrade(t, headers, ended))
	p := buildProxy(t, Serial(), []string{upstream.srv.URL})
	srv := serve(t, p)
	_, reader, resp := dialUpgrade(t, srv.URL, "echo")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	<-headers

	p.CloseTunnels()
	_, err := io.ReadAll(reader)
	require.NoError(t, err, "the client's side is closed")
	waitFor(t, ended, "the endpoint's side to close")

	// A stopping proxy makes no new tunnel.
	_, _, resp = dialUpgrade(t, srv.URL, "echo")
	<-headers
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	waitFor(t, ended, "the refused tunnel's endpoint side to close")
}

func TestH2CUpgradeIsRefused(t *testing.T) {
	t.Parallel()
	headers, ended := make(chan http.Header, 4), make(chan struct{}, 4)
	upstream := newBackend(t, echoUpgrade(t, headers, ended))
	proxy := newProxy(t, Serial(), []string{upstream.srv.URL})
	req, err := http.NewRequest(http.MethodGet, proxy.URL+"/", nil)
	require.NoError(t, err)
	req.Header.Set("Connection", "Upgrade, HTTP2-Settings")
	req.Header.Set("Upgrade", "h2c")
	req.Header.Set("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")
	resp, err := client(t).Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "served as plain HTTP/1.1")
	assert.Equal(t, "plain answer", string(body))
	got := <-headers
	for _, name := range []string{"Upgrade", "Http2-Settings", "Connection"} {
		assert.Empty(t, got.Get(name), "%s must not reach the endpoint", name)
	}
}

func TestUpgradeAnsweredWithoutASwitchIsPassedOn(t *testing.T) {
	t.Parallel()
	upstream := newBackend(t, answer(http.StatusForbidden, "no websockets here"))
	proxy := newProxy(t, Serial(), []string{upstream.srv.URL})
	_, reader, resp := dialUpgrade(t, proxy.URL, "echo")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	body := make([]byte, len("no websockets here"))
	_, err := io.ReadFull(reader, body)
	require.NoError(t, err)
	assert.Equal(t, "no websockets here", string(body))
}

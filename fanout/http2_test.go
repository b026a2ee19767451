package fanout

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// h2cBackend is an endpoint that speaks HTTP/2 without TLS and counts the
// connections it accepts.
type h2cBackend struct {
	srv         *httptest.Server
	connections atomic.Int32
}

func newH2CBackend(t *testing.T, handler http.HandlerFunc) *h2cBackend {
	t.Helper()
	b := &h2cBackend{}
	b.srv = httptest.NewUnstartedServer(handler)
	b.srv.Config.Protocols = new(http.Protocols)
	b.srv.Config.Protocols.SetUnencryptedHTTP2(true)
	b.srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			b.connections.Add(1)
		}
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	return b
}

// url is the endpoint's base URL with the h2c scheme.
func (b *h2cBackend) url() string {
	return "h2c://" + strings.TrimPrefix(b.srv.URL, "http://")
}

func TestFanOutToHTTP2EndpointsCancelsStreamsNotConnections(t *testing.T) {
	t.Parallel()
	const requests = 30
	var notHTTP2, entered, cancelled atomic.Int32
	fast := newH2CBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			notHTTP2.Add(1)
		}
		_, _ = w.Write([]byte("fast"))
	})
	slow := newH2CBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			notHTTP2.Add(1)
		}
		entered.Add(1)
		<-r.Context().Done()
		cancelled.Add(1)
	})
	proxy := newProxy(t, FanOut(), []string{slow.url(), fast.url()})
	for range requests {
		resp, body := get(t, proxy.URL+"/")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "fast", body)
	}
	// Every loser that reached the slow endpoint is cancelled, as a stream.
	require.Eventually(t, func() bool { return cancelled.Load() == entered.Load() }, hangGuard, time.Millisecond)
	assert.Zero(t, notHTTP2.Load(), "the endpoints were spoken to in HTTP/2")
	// Over HTTP/1 every cancelled loser would cost a connection. (Go's HTTP/2
	// client may open a second one while it checks, after a reset, that the
	// first is alive, so the bound is loose.)
	assert.Less(t, fast.connections.Load(), int32(requests/3), "the winner's connection is reused")
	assert.Less(t, slow.connections.Load(), int32(requests/3), "cancelling a loser resets its stream, not its connection")
}

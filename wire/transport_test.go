package wire

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"balancing-reverse-proxy/internal/rawendpoint"
)

// sayProto answers with the protocol of the request, in the body or, when
// the request upgrades its connection to "echo", after the switch.
var sayProto = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") == "" {
		_, _ = io.WriteString(w, r.Proto)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n" + r.Proto)
	_ = rw.Flush()
})

// upgradeToEcho asks url, a sayProto endpoint, to switch to "echo" and
// returns what it said after the switch.
func upgradeToEcho(t *testing.T, transport *Transport, url string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := transport.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	tunnel, ok := resp.Body.(io.ReadWriteCloser)
	require.True(t, ok, "the upgraded connection is the body")
	seen, err := io.ReadAll(tunnel)
	require.NoError(t, err)
	return string(seen)
}

// TestTransportUpgradesH2CEndpointsOverHTTP1 asks an h2c:// endpoint for a
// WebSocket-like upgrade, which HTTP/2 cannot carry: it goes in HTTP/1.1 to
// the same port, and other requests still in HTTP/2.
func TestTransportUpgradesH2CEndpointsOverHTTP1(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(sayProto)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	transport := New(Options{MaxIdlePerHost: 1})
	t.Cleanup(transport.CloseIdleConnections)
	url := "h2c://" + strings.TrimPrefix(srv.URL, "http://")

	assert.Equal(t, "HTTP/1.1", upgradeToEcho(t, transport, url))

	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := transport.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "HTTP/2.0", string(body))
}

func TestTransportOverTLS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(sayProto)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig
	transport := New(Options{MaxIdlePerHost: 1, TLS: roots})
	t.Cleanup(transport.CloseIdleConnections)

	t.Run("HTTP/2 where the endpoint offers it", func(t *testing.T) {
		body, err := roundTrip(t, transport, srv.URL)
		require.NoError(t, err)
		assert.Equal(t, "HTTP/2.0", body)
	})
	t.Run("an upgrade in HTTP/1.1", func(t *testing.T) {
		assert.Equal(t, "HTTP/1.1", upgradeToEcho(t, transport, srv.URL))
	})
	t.Run("HTTP/1.1 answers are followed above TLS", func(t *testing.T) {
		var answered atomic.Int32
		answers := []string{
			"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON",
			"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond",
		}
		endpoint := rawendpoint.NewTLS(t, &tls.Config{Certificates: srv.TLS.Certificates, NextProtos: []string{"http/1.1"}}, func(*http.Request) string {
			return answers[min(int(answered.Add(1)), len(answers))-1]
		})
		tlsTransport := New(Options{MaxIdlePerHost: 1, TLS: roots})
		t.Cleanup(tlsTransport.CloseIdleConnections)
		_, err := roundTrip(t, tlsTransport, endpoint.URL)
		assert.ErrorIs(t, err, ErrAmbiguousFraming, "the head is checked, as over plain TCP")
		for _, want := range []string{"first", "second"} {
			body, err := roundTrip(t, tlsTransport, endpoint.URL)
			require.NoError(t, err)
			assert.Equal(t, want, body)
		}
		assert.Equal(t, 3, endpoint.Connections(), "a connection that showed a bad head or bytes past an answer is not reused")
	})
}

package endpoints

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTransportUpgradesH2CEndpointsOverHTTP1 asks an h2c:// endpoint for a
// WebSocket-like upgrade, which HTTP/2 cannot carry: it goes in HTTP/1.1 to
// the same port, and other requests still in HTTP/2.
func TestTransportUpgradesH2CEndpointsOverHTTP1(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	transport := NewTransport(1)
	t.Cleanup(transport.CloseIdleConnections)
	url := "h2c://" + strings.TrimPrefix(srv.URL, "http://")

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
	assert.Equal(t, "HTTP/1.1", string(seen))

	req, err = http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err = transport.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "HTTP/2.0", string(body))
}

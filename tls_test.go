package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"balancing-reverse-proxy/internal/testcert"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeCertificate writes a self-signed certificate for 127.0.0.1 and its key
// as PEM files in a temporary directory, and returns their paths and a pool
// that trusts the certificate.
func writeCertificate(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	cert := testcert.New(t)
	certFile, keyFile = cert.WriteFiles(t)
	return certFile, keyFile, cert.Pool
}

// protocolClient returns a client that speaks only the given protocols.
func protocolClient(t *testing.T, pool *x509.CertPool, set func(*http.Protocols)) *http.Client {
	t.Helper()
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Protocols: new(http.Protocols)}
	set(transport.Protocols)
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: hangGuard}
}

func TestServesHTTPSAndHTTP2(t *testing.T) {
	t.Parallel()
	forwardedProto := make(chan string, 10)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		forwardedProto <- r.Header.Get("X-Forwarded-Proto")
		_, _ = io.WriteString(w, "hello")
	}))
	defer backend.Close()
	certFile, keyFile, pool := writeCertificate(t)
	p := startProxy(t, nil, "-e", backend.URL, "-tls-cert", certFile, "-tls-key", keyFile)

	for _, tt := range []struct {
		name  string
		set   func(*http.Protocols)
		proto string
	}{
		{"HTTP/2 over TLS", func(p *http.Protocols) { p.SetHTTP2(true) }, "HTTP/2.0"},
		{"HTTP/1.1 over TLS", func(p *http.Protocols) { p.SetHTTP1(true) }, "HTTP/1.1"},
	} {
		resp, err := protocolClient(t, pool, tt.set).Get("https://" + p.address + "/")
		require.NoError(t, err, tt.name)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, tt.proto, resp.Proto, tt.name)
		assert.Equal(t, "hello", string(body))
		assert.Equal(t, "https", <-forwardedProto, "%s: the endpoint learns the client used TLS", tt.name)
	}
}

func TestServesH2CWhenAsked(t *testing.T) {
	t.Parallel()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	defer backend.Close()
	p := startProxy(t, nil, "-e", backend.URL, "-h2c")
	client := protocolClient(t, nil, func(p *http.Protocols) { p.SetUnencryptedHTTP2(true) })
	resp, err := client.Get("http://" + p.address + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "HTTP/2.0", resp.Proto)

	plain := startProxy(t, nil, "-e", backend.URL)
	_, err = client.Get("http://" + plain.address + "/")
	assert.Error(t, err, "without -h2c, HTTP/2 without TLS is not served")
}

func TestBadTLSFlags(t *testing.T) {
	t.Parallel()
	certFile, _, _ := writeCertificate(t)
	code, _, stderr := runToEnd(t, nil, "-e", "http://a", "-tls-cert", certFile)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "accepted: both")
	code, _, stderr = runToEnd(t, nil, "-e", "http://a", "-address", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", "/nonexistent/key.pem")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, `--tls-key "/nonexistent/key.pem"`)
}

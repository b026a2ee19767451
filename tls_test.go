package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeCertificate writes a self-signed certificate for 127.0.0.1 and its key
// as PEM files in a temporary directory, and returns their paths and a pool
// that trusts the certificate.
func writeCertificate(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
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

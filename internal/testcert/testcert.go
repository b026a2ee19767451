// Package testcert provides, for tests, a self-signed TLS certificate for
// 127.0.0.1: as a tls.Certificate, as PEM files, and a pool that trusts it.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Cert is a self-signed certificate for 127.0.0.1, valid for an hour either
// side of its making.
type Cert struct {
	// TLS is the certificate with its key, for a server.
	TLS tls.Certificate
	// Pool trusts the certificate, for a client.
	Pool *x509.CertPool
	der  []byte
	key  *ecdsa.PrivateKey
}

// New makes a Cert; it fails the test if it cannot.
func New(tb testing.TB) *Cert {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
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
	if err != nil {
		tb.Fatal(err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(parsed)
	return &Cert{TLS: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, Pool: pool, der: der, key: key}
}

// WriteFiles writes the certificate and its key as PEM files in a temporary
// directory of the test, and returns their paths.
func (c *Cert) WriteFiles(tb testing.TB) (certFile, keyFile string) {
	tb.Helper()
	keyDER, err := x509.MarshalECPrivateKey(c.key)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for path, block := range map[string]*pem.Block{
		certFile: {Type: "CERTIFICATE", Bytes: c.der},
		keyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return certFile, keyFile
}

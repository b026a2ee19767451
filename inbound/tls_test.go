package inbound

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"balancing-reverse-proxy/internal/testcert"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tlsServer serves over a TLS Listener as the proxy does; its handler
// reports each request's protocol and whether it saw TLS.
type tlsServer struct {
	addr string
	pool *x509.CertPool
	seen chan string
}

func newTLSServer(t *testing.T, opts ListenerOptions) *tlsServer {
	t.Helper()
	cert := testcert.New(t)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &tlsServer{addr: tcp.Addr().String(), pool: cert.Pool, seen: make(chan string, 100)}
	opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert.TLS}, NextProtos: []string{"h2", "http/1.1"}}
	opts.HandshakeTimeout = time.Second
	listener := NewListener(tcp, opts)
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(opts.H2C)
	server := &http.Server{
		Handler: Limits{}.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			s.seen <- r.Proto + " tls=" + boolString(r.TLS != nil)
			_, _ = io.WriteString(w, "ok")
		})),
		Protocols:         protocols,
		ConnState:         listener.ConnState,
		ConnContext:       ConnContext,
		ReadHeaderTimeout: hangGuard,
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = server.Serve(listener)
	}()
	t.Cleanup(func() {
		_ = server.Close()
		<-served
	})
	return s
}

func boolString(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// client returns an HTTP client for the server that speaks HTTP/2 when
// http2, else HTTP/1.1 only.
func (s *tlsServer) client(t *testing.T, http2 bool) *http.Client {
	t.Helper()
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.pool}}
	transport.Protocols = new(http.Protocols)
	transport.Protocols.SetHTTP1(!http2)
	transport.Protocols.SetHTTP2(http2)
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: hangGuard}
}

func TestTLSServesHTTP2AndCheckedHTTP1(t *testing.T) {
	t.Parallel()
	s := newTLSServer(t, ListenerOptions{})
	for _, tt := range []struct {
		http2 bool
		want  string
	}{{true, "HTTP/2.0 tls=yes"}, {false, "HTTP/1.1 tls=yes"}} {
		resp, err := s.client(t, tt.http2).Get("https://" + s.addr + "/")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, tt.want, <-s.seen, "the handler sees the protocol and the TLS")
	}

	// HTTP/1 over TLS is checked like plain HTTP/1.
	conn, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.pool, NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(hangGuard)))
	_, err = io.WriteString(conn, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Empty(t, s.seen)
}

func TestTLSGivesSlotsBack(t *testing.T) {
	t.Parallel()
	s := newTLSServer(t, ListenerOptions{MaxConnections: 1})
	// A client that is not speaking TLS fails its handshake and frees its
	// slot; an HTTP/2 connection frees it when it closes; so does HTTP/1.
	garbage, err := net.Dial("tcp", s.addr)
	require.NoError(t, err)
	_, err = io.WriteString(garbage, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, garbage.SetReadDeadline(time.Now().Add(hangGuard)))
	_, _ = io.Copy(io.Discard, garbage)
	garbage.Close()

	for _, http2 := range []bool{true, false, true} {
		client := s.client(t, http2)
		resp, err := client.Get("https://" + s.addr + "/")
		require.NoError(t, err, "a slot was not given back (http2 %v)", http2)
		resp.Body.Close()
		<-s.seen
		client.CloseIdleConnections()
	}
}

func TestH2CIsUncheckedOnlyWhenAllowed(t *testing.T) {
	t.Parallel()
	for _, allowed := range []bool{true, false} {
		tcp, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		protocols := new(http.Protocols)
		protocols.SetHTTP1(true)
		protocols.SetUnencryptedHTTP2(true)
		seen := make(chan string, 1)
		server := &http.Server{
			// Go's HTTP/1 server hands "PRI * HTTP/2.0" to handlers; the
			// limits refuse it as they do any * target but OPTIONS.
			Handler: Limits{}.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen <- r.Proto
			})),
			Protocols: protocols,
		}
		listener := NewListener(tcp, ListenerOptions{H2C: allowed})
		server.ConnState = listener.ConnState
		served := make(chan struct{})
		go func() {
			defer close(served)
			_ = server.Serve(listener)
		}()
		transport := &http.Transport{Protocols: new(http.Protocols)}
		transport.Protocols.SetUnencryptedHTTP2(true)
		client := &http.Client{Transport: transport, Timeout: hangGuard}
		resp, err := client.Get("http://" + tcp.Addr().String() + "/")
		if allowed {
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, "HTTP/2.0", <-seen)
		} else {
			require.Error(t, err, "without H2C, HTTP/2's preface ends the connection")
			select {
			case proto := <-seen:
				t.Fatalf("served %s without H2C", proto)
			default:
			}
		}
		transport.CloseIdleConnections()
		_ = server.Close()
		<-served
	}
}

func TestTLSHTTP1IsNeverH2C(t *testing.T) {
	t.Parallel()
	s := newTLSServer(t, ListenerOptions{H2C: true})
	c, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.pool, NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(hangGuard)))
	settings := "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
	_, err = io.WriteString(c, prefaceLine+prefaceRest+settings)
	require.NoError(t, err)
	reply, _ := io.ReadAll(c)
	assert.True(t, len(reply) == 0 || strings.HasPrefix(string(reply), "HTTP/1.1 "),
		"an HTTP/1 answer or none, no HTTP/2 frames inside a TLS session that chose HTTP/1.1: %q", reply)
}

// flakyListener fails its first Accept with a temporary error, as a
// listener does when the process is out of file descriptors.
type flakyListener struct {
	net.Listener
	failed atomic.Bool
}

type temporaryError struct{}

func (temporaryError) Error() string   { return "accept: too many open files" }
func (temporaryError) Timeout() bool   { return false }
func (temporaryError) Temporary() bool { return true }

func (l *flakyListener) Accept() (net.Conn, error) {
	if !l.failed.Swap(true) {
		return nil, temporaryError{}
	}
	return l.Listener.Accept()
}

func TestTLSAcceptsAgainAfterATemporaryError(t *testing.T) {
	t.Parallel()
	cert := testcert.New(t)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := NewListener(&flakyListener{Listener: tcp}, ListenerOptions{TLS: &tls.Config{Certificates: []tls.Certificate{cert.TLS}}, HandshakeTimeout: hangGuard})
	defer l.Close()
	_, err = l.Accept()
	require.ErrorIs(t, err, temporaryError{})

	dialed := make(chan error, 1)
	go func() {
		c, err := tls.Dial("tcp", tcp.Addr().String(), &tls.Config{RootCAs: cert.Pool})
		if err == nil {
			err = c.Close()
		}
		dialed <- err
	}()
	c, err := l.Accept()
	require.NoError(t, err, "the listener accepts again")
	require.NoError(t, <-dialed)
	require.NoError(t, c.Close())
}

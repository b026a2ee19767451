package fanout

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"balancing-reverse-proxy/endpointresponse"
	"balancing-reverse-proxy/forward"
	"balancing-reverse-proxy/inbound"
)

// upgradeProtocol returns the protocol a request asks to switch its
// connection to (Upgrade, named in Connection), such as "websocket", or "".
// h2c is never switched to: it would hand the connection to an HTTP/2 peer
// behind the proxy's checks, so such a request is served as plain HTTP/1.1
// (its Upgrade header is hop-by-hop and dropped).
func upgradeProtocol(r *http.Request) string {
	if !forward.HasToken(r.Header, "Connection", "upgrade") {
		return ""
	}
	protocol := r.Header.Get("Upgrade")
	if protocol == "" || forward.HasToken(r.Header, "Upgrade", "h2c") {
		return ""
	}
	return protocol
}

// tunnels tracks the open tunnels, so that the proxy can close them when it
// stops: a server's shutdown does not wait for connections that handlers
// took over.
type tunnels struct {
	mu     sync.Mutex
	open   map[*openTunnel]struct{}
	closed bool
}

// add registers c; it reports false, and closes c, when the proxy has
// stopped.
func (t *tunnels) add(c *openTunnel) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.close()
		return false
	}
	if t.open == nil {
		t.open = make(map[*openTunnel]struct{})
	}
	t.open[c] = struct{}{}
	return true
}

// stopping reports whether closeAll ran.
func (t *tunnels) stopping() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

func (t *tunnels) remove(c *openTunnel) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.open, c)
}

func (t *tunnels) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for c := range t.open {
		c.close()
	}
	clear(t.open)
}

// CloseTunnels closes every open tunnel (WebSocket and other upgraded
// connections) and refuses new ones. Pass it to http.Server.RegisterOnShutdown.
func (p *Proxy) CloseTunnels() {
	p.tunnels.closeAll()
}

// errNotUpgraded is the failure of a 101 answer that does not switch to the
// protocol the client asked for.
var errNotUpgraded = errors.New("101 Switching Protocols without the protocol asked for")

// errStopping is the failure of an upgrade while the proxy stops.
var errStopping = errors.New("the proxy is stopping")

// tunnel answers 101 to the client and joins its connection to the
// endpoint's upgraded one, byte for byte both ways, until either side closes
// or the proxy stops. It returns the bytes carried both ways, and whether it
// took the client's connection over: if not, w is untouched and the caller
// answers the error.
func (p *Proxy) tunnel(w http.ResponseWriter, upgraded *endpointresponse.Outcome, protocol string) (int64, bool, error) {
	resp := upgraded.Response
	if !strings.EqualFold(resp.Header.Get("Upgrade"), protocol) {
		return 0, false, fmt.Errorf("endpoint %d: %w (%q, asked %q)", upgraded.Endpoint.Index, errNotUpgraded, resp.Header.Get("Upgrade"), protocol)
	}
	backend, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		return 0, false, fmt.Errorf("endpoint %d: %w: the transport gave no connection", upgraded.Endpoint.Index, errNotUpgraded)
	}
	if p.tunnels.stopping() {
		return 0, false, errStopping
	}
	client, buffered, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return 0, false, fmt.Errorf("taking over the client's connection: %w", err)
	}
	// What follows the 101 is not HTTP/1 any more.
	inbound.StopChecking(client)
	closeBoth := sync.OnceFunc(func() {
		client.Close()
		backend.Close()
	})
	defer closeBoth()
	both := &openTunnel{close: closeBoth}
	if !p.tunnels.add(both) {
		return 0, true, errStopping
	}
	defer p.tunnels.remove(both)

	if err := writeSwitch(buffered.Writer, resp.Header, w.Header()); err != nil {
		return 0, true, fmt.Errorf("%w: %w", endpointresponse.ErrClientWrite, err)
	}
	var up atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The client's bytes already read by the server come first.
		n, _ := io.Copy(backend, buffered.Reader)
		up.Store(n)
		closeBoth()
	}()
	down, _ := io.Copy(client, backend)
	closeBoth()
	<-done
	return down + up.Load(), true, nil
}

// writeSwitch writes the 101 response head: the endpoint's headers (with
// Connection and Upgrade, which make the switch), plus those the proxy set,
// such as X-Request-Id.
func writeSwitch(out *bufio.Writer, upstream, proxy http.Header) error {
	header := upstream.Clone()
	for name, values := range proxy {
		if _, ok := header[name]; !ok {
			header[name] = values
		}
	}
	if _, err := io.WriteString(out, "HTTP/1.1 101 Switching Protocols\r\n"); err != nil {
		return err
	}
	if err := header.Write(out); err != nil {
		return err
	}
	if _, err := io.WriteString(out, "\r\n"); err != nil {
		return err
	}
	return out.Flush()
}

// openTunnel is one tunnel, as tunnels tracks it.
type openTunnel struct {
	close func()
}

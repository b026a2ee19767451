package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// debugServer serves Go's profiles (net/http/pprof) on --debug-address, apart
// from the proxied traffic: CPU and allocation profiles for performance work,
// and the goroutine count that the soak script watches for leaks.
type debugServer struct {
	server *http.Server
	served chan error
	// Address is where it listens.
	Address string
}

// startDebugServer listens on address and serves /debug/pprof/ until stop.
func startDebugServer(address string) (*debugServer, error) {
	listener, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("--debug-address %q: %w", address, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	d := &debugServer{
		server:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		served:  make(chan error, 1),
		Address: listener.Addr().String(),
	}
	go func() { d.served <- d.server.Serve(listener) }()
	return d, nil
}

// stop closes the server and its connections at once: a profile being taken
// is cut.
func (d *debugServer) stop() error {
	err := d.server.Close()
	if serveErr := <-d.served; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"balancing-reverse-proxy/metrics"
	"balancing-reverse-proxy/stats"
)

// adminServer is the second listener (--admin-address), apart from the
// proxied traffic: /metrics for Prometheus, /healthz and /readyz for a load
// balancer or an orchestrator, the stats page at / with its figures at
// /stats.json, and Go's profiles under /debug/pprof/.
type adminServer struct {
	server *http.Server
	served chan error
	// stopSampling stops the stats' sampling, and waits for it.
	stopSampling func()
	// Address is where it listens.
	Address string
	// draining is set once a shutdown begins: /readyz says 503 from then on.
	draining atomic.Bool
}

// startAdminServer listens on address (flag names it in errors) and serves
// until stop. m is what /metrics and the stats serve; notReady says why the
// proxy cannot serve, "" when it can.
func startAdminServer(flag, address string, m *metrics.Metrics, notReady func() string) (*adminServer, error) {
	listener, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", flag, address, err)
	}
	a := &adminServer{served: make(chan error, 1), Address: listener.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	figures := stats.New(m)
	mux.HandleFunc("/{$}", figures.Page)
	mux.HandleFunc("/stats.json", figures.JSON)
	ctx, cancel := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() { defer close(sampled); figures.Run(ctx) }()
	a.stopSampling = func() { cancel(); <-sampled }
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		reason := notReady()
		if a.draining.Load() {
			reason = "shutting down"
		}
		if reason != "" {
			http.Error(w, "not ready: "+reason, http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	a.server = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { a.served <- a.server.Serve(listener) }()
	return a, nil
}

// stop closes the server and its connections at once: a profile being taken
// is cut.
func (a *adminServer) stop() error {
	a.stopSampling()
	err := a.server.Close()
	if serveErr := <-a.served; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}

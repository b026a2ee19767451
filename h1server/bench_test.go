package h1server

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// proxyLike answers as the proxy copies an endpoint's answer: a few fields,
// a length, the status, one write of the body.
var proxyLike = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Content-Type"] = []string{"text/plain"}
	h["Content-Length"] = []string{"1024"}
	h["X-Request-Id"] = []string{"dc8livhksdufuvf5lddg"}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(kibibyte)
})

var kibibyte = []byte(strings.Repeat("x", 1024))

const benchRequest = "GET /bench/path?q=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"

// benchServe runs b.N requests one after another on one keep-alive
// connection to serve's server, over TCP on the loopback, and reports the
// allocations of both ends per request (the client's are a read and a
// write).
func benchServe(b *testing.B, serve func(net.Listener) error, stop func() error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	served := make(chan error, 1)
	go func() { served <- serve(l) }()
	defer func() {
		require.NoError(b, stop())
		<-served
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(b, err)
	defer c.Close()
	br := bufio.NewReaderSize(c, 8<<10)
	// The first answer gives the length of every one (Date is of fixed
	// width).
	_, err = io.WriteString(c, benchRequest)
	require.NoError(b, err)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(b, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_, err = io.WriteString(c, benchRequest)
	require.NoError(b, err)
	length := 0
	for {
		line, err := br.ReadSlice('\n')
		require.NoError(b, err)
		length += len(line)
		if len(line) == 2 {
			break
		}
	}
	_, err = br.Discard(1024)
	require.NoError(b, err)
	length += 1024
	answer := make([]byte, length)
	request := []byte(benchRequest)
	b.ReportAllocs()
	b.ResetTimer()
	before := cpuTime(b)
	for range b.N {
		if _, err := c.Write(request); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(br, answer); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime(b)-before).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's CPU time so far, both ends of the benchmark's
// connection: on a shared machine, the figure that does not depend on who
// else runs.
func cpuTime(b *testing.B) time.Duration {
	var usage syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &usage))
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

// BenchmarkServer is a request through the Server; BenchmarkGoServer the
// same through Go's server, the baseline.
func BenchmarkServer(b *testing.B) {
	s := New(&http.Server{Handler: proxyLike})
	benchServe(b, s.Serve, s.Close)
}

func BenchmarkGoServer(b *testing.B) {
	s := &http.Server{Handler: proxyLike}
	benchServe(b, s.Serve, s.Close)
}

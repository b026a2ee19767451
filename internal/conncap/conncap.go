// Package conncap provides, for tests, the check that a server holds a cap of
// one client connection: a second connection waits, unserved, while the
// first is open and served, and is served once the first closes.
package conncap

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// hangGuard bounds the wait for the second connection to be served; it is a
// deadlock guard, not a timing assertion.
const hangGuard = 10 * time.Second

// CheckOne checks that the server at address, capped at one connection,
// serves one at a time. served returns how many requests the server has
// served so far, from none.
func CheckOne(t *testing.T, address string, served func() int) {
	t.Helper()
	first, err := net.Dial("tcp", address)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	firstReader := bufio.NewReader(first)
	get(t, first, firstReader, "/1")

	// The second connection is made (the kernel queues it) but not served
	// while the first one is open.
	second, err := net.Dial("tcp", address)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if _, err := io.WriteString(second, "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(second), nil)
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	// The first connection is still served while the second one waits.
	get(t, first, firstReader, "/1b")
	if n := served(); n != 2 {
		t.Fatalf("%d requests served with the second connection waiting, want 2", n)
	}
	select {
	case err := <-answered:
		t.Fatalf("the second connection was served while the first was open: %v", err)
	default:
	}

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("the second connection, served once the first closed: %v", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("the second connection was not served once the first closed")
	}
	if n := served(); n != 3 {
		t.Fatalf("%d requests served in all, want 3", n)
	}
}

// get sends a GET of path on conn and reads its answer.
func get(t *testing.T, conn net.Conn, reader *bufio.Reader, path string) {
	t.Helper()
	if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

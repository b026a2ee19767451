package wire

import (
	"net"
	"syscall"
)

// pending reports whether conn, a TCP connection, has bytes that arrived and
// were not read yet. It looks without reading or waiting; for any other
// connection (TLS holds records of its own) it reports false.
func pending(conn net.Conn) bool {
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		return false
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return false
	}
	var waiting bool
	var buf [1]byte
	_ = raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		waiting = err == nil && n > 0
		// Done either way: a socket with nothing to read must not be waited on.
		return true
	})
	return waiting
}

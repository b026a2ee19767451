package wire

import (
	"net"
	"syscall"
)

// pending reports whether conn, a TCP connection, has bytes that arrived and
// were not read yet. It looks without reading or waiting; for any other
// connection (TLS holds records of its own) it reports false.
func pending(conn net.Conn) bool {
	n, ok, err := peek(conn)
	return ok && err == nil && n > 0
}

// readable reports whether a read on conn, a TCP connection, would not
// wait: it has bytes, its end or an error to give. An idle connection that
// is readable is not fit to carry a request. It reports false for any other
// connection.
func readable(conn net.Conn) bool {
	_, ok, err := peek(conn)
	return ok && err != syscall.EAGAIN
}

// peek looks at what a read on conn would give, without reading or
// waiting: ok is false when conn is no TCP connection, err is EAGAIN when
// there is nothing to read yet, and n is 0 with no error at its end.
func peek(conn net.Conn) (n int, ok bool, err error) {
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		return 0, false, nil
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return 0, true, err
	}
	var buf [1]byte
	_ = raw.Read(func(fd uintptr) bool {
		n, _, err = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Done either way: a socket with nothing to read must not be waited on.
		return true
	})
	return n, true, err
}

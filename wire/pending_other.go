//go:build !linux

package wire

import "net"

// pending reports whether conn has bytes that arrived and were not read yet;
// off Linux it cannot tell, and reports false.
func pending(net.Conn) bool {
	return false
}

// readable reports whether a read on conn would not wait; off Linux it
// cannot tell, and reports false.
func readable(net.Conn) bool {
	return false
}

package wire

import (
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer listener.Close()
	client, err = net.Dial("tcp", listener.Addr().String())
	require.NoError(t, err)
	server, err = listener.Accept()
	require.NoError(t, err)
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

func TestFramingConnReadEndsAtTheEndOfAnAnswer(t *testing.T) {
	t.Parallel()
	// An answer exactly as long as the read buffer, so that the read that
	// brings it has no room to show what follows.
	const head = "HTTP/1.1 200 OK\r\nContent-Length: 4055\r\n\r\n"
	full := head + strings.Repeat("a", 4055)
	require.Len(t, full, 4096)
	tests := []struct {
		name, answer, after string
		wantErr             error
	}{
		{"bytes past the answer in the same read", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "POISON", io.EOF},
		{"bytes past an answer that fills the read", full, "POISON", io.EOF},
		{"an answer that fills the read, alone", full, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client, server := tcpPair(t)
			c := &framingConn{Conn: client}
			c.arm(t.Context(), false)
			_, err := io.WriteString(server, tt.answer+tt.after)
			require.NoError(t, err)
			waitForBytes(t, client, len(tt.answer+tt.after))
			buf := make([]byte, 4096)
			n, err := c.Read(buf)
			assert.Equal(t, tt.answer, string(buf[:n]))
			assert.Equal(t, tt.wantErr, err)
			if tt.wantErr != nil {
				n, err = c.Read(buf)
				assert.Zero(t, n)
				assert.Equal(t, io.EOF, err, "the stream stays ended")
			}
		})
	}
	t.Run("bytes while no answer is due", func(t *testing.T) {
		t.Parallel()
		client, server := tcpPair(t)
		c := &framingConn{Conn: client}
		_, err := io.WriteString(server, "HTTP/1.1 200 OK\r\n\r\n")
		require.NoError(t, err)
		n, err := c.Read(make([]byte, 64))
		assert.Zero(t, n)
		assert.Equal(t, io.EOF, err)
	})
}

// waitForBytes waits until want bytes have arrived on conn, a TCP
// connection, unread: a deadlock guard, not a timing assertion.
func waitForBytes(t *testing.T, conn net.Conn, want int) {
	t.Helper()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	deadline := time.Now().Add(hangGuard)
	for {
		var queued int32
		require.NoError(t, raw.Control(func(fd uintptr) {
			_, _, _ = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&queued)))
		}))
		if int(queued) >= want {
			return
		}
		require.True(t, time.Now().Before(deadline), "only %d of %d bytes arrived", queued, want)
		time.Sleep(time.Millisecond)
	}
}

package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// netTCPFixture is a /proc/net/tcp of a proxy on port 8080 (0x1F90) with an
// endpoint on 8000 (0x1F40) and its debug server on 6060 (0x17AC).
const netTCPFixture = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0000000000000000 100 0 0 10 0
   1: 0100007F:17AC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 101 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 102 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:D432 0100007F:1F40 01 00000000:00000000 00:00000000 00000000     0        0 103 1 0000000000000000 20 4 30 10 -1
   4: 0100007F:D433 0100007F:1F40 01 00000000:00000000 00:00000000 00000000     0        0 104 1 0000000000000000 20 4 30 10 -1
   5: 0100007F:1F40 0100007F:D432 01 00000000:00000000 00:00000000 00000000     0        0 200 1 0000000000000000 20 4 30 10 -1
   6: 0100007F:D434 0100007F:1F40 06 00000000:00000000 03:00000F8C 00000000     0        0 0 3 0000000000000000
   7: 0100007F:D435 0100007F:1F40 06 00000000:00000000 03:00000F8C 00000000     0        0 0 3 0000000000000000
   8: 0100007F:1F40 0100007F:D436 06 00000000:00000000 03:00000F8C 00000000     0        0 0 3 0000000000000000
   9: 0100007F:D437 0100007F:1F40 08 00000000:00000000 00:00000000 00000000     0        0 105 1 0000000000000000 20 4 30 10 -1
  10: 0100007F:1F90 0100007F:D438 08 00000000:00000000 00:00000000 00000000     0        0 106 1 0000000000000000 20 4 30 10 -1
`

// netTCP6Fixture holds one more client connection of the proxy, over IPv6.
const netTCP6Fixture = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:D439 01 00000000:00000000 00:00000000 00000000     0        0 107 1 0000000000000000 20 4 30 10 -1
`

func TestParseNetTCP(t *testing.T) {
	t.Parallel()
	sockets, err := parseNetTCP(strings.NewReader(netTCPFixture))
	require.NoError(t, err)
	require.Len(t, sockets, 11)
	assert.Equal(t, socket{LocalPort: 8080, RemotePort: 0, State: tcpListen, Inode: 100}, sockets[0])
	assert.Equal(t, socket{LocalPort: 0xD432, RemotePort: 8000, State: tcpEstablished, Inode: 103}, sockets[3])
	assert.Equal(t, socket{LocalPort: 0xD434, RemotePort: 8000, State: tcpTimeWait, Inode: 0}, sockets[6])

	sockets6, err := parseNetTCP(strings.NewReader(netTCP6Fixture))
	require.NoError(t, err)
	assert.Equal(t, []socket{{LocalPort: 8080, RemotePort: 0xD439, State: tcpEstablished, Inode: 107}}, sockets6)
}

func TestParseNetTCPRejectsBadLines(t *testing.T) {
	t.Parallel()
	header := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	tests := []struct {
		name string
		line string
		want string
	}{
		{"too few fields", "0: 0100007F:1F90 00000000:0000 0A", "at least 10 fields"},
		{"address without port", "0: 0100007F 00000000:0000 0A 0:0 00:0 0 0 0 100", "HEXADDRESS:HEXPORT"},
		{"port not hex", "0: 0100007F:XYZ 00000000:0000 0A 0:0 00:0 0 0 0 100", `"0100007F:XYZ"`},
		{"state not hex", "0: 0100007F:1F90 00000000:0000 QQ 0:0 00:0 0 0 0 100", `state "QQ"`},
		{"inode not a number", "0: 0100007F:1F90 00000000:0000 0A 0:0 00:0 0 0 0 x1", `inode "x1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseNetTCP(strings.NewReader(header + tt.line + "\n"))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	sockets, err := parseNetTCP(strings.NewReader(netTCPFixture + strings.SplitN(netTCP6Fixture, "\n", 2)[1]))
	require.NoError(t, err)
	// Listed twice, as the kernel may when the table changes while read.
	sockets = append(sockets, sockets[2], sockets[3])
	// The proxy holds 100-107; 200 is the endpoint's end of a connection.
	owned := map[uint64]bool{100: true, 101: true, 102: true, 103: true, 104: true, 105: true, 106: true, 107: true}

	got := classify(sockets, owned, 8080, []int{8000, 8001})

	assert.Equal(t, socketCounts{
		client:    3, // 102, 106 (CLOSE_WAIT) and 107 (IPv6); not the listener 100
		upstream:  2, // 103 and 104; not 105 (CLOSE_WAIT), not the endpoint's 200
		closeWait: 2, // 105 and 106
		timeWait:  2, // towards 8000; not the one the endpoint closed first
	}, got)
}

func TestParseVmRSS(t *testing.T) {
	t.Parallel()
	rss, err := parseVmRSS([]byte("Name:\tproxy\nVmHWM:\t   20000 kB\nVmRSS:\t   17472 kB\nRssAnon:\t 9000 kB\n"))
	require.NoError(t, err)
	assert.Equal(t, int64(17472), rss)

	_, err = parseVmRSS([]byte("Name:\tzombie\n"))
	assert.ErrorContains(t, err, "no VmRSS line")
	_, err = parseVmRSS([]byte("VmRSS:\t17 MB\n"))
	assert.ErrorContains(t, err, "want VmRSS: N kB")
}

func TestParseGoroutineTotal(t *testing.T) {
	t.Parallel()
	n, err := parseGoroutineTotal([]byte("goroutine profile: total 33\n5 @ 0x1 0x2\n#\t0x1\tmain.f+0x1\tf.go:1\n"))
	require.NoError(t, err)
	assert.Equal(t, 33, n)

	_, err = parseGoroutineTotal([]byte("<html>404</html>"))
	assert.ErrorContains(t, err, "want \"goroutine profile: total N\"")
}

func TestParseMemStat(t *testing.T) {
	t.Parallel()
	profile := []byte("heap profile: 1: 2 [3: 4] @ heap/1048576\n\n# runtime.MemStats\n# HeapAlloc = 4000\n# HeapInuse = 8192\n# Stack = 655360 / 655360\n")

	heap, err := parseMemStat(profile, "HeapInuse")
	require.NoError(t, err)
	assert.Equal(t, int64(8192), heap)
	stack, err := parseMemStat(profile, "Stack")
	require.NoError(t, err)
	assert.Equal(t, int64(655360), stack)
	_, err = parseMemStat(profile, "NextGC")
	assert.ErrorContains(t, err, `no "# NextGC" line`)
}

// fakeProc writes a /proc for process pid: fds (sockets by inode, then
// plain files), its status and the fixture's tables.
func fakeProc(t *testing.T, pid int, sockets []uint64, files int) string {
	t.Helper()
	root := t.TempDir()
	fdDir := filepath.Join(root, fmt.Sprint(pid), "fd")
	require.NoError(t, os.MkdirAll(fdDir, 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "net"), 0o755))
	fd := 0
	for _, inode := range sockets {
		require.NoError(t, os.Symlink(fmt.Sprintf("socket:[%d]", inode), filepath.Join(fdDir, fmt.Sprint(fd))))
		fd++
	}
	for range files {
		require.NoError(t, os.Symlink("/dev/null", filepath.Join(fdDir, fmt.Sprint(fd))))
		fd++
	}
	require.NoError(t, os.WriteFile(filepath.Join(root, fmt.Sprint(pid), "status"), []byte("VmRSS:\t 12345 kB\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "net", "tcp"), []byte(netTCPFixture), 0o644))
	return root
}

func TestSamplerTake(t *testing.T) {
	t.Parallel()
	debug := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "/debug/pprof/goroutine?debug=1", r.URL.RequestURI())
		_, _ = w.Write([]byte("goroutine profile: total 21\n"))
	}))
	t.Cleanup(debug.Close)
	smp := newSampler(4242, 8080, []int{8000}, debug.URL)
	// No tcp6 table: a machine without IPv6.
	smp.procRoot = fakeProc(t, 4242, []uint64{100, 101, 102, 103, 104}, 3)

	got, err := smp.take(context.Background(), 0, phaseRest)

	require.NoError(t, err)
	assert.Equal(t, sample{
		Phase: phaseRest, Goroutines: 21, FDs: 8, RSSKB: 12345,
		ClientConns: 1, UpstreamConns: 2, CloseWait: 0, TimeWait: 2,
	}, got)
	assert.Equal(t, 21-2*2-1, got.NetGoroutines())
	assert.Equal(t, 8-2-1, got.NetFDs())
}

func TestSamplerReportsAMissingProcess(t *testing.T) {
	t.Parallel()
	smp := newSampler(4242, 8080, []int{8000}, "http://127.0.0.1:1")
	smp.procRoot = t.TempDir()

	_, err := smp.take(context.Background(), 0, phaseLoad)

	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestSamplerLiveMemory(t *testing.T) {
	t.Parallel()
	debug := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "/debug/pprof/heap?debug=1&gc=1", r.URL.RequestURI())
		_, _ = w.Write([]byte("heap profile: 0: 0 [0: 0] @ heap/1\n\n# runtime.MemStats\n# HeapInuse = 3000000\n# Stack = 500000 / 600000\n"))
	}))
	t.Cleanup(debug.Close)
	smp := newSampler(1, 8080, nil, debug.URL)

	heap, stacks, err := smp.liveMemory(context.Background())

	require.NoError(t, err)
	assert.Equal(t, int64(3000000), heap)
	assert.Equal(t, int64(500000), stacks)
}

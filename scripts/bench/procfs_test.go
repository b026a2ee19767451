package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseVmRSS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  string
		want    int64
		wantErr bool
	}{
		{name: "status file", status: "Name:\tproxy\nVmPeak:\t 1931604 kB\nVmHWM:\t   16000 kB\nVmRSS:\t   15620 kB\nRssAnon:\t    8000 kB\n", want: 15620},
		{name: "no VmRSS (a kernel thread)", status: "Name:\tkthreadd\nState:\tS (sleeping)\n", wantErr: true},
		{name: "other unit", status: "VmRSS:\t 15 MB\n", wantErr: true},
		{name: "not a number", status: "VmRSS:\t x kB\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseVmRSS(tt.status)
			if tt.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestReadRSS(t *testing.T) {
	t.Parallel()
	if !haveProc() {
		t.Skip("no /proc here")
	}
	kb, err := readRSS(os.Getpid())
	require.NoError(t, err)
	assert.Positive(t, kb)
}

func TestParseProcStat(t *testing.T) {
	t.Parallel()
	stat := "cpu  285941 7 110220 796637 4506 0 19670 13323 0 0\ncpu0 142000 3 55000 398000 2000 0 9000 6000 0 0\nintr 1 2 3\n"
	got, err := parseProcStat(stat)
	require.NoError(t, err)
	// User, nice and system ticks, at 100 a second.
	assert.Equal(t, (285941+7+110220)*10*time.Millisecond, got)

	_, err = parseProcStat("intr 1 2 3\n")
	assert.Error(t, err)
	_, err = parseProcStat("cpu  a b c d\n")
	assert.Error(t, err)
}

func TestCPUWindow(t *testing.T) {
	t.Parallel()
	window := startCPUWindow()
	time.Sleep(20 * time.Millisecond)
	cores, ok := window.otherCores()
	if _, err := os.Stat("/proc/stat"); err != nil {
		assert.False(t, ok)
		return
	}
	require.True(t, ok)
	assert.GreaterOrEqual(t, cores, 0.0)
	assert.False(t, cpuWindow{}.ok, "the zero window tells nothing")
}

// statLine returns a /proc/PID/stat line of a process whose command is comm,
// with the given parent, CPU ticks (user and system) and start time.
func statLine(pid int, comm string, ppid int, utime, stime, started int64) string {
	return fmt.Sprintf("%d (%s) S %d %d %d 0 -1 4194560 2825 0 0 0 %d %d 0 0 20 0 8 0 %d 1298530304 8499 18446744073709551615 4206592 0\n",
		pid, comm, ppid, pid, pid, utime, stime, started)
}

func TestParseProcPIDStat(t *testing.T) {
	t.Parallel()
	// A real line, of Caddy.
	got, err := parseProcPIDStat("13668 (caddy) S 13663 13663 10967 0 -1 4194560 2825 0 0 0 3 1 0 0 20 0 8 0 4404527 1298530304 8499 18446744073709551615\n")
	require.NoError(t, err)
	assert.Equal(t, procStat{pid: 13668, ppid: 13663, started: 4404527, cpu: 40 * time.Millisecond}, got)

	// A command name may hold spaces and parentheses, a ") " too.
	got, err = parseProcPIDStat(statLine(42, "nginx: worker (1) ) S 7", 41, 250, 125, 99))
	require.NoError(t, err)
	assert.Equal(t, procStat{pid: 42, ppid: 41, started: 99, cpu: 3750 * time.Millisecond}, got)

	for name, line := range map[string]string{
		"empty":          "",
		"no command":     "42 S 1 42 42",
		"unclosed":       "42 (nginx S 1 42 42 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5 0 0",
		"bad PID":        "x (nginx) S 1 42 42 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5 0 0",
		"too few fields": "42 (nginx) S 1 42 42 0 -1 0 0 0 0 0 1 1",
		"bad utime":      "42 (nginx) S 1 42 42 0 -1 0 0 0 0 0 x 1 0 0 20 0 1 0 5 0 0",
		"negative stime": "42 (nginx) S 1 42 42 0 -1 0 0 0 0 0 1 -1 0 0 20 0 1 0 5 0 0",
	} {
		_, err := parseProcPIDStat(line)
		assert.Error(t, err, name)
	}
	_, err = parseProcPIDStat("42 (nginx) S 1 42 42 0 -1 0 0 0 0 0 x 1 0 0 20 0 1 0 5 0 0")
	assert.EqualError(t, err, `stat line of PID 42: field 14 "x": want a count`)
}

// fakeProc writes a proc root of the processes given as their stat lines,
// and entries that are not processes, and returns it.
func fakeProc(t *testing.T, lines ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, line := range lines {
		st, err := parseProcPIDStat(line)
		require.NoError(t, err)
		dir := filepath.Join(root, strconv.Itoa(st.pid))
		require.NoError(t, os.Mkdir(dir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "stat"), []byte(line), 0o644))
	}
	// Not processes: a file named like one, other names, and a process that
	// has ended between the listing and the read.
	require.NoError(t, os.WriteFile(filepath.Join(root, "stat"), []byte("cpu 1 2 3 4\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "77"), []byte("not a directory"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(root, "sys"), 0o755))
	require.NoError(t, os.Mkdir(filepath.Join(root, "88"), 0o755))
	return root
}

func TestSampleCPUTree(t *testing.T) {
	t.Parallel()
	// nginx: master 100, workers 101 and 102, and a helper 103 of worker
	// 102's; 200 is another server, a child of init like the master.
	root := fakeProc(t,
		statLine(1, "init", 0, 5, 5, 1),
		statLine(100, "nginx", 1, 10, 5, 1000),
		statLine(101, "nginx: worker process", 100, 200, 100, 1001),
		statLine(102, "nginx: worker process", 100, 300, 150, 1001),
		statLine(103, "helper (a) b", 102, 1, 1, 1002),
		statLine(200, "haproxy", 1, 900, 900, 900),
	)
	got, err := sampleCPU(root, 100, true)
	require.NoError(t, err)
	assert.Equal(t, cpuSample{
		{pid: 100, started: 1000}: 150 * time.Millisecond,
		{pid: 101, started: 1001}: 3 * time.Second,
		{pid: 102, started: 1001}: 4500 * time.Millisecond,
		{pid: 103, started: 1002}: 20 * time.Millisecond,
	}, got)

	got, err = sampleCPU(root, 100, false)
	require.NoError(t, err)
	assert.Equal(t, cpuSample{{pid: 100, started: 1000}: 150 * time.Millisecond}, got, "the process alone")

	for _, tree := range []bool{true, false} {
		_, err = sampleCPU(root, 300, tree)
		require.ErrorIs(t, err, errProcessGone, "tree %t", tree)
		_, err = sampleCPU(root, 88, tree)
		require.ErrorIs(t, err, errProcessGone, "ended: tree %t", tree)
	}

	bad := fakeProc(t, statLine(100, "nginx", 1, 10, 5, 1000))
	require.NoError(t, os.WriteFile(filepath.Join(bad, "100", "stat"), []byte("100 (nginx) S"), 0o644))
	_, err = sampleCPU(bad, 100, true)
	assert.ErrorContains(t, err, filepath.Join(bad, "100", "stat")+": stat line", "the file is named")
}

func TestCPUBetween(t *testing.T) {
	t.Parallel()
	master, worker := processKey{pid: 100, started: 1000}, processKey{pid: 101, started: 1001}
	before := cpuSample{master: 100 * time.Millisecond, worker: 2 * time.Second, {pid: 102, started: 1001}: time.Second}
	after := cpuSample{
		master: 150 * time.Millisecond,
		worker: 5 * time.Second,
		// Worker 102 has exited, and its PID has gone to a new worker.
		{pid: 102, started: 1500}: 300 * time.Millisecond,
		{pid: 103, started: 1500}: 200 * time.Millisecond,
	}
	assert.Equal(t, (50+3000+300+200)*time.Millisecond, cpuBetween(before, after))
	assert.Zero(t, cpuBetween(before, before))
	assert.Equal(t, time.Duration(0), cpuBetween(cpuSample{master: time.Second}, cpuSample{master: 0}), "never less than nothing")
}

func TestSampleCPULive(t *testing.T) {
	if !haveProc() {
		t.Skip("no /proc here")
	}
	self, err := sampleCPU(procRoot, os.Getpid(), false)
	require.NoError(t, err)
	require.Len(t, self, 1)

	child := exec.Command("sleep", "30")
	require.NoError(t, child.Start())
	t.Cleanup(func() {
		_ = child.Process.Kill()
		_ = child.Wait()
	})
	tree, err := sampleCPU(procRoot, os.Getpid(), true)
	require.NoError(t, err)
	pids := map[int]bool{}
	for key := range tree {
		pids[key.pid] = true
	}
	assert.True(t, pids[os.Getpid()], "the harness")
	assert.True(t, pids[child.Process.Pid], "its child")
	for key := range self {
		assert.Contains(t, tree, key, "the same key in both")
	}

	// Burn some CPU: the sample grows.
	deadline := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	later, err := sampleCPU(procRoot, os.Getpid(), false)
	require.NoError(t, err)
	assert.Positive(t, cpuBetween(self, later))
}

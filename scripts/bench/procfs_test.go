package main

import (
	"os"
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

package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc/stat's CPU times: 1/100 s on Linux, whatever
// the kernel's tick rate.
const userHZ = 100

// parseVmRSS returns the VmRSS line of a /proc/PID/status text, in kB.
func parseVmRSS(status string) (int64, error) {
	for line := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q: want a number of kB", strings.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS line %q: %w", strings.TrimSpace(line), err)
		}
		return kb, nil
	}
	return 0, fmt.Errorf("no VmRSS line")
}

// readRSS returns the resident memory of process pid in kB; it needs Linux's
// /proc.
func readRSS(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the RSS: %w", err)
	}
	kb, err := parseVmRSS(string(status))
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	return kb, nil
}

// parseProcStat returns the CPU time every process on the machine has used,
// user, nice and system, from the "cpu" line of a /proc/stat text. Interrupt
// time is left out, since no process is charged with it either.
func parseProcStat(stat string) (time.Duration, error) {
	scanner := bufio.NewScanner(strings.NewReader(stat))
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) < 4 || fields[0] != "cpu" {
			continue
		}
		var ticks int64
		for _, f := range fields[1:4] {
			n, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/stat cpu line: %w", err)
			}
			ticks += n
		}
		return time.Duration(ticks) * time.Second / userHZ, nil
	}
	return 0, fmt.Errorf("/proc/stat: no cpu line")
}

// machineCPU returns the CPU time every process on the machine has used so
// far, or false where there is no /proc/stat.
func machineCPU() (time.Duration, bool) {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	cpu, err := parseProcStat(string(stat))
	return cpu, err == nil
}

// cpuWindow measures, over a span of time, how much CPU the processes that
// are not the harness's used: the machine's CPU time less the harness's own
// and its reaped children's (the proxy, nginx and its workers, HAProxy, wrk).
// Another benchmark on the same machine shows there.
type cpuWindow struct {
	started      time.Time
	machine, own time.Duration
	ok           bool
}

func startCPUWindow() cpuWindow {
	machine, ok := machineCPU()
	return cpuWindow{started: time.Now(), machine: machine, own: selfCPU() + childrenCPU(), ok: ok}
}

// otherCores returns the CPU the other processes used since the window
// started, in cores (1 is one core busy all along), or false where it cannot
// tell. Call it once the window's children have been waited for.
func (w cpuWindow) otherCores() (float64, bool) {
	machine, ok := machineCPU()
	wall := time.Since(w.started)
	if !w.ok || !ok || wall <= 0 {
		return 0, false
	}
	other := (machine - w.machine) - (selfCPU() + childrenCPU() - w.own)
	return max(float64(other)/float64(wall), 0), true
}

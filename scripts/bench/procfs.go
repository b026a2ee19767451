package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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

// procRoot is where Linux mounts the process file system; the functions that
// read a process tree take it as an argument, so that tests give a fake one.
const procRoot = "/proc"

// procStat is what the harness reads of a /proc/PID/stat line.
type procStat struct {
	pid, ppid int
	// started is the process's start time in clock ticks after boot, which
	// tells it from a later process given the same PID.
	started int64
	// cpu is the user and system time of all its threads, ended ones too.
	cpu time.Duration
}

// Fields of /proc/PID/stat, counted from 1 as proc(5) does.
const (
	statFieldState   = 3
	statFieldPPID    = 4
	statFieldUtime   = 14
	statFieldStime   = 15
	statFieldStarted = 22
)

// parseProcPIDStat reads a /proc/PID/stat line. The command name, in
// parentheses, may itself hold spaces and parentheses (nginx names its
// workers "nginx: worker process"), so the fields are counted from the last
// ")".
func parseProcPIDStat(line string) (procStat, error) {
	line = strings.TrimSpace(line)
	pidText, _, ok := strings.Cut(line, " (")
	end := strings.LastIndex(line, ")")
	if !ok || end < len(pidText) {
		return procStat{}, fmt.Errorf("stat line %q: want PID (command) fields", line)
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return procStat{}, fmt.Errorf("stat line %q: PID %q: want a positive number", line, pidText)
	}
	// rest[0] is field statFieldState.
	rest := strings.Fields(line[end+1:])
	if len(rest) <= statFieldStarted-statFieldState {
		return procStat{}, fmt.Errorf("stat line %q: %d fields after the command, want at least %d",
			line, len(rest), statFieldStarted-statFieldState+1)
	}
	var errs []error
	field := func(n int) int64 {
		text := rest[n-statFieldState]
		v, err := strconv.ParseInt(text, 10, 64)
		if err != nil || v < 0 {
			errs = append(errs, fmt.Errorf("field %d %q: want a count", n, text))
		}
		return v
	}
	st := procStat{pid: pid, ppid: int(field(statFieldPPID)), started: field(statFieldStarted)}
	st.cpu = time.Duration(field(statFieldUtime)+field(statFieldStime)) * time.Second / userHZ
	if err := errors.Join(errs...); err != nil {
		return procStat{}, fmt.Errorf("stat line of PID %d: %w", pid, err)
	}
	return st, nil
}

// errProcessGone is a process that is not, or no longer, under the proc root.
var errProcessGone = errors.New("no such process")

// readProcPIDStat reads and parses root/PID/stat; a process that has ended
// gives errProcessGone.
func readProcPIDStat(root string, pid int) (procStat, error) {
	path := filepath.Join(root, strconv.Itoa(pid), "stat")
	text, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return procStat{}, fmt.Errorf("%s: %w", path, errProcessGone)
	}
	if err != nil {
		return procStat{}, err
	}
	st, err := parseProcPIDStat(string(text))
	if err != nil {
		return procStat{}, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// readProcStats reads the stat file of every process under root, leaving out
// those that end while it reads.
func readProcStats(root string) ([]procStat, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var stats []procStat
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 || !e.IsDir() {
			continue
		}
		st, err := readProcPIDStat(root, pid)
		switch {
		case errors.Is(err, errProcessGone):
			continue
		case err != nil:
			return nil, err
		}
		stats = append(stats, st)
	}
	return stats, nil
}

// processKey names a process across samples: its PID and start time.
type processKey struct {
	pid     int
	started int64
}

// cpuSample is the CPU time each process of a sample had used.
type cpuSample map[processKey]time.Duration

// sampleCPU reads under root the CPU time of process pid and, with tree, of
// every process descended from it. A pid not under root gives
// errProcessGone.
func sampleCPU(root string, pid int, tree bool) (cpuSample, error) {
	if !tree {
		st, err := readProcPIDStat(root, pid)
		if err != nil {
			return nil, err
		}
		return cpuSample{{pid: st.pid, started: st.started}: st.cpu}, nil
	}
	stats, err := readProcStats(root)
	if err != nil {
		return nil, err
	}
	return descendantsCPU(stats, pid)
}

// descendantsCPU returns the sample of process pid and its descendants among
// stats, or errProcessGone when pid is not among them.
func descendantsCPU(stats []procStat, pid int) (cpuSample, error) {
	children := make(map[int][]procStat)
	var top *procStat
	for i, st := range stats {
		if st.pid == pid {
			top = &stats[i]
		} else {
			children[st.ppid] = append(children[st.ppid], st)
		}
	}
	if top == nil {
		return nil, fmt.Errorf("process %d: %w", pid, errProcessGone)
	}
	sample := make(cpuSample)
	queue := []procStat{*top}
	for len(queue) > 0 {
		st := queue[0]
		queue = queue[1:]
		key := processKey{pid: st.pid, started: st.started}
		if _, seen := sample[key]; seen {
			continue
		}
		sample[key] = st.cpu
		queue = append(queue, children[st.pid]...)
	}
	return sample, nil
}

// cpuBetween returns the CPU time that the processes of after used since
// before: for each, its time less its time in before, or all of it if it
// started since. A process that ended in between counts for nothing, its
// time since before being lost with it; a server whose processes live
// through the run, as nginx's workers do, is counted in full.
func cpuBetween(before, after cpuSample) time.Duration {
	var total time.Duration
	for key, cpu := range after {
		total += max(cpu-before[key], 0)
	}
	return total
}

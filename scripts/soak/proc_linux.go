package main

import (
	"fmt"
	"os/exec"
	"syscall"
)

// setParentDeathSignal has the kernel send cmd SIGTERM if the harness dies
// without stopping it (SIGKILL, a crash), so that no child is left behind.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

// raiseFileLimit raises the harness's soft RLIMIT_NOFILE to its hard limit
// and returns the new soft limit. It fails, saying what to do, when the hard
// limit is below want.
func raiseFileLimit(want uint64) (uint64, error) {
	var limit syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &limit); err != nil {
		return 0, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	if limit.Max < want {
		return limit.Cur, fmt.Errorf("the open-file limit (RLIMIT_NOFILE) is %d at most (hard limit), below the %d this needs: "+
			"raise it (ulimit -Hn %d as root, or LimitNOFILE) or ask for fewer connections", limit.Max, want, want)
	}
	if limit.Cur < limit.Max {
		limit.Cur = limit.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &limit); err != nil {
			return 0, fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", limit.Max, err)
		}
	}
	return limit.Cur, nil
}

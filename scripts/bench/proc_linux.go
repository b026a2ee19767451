package main

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal has the kernel send cmd SIGTERM if the harness dies
// without stopping it (SIGKILL, a crash), so that no proxy is left behind.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

//go:build unix

package main

import (
	"syscall"
	"time"
)

// selfCPU returns the CPU time the harness (load generator and endpoints) has
// used so far, or 0 when it cannot tell.
func selfCPU() time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

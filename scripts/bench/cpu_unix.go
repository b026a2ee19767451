//go:build unix

package main

import (
	"syscall"
	"time"
)

// selfCPU returns the CPU time the harness (load generator and endpoints) has
// used so far, or 0 when it cannot tell.
func selfCPU() time.Duration {
	return rusage(syscall.RUSAGE_SELF)
}

// childrenCPU returns the CPU time of the harness's children that have ended
// and been waited for, with their own such children, or 0 when it cannot tell.
func childrenCPU() time.Duration {
	return rusage(syscall.RUSAGE_CHILDREN)
}

func rusage(who int) time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(who, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

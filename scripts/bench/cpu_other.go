//go:build !unix

package main

import "time"

// selfCPU returns 0: the harness's CPU time is only read on Unix.
func selfCPU() time.Duration { return 0 }

// childrenCPU returns 0: the children's CPU time is only read on Unix.
func childrenCPU() time.Duration { return 0 }

//go:build !linux

package main

import (
	"errors"
	"os/exec"
)

// setParentDeathSignal does nothing here: only Linux has a parent-death
// signal; the harness stops its children itself on every normal path.
func setParentDeathSignal(*exec.Cmd) {}

// raiseFileLimit is not done here: the soak reads /proc, so it needs Linux.
func raiseFileLimit(uint64) (uint64, error) {
	return 0, errors.New("the soak needs Linux (it reads /proc)")
}

//go:build !linux

package main

import "os/exec"

// setParentDeathSignal does nothing here: only Linux has a parent-death
// signal; the harness stops its proxies itself on every normal path.
func setParentDeathSignal(*exec.Cmd) {}

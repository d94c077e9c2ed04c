//go:build !linux

package main

import (
	"os/exec"
	"time"
)

// dieWithParent is Linux only; elsewhere a killed bench may leave its
// redis-server behind.
func dieWithParent(*exec.Cmd) {}

func loadAverage() string { return "unknown" }

// machineIdle is measured on Linux only.
func machineIdle() (idle time.Duration, cpus int, ok bool) { return 0, 0, false }

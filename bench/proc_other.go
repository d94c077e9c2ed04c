//go:build !linux

package main

import "os/exec"

// dieWithParent is Linux only; elsewhere a killed bench may leave its
// redis-server behind.
func dieWithParent(*exec.Cmd) {}

func loadAverage() string { return "unknown" }

package main

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// dieWithParent makes the kernel kill cmd if the bench dies without
// cleaning up (SIGKILL, a crash), so that no redis-server or worker process
// is left behind holding memory.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// loadAverage is the 1-minute load average: on a shared machine, it says
// how much else was running.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "unknown"
	}
	return f[0]
}

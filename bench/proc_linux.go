package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill cmd if the bench dies without
// cleaning up (SIGKILL, a crash), so that no redis-server or worker process
// is left behind holding memory.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

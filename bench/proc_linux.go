package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
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

// machineIdle is the time all CPUs together have spent idle (or waiting
// for I/O) since boot, and the number of CPUs (all of the machine's, not
// only those this process may run on). The kernel measures idle time
// exactly (it stamps each CPU's entry into and exit from idle), whereas it
// samples busy time at each clock tick, which errs by several % over a
// second; so busy time over an interval is better taken as wall time ×
// CPUs - idle time.
func machineIdle() (idle time.Duration, cpus int, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	return parseIdle(string(b))
}

// parseIdle parses /proc/stat: the "cpu" line (user nice system idle
// iowait irq softirq steal..., in clock ticks: USER_HZ, 100 on every Linux
// the bench runs on) for idle + iowait, and counts the "cpuN" lines.
func parseIdle(stat string) (idle time.Duration, cpus int, ok bool) {
	for _, line := range strings.Split(stat, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 6 && f[0] == "cpu":
			const tick = 10 * time.Millisecond
			for _, v := range f[4:6] {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return 0, 0, false
				}
				idle += time.Duration(n) * tick
			}
			ok = true
		case len(f) > 0 && strings.HasPrefix(f[0], "cpu"):
			cpus++
		}
	}
	return idle, cpus, ok && cpus > 0
}

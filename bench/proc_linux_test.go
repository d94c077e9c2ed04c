package main

import (
	"testing"
	"time"
)

func TestParseIdle(t *testing.T) {
	idle, cpus, ok := parseIdle("cpu  100 5 50 800 20 1 4 0 0 0\ncpu0 50 2 25 400 10 1 2 0 0 0\ncpu1 50 3 25 400 10 0 2 0 0 0\nintr 1 2\n")
	if !ok || idle != 8200*time.Millisecond || cpus != 2 {
		t.Errorf("idle %v, %d CPUs, %v; want 8.2s, 2", idle, cpus, ok)
	}
	if _, _, ok := parseIdle("cpu0 1 2 3 4 5 6 7 8\n"); ok {
		t.Error("a per-CPU line was taken for the total")
	}
	if idle, cpus, ok := machineIdle(); !ok || idle <= 0 || cpus < 1 {
		t.Errorf("machineIdle: %v, %d CPUs, %v", idle, cpus, ok)
	}
}

package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// The demo is README's first command; it must finish and show every kind
// of outcome it promises.
func TestDemo(t *testing.T) {
	t.Cleanup(func() { task.Configure(nil) })
	cfg, err := worker.ParseFlags("worker demo", []string{"--log-level", "error"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := demo(cfg, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{
		"progress: 6/6 finished",
		"demo.add 3+3, priority 50                  COMPLETE",
		"demo.add 20+22, priority 100, RunAfter 1s  COMPLETE",
		"FAILED",
		"demo.fail: the disk is full",
		"priority 500 is out of range",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
}

// TestAdminDispatch: `worker admin ...` reaches the admin command (its
// usage errors exit 2, --help exits 0), not the worker's flag parser.
func TestAdminDispatch(t *testing.T) {
	if code := run([]string{"worker", "admin", "--help"}); code != 0 {
		t.Errorf("worker admin --help exit code %d, want 0", code)
	}
	if code := run([]string{"worker", "admin", "no-such-command"}); code != 2 {
		t.Errorf("worker admin no-such-command exit code %d, want 2", code)
	}
}

func TestDashboardDispatch(t *testing.T) {
	if code := run([]string{"worker", "dashboard", "--help"}); code != 0 {
		t.Errorf("worker dashboard --help exit code %d, want 0", code)
	}
	if code := run([]string{"worker", "dashboard", "--dashboard-addr", "8080"}); code != 2 {
		t.Errorf("worker dashboard with a bad address: exit code %d, want 2", code)
	}
}

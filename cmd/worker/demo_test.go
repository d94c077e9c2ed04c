package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/gotasks/gotasks/cli"
	"github.com/gotasks/gotasks/task"
)

// TestMain lets the tests run this program as a process: the test binary,
// started with $GOTASKS_TEST_MAIN=1, is cmd/worker.
func TestMain(m *testing.M) {
	if os.Getenv("GOTASKS_TEST_MAIN") == "1" {
		os.Exit(program.Main(append([]string{"worker"}, os.Args[1:]...)))
	}
	os.Exit(m.Run())
}

// runMain runs cmd/worker with args in a process of its own and returns
// its exit code, stdout and stderr.
func runMain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "GOTASKS_TEST_MAIN=1", "GOTASKS_REDIS_URL=", "GOTASKS_REDIS_PASSWORD=")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// The demo is README's first command; it must finish and show every kind
// of outcome it promises.
func TestDemo(t *testing.T) {
	t.Cleanup(func() { task.Configure(nil) })
	var out bytes.Buffer
	if err := demo(context.Background(), cli.Config{LogFormat: "text", LogLevel: "error"}, &out); err != nil {
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

// TestDemoCommand runs `worker demo` as README shows it.
func TestDemoCommand(t *testing.T) {
	code, out, errOut := runMain(t, "demo")
	if code != 0 || !strings.Contains(out, "progress: 6/6 finished") {
		t.Fatalf("worker demo: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestCommandsInHelp: the program's help lists the demo with the standard
// commands, and each dispatches.
func TestCommandsInHelp(t *testing.T) {
	code, out, _ := runMain(t, "--help")
	if code != 0 {
		t.Fatalf("worker --help: exit %d", code)
	}
	for _, c := range []string{"demo", "admin", "dashboard", "run", "help"} {
		if !strings.Contains(out, "\n  "+c+" ") {
			t.Errorf("worker --help does not list %s:\n%s", c, out)
		}
	}
	code, out, _ = runMain(t, "help", "demo")
	if code != 0 || !strings.Contains(out, "in-memory Redis") || !strings.Contains(out, "--dashboard-addr") || strings.Contains(out, "--queue") {
		t.Errorf("worker help demo: exit %d\n%s", code, out)
	}
	code, _, errOut := runMain(t, "demo", "--queue", "q")
	if code != 2 || !strings.Contains(errOut, "--queue is not a flag of demo") {
		t.Errorf("worker demo --queue: exit %d, %q", code, errOut)
	}
	if code, _, _ := runMain(t, "admin", "--help"); code != 0 {
		t.Errorf("worker admin --help: exit %d, want 0", code)
	}
	if code, _, _ := runMain(t, "admin", "no-such-command"); code != 2 {
		t.Errorf("worker admin no-such-command: exit %d, want 2", code)
	}
	if code, _, _ := runMain(t, "dashboard", "--help"); code != 0 {
		t.Errorf("worker dashboard --help: exit %d, want 0", code)
	}
	if code, _, _ := runMain(t, "dashboard", "--dashboard-addr", "8080"); code != 2 {
		t.Errorf("worker dashboard with a bad address: exit %d, want 2", code)
	}
}

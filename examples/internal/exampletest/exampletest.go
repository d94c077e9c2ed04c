// Package exampletest runs the README's example programs in tests: each
// program's main runs in a child process (the package's test binary,
// started again), so that a main that calls os.Exit or log.Fatal, reads its
// environment or waits for a signal is tested as it runs; and a private
// miniredis stands in for the Redis a program connects to.
package exampletest

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// envMain tells the test binary to run the example's main instead of its
// tests.
const envMain = "GOTASKS_EXAMPLE_RUN_MAIN"

// Main is the body of an example package's TestMain: in a child started by
// Command it runs main (with the child's os.Args) and exits 0 if main
// returns; otherwise it runs the tests.
func Main(m *testing.M, main func()) {
	if os.Getenv(envMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Child is the example program running in a child process.
type Child struct {
	Cmd            *exec.Cmd
	Stdout, Stderr bytes.Buffer
}

// Command returns the example program, not started: its os.Args[1:] are
// args and its environment is this process's plus env ("NAME=value").
func Command(t *testing.T, args []string, env ...string) *Child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &Child{Cmd: exec.Command(exe, args...)}
	c.Cmd.Env = append(append(os.Environ(), envMain+"=1"), env...)
	c.Cmd.Stdout, c.Cmd.Stderr = &c.Stdout, &c.Stderr
	return c
}

// Start starts the program and kills it at the end of the test if it is
// still running.
func (c *Child) Start(t *testing.T) {
	t.Helper()
	if err := c.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.Cmd.ProcessState == nil {
			_ = c.Cmd.Process.Kill()
			_ = c.Cmd.Wait()
		}
	})
}

// Wait waits for the program to exit, at most d, and returns its exit code
// (-1 when it was killed after d).
func (c *Child) Wait(t *testing.T, d time.Duration) int {
	t.Helper()
	done := make(chan struct{})
	go func() {
		_ = c.Cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		_ = c.Cmd.Process.Kill()
		<-done
		t.Errorf("%v still ran after %v: killed", c.Cmd.Args, d)
	}
	return c.Cmd.ProcessState.ExitCode()
}

// Output is the program's stdout and stderr, for failure messages.
func (c *Child) Output() string {
	return "stdout:\n" + c.Stdout.String() + "\nstderr:\n" + c.Stderr.String()
}

// Redis starts a miniredis for the test and returns its URL and a backend
// on it, configured as the "default" task backend until the test ends.
func Redis(t *testing.T) (url string, b *broker.Redis) {
	t.Helper()
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	b = broker.New(c, broker.Options{})
	task.Configure(map[string]task.Backend{"default": b})
	t.Cleanup(func() {
		task.Configure(nil)
		_ = c.Close()
	})
	return "redis://" + m.Addr() + "/0", b
}

// Worker runs a worker on b in this process until the test ends.
func Worker(t *testing.T, b *broker.Redis, queues ...string) *worker.Worker {
	t.Helper()
	w := worker.New(b, worker.Options{Queues: queues, Concurrency: 2, WorkerID: "test-worker",
		PollInterval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	return w
}

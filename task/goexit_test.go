package task_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
)

// A task may end its goroutine with runtime.Goexit instead of returning,
// typically through testing.T.FailNow (t.Fatal) in a test's task. Its
// attempt fails with gotasks.Goexit, and whoever ran it carries on.

// failNow ends the goroutine as testing.T.FailNow does: through a helper,
// after the caller's deferred calls.
func failNow() { runtime.Goexit() }

// defineGoexit defines a task that calls runtime.Goexit, counting its
// calls and the deferred calls that ran (Goexit runs them).
func defineGoexit(t *testing.T, opts ...task.Option) (tk *task.Task[int, int], calls, deferred *atomic.Int32) {
	calls, deferred = new(atomic.Int32), new(atomic.Int32)
	tk = task.Define(taskName(t, "goexit"), func(ctx context.Context, _ int) (int, error) {
		calls.Add(1)
		defer deferred.Add(1)
		failNow()
		return 1, nil // not reached
	}, opts...)
	t.Cleanup(func() { task.Unregister(tk.Name()) })
	return tk, calls, deferred
}

// apart runs f in a goroutine of its own and waits (up to 10s) for that
// goroutine to end; it reports whether f returned, rather than ended the
// goroutine.
func apart(t *testing.T, what string, f func()) (returned bool) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
		returned = true
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still running after 10s", what)
	}
	return returned
}

func wantGoexit(t *testing.T, what string, e *task.Error) {
	t.Helper()
	if e == nil || e.Type != task.ErrorTypeGoexit {
		t.Fatalf("%s: error %v, want a %s", what, e, task.ErrorTypeGoexit)
	}
	wantContains(t, what+": message", e.Message, "runtime.Goexit", "FailNow")
}

func TestGoexitErrorType(t *testing.T) {
	if task.ErrorTypeGoexit != "gotasks.Goexit" {
		t.Errorf("ErrorTypeGoexit = %q", task.ErrorTypeGoexit)
	}
}

// On the Immediate backend Enqueue returns (the task ran in a goroutine
// of its own) with the FAILED result, and the finished hook fires.
func TestGoexitOnImmediateBackend(t *testing.T) {
	tk, calls, deferred := defineGoexit(t)
	var finished atomic.Pointer[task.RawResult]
	defer task.OnFinished(func(ctx context.Context, r *task.RawResult) {
		if r.TaskName == tk.Name() {
			finished.Store(r)
		}
	})()
	var res *task.Result[int]
	var err error
	if !apart(t, "Enqueue", func() { res, err = tk.Enqueue(context.Background(), 1) }) {
		t.Fatal("Enqueue did not return: the task's Goexit ended the caller's goroutine")
	}
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if res.Status != task.StatusFailed || res.Attempts != 1 || len(res.Errors) != 1 || res.FinishedAt.IsZero() {
		t.Fatalf("result: %+v", res)
	}
	wantGoexit(t, "Err", res.Err)
	if _, verr := res.Value(); verr == nil || !strings.Contains(verr.Error(), task.ErrorTypeGoexit) {
		t.Errorf("Value() error = %v", verr)
	}
	if calls.Load() != 1 || deferred.Load() != 1 {
		t.Errorf("calls %d, deferred calls run %d; want 1, 1", calls.Load(), deferred.Load())
	}
	if r := finished.Load(); r == nil || r.Status != task.StatusFailed {
		t.Errorf("finished hook: %+v", r)
	}
}

// Retries run at once on the Immediate backend: two attempts, both Goexit.
func TestGoexitOnImmediateBackendIsRetried(t *testing.T) {
	tk, calls, _ := defineGoexit(t, task.MaxAttempts(2))
	var res *task.Result[int]
	var err error
	if !apart(t, "Enqueue", func() { res, err = tk.Enqueue(context.Background(), 1) }) {
		t.Fatal("Enqueue did not return")
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != task.StatusFailed || res.Attempts != 2 || len(res.Errors) != 2 || calls.Load() != 2 {
		t.Fatalf("result: %s, %d attempts, errors %v, %d calls; want FAILED after 2", res.Status, res.Attempts, res.Errors, calls.Load())
	}
	for i, e := range res.Errors {
		wantGoexit(t, fmt.Sprintf("attempt %d", i+1), e)
	}
}

// Through Execute, as a worker calls it: without a Timeout the task runs
// in the caller's goroutine, which Goexit ends, after Execute has recorded
// the failure in r: a retry while attempts remain, then FAILED.
func TestExecuteGoexit(t *testing.T) {
	tk, _, deferred := defineGoexit(t)
	r := running(t, tk.Name(), 1, task.Limits{MaxAttempts: 2}, 1, nil)
	if apart(t, "Execute", func() { task.Execute(context.Background(), r) }) {
		t.Fatal("Execute returned: runtime.Goexit cannot be stopped, so it should have ended the goroutine")
	}
	if r.Status != task.StatusNew || len(r.Errors) != 1 || r.FinishedAt.IsZero() || !r.RunAfter.After(r.FinishedAt) || r.Value != nil {
		t.Fatalf("first attempt: status %s, errors %v, finished %v, run after %v; want NEW with a retry",
			r.Status, r.Errors, r.FinishedAt, r.RunAfter)
	}
	wantGoexit(t, "first attempt", r.Err)
	if deferred.Load() != 1 {
		t.Errorf("the task's deferred call ran %d times", deferred.Load())
	}

	r.Status, r.Attempts, r.StartedAt = task.StatusRunning, 2, time.Now()
	apart(t, "Execute", func() { task.Execute(context.Background(), r) })
	if r.Status != task.StatusFailed || len(r.Errors) != 2 {
		t.Fatalf("last attempt: status %s, errors %v; want FAILED", r.Status, r.Errors)
	}
	wantGoexit(t, "last attempt", r.Err)
}

// With a Timeout the task runs in a goroutine of its own: Execute returns,
// at once rather than after the timeout, with the Goexit failure.
func TestExecuteGoexitWithTimeout(t *testing.T) {
	tk, _, _ := defineGoexit(t)
	for _, tc := range []struct {
		attempts int
		want     task.Status
	}{{1, task.StatusFailed}, {2, task.StatusNew}} {
		r := running(t, tk.Name(), 1, task.Limits{MaxAttempts: tc.attempts, Timeout: time.Minute}, 1, nil)
		start := time.Now()
		if !apart(t, "Execute", func() { task.Execute(context.Background(), r) }) {
			t.Fatal("Execute did not return: the task ran in its own goroutine, which alone should have ended")
		}
		if took := time.Since(start); took >= task.TimeoutGrace {
			t.Errorf("MaxAttempts %d: Execute took %v; the Goexit should be reported at once", tc.attempts, took)
		}
		if r.Status != tc.want || len(r.Errors) != 1 {
			t.Errorf("MaxAttempts %d: status %s, errors %v; want %s", tc.attempts, r.Status, r.Errors, tc.want)
		}
		wantGoexit(t, "with a timeout", r.Err)
	}
}

// A task that returns or panics is not taken for a Goexit.
func TestReturnAndPanicAreNotGoexit(t *testing.T) {
	ok := task.Define(taskName(t, "ok"), func(ctx context.Context, n int) (int, error) { return n, nil })
	pan := task.Define(taskName(t, "panic"), func(ctx context.Context, n int) (int, error) { panic("boom") })
	for _, timeout := range []time.Duration{0, time.Minute} {
		r := running(t, ok.Name(), 7, task.Limits{Timeout: timeout}, 1, nil)
		task.Execute(context.Background(), r)
		if r.Status != task.StatusComplete || r.Err != nil {
			t.Errorf("timeout %v: returning task: %s %v", timeout, r.Status, r.Err)
		}
		r = running(t, pan.Name(), 7, task.Limits{Timeout: timeout}, 1, nil)
		task.Execute(context.Background(), r)
		if r.Status != task.StatusFailed || r.Err == nil || r.Err.Type != task.ErrorTypePanic {
			t.Errorf("timeout %v: panicking task: %s %v", timeout, r.Status, r.Err)
		}
	}
}

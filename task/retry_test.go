package task_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

// running returns the RUNNING result of attempt n of a task, as a worker
// would hold it after a claim.
func running(t *testing.T, name string, args any, limits task.Limits, attempt int, earlier []*task.Error) *task.RawResult {
	t.Helper()
	a, err := serializer.Default.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	return &task.RawResult{
		ID: task.NewID(), TaskName: name, Status: task.StatusRunning, Queue: "default",
		StartedAt: time.Now(), Attempts: attempt, WorkerIDs: []string{"w"}, Args: a,
		Limits: limits, Errors: earlier,
	}
}

func TestFailedAttemptIsRetriedWithBackoff(t *testing.T) {
	name := taskName(t, "flaky")
	task.Define(name, func(ctx context.Context, n int) (int, error) { return 0, errors.New("flaky") })
	l := task.Limits{MaxAttempts: 3, BackoffBase: time.Second, BackoffMax: time.Minute}

	r := running(t, name, 1, l, 1, nil)
	task.Execute(context.Background(), r)
	if r.Status != task.StatusNew || len(r.Errors) != 1 || r.Err == nil || r.Err.Message != "flaky" {
		t.Fatalf("after attempt 1 of 3: status %s, errors %v", r.Status, r.Errors)
	}
	// First retry: base·2⁰ = 1s, jittered into [0.5s, 1s].
	if d := r.RunAfter.Sub(r.FinishedAt); d < 500*time.Millisecond || d > time.Second {
		t.Errorf("first retry in %v, want within [0.5s, 1s]", d)
	}

	r = running(t, name, 1, l, 2, r.Errors)
	task.Execute(context.Background(), r)
	if r.Status != task.StatusNew || len(r.Errors) != 2 {
		t.Fatalf("after attempt 2 of 3: status %s, %d errors", r.Status, len(r.Errors))
	}
	if d := r.RunAfter.Sub(r.FinishedAt); d < time.Second || d > 2*time.Second {
		t.Errorf("second retry in %v, want within [1s, 2s]", d)
	}

	r = running(t, name, 1, l, 3, r.Errors)
	task.Execute(context.Background(), r)
	if r.Status != task.StatusFailed || len(r.Errors) != 3 {
		t.Fatalf("after the last attempt: status %s, %d errors", r.Status, len(r.Errors))
	}
}

func TestBackoffIsCapped(t *testing.T) {
	name := taskName(t, "capped")
	task.Define(name, func(ctx context.Context, n int) (int, error) { return 0, errors.New("no") })
	l := task.Limits{MaxAttempts: 100, BackoffBase: time.Second, BackoffMax: 4 * time.Second}
	var earlier []*task.Error
	for i := 0; i < 40; i++ {
		earlier = append(earlier, &task.Error{Message: "no"})
	}
	r := running(t, name, 1, l, 41, earlier)
	task.Execute(context.Background(), r)
	if d := r.RunAfter.Sub(r.FinishedAt); r.Status != task.StatusNew || d < 2*time.Second || d > 4*time.Second {
		t.Fatalf("retry after 40 failures: %s in %v, want NEW within [2s, 4s]", r.Status, d)
	}
}

func TestRetryAndPermanentErrors(t *testing.T) {
	l := task.Limits{MaxAttempts: 5, BackoffBase: time.Hour, BackoffMax: time.Hour}
	asked := taskName(t, "asked")
	task.Define(asked, func(ctx context.Context, n int) (int, error) {
		return 0, fmt.Errorf("rate limited: %w", task.Retry(3*time.Second))
	})
	r := running(t, asked, 1, l, 1, nil)
	task.Execute(context.Background(), r)
	if d := r.RunAfter.Sub(r.FinishedAt); r.Status != task.StatusNew || d != 3*time.Second {
		t.Fatalf("task.Retry(3s): %s in %v", r.Status, d)
	}
	wantContains(t, "error", r.Err.Message, "rate limited")

	// Retry is bounded by MaxAttempts too.
	r = running(t, asked, 1, task.Limits{MaxAttempts: 1}, 1, nil)
	task.Execute(context.Background(), r)
	if r.Status != task.StatusFailed {
		t.Fatalf("task.Retry with no attempts left: %s", r.Status)
	}

	perm := taskName(t, "perm")
	task.Define(perm, func(ctx context.Context, n int) (int, error) {
		return 0, task.Permanent(fmt.Errorf("card declined"))
	})
	r = running(t, perm, 1, l, 1, nil)
	task.Execute(context.Background(), r)
	if r.Status != task.StatusFailed || r.Err.Message != "card declined" || len(r.Errors) != 1 {
		t.Fatalf("task.Permanent with 4 attempts left: %s %v", r.Status, r.Err)
	}
}

// Poison does not come back: arguments that do not decode fail for good.
func TestPoisonIsNotRetried(t *testing.T) {
	name := taskName(t, "typed")
	task.Define(name, func(ctx context.Context, n int) (int, error) { return n, nil })
	r := running(t, name, "not an int", task.Limits{MaxAttempts: 5}, 1, nil)
	task.Execute(context.Background(), r)
	if r.Status != task.StatusFailed || r.Err.Type != task.ErrorTypeDecodeArgs {
		t.Fatalf("bad args with attempts left: %s %v", r.Status, r.Err)
	}
}

func TestTimeoutCancelsTheAttempt(t *testing.T) {
	name := taskName(t, "slow")
	var sawDeadline bool
	task.Define(name, func(ctx context.Context, n int) (int, error) {
		_, sawDeadline = ctx.Deadline()
		<-ctx.Done()
		return 0, ctx.Err()
	})
	r := running(t, name, 1, task.Limits{MaxAttempts: 2, Timeout: 50 * time.Millisecond}, 1, nil)
	start := time.Now()
	task.Execute(context.Background(), r)
	if !sawDeadline {
		t.Error("the task's context had no deadline")
	}
	if r.Err == nil || r.Err.Type != task.ErrorTypeTimeout || !strings.Contains(r.Err.Message, "50ms") {
		t.Fatalf("err = %v, want a gotasks.Timeout", r.Err)
	}
	if r.Status != task.StatusNew {
		t.Errorf("a timed-out attempt with attempts left: %s, want NEW (retry)", r.Status)
	}
	if took := time.Since(start); took >= task.TimeoutGrace {
		t.Errorf("a task that honours its context took %v to stop", took)
	}
}

// A task that ignores its context is abandoned after the grace period: the
// attempt ends, so it no longer holds a worker slot or a lease.
func TestTimeoutAbandonsATaskThatIgnoresItsContext(t *testing.T) {
	name := taskName(t, "stubborn")
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	task.Define(name, func(ctx context.Context, n int) (int, error) {
		<-release // ignores ctx
		return 42, nil
	})
	r := running(t, name, 1, task.Limits{MaxAttempts: 1, Timeout: 20 * time.Millisecond}, 1, nil)
	done := make(chan struct{})
	go func() {
		task.Execute(context.Background(), r)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(task.TimeoutGrace + 5*time.Second):
		t.Fatal("Execute did not return after the timeout and its grace period")
	}
	if r.Status != task.StatusFailed || r.Err.Type != task.ErrorTypeTimeout || !strings.Contains(r.Err.Message, "abandoned") {
		t.Fatalf("status %s err %v", r.Status, r.Err)
	}
}

func TestImmediateBackendRetriesAtOnce(t *testing.T) {
	calls := 0
	flaky := task.Define(taskName(t, "imm"), func(ctx context.Context, n int) (int, error) {
		calls++
		if calls < 3 {
			return 0, fmt.Errorf("attempt %d failed", calls)
		}
		info, _ := task.InfoFrom(ctx)
		return info.Attempt, nil
	}, task.MaxAttempts(3))
	res, err := flaky.Enqueue(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	v, err := res.Value()
	if err != nil || v != 3 || res.Attempts != 3 || len(res.Errors) != 2 {
		t.Fatalf("value %d err %v attempts %d errors %v", v, err, res.Attempts, res.Errors)
	}
	wantContains(t, "first error", res.Errors[0].Message, "attempt 1 failed")
}

func TestLimitsAreValidated(t *testing.T) {
	useDummy(t, task.BackendOptions{})
	tk := task.Define(taskName(t, "v"), identity[int])
	for _, o := range []task.Option{
		task.MaxAttempts(-1), task.MaxAttempts(task.MaxMaxAttempts + 1),
		task.Backoff(-time.Second, time.Second), task.Backoff(time.Minute, time.Second),
		task.Timeout(-time.Second),
	} {
		if _, err := tk.Using(o).Enqueue(context.Background(), 1); !errors.Is(err, task.ErrInvalidTask) {
			t.Errorf("err = %v, want ErrInvalidTask", err)
		}
	}
	res, err := tk.Using(task.MaxAttempts(4), task.Timeout(time.Second)).Enqueue(context.Background(), 1)
	if err != nil || res.MaxAttempts != 4 {
		t.Fatalf("valid limits: %v, MaxAttempts %d", err, res.MaxAttempts)
	}
}

func TestArgsSizeLimit(t *testing.T) {
	useDummy(t, task.BackendOptions{MaxArgsSize: 1000})
	tk := task.Define(taskName(t, "big"), identity[[]byte])
	if _, err := tk.Enqueue(context.Background(), make([]byte, 900)); err != nil {
		t.Fatalf("under the limit: %v", err)
	}
	_, err := tk.Enqueue(context.Background(), make([]byte, 1001))
	if !errors.Is(err, task.ErrInvalidTask) {
		t.Fatalf("over the limit: %v", err)
	}
	wantContains(t, "error", err.Error(), "limit of 1000")

	useDummy(t, task.BackendOptions{}) // default: 1 MiB
	if _, err := tk.Enqueue(context.Background(), make([]byte, task.DefaultMaxArgsSize)); !errors.Is(err, task.ErrInvalidTask) {
		t.Fatalf("1 MiB of bytes plus their header is over the default limit: %v", err)
	}
	if _, err := tk.Enqueue(context.Background(), make([]byte, task.DefaultMaxArgsSize-16)); err != nil {
		t.Fatalf("just under the default limit: %v", err)
	}
}

package task_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
)

// TestCancelDummy: a NEW task becomes CANCELLED with a finish time, its
// Value says so, and cancelling it again is refused with its status.
func TestCancelDummy(t *testing.T) {
	ctx := context.Background()
	d := useDummy(t, task.BackendOptions{})
	tk := task.Define(taskName(t, "t"), identity[int])
	res, err := tk.Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Cancel(ctx); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if res.Status != task.StatusCancelled || res.FinishedAt.IsZero() || !res.IsFinished() {
		t.Errorf("after Cancel: %s, finished %v, IsFinished %v", res.Status, res.FinishedAt, res.IsFinished())
	}
	if _, err := res.Value(); !errors.Is(err, task.ErrCancelled) {
		t.Errorf("Value of a cancelled task: %v, want ErrCancelled", err)
	}
	if got, _ := d.GetResult(ctx, res.ID); got.Status != task.StatusCancelled {
		t.Errorf("stored status %s, want CANCELLED", got.Status)
	}
	// Wait returns at once on a cancelled task instead of polling for ever.
	if err := res.Wait(ctx, time.Hour); err != nil {
		t.Errorf("Wait: %v", err)
	}

	err = res.Cancel(ctx)
	var nc *task.NotCancellableError
	if !errors.Is(err, task.ErrNotCancellable) || !errors.As(err, &nc) || nc.Status != task.StatusCancelled {
		t.Errorf("second Cancel = %v, want ErrNotCancellable with status CANCELLED", err)
	}

	if _, err := d.Cancel(ctx, "nope"); !errors.Is(err, task.ErrResultNotFound) {
		t.Errorf("Cancel of an unknown id = %v, want ErrResultNotFound", err)
	}
}

// TestCancelImmediateNotSupported: the ImmediateBackend has run the task
// by the time there is a Result to cancel.
func TestCancelImmediateNotSupported(t *testing.T) {
	ctx := context.Background()
	configure(t, map[string]task.Backend{task.DefaultBackendName: task.NewImmediateBackend(task.DefaultBackendName, task.BackendOptions{})})
	res, err := task.Define(taskName(t, "t"), identity[int]).Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Cancel(ctx); !errors.Is(err, task.ErrNotSupported) {
		t.Errorf("Cancel on Immediate = %v, want ErrNotSupported", err)
	}
	if res.Status != task.StatusComplete {
		t.Errorf("status changed to %s", res.Status)
	}
}

// TestCancelRedis goes through the Redis backend: a cancelled result reads
// back as CANCELLED, and a claimed task cannot be cancelled and keeps its
// Result's status up to date.
func TestCancelRedis(t *testing.T) {
	ctx := context.Background()
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	t.Cleanup(func() { _ = c.Close() })
	b := broker.New(c, broker.Options{})
	var _ task.Canceller = b
	configure(t, map[string]task.Backend{task.DefaultBackendName: b})
	tk := task.Define(taskName(t, "t"), identity[int])

	cancelled, err := tk.Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := cancelled.Cancel(ctx); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	again, err := tk.GetResult(ctx, cancelled.ID)
	if err != nil {
		t.Fatal(err)
	}
	if again.Status != task.StatusCancelled || again.FinishedAt.IsZero() || again.TaskName != tk.Name() {
		t.Errorf("read back: %s, finished %v, task %q", again.Status, again.FinishedAt, again.TaskName)
	}

	running, err := tk.Enqueue(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Claim(ctx, []string{running.Queue}, 1, time.Minute, "w"); err != nil || len(got) != 1 {
		t.Fatalf("Claim = %d, %v", len(got), err)
	}
	// A running task's cancel is asked for: it stays RUNNING until its
	// worker stops it.
	if err := running.Cancel(ctx); err != nil {
		t.Errorf("Cancel of a running task = %v, want nil (asked for)", err)
	}
	if running.Status != task.StatusRunning || !running.CancelRequested {
		t.Errorf("Result after the cancel of a running task: %s, cancel requested %v; want RUNNING, true", running.Status, running.CancelRequested)
	}
	if again, err := tk.GetResult(ctx, running.ID); err != nil || !again.CancelRequested {
		t.Errorf("read back: cancel requested %v, %v; want true", again.CancelRequested, err)
	}
}

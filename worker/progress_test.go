package worker_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// progressTask reports its progress as fast as it can for the given
// duration, and returns the last step it reported.
var progressTask = task.Define("workertest.progress", func(ctx context.Context, d time.Duration) (int64, error) {
	var i int64
	for end := time.Now().Add(d); time.Now().Before(end); {
		i++
		task.SetProgress(ctx, i, 0, "step")
	}
	return i, nil
})

// progressWrites counts the progress writes a client sends: the
// three-key script call on running, tasks and progress.
type progressWrites struct{ n atomic.Int64 }

func (h *progressWrites) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *progressWrites) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if a := cmd.Args(); len(a) > 5 && (a[0] == "evalsha" || a[0] == "eval") && a[2] == 3 {
			if k, _ := a[5].(string); strings.HasSuffix(k, ":progress") {
				h.n.Add(1)
			}
		}
		return next(ctx, cmd)
	}
}
func (h *progressWrites) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A task that reports its progress hundreds of thousands of times a
// second is written at most once per ProgressInterval; a reader with its
// own connection sees it while the task runs, and the last report is kept
// with the result.
func TestProgressIsThrottledSeenWhileRunningAndKept(t *testing.T) {
	e := setup(t)
	hook := &progressWrites{}
	c := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: e.m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	c.AddHook(hook)
	wb := broker.New(c, broker.Options{})
	const run = 1500 * time.Millisecond
	res, err := progressTask.Enqueue(e.ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	w := worker.New(wb, e.opts(worker.Options{Concurrency: 1, MaxTasks: 1}))
	done := make(chan error, 1)
	go func() { done <- w.Run(e.ctx) }()

	var live *task.Progress
	waitFor(t, "the progress of the running task", func() bool {
		r := e.get(res.ID)
		if r.Status == task.StatusRunning && r.Progress != nil && r.Progress.Done > 0 {
			live = r.Progress
			return true
		}
		return false
	})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if live.Message != "step" || live.At.IsZero() {
		t.Errorf("live progress %+v", live)
	}
	res = refresh(t, res)
	last, err := res.Value()
	if err != nil || res.Progress == nil || res.Progress.Done != last || res.Progress.Done < live.Done {
		t.Fatalf("kept progress %+v, last reported %d (%v); want the last report", res.Progress, last, err)
	}
	// One write at once, then at most one per interval.
	writes, most := hook.n.Load(), int64(run/worker.ProgressInterval)+2
	if writes < 2 || writes > most {
		t.Errorf("%d progress writes for %d reports in %v; want 2..%d", writes, last, run, most)
	}
	if e.m.Exists("{gotasks:default}:progress") {
		t.Error("the live progress entry is left after the finish")
	}
	t.Logf("%d reports in %v, %d writes", last, run, writes)
}

package worker_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// roundTrips counts the commands and pipelines a client sends.
type roundTrips struct {
	n    atomic.Int64
	mu   sync.Mutex
	seen map[string]int
}

func (h *roundTrips) note(s string) {
	h.mu.Lock()
	if h.seen == nil {
		h.seen = map[string]int{}
	}
	h.seen[s]++
	h.mu.Unlock()
}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		h.note(fmt.Sprint(cmd.Args()[:min(2, len(cmd.Args()))]))
		return next(ctx, cmd)
	}
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		h.note(fmt.Sprint("pipe", len(cmds), cmds[0].Args()[:min(2, len(cmds[0].Args()))]))
		return next(ctx, cmds)
	}
}

// TestNextTaskClaimedWithOutcome: a worker of one queue claims the next
// task in the round trip that stores an outcome, so a busy worker makes
// about one round trip per task, not two; MaxTasks still holds exactly.
func TestNextTaskClaimedWithOutcome(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	b := broker.New(c, broker.Options{})
	task.Configure(map[string]task.Backend{"default": b})
	t.Cleanup(func() { task.Configure(nil) })
	ctx := context.Background()

	const n, max = 60, 40
	args := make([][2]int, n)
	for i := range args {
		args[i] = [2]int{i, 1}
	}
	rs, err := addTask.EnqueueMany(ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	hook := &roundTrips{}
	c.AddHook(hook)
	w := worker.New(b, worker.Options{Queues: []string{task.DefaultQueue}, Concurrency: 1, MaxTasks: max,
		NoScheduler: true, WorkerID: "w1", Logger: quiet})
	runCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w.Run(runCtx); err != nil {
		t.Fatal(err)
	}
	trips := hook.n.Load()
	if runCtx.Err() != nil {
		t.Fatalf("Run did not stop at MaxTasks (%d processed)", w.Processed())
	}
	if w.Processed() != max {
		t.Fatalf("Processed = %d, want %d", w.Processed(), max)
	}
	// Claims are FIFO: the first max tasks ran, the rest wait.
	for i, r := range rs {
		want := task.StatusComplete
		if i >= max {
			want = task.StatusNew
		}
		if err := r.Refresh(ctx); err != nil || r.Status != want {
			t.Fatalf("task %d: %s (%v), want %s", i, r.Status, err, want)
		}
	}
	if c, err := b.Count(ctx, task.DefaultQueue); err != nil || c != (broker.Counts{Pending: n - max}) {
		t.Fatalf("Count = %+v, %v; want %d pending and nothing running", c, err, n-max)
	}
	// Two per task without the chained claims; a few for the start.
	if trips > max+10 {
		t.Errorf("%d round trips for %d tasks, want about one per task: %v", trips, max, hook.seen)
	}
}

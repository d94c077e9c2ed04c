package worker_test

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// stopAfterClaim cancels the worker's context right after a claim script
// call returns: shutdown begins while the claim is on its way back.
type stopAfterClaim struct {
	cancel context.CancelFunc
	done   atomic.Bool
}

func (h *stopAfterClaim) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *stopAfterClaim) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err == nil && !h.done.Load() && isClaim(cmd.Args()) {
			h.done.Store(true)
			h.cancel()
		}
		return err
	}
}
func (h *stopAfterClaim) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// isClaim: the claim script is the one whose keys include a replay record.
func isClaim(args []any) bool {
	return slices.ContainsFunc(args, func(a any) bool { s, _ := a.(string); return strings.Contains(s, ":claim:") })
}

// Tasks whose claim comes back after shutdown began are handed back
// unstarted (their delivery undone), not started with a cancelled context.
func TestTasksClaimedAsShutdownBeginsAreHandedBack(t *testing.T) {
	e := setup(t)
	res := must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{1, 2}))
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	e.b.Client().AddHook(&stopAfterClaim{cancel: cancel})
	w := worker.New(e.b, e.opts(worker.Options{Concurrency: 2, NoScheduler: true}))
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		_ = w.Run(ctx)
	}()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	r := e.get(res.ID)
	if r.Status != task.StatusNew || !slices.Equal(r.WorkerIDs, []string{task.UndeliveredWorker}) || !r.StartedAt.IsZero() {
		t.Errorf("task claimed as shutdown began: %s, attempts %d, workers %v; want NEW, handed back unstarted", r.Status, r.Attempts, r.WorkerIDs)
	}
	if c := e.count(); c.Running != 0 || c.Pending != 1 {
		t.Errorf("counts %+v; want it pending again", c)
	}
}

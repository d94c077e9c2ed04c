package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// slowTask takes 250ms: far longer than a claim's round trip, even under
// the race detector on a busy machine.
var slowTask = task.Define("workertest.slow", func(ctx context.Context, _ int) (int, error) {
	time.Sleep(250 * time.Millisecond)
	return 1, nil
})

// TestNoPrefetchForTasksLongerThanAClaim: a worker of tasks that take
// longer than a claim holds no more than it runs (the others stay in
// Redis, for any worker of the fleet), whatever Prefetch allows; the
// drain of short tasks is left to the bench.
func TestNoPrefetchForTasksLongerThanAClaim(t *testing.T) {
	e := setup(t)
	const n, conc = 6, 2
	for i := range n {
		must[*task.Result[int]](t)(slowTask.Enqueue(e.ctx, i))
	}
	w, stop, _ := e.start(worker.Options{Concurrency: conc, Prefetch: 64, NoScheduler: true})
	defer stop()
	most := 0
	for w.Processed() < n {
		most = max(most, w.InFlight())
		time.Sleep(time.Millisecond)
	}
	if most > conc {
		t.Errorf("the worker held up to %d tasks of 250ms at concurrency %d; want no more than it runs", most, conc)
	}
	if c := e.count(); c.Pending != 0 || c.Running != 0 {
		t.Errorf("after the drain: %+v", c)
	}
}

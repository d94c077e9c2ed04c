package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// A task whose workers keep dying on it (each attempt's lease expires
// without an outcome) is failed after MaxRedeliveries instead of being
// redelivered forever; below the limit it still runs (at-least-once).
func TestRedeliveryCap(t *testing.T) {
	e := setup(t)
	now := time.Now()
	e.m.SetTime(now)
	crash := func(n int) {
		for i := 0; i < n; i++ {
			got, err := e.b.Claim(e.ctx, []string{task.DefaultQueue}, 1, time.Second, "doomed")
			if err != nil || len(got) != 1 {
				t.Fatalf("claim %d: %v, %d", i, err, len(got))
			}
			now = now.Add(2 * time.Second) // the lease expires: the worker "died"
			e.m.SetTime(now)
			if n, _, err := e.b.Reap(e.ctx, task.DefaultQueue, 10); err != nil || n != 1 {
				t.Fatalf("reap %d: %d, %v", i, n, err)
			}
		}
	}

	survivor := must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{1, 2}))
	crash(3)
	e.runToEnd(worker.Options{Batch: true, MaxRedeliveries: 3})
	if r := e.get(survivor.ID); r.Status != task.StatusComplete || r.Attempts != 4 {
		t.Fatalf("3 crashes with a cap of 3: %s after %d attempts, want COMPLETE after 4", r.Status, r.Attempts)
	}

	doomed := must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{1, 2}))
	crash(4)
	e.runToEnd(worker.Options{Batch: true, MaxRedeliveries: 3})
	r := e.get(doomed.ID)
	if r.Status != task.StatusFailed || r.Err == nil || r.Err.Type != task.ErrorTypeTooManyDeliveries {
		t.Fatalf("4 crashes with a cap of 3: %s %v", r.Status, r.Err)
	}
	if len(r.WorkerIDs) != 5 || r.WorkerIDs[0] != "doomed" {
		t.Errorf("worker ids %v", r.WorkerIDs)
	}
}

// Claims handed back before they started (a worker shutting down) are no
// deliveries: a task unclaimed more often than MaxRedeliveries still runs,
// under an attempt number no earlier claim held.
func TestUnclaimedDeliveriesDoNotCount(t *testing.T) {
	e := setup(t)
	res := must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{1, 2}))
	for i := range 5 {
		got, err := e.b.Claim(e.ctx, []string{task.DefaultQueue}, 1, time.Minute, "leaving")
		if err != nil || len(got) != 1 {
			t.Fatalf("claim %d: %v, %d", i, err, len(got))
		}
		if n, err := e.b.Unclaim(e.ctx, task.DefaultQueue, []*task.RawResult{got[0].Result}); err != nil || n != 1 {
			t.Fatalf("unclaim %d: %d, %v", i, n, err)
		}
	}
	e.runToEnd(worker.Options{Batch: true, MaxRedeliveries: 3})
	r := e.get(res.ID)
	if r.Status != task.StatusComplete || r.Attempts != 6 || len(r.WorkerIDs) != 6 || r.WorkerIDs[4] != task.UndeliveredWorker {
		t.Fatalf("5 claims handed back with a cap of 3: %s (%v) after %d attempts, workers %v; want COMPLETE at attempt 6", r.Status, r.Err, r.Attempts, r.WorkerIDs)
	}
}

// stuck holds stubbornTask until the test that runs it ends; each run of
// the test (go test -count=N) makes its own.
var stuck atomic.Pointer[chan struct{}]

var stubbornTask = task.Define("workertest.stubborn", func(ctx context.Context, _ int) (int, error) {
	<-*stuck.Load() // ignores its context
	return 1, nil
}, task.Timeout(50*time.Millisecond))

// A task that ignores its context past its Timeout gives back its worker
// slot and its lease: with concurrency 1 the next task still runs.
func TestTimeoutFreesTheSlot(t *testing.T) {
	e := setup(t)
	ch := make(chan struct{})
	stuck.Store(&ch)
	t.Cleanup(func() { close(ch) })
	slow := must[*task.Result[int]](t)(stubbornTask.Enqueue(e.ctx, 0))
	next := must[*task.Result[int]](t)(addTask.Using(task.Priority(-1)).Enqueue(e.ctx, [2]int{2, 2}))
	e.runToEnd(worker.Options{Batch: true, Concurrency: 1})
	r := e.get(slow.ID)
	if r.Status != task.StatusFailed || r.Err.Type != task.ErrorTypeTimeout {
		t.Fatalf("stubborn task: %s %v", r.Status, r.Err)
	}
	if c := e.count(); c.Running != 0 {
		t.Errorf("a lease is still held: %+v", c)
	}
	if r := e.get(next.ID); r.Status != task.StatusComplete {
		t.Fatalf("the next task: %s", r.Status)
	}
}

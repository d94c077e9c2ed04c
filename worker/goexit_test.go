package worker_test

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// Tasks that end their goroutine with runtime.Goexit (as testing.T.FailNow
// does) instead of returning.
var (
	goexitTask = task.Define("workertest.goexit", func(ctx context.Context, _ int) (int, error) {
		runtime.Goexit()
		return 0, nil
	})
	// Retried an hour later: a batch run leaves the retry deferred.
	goexitRetryTask = task.Define("workertest.goexit-retry", func(ctx context.Context, _ int) (int, error) {
		runtime.Goexit()
		return 0, nil
	}, task.MaxAttempts(2), task.Backoff(time.Hour, time.Hour))
	// Run in a goroutine of its own, under a timeout it does not reach.
	goexitTimeoutTask = task.Define("workertest.goexit-timeout", func(ctx context.Context, _ int) (int, error) {
		runtime.Goexit()
		return 0, nil
	}, task.Timeout(time.Minute))
)

// wantGoexitFailure checks that r's last attempt failed with
// gotasks.Goexit and left r in status (FAILED, or NEW for a retry).
func wantGoexitFailure(t *testing.T, r *task.RawResult, status task.Status) {
	t.Helper()
	var last *task.Error
	if n := len(r.Errors); n > 0 {
		last = r.Errors[n-1]
	}
	if r.Status != status || last == nil || last.Type != task.ErrorTypeGoexit ||
		!strings.Contains(last.Message, "runtime.Goexit") {
		t.Errorf("%s: %s, last error %+v; want %s with %s", r.TaskName, r.Status, last, status, task.ErrorTypeGoexit)
	}
	if status == task.StatusFailed && (r.Err == nil || r.Err.Type != task.ErrorTypeGoexit || r.FinishedAt.IsZero()) {
		t.Errorf("%s: Err %+v, finished at %v; want %s", r.TaskName, r.Err, r.FinishedAt, task.ErrorTypeGoexit)
	}
}

// With one slot, a task that calls Goexit fails, and the tasks after it
// (in the same slot, some claimed along with its outcome) all complete;
// the batch run returns, with no lease or slot left behind.
func TestGoexitFailsTheTaskAndTheWorkerCarriesOn(t *testing.T) {
	e := setup(t)
	var mu sync.Mutex
	finished := map[string]task.Status{}
	defer task.OnFinished(func(ctx context.Context, r *task.RawResult) {
		mu.Lock()
		defer mu.Unlock()
		finished[r.ID] = r.Status
	})()
	var exits []*task.Result[int]
	for range 2 {
		exits = append(exits, must[*task.Result[int]](t)(goexitTask.Using(task.Priority(1)).Enqueue(e.ctx, 0)))
	}
	timed := must[*task.Result[int]](t)(goexitTimeoutTask.Using(task.Priority(1)).Enqueue(e.ctx, 0))
	var adds []*task.Result[int]
	for i := range 5 {
		adds = append(adds, must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{i, 1})))
	}

	w := e.runToEnd(worker.Options{Batch: true, Concurrency: 1})
	if n := w.Processed(); n != 8 {
		t.Errorf("Processed = %d, want 8", n)
	}
	if n := w.InFlight(); n != 0 {
		t.Errorf("InFlight = %d after Run", n)
	}
	for _, r := range append(exits, timed) {
		wantGoexitFailure(t, e.get(r.ID), task.StatusFailed)
	}
	for i, r := range adds {
		if v, err := refresh(t, r).Value(); err != nil || v != i+1 {
			t.Errorf("add %d: %s %d %v", i, r.Status, v, err)
		}
	}
	if c := e.count(); c != (broker.Counts{}) {
		t.Errorf("Count = %+v, want empty", c)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, r := range append(exits, timed) {
		if finished[r.ID] != task.StatusFailed {
			t.Errorf("finished hook of %s: %q, want FAILED", r.ID, finished[r.ID])
		}
	}
}

// After Goexit has ended every goroutine of the pool once, the worker
// still runs as many tasks at once as it has slots.
func TestGoexitKeepsEverySlot(t *testing.T) {
	e := setup(t)
	g, key := newGate(t, false)
	const slots = 3
	var exits []*task.Result[int]
	for range 2 * slots {
		exits = append(exits, must[*task.Result[int]](t)(goexitTask.Using(task.Priority(1)).Enqueue(e.ctx, 0)))
	}
	var gated []*task.Result[string]
	for range slots {
		gated = append(gated, must[*task.Result[string]](t)(gateTask.Enqueue(e.ctx, key)))
	}
	w, _, done := e.start(worker.Options{Batch: true, Concurrency: slots})
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(g.release) }) }
	t.Cleanup(release) // before start's cleanup stops the worker
	for range slots {
		recv(t, g.started, "a gated task to start")
	}
	waitFor(t, "every slot to run a gated task", func() bool { return g.cur.Load() == slots })
	release()
	recv(t, done, "Run with Batch to return by itself")
	if n := w.Processed(); n != 3*slots {
		t.Errorf("Processed = %d, want %d", n, 3*slots)
	}
	for _, r := range exits {
		wantGoexitFailure(t, e.get(r.ID), task.StatusFailed)
	}
	for _, r := range gated {
		if refresh(t, r).Status != task.StatusComplete {
			t.Errorf("gated task %s: %s", r.ID, r.Status)
		}
	}
	if c := e.count(); c != (broker.Counts{}) {
		t.Errorf("Count = %+v, want empty", c)
	}
}

// A Goexit with attempts left is a failed attempt like any other: the
// retry is stored (and OnRetry called), and the worker goes on.
func TestGoexitIsRetried(t *testing.T) {
	e := setup(t)
	retry := must[*task.Result[int]](t)(goexitRetryTask.Using(task.Priority(1)).Enqueue(e.ctx, 0))
	add := must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{2, 3}))
	var retried []string
	var mu sync.Mutex
	w := e.runToEnd(worker.Options{Batch: true, Concurrency: 1, OnRetry: func(ctx context.Context, r *task.RawResult) {
		mu.Lock()
		defer mu.Unlock()
		retried = append(retried, r.ID)
	}})
	if n := w.Processed(); n != 2 {
		t.Errorf("Processed = %d, want 2", n)
	}
	r := e.get(retry.ID)
	wantGoexitFailure(t, r, task.StatusNew)
	if len(r.Errors) != 1 || r.Attempts != 1 || !r.RunAfter.After(time.Now().Add(30*time.Minute)) {
		t.Errorf("retry: %d errors, %d attempts, run after %v; want the retry in about an hour", len(r.Errors), r.Attempts, r.RunAfter)
	}
	mu.Lock()
	if len(retried) != 1 || retried[0] != retry.ID {
		t.Errorf("OnRetry called for %v, want [%s]", retried, retry.ID)
	}
	mu.Unlock()
	if v, err := refresh(t, add).Value(); err != nil || v != 5 {
		t.Errorf("add: %d %v", v, err)
	}
	if c := e.count(); c != (broker.Counts{Deferred: 1}) {
		t.Errorf("Count = %+v, want the retry deferred", c)
	}
}

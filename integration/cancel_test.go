package integration

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
)

// waitStarted reads sub until the started event of id.
func waitStarted(t *testing.T, sub *broker.Subscription, id string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-sub.Events():
			if ev.Kind == broker.EventMissed {
				t.Fatal("events missed while waiting for a start")
			}
			if ev.ID == id && ev.Kind == broker.EventStarted {
				return
			}
		case <-timeout:
			t.Fatalf("task %s did not start within 30s", id)
		}
	}
}

// TestCancelRunningTaskInAWorkerProcess: 100 times, a task running in a
// worker process (demo.sleep for a minute, which returns its context's
// error) is cancelled from this process; it ends CANCELLED after its one
// attempt. The worker's lease is a minute, renewed every 20s, so each
// cancel reached it by the notification. The latency (from the Cancel
// call to the CANCELLED result seen by Result.Wait, and to the finish in
// Redis' clock) is reported.
func TestCancelRunningTaskInAWorkerProcess(t *testing.T) {
	e := newEnv(t)
	const lease = time.Minute
	e.startWorker(workerConfig{ID: "w-cancel", Concurrency: 2, Lease: lease, Ready: true})
	sub, err := e.B.Subscribe(e.ctx, []string{task.DefaultQueue}, broker.EventStarted)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	const tries = 100
	var toResult, toFinish []time.Duration
	for i := range tries {
		r, err := sleepTask.Enqueue(e.ctx, sleepArgs{Ms: 60_000, Tag: "c" + strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		waitStarted(t, sub, r.ID)
		t0 := time.Now()
		if err := r.Cancel(e.ctx); err != nil || !r.CancelRequested {
			t.Fatalf("try %d: Cancel = %v (requested %v)", i, err, r.CancelRequested)
		}
		ctx, cancel := context.WithTimeout(e.ctx, lease/3)
		err = r.Wait(ctx, 0)
		cancel()
		if err != nil {
			t.Fatalf("try %d: not finished %v after its cancel (before the first lease renewal): %v", i, lease/3, err)
		}
		toResult = append(toResult, time.Since(t0))
		toFinish = append(toFinish, r.FinishedAt.Sub(t0))
		if r.Status != task.StatusCancelled || r.Attempts != 1 {
			t.Fatalf("try %d: %s after %d attempts, want CANCELLED after 1", i, r.Status, r.Attempts)
		}
	}
	slices.Sort(toResult)
	slices.Sort(toFinish)
	pct := func(d []time.Duration, p int) time.Duration { return d[(len(d)-1)*p/100] }
	t.Logf("cancel of a running task, %d tries: Cancel → CANCELLED seen by Wait p50 %v p99 %v max %v; Cancel → finish stored (Redis clock) p50 %v p99 %v",
		tries, pct(toResult, 50), pct(toResult, 99), toResult[len(toResult)-1], pct(toFinish, 50), pct(toFinish, 99))
}

// TestCancelOfATaskWhoseWorkerWasKilled: the worker holding a running
// task is SIGKILLed, and the task cancelled afterwards, when no worker
// can be told. Once its lease expires the reaper (another worker's
// scheduler) ends it CANCELLED, and it never runs again.
func TestCancelOfATaskWhoseWorkerWasKilled(t *testing.T) {
	e := newEnv(t)
	const lease = 2 * time.Second
	a := e.startWorker(workerConfig{ID: "w-killed", Lease: lease, Ready: true})
	sub, err := e.B.Subscribe(e.ctx, []string{task.DefaultQueue}, broker.EventStarted)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	r, err := recordTask.Enqueue(e.ctx, sleepArgs{Ms: 60_000, Tag: "killed"})
	if err != nil {
		t.Fatal(err)
	}
	waitStarted(t, sub, r.ID)
	starts := func() int {
		n := 0
		for _, x := range e.executions() {
			if x.ID == r.ID && x.Kind == "start" {
				n++
			}
		}
		return n
	}
	e.eventually(30*time.Second, "the task to record its start", func() (bool, string) { return starts() == 1, "" })
	a.Kill()
	if err := r.Cancel(e.ctx); err != nil || r.Status != task.StatusRunning || !r.CancelRequested {
		t.Fatalf("Cancel after the holder died = %v (%s, requested %v); want asked for, RUNNING", err, r.Status, r.CancelRequested)
	}
	e.startWorker(workerConfig{ID: "w-reaper", Lease: lease, Ready: true})
	got := e.waitStatus(e.B, r.ID, 30*time.Second, task.StatusCancelled, task.StatusComplete, task.StatusFailed)
	if got.Status != task.StatusCancelled || got.Attempts != 1 {
		t.Fatalf("after the lease: %s after %d attempts; want CANCELLED after 1", got.Status, got.Attempts)
	}
	// The other worker is alive and claiming: had the task gone back to
	// its queue, this one would have started it (FIFO) before the probe.
	probe, err := recordTask.Enqueue(e.ctx, sleepArgs{Ms: 1, Tag: "probe"})
	if err != nil {
		t.Fatal(err)
	}
	e.waitStatus(e.B, probe.ID, 30*time.Second, task.StatusComplete)
	if n := starts(); n != 1 {
		t.Errorf("the cancelled task started %d times, want once (before the kill)", n)
	}
}

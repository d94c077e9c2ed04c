package integration

import (
	"syscall"
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
)

// SIGTERM while the network to Redis hangs (connections open, nothing
// answered: packets swallowed by a toxiproxy between the worker and
// redis-server): the worker still exits within --shutdown-timeout plus a
// second, with status 0, whether it was idle or running a task. What it
// cannot do without Redis (hand the task back) it gives up, saying so;
// the task keeps its lease and runs again once the lease expires.

const (
	hangShutdownTimeout = 2 * time.Second
	// hangExitMargin is how long after --shutdown-timeout the process may
	// take to be gone.
	hangExitMargin = time.Second
)

// startHangableWorker starts a worker that reaches e's redis-server
// through a toxiproxy, and waits until it has run its probe task.
func startHangableWorker(t *testing.T, e *env, id string) (*workerProc, func() (restore func())) {
	t.Helper()
	p := startToxiproxy(t).proxy(t, "redis-"+id, e.Redis.Addr())
	w := e.startWorker(workerConfig{
		ID: id, ShutdownTimeout: hangShutdownTimeout, Ready: true,
		// Overrides the harness' --redis-url (the last one wins).
		Extra: []string{"--redis-url", proxyURL(p)},
	})
	hang := func() func() {
		t.Helper()
		restore := swallow(t, p)
		// The worker's connections are as dead as this one.
		checkSwallowed(t, p, 200*time.Millisecond)
		return restore
	}
	return w, hang
}

// sigtermExit sends SIGTERM to w and returns how long it took to exit; it
// fails the test unless it exited with status 0 within limit.
func sigtermExit(t *testing.T, w *workerProc, limit time.Duration) time.Duration {
	t.Helper()
	sent := time.Now()
	w.Signal(syscall.SIGTERM)
	// Waits well past the limit, so that a failure says how long it took.
	st := w.WaitExit(limit + 30*time.Second)
	took := time.Since(sent)
	if st == nil {
		t.Fatalf("worker %s did not exit within %v of SIGTERM", w.ID, took)
	}
	t.Logf("worker %s exited %v after SIGTERM (--shutdown-timeout %v): %v", w.ID, took.Round(time.Millisecond), hangShutdownTimeout, st)
	if !st.Success() {
		t.Errorf("worker %s exit status after SIGTERM: %v; want 0", w.ID, st)
	}
	if took > limit {
		t.Errorf("worker %s took %v to exit after SIGTERM with the network hung; want at most %v (--shutdown-timeout %v + %v)",
			w.ID, took.Round(time.Millisecond), limit, hangShutdownTimeout, hangExitMargin)
	}
	return took
}

func TestShutdownHangIdle(t *testing.T) {
	e := newEnv(t)
	w, hang := startHangableWorker(t, e, "idle")
	hang()
	sigtermExit(t, w, hangShutdownTimeout+hangExitMargin)
}

func TestShutdownHangRunningTask(t *testing.T) {
	e := newEnv(t)
	w, hang := startHangableWorker(t, e, "busy")
	// demo.record ends early only when its context is cancelled. Its
	// start record (written through the worker's own connection) says the
	// worker holds the task: RUNNING in Redis alone may mean that the
	// claim's reply is still on its way, and the hang would swallow it.
	r, err := recordTask.Enqueue(e.ctx, sleepArgs{Ms: 60_000, Tag: "long"})
	if err != nil {
		t.Fatal(err)
	}
	e.eventually(30*time.Second, "the worker to start the task", func() (bool, string) {
		for _, x := range e.executions() {
			if x.ID == r.ID && x.Kind == "start" {
				return true, ""
			}
		}
		return false, "no start recorded"
	})
	restore := hang()
	took := sigtermExit(t, w, hangShutdownTimeout+hangExitMargin)
	if took < hangShutdownTimeout {
		t.Errorf("worker exited %v after SIGTERM: its running task did not get --shutdown-timeout %v", took, hangShutdownTimeout)
	}
	if len(w.LogLines("cannot hand tasks back")) == 0 {
		t.Errorf("the worker did not log that it could not hand its task back")
	}
	// Nothing reached Redis: the task is still leased to the gone worker,
	// and runs again when the lease expires (at-least-once).
	restore()
	got, err := e.B.GetResult(e.ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != task.StatusRunning || len(got.WorkerIDs) != 1 || got.WorkerIDs[0] != w.ID {
		t.Errorf("task after the shutdown: status %s, workers %v; want RUNNING on %s until its lease expires", got.Status, got.WorkerIDs, w.ID)
	}
}

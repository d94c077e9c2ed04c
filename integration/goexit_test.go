package integration

import (
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
)

// TestGoexitTaskFailsAndBatchWorkerExits: a task that calls runtime.Goexit
// (demo.goexit) ends FAILED with gotasks.Goexit in a real worker process;
// with one slot, the worker then runs the tasks after it and, with
// --batch, exits once the queue is empty.
func TestGoexitTaskFailsAndBatchWorkerExits(t *testing.T) {
	requireRedis(t)
	e := newEnv(t)
	var exits []string
	for range 2 {
		r, err := goexitTask.Using(task.Priority(10)).Enqueue(e.ctx, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		exits = append(exits, r.ID)
	}
	var adds []*task.Result[int]
	for i := range 3 {
		r, err := addTask.Enqueue(e.ctx, addArgs{A: i, B: 10})
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, r)
	}

	w := e.startWorker(workerConfig{ID: "goexit-batch", Extra: []string{"--batch"}})
	w.expected.Store(true) // --batch exits by itself
	st := w.WaitExit(60 * time.Second)
	if st == nil {
		t.Fatalf("the --batch worker did not exit within 60s")
	}
	if st.ExitCode() != 0 {
		t.Errorf("the --batch worker exited with %v", st)
	}

	for _, r := range e.results(e.B, exits) {
		if r.Status != task.StatusFailed || r.Err == nil || r.Err.Type != task.ErrorTypeGoexit ||
			len(r.WorkerIDs) != 1 || r.WorkerIDs[0] != w.ID {
			t.Errorf("demo.goexit %s: %s %+v, workers %v; want FAILED %s by %s", r.ID, r.Status, r.Err, r.WorkerIDs, task.ErrorTypeGoexit, w.ID)
		}
	}
	for i, r := range adds {
		if err := r.Refresh(e.ctx); err != nil {
			t.Fatal(err)
		}
		if v, err := r.Value(); err != nil || v != i+10 {
			t.Errorf("demo.add %d: %s %d %v", i, r.Status, v, err)
		}
	}
	c, err := e.B.Count(e.ctx, task.DefaultQueue)
	if err != nil {
		t.Fatal(err)
	}
	if c.Pending+c.Deferred+c.Running != 0 {
		t.Errorf("Count = %+v, want the queue drained", c)
	}
}

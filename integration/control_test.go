package integration

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
)

// TestPauseStopsClaimsAcrossWorkerProcesses: three worker processes drain
// a backlog; the queue is paused mid-drain. From the pause on no worker
// starts a task of the queue (each task's start is Redis' clock, set by
// the claim, so "after the pause" needs no sleeping and guessing): the
// tasks running finish, enqueues are stored, and each worker still claims
// from its other queue. Resume wakes the idle workers, which drain the
// rest; every task runs once.
func TestPauseStopsClaimsAcrossWorkerProcesses(t *testing.T) {
	e := newEnv(t)
	var ws []*workerProc
	for i := range 3 {
		ws = append(ws, e.startWorker(workerConfig{ID: "w-pause-" + strconv.Itoa(i), Concurrency: 4, Ready: true}))
	}
	const backlog = 1500
	args := make([]sleepArgs, backlog)
	for i := range args {
		args[i] = sleepArgs{Ms: 10, Tag: "b" + strconv.Itoa(i)}
	}
	rs, err := recordTask.EnqueueMany(e.ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.ID
	}
	e.eventually(30*time.Second, "some of the backlog done", func() (bool, string) {
		n, err := e.R.LLen(e.ctx, "demo:executions").Result()
		return n >= 200 && err == nil, strconv.FormatInt(n, 10) + " execution records"
	})

	since, changed, err := e.B.Pause(e.ctx, task.DefaultQueue)
	if err != nil || !changed {
		t.Fatalf("Pause = %v, %v", changed, err)
	}
	// The tasks running at the pause finish; none follows them.
	e.eventually(30*time.Second, "the tasks running at the pause to finish", func() (bool, string) {
		c, err := e.B.Count(e.ctx, task.DefaultQueue)
		return err == nil && c.Running == 0, strconv.FormatInt(c.Running, 10) + " running"
	})
	// Enqueues still work while paused.
	more := make([]sleepArgs, 30)
	for i := range more {
		more[i] = sleepArgs{Ms: 1, Tag: "p" + strconv.Itoa(i)}
	}
	rs2, err := recordTask.EnqueueMany(e.ctx, more)
	if err != nil {
		t.Fatalf("EnqueueMany on a paused queue: %v", err)
	}
	for _, r := range rs2 {
		ids = append(ids, r.ID)
	}
	// Every worker claims again after the pause (its probe queue), so the
	// paused queue's tasks wait because of the pause, not an idle worker.
	for _, w := range ws {
		e.waitReady(w)
	}
	c, err := e.B.Count(e.ctx, task.DefaultQueue)
	if err != nil || !c.Paused || c.Running != 0 || c.Pending == 0 {
		t.Fatalf("while paused: %+v, %v; want paused, nothing running, tasks pending", c, err)
	}
	results := readResults(t, e.client(), ids, false)
	var lastStart time.Time
	started, waiting := 0, 0
	for _, r := range results {
		if r.StartedAt.IsZero() {
			waiting++
			if r.Status != task.StatusNew {
				t.Errorf("task %s: %s without a start", r.ID, r.Status)
			}
			continue
		}
		started++
		if r.StartedAt.After(lastStart) {
			lastStart = r.StartedAt
		}
		// The pause time is in whole milliseconds (a claim in the same
		// millisecond may come just before it).
		if r.StartedAt.After(since.Add(time.Millisecond)) {
			t.Errorf("task %s started at %v, %v after the pause", r.ID, r.StartedAt, r.StartedAt.Sub(since))
		}
	}
	if int64(waiting) != c.Pending {
		t.Errorf("%d tasks without a start, %d pending", waiting, c.Pending)
	}

	// Resume: the idle workers are woken (no poll interval to wait for).
	before, err := e.R.Time(e.ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := e.B.Resume(e.ctx, task.DefaultQueue); err != nil || !ok {
		t.Fatalf("Resume = %v, %v", ok, err)
	}
	e.waitDrained(task.DefaultQueue, 60*time.Second)
	results = readResults(t, e.client(), ids, false)
	var firstAfter time.Time
	workers := map[string]int{}
	for _, r := range results {
		if r.Status != task.StatusComplete || r.Attempts != 1 {
			t.Errorf("task %s: %s after %d attempts; want COMPLETE once", r.ID, r.Status, r.Attempts)
			continue
		}
		if r.StartedAt.After(before) && (firstAfter.IsZero() || r.StartedAt.Before(firstAfter)) {
			firstAfter = r.StartedAt
		}
		if r.StartedAt.After(before) {
			workers[r.WorkerIDs[0]]++
		}
	}
	execs := e.executions()
	if n := len(execs); n != 2*len(ids) {
		t.Errorf("%d execution records for %d tasks; want a start and an end each", n, len(ids))
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for w := range workers {
			if !yield(w) {
				return
			}
		}
	})
	t.Logf("paused after %d of %d tasks had started: the last start %v after the pause (resolution 1ms), %d waited; resumed: the first start %v later, the rest drained by %v",
		started, len(ids), lastStart.Sub(since), waiting, firstAfter.Sub(before), names)
}

// TestProgressOfATaskInAWorkerProcess: a task running in a worker
// process reports its progress; this process reads it while the task
// runs, step after step, and finds the last one kept with the result.
func TestProgressOfATaskInAWorkerProcess(t *testing.T) {
	e := newEnv(t)
	e.startWorker(workerConfig{ID: "w-progress", Ready: true})
	const steps = 8
	res, err := progressTask.Enqueue(e.ctx, progressArgs{Steps: steps, Ms: 300})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	e.eventually(30*time.Second, "the task to finish", func() (bool, string) {
		if err := res.Refresh(e.ctx); err != nil {
			return false, err.Error()
		}
		if p := res.Progress; p != nil && res.Status == task.StatusRunning {
			seen[p.Done] = true
			if p.Total != steps || p.Message != "step "+strconv.FormatInt(p.Done, 10) {
				t.Errorf("live progress %+v", p)
			}
		}
		return res.IsFinished(), string(res.Status)
	})
	if v, err := res.Value(); err != nil || v != steps {
		t.Fatalf("result %v, %v", v, err)
	}
	if p := res.Progress; p == nil || p.Done != steps || p.Total != steps {
		t.Errorf("kept progress %+v; want %d of %d", p, steps, steps)
	}
	// Steps are 300 ms apart, writes at most 250 ms: most steps show.
	if len(seen) < steps/2 {
		t.Errorf("saw the progress of %d of %d steps while it ran; want most", len(seen), steps)
	}
	t.Logf("saw steps %v while the task ran", seen)
}

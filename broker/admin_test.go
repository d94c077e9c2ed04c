package broker_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
)

// store stores the outcome of an attempt and fails the test if it is refused.
func (e *env) store(r *task.RawResult) {
	e.t.Helper()
	if err := e.b.Store(e.ctx, r)[0]; err != nil {
		e.t.Fatalf("Store(%s %s): %v", r.ID, r.Status, err)
	}
}

func wantNotCancellable(t *testing.T, err error, status task.Status) {
	t.Helper()
	var nc *task.NotCancellableError
	if !errors.Is(err, task.ErrNotCancellable) || !errors.As(err, &nc) || nc.Status != status {
		t.Errorf("Cancel = %v; want ErrNotCancellable with status %s", err, status)
	}
}

// TestCancelPending: the cancelled task is stored like a finished result
// (status, finish time, the result TTL) and is gone from the queue, so a
// claim right after gets nothing: the claim/cancel race has no middle.
func TestCancelPending(t *testing.T) {
	e := setup(t, broker.Options{ResultTTL: time.Hour})
	e.m.SetTime(base)
	m := newMsg(t, "brokertest.cancel", "q", 5, 1)
	other := newMsg(t, "brokertest.cancel", "q", 0, 2)
	e.enqueue(m, other)

	r, err := e.b.Cancel(e.ctx, m.ID)
	if err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if r.Status != task.StatusCancelled || !r.FinishedAt.Equal(base) || r.TaskName != m.TaskName || r.Priority != 5 {
		t.Errorf("Cancel returned %s, finished %v, task %q, priority %d", r.Status, r.FinishedAt, r.TaskName, r.Priority)
	}
	if got := e.get(m.ID); got.Status != task.StatusCancelled || !got.FinishedAt.Equal(base) || got.Value != nil || got.Err != nil {
		t.Errorf("GetResult: %s, finished %v, value %v, err %v", got.Status, got.FinishedAt, got.Value, got.Err)
	}
	if ttl := e.m.TTL("{gotasks:q}:r:" + m.ID); ttl != time.Hour {
		t.Errorf("result TTL %v, want the ResultTTL 1h", ttl)
	}
	if e.m.HGet("{gotasks:q}:tasks", m.ID) != "" {
		t.Error("the task is still stored as unfinished")
	}
	// The higher priority task was cancelled: the claim gets the other one.
	if got := e.claim([]string{"q"}, 10, time.Minute, "w"); !slices.Equal(ids(got), []string{other.ID}) {
		t.Errorf("claimed %v, want only %s", ids(got), other.ID)
	}
}

// TestCancelDeferred: time passing and the scheduler promoting do not
// bring a cancelled deferred task back.
func TestCancelDeferred(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	m := newMsg(t, "brokertest.cancel", "q", 0, 1)
	m.RunAfter = base.Add(time.Minute)
	e.enqueue(m)
	if _, err := e.b.Cancel(e.ctx, m.ID); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if c := e.count("q"); c != (broker.Counts{}) {
		t.Errorf("Count after cancel = %+v, want nothing", c)
	}
	e.m.SetTime(base.Add(time.Hour))
	if n, next, err := e.b.Promote(e.ctx, "q", 100); err != nil || n != 0 || !next.IsZero() {
		t.Errorf("Promote = %d, %v, %v; want nothing", n, next, err)
	}
	if got := e.claim([]string{"q"}, 10, time.Minute, "w"); len(got) != 0 {
		t.Errorf("claimed %v", ids(got))
	}
	if got := e.get(m.ID); got.Status != task.StatusCancelled {
		t.Errorf("status %s, want CANCELLED", got.Status)
	}
}

// TestCancelRetryWaiting: a task waiting for its retry is cancellable and
// its result keeps the errors of the attempts it had.
func TestCancelRetryWaiting(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	m := newMsg(t, "brokertest.cancel", "q", 0, 1)
	m.MaxAttempts = 3
	e.enqueue(m)
	r := e.claim1("q", "w", time.Minute)
	r.FinishedAt = base
	task.Fail(r, errors.New("first try"))
	if r.Status != task.StatusNew {
		t.Fatalf("Fail gave %s, want a retry", r.Status)
	}
	e.store(r)

	got, err := e.b.Cancel(e.ctx, m.ID)
	if err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if got.Status != task.StatusCancelled || got.Attempts != 1 || len(got.Errors) != 1 || got.Errors[0].Message != "first try" {
		t.Errorf("Cancel returned %s, attempts %d, errors %v", got.Status, got.Attempts, got.Errors)
	}
	if read := e.get(m.ID); read.Status != task.StatusCancelled || len(read.Errors) != 1 {
		t.Errorf("GetResult: %s, errors %v", read.Status, read.Errors)
	}
	if e.m.Exists("{gotasks:q}:errors") {
		t.Error("the errors of the cancelled task were left behind")
	}
	e.m.SetTime(base.Add(time.Hour))
	if n, _, err := e.b.Promote(e.ctx, "q", 100); err != nil || n != 0 {
		t.Errorf("Promote = %d, %v; want 0", n, err)
	}
}

// TestCancelRefused: finished tasks are left as they are, and the error
// says what they are; a running task's cancel is asked for, and its
// worker's outcome stands.
func TestCancelRefused(t *testing.T) {
	e := setup(t)
	running := newMsg(t, "brokertest.cancel", "q", 0, 1)
	done := newMsg(t, "brokertest.cancel", "q", 0, 2)
	failed := newMsg(t, "brokertest.cancel", "q", 0, 3)
	e.enqueue(running, done, failed)
	r := e.claim1("q", "w", time.Minute)
	d := e.claim1("q", "w", time.Minute)
	d.Status = task.StatusComplete
	e.store(d)
	f := e.claim1("q", "w", time.Minute)
	task.Fail(f, errors.New("boom"))
	e.store(f)

	asked, err := e.b.Cancel(e.ctx, r.ID)
	if err != nil || asked.Status != task.StatusRunning || !asked.CancelRequested {
		t.Fatalf("Cancel of a running task = %+v, %v; want RUNNING with CancelRequested", asked, err)
	}
	_, err = e.b.Cancel(e.ctx, d.ID)
	wantNotCancellable(t, err, task.StatusComplete)
	_, err = e.b.Cancel(e.ctx, f.ID)
	wantNotCancellable(t, err, task.StatusFailed)
	if got := e.get(r.ID); got.Status != task.StatusRunning {
		t.Errorf("running task is now %s", got.Status)
	}
	// Its worker still finishes it.
	r.Status = task.StatusComplete
	e.store(r)

	if _, err := e.b.Cancel(e.ctx, task.NewID()); !errors.Is(err, task.ErrResultNotFound) {
		t.Errorf("Cancel of an unknown id = %v, want ErrResultNotFound", err)
	}
	if _, err := e.b.CancelIn(e.ctx, "q", task.NewID()); !errors.Is(err, task.ErrResultNotFound) {
		t.Errorf("CancelIn of an unknown id = %v, want ErrResultNotFound", err)
	}

	again := newMsg(t, "brokertest.cancel", "q", 0, 4)
	e.enqueue(again)
	if _, err := e.b.Cancel(e.ctx, again.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.b.Cancel(e.ctx, again.ID)
	wantNotCancellable(t, err, task.StatusCancelled)
}

// TestRetryFailed: the failed task runs again under its id, with its
// attempt count and errors continuing.
func TestRetryFailed(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	m := newMsg(t, "brokertest.retry", "q", 3, 1)
	m.MaxAttempts = 2
	e.enqueue(m)
	for i := range 2 {
		r := e.claim1("q", "w", time.Minute)
		r.FinishedAt = base // the retry is due at once
		task.Fail(r, errors.New("boom"))
		e.store(r)
		if i == 0 {
			if _, _, err := e.b.Promote(e.ctx, "q", 10); err != nil {
				t.Fatal(err)
			}
			e.m.SetTime(base.Add(time.Hour))
			if _, _, err := e.b.Promote(e.ctx, "q", 10); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := e.get(m.ID); got.Status != task.StatusFailed || got.Attempts != 2 || len(got.Errors) != 2 {
		t.Fatalf("before RetryFailed: %s, %d attempts, %d errors", got.Status, got.Attempts, len(got.Errors))
	}

	if err := e.b.RetryFailed(e.ctx, m.ID); err != nil {
		t.Fatalf("RetryFailed: %v", err)
	}
	got := e.get(m.ID)
	if got.Status != task.StatusNew || got.Attempts != 2 || len(got.Errors) != 2 || got.Priority != 3 {
		t.Errorf("after RetryFailed: %s, %d attempts, %d errors, priority %d", got.Status, got.Attempts, len(got.Errors), got.Priority)
	}
	if err := e.b.RetryFailed(e.ctx, m.ID); !errors.Is(err, broker.ErrNotRetryable) {
		t.Errorf("RetryFailed of a NEW task = %v, want ErrNotRetryable", err)
	}
	r := e.claim1("q", "w2", time.Minute)
	if r.ID != m.ID || r.Attempts != 3 || len(r.Errors) != 2 || !slices.Equal(r.WorkerIDs, []string{"w", "w", "w2"}) {
		t.Errorf("claimed %s attempt %d, %d errors, workers %v", r.ID, r.Attempts, len(r.Errors), r.WorkerIDs)
	}
	r.Status = task.StatusComplete
	e.store(r)
	if got := e.get(m.ID); got.Status != task.StatusComplete || got.Attempts != 3 {
		t.Errorf("after the new attempt: %s, %d attempts", got.Status, got.Attempts)
	}
	if err := e.b.RetryFailed(e.ctx, m.ID); !errors.Is(err, broker.ErrNotRetryable) {
		t.Errorf("RetryFailed of a COMPLETE task = %v, want ErrNotRetryable", err)
	}
	if err := e.b.RetryFailed(e.ctx, task.NewID()); !errors.Is(err, task.ErrResultNotFound) {
		t.Errorf("RetryFailed of an unknown id = %v, want ErrResultNotFound", err)
	}
}

// TestPurge removes waiting tasks in several batches and leaves running
// ones to finish.
func TestPurge(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	var msgs []*task.Message
	for i := range 1203 { // more than one batch
		msgs = append(msgs, newMsg(t, "brokertest.purge", "q", i%3, i))
	}
	deferred := newMsg(t, "brokertest.purge", "q", 0, -1)
	deferred.RunAfter = base.Add(time.Minute)
	e.enqueue(append(msgs, deferred)...)
	running := e.claim1("q", "w", time.Minute)
	keep := newMsg(t, "brokertest.purge", "other", 0, 0)
	e.enqueue(keep)

	n, err := e.b.Purge(e.ctx, "q")
	if err != nil || n != 1203 {
		t.Fatalf("Purge = %d, %v; want 1203 (1202 pending, 1 deferred)", n, err)
	}
	if c := e.count("q"); c != (broker.Counts{Running: 1}) {
		t.Errorf("Count after purge = %+v, want only the running task", c)
	}
	if _, err := e.b.GetResult(e.ctx, deferred.ID); !errors.Is(err, task.ErrResultNotFound) {
		t.Errorf("GetResult of a purged task = %v, want ErrResultNotFound", err)
	}
	if got, _ := e.m.HKeys("{gotasks:q}:tasks"); !slices.Equal(got, []string{running.ID}) {
		t.Errorf("tasks left: %d, want only the running one", len(got))
	}
	running.Status = task.StatusComplete
	e.store(running)
	if c := e.count("other"); c.Pending != 1 {
		t.Errorf("another queue lost its tasks: %+v", c)
	}
	if n, err := e.b.Purge(e.ctx, "q"); err != nil || n != 0 {
		t.Errorf("second Purge = %d, %v", n, err)
	}
}

// finishAt enqueues a task on queue and finishes it with status at the
// given Redis time.
func (e *env) finishAt(queue string, status task.Status, at time.Time) string {
	e.t.Helper()
	e.m.SetTime(at)
	m := newMsg(e.t, "brokertest.prune", queue, 0, 1)
	e.enqueue(m)
	r := e.claim1(queue, "w", time.Minute)
	if status == task.StatusFailed {
		task.Fail(r, errors.New("boom"))
	}
	r.Status = status
	e.store(r)
	return m.ID
}

// TestPrune: only old enough results of the asked statuses and queue go,
// a dry run only counts, and queue names with glob characters match only
// themselves.
func TestPrune(t *testing.T) {
	e := setup(t, broker.Options{ResultTTL: 30 * 24 * time.Hour})
	oldDone := e.finishAt("q*", task.StatusComplete, base)
	oldFailed := e.finishAt("q*", task.StatusFailed, base.Add(time.Minute))
	recent := e.finishAt("q*", task.StatusComplete, base.Add(47*time.Hour))
	otherQueue := e.finishAt("qq", task.StatusComplete, base)
	m := newMsg(t, "brokertest.prune", "q*", 0, 1)
	e.enqueue(m) // cancelled at base, like otherQueue
	cancelled, err := e.b.Cancel(e.ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.m.SetTime(base.Add(48 * time.Hour))

	n, err := e.b.Prune(e.ctx, 24*time.Hour, nil, "q*", true)
	if err != nil || n != 3 {
		t.Errorf("dry run = %d, %v; want 3 (old complete, old failed, cancelled)", n, err)
	}
	for _, id := range []string{oldDone, oldFailed, recent, otherQueue, cancelled.ID} {
		e.get(id) // still there
	}

	n, err = e.b.Prune(e.ctx, 24*time.Hour, []task.Status{task.StatusFailed}, "q*", false)
	if err != nil || n != 1 {
		t.Errorf("Prune FAILED = %d, %v; want 1", n, err)
	}
	if _, err := e.b.GetResult(e.ctx, oldFailed); !errors.Is(err, task.ErrResultNotFound) {
		t.Errorf("pruned result: %v", err)
	}
	e.get(oldDone)

	n, err = e.b.Prune(e.ctx, time.Hour, nil, "", false)
	if err != nil || n != 3 {
		t.Errorf("Prune of every queue = %d, %v; want 3 (old complete, other queue, cancelled)", n, err)
	}
	e.get(recent)
	for _, id := range []string{oldDone, otherQueue, cancelled.ID} {
		if _, err := e.b.GetResult(e.ctx, id); !errors.Is(err, task.ErrResultNotFound) {
			t.Errorf("result %s not pruned: %v", id, err)
		}
	}
}

// TestQueueStats: the next task is the highest priority one, the oldest
// is the one waiting longest at any priority, and the ages come from the
// Redis clock.
func TestQueueStats(t *testing.T) {
	e := setup(t)
	enq := func(prio int, at time.Time, runAfter time.Time) *task.Message {
		e.m.SetTime(at)
		m := newMsg(t, "brokertest.stats", "q", prio, 1)
		m.EnqueuedAt, m.RunAfter = at, runAfter
		e.enqueue(m)
		return m
	}
	enq(-5, base, time.Time{})                            // the oldest, low priority
	enq(0, base.Add(time.Minute), time.Time{})            // middle
	enq(10, base.Add(2*time.Minute), time.Time{})         // next to run
	enq(10, base.Add(3*time.Minute), time.Time{})         // behind it
	enq(20, base.Add(3*time.Minute), base.Add(time.Hour)) // deferred
	e.m.SetTime(base.Add(4 * time.Minute))
	e.claim1("q", "w", time.Minute) // the priority 20 task is not due: takes a priority 10 one
	e.enqueue(newMsg(t, "brokertest.stats", "empty", 0, 1))
	e.claim1("empty", "w", time.Minute)

	stats, err := e.b.QueueStats(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []broker.QueueStat{
		{Queue: "empty", Running: 1},
		{Queue: "q", Pending: 3, Deferred: 1, Running: 1, NextAge: time.Minute, OldestAge: 4 * time.Minute},
	}
	if !slices.Equal(stats, want) {
		t.Errorf("QueueStats =\n%+v\nwant\n%+v", stats, want)
	}
}

// TestListTasks lists each state in its order, in pages.
func TestListTasks(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	low := newMsg(t, "brokertest.list", "q", 0, 1)
	high := newMsg(t, "brokertest.list", "q", 9, 2)
	mid := newMsg(t, "brokertest.list", "q", 5, 3)
	run := newMsg(t, "brokertest.list", "q", 99, 4)
	later := newMsg(t, "brokertest.list", "q", 0, 5)
	later.RunAfter = base.Add(time.Hour)
	sooner := newMsg(t, "brokertest.list", "q", 0, 6)
	sooner.RunAfter = base.Add(time.Minute)
	e.enqueue(low, high, mid, run, later, sooner)
	e.claim1("q", "w", time.Minute)

	list := func(state broker.State, offset, limit int) []string {
		t.Helper()
		rs, err := e.b.ListTasks(e.ctx, "q", state, offset, limit)
		if err != nil {
			t.Fatalf("ListTasks(%s): %v", state, err)
		}
		out := make([]string, len(rs))
		for i, r := range rs {
			out[i] = r.ID
			if r.TaskName != "brokertest.list" {
				t.Errorf("%s: task name %q", r.ID, r.TaskName)
			}
			want := task.StatusNew
			if state == broker.StateRunning {
				want = task.StatusRunning
			}
			if r.Status != want {
				t.Errorf("%s listed as %s, want %s", r.ID, r.Status, want)
			}
		}
		return out
	}
	if got := list(broker.StatePending, 0, 10); !slices.Equal(got, []string{high.ID, mid.ID, low.ID}) {
		t.Errorf("pending %v, want high, mid, low", got)
	}
	if got := list(broker.StatePending, 1, 1); !slices.Equal(got, []string{mid.ID}) {
		t.Errorf("pending page 2 of size 1 = %v, want mid", got)
	}
	if got := list(broker.StateDeferred, 0, 10); !slices.Equal(got, []string{sooner.ID, later.ID}) {
		t.Errorf("deferred %v, want sooner, later", got)
	}
	if got := list(broker.StateRunning, 0, 10); !slices.Equal(got, []string{run.ID}) {
		t.Errorf("running %v", got)
	}
	rs, err := e.b.ListTasks(e.ctx, "q", broker.StateDeferred, 0, 1)
	if err != nil || len(rs) != 1 || !rs[0].RunAfter.Equal(sooner.RunAfter) {
		t.Errorf("deferred run_after: %v, %v", rs, err)
	}
	if _, err := e.b.ListTasks(e.ctx, "q", "finished", 0, 1); err == nil {
		t.Error("unknown state: no error")
	}
	if rs, err := e.b.ListTasks(e.ctx, "q", broker.StatePending, 10, 10); err != nil || len(rs) != 0 {
		t.Errorf("past the end: %d, %v", len(rs), err)
	}
}

// TestCancelAfterLeaseLost: a task whose lease expired is back in the
// queue and can be cancelled; the worker that lost it cannot then
// overwrite the cancellation with its late outcome.
func TestCancelAfterLeaseLost(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	m := newMsg(t, "brokertest.cancel", "q", 0, 1)
	e.enqueue(m)
	stale := e.claim1("q", "w", time.Second)
	e.m.SetTime(base.Add(time.Minute))
	if n, _, err := e.b.Reap(e.ctx, "q", 10); err != nil || n != 1 {
		t.Fatalf("Reap = %d, %v", n, err)
	}
	if _, err := e.b.Cancel(e.ctx, m.ID); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	stale.Status = task.StatusComplete
	if err := e.b.Store(e.ctx, stale)[0]; !errors.Is(err, broker.ErrLeaseLost) {
		t.Errorf("late Store = %v, want ErrLeaseLost", err)
	}
	if got := e.get(m.ID); got.Status != task.StatusCancelled {
		t.Errorf("status %s, want CANCELLED", got.Status)
	}
}

// TestEnqueueAgainAfterFinishIsTheFinishedTask: an id enqueued again with
// the same task after it finished is that finished task (nothing is
// stored, Cancel finds it COMPLETE); with another task it is refused.
func TestEnqueueAgainAfterFinishIsTheFinishedTask(t *testing.T) {
	e := setup(t)
	m := newMsg(t, "brokertest.cancel", "q", 0, 1)
	e.enqueue(m)
	r := e.claim1("q", "w", time.Minute)
	r.Status = task.StatusComplete
	if err := e.b.Finish(e.ctx, r); err != nil {
		t.Fatal(err)
	}
	again := *m
	e.enqueue(&again)
	if !again.Existing {
		t.Errorf("the same task again under its finished id: Existing = false")
	}
	other := *m
	other.TaskName = "brokertest.other"
	if err := e.b.Enqueue(e.ctx, &other); !errors.Is(err, task.ErrDuplicateID) {
		t.Errorf("another task under the finished id: %v, want ErrDuplicateID", err)
	}
	var nc *task.NotCancellableError
	if _, err := e.b.Cancel(e.ctx, m.ID); !errors.As(err, &nc) || nc.Status != task.StatusComplete {
		t.Fatalf("Cancel = %v, want not cancellable: COMPLETE", err)
	}
	if c := e.count("q"); c.Pending != 0 {
		t.Errorf("something was stored again: %+v", c)
	}
}

// TestStatsAgeOfARetriedTask: a task retried now has waited since its
// retry, not since it was first enqueued an hour ago.
func TestStatsAgeOfARetriedTask(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	m := newMsg(t, "brokertest.stats", "r", 0, 1)
	m.EnqueuedAt = base
	e.enqueue(m)
	e.m.SetTime(base.Add(time.Hour))
	r := e.claim1("r", "w", time.Minute)
	task.Fail(r, errors.New("first try"))
	r.Status, r.RunAfter = task.StatusNew, time.Time{} // retry at once
	if err := e.b.Retry(e.ctx, r); err != nil {
		t.Fatal(err)
	}
	e.m.SetTime(base.Add(time.Hour + time.Minute))
	s, err := e.b.StatsOf(e.ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if s.Pending != 1 || s.OldestAge != time.Minute || s.NextAge != time.Minute {
		t.Errorf("StatsOf = %+v; want 1 pending, waiting 1m (since the retry)", s)
	}
}

// TestFailedIndex: a FAILED result is counted and listed (newest first,
// with its error) until it is retried, pruned or expires; the totals
// count every finish by status and never go down.
func TestFailedIndex(t *testing.T) {
	e := setup(t, broker.Options{ResultTTL: time.Hour, FailedTTL: time.Hour})
	first := e.finishAt("q", task.StatusFailed, base)
	second := e.finishAt("q", task.StatusFailed, base.Add(time.Minute))
	e.finishAt("q", task.StatusComplete, base.Add(2*time.Minute))
	e.finishAt("other", task.StatusFailed, base.Add(2*time.Minute))
	m := newMsg(t, "brokertest.failed", "q", 0, 1)
	e.enqueue(m)
	if _, err := e.b.Cancel(e.ctx, m.ID); err != nil {
		t.Fatal(err)
	}

	stat := func() broker.QueueStat {
		t.Helper()
		s, err := e.b.StatsOf(e.ctx, "q")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	list := func() []string {
		t.Helper()
		rs, err := e.b.ListTasks(e.ctx, "q", broker.StateFailed, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range rs {
			if r.Status != task.StatusFailed || r.Err == nil || r.Err.Message != "boom" || r.TaskName != "brokertest.prune" {
				t.Errorf("listed %s: %s, error %+v, task %q", r.ID, r.Status, r.Err, r.TaskName)
			}
			ids = append(ids, r.ID)
		}
		return ids
	}
	s := stat()
	if s.Failed != 2 || s.Completed != 1 || s.FailedTotal != 2 || s.Cancelled != 1 {
		t.Errorf("stats = %+v; want 2 failed stored, totals 1 complete, 2 failed, 1 cancelled", s)
	}
	if got := list(); !slices.Equal(got, []string{second, first}) {
		t.Errorf("failed list = %v, want newest first %v", got, []string{second, first})
	}
	if rs, err := e.b.ListTasks(e.ctx, "q", broker.StateFailed, 1, 10); err != nil || len(rs) != 1 || rs[0].ID != first {
		t.Errorf("page at offset 1 = %v, %v", rs, err)
	}

	// Retried: no longer failed; its finish is counted again.
	if err := e.b.RetryFailed(e.ctx, second); err != nil {
		t.Fatal(err)
	}
	if got := list(); !slices.Equal(got, []string{first}) {
		t.Errorf("after retry: %v, want only %s", got, first)
	}
	r := e.claim1("q", "w", time.Minute)
	r.Status = task.StatusComplete
	e.store(r)
	if s := stat(); s.Failed != 1 || s.Completed != 2 || s.FailedTotal != 2 {
		t.Errorf("after the retried task completed: %+v", s)
	}

	// Expired with its result (one hour after it failed), by the Redis clock.
	e.m.SetTime(base.Add(time.Hour + time.Second))
	e.m.FastForward(time.Hour) // miniredis expires keys only on FastForward
	if s := stat(); s.Failed != 0 || s.FailedTotal != 2 {
		t.Errorf("after the result TTL: %+v, want 0 failed stored and the total kept", s)
	}
	if got := list(); len(got) != 0 {
		t.Errorf("expired failed results listed: %v", got)
	}
	// A later failure trims the expired entries from the index.
	e.finishAt("q", task.StatusFailed, base.Add(2*time.Hour))
	if n, _ := e.m.ZMembers("{gotasks:q}:failed"); len(n) != 1 {
		t.Errorf("index holds %d entries after a trim, want 1", len(n))
	}

	// Pruned: gone from the index.
	e.m.SetTime(base.Add(3 * time.Hour))
	if n, err := e.b.Prune(e.ctx, time.Minute, []task.Status{task.StatusFailed}, "q", false); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v", n, err)
	}
	if n, _ := e.m.ZMembers("{gotasks:q}:failed"); len(n) != 0 {
		t.Errorf("index holds %v after prune", n)
	}
	if s, _ := e.b.StatsOf(e.ctx, "other"); s.Failed != 0 || s.FailedTotal != 1 {
		t.Errorf("other queue: %+v", s)
	}
}

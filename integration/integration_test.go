package integration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

// TestEndToEnd: enqueued here, run by a separate worker process, read back
// by id from a third client that enqueued nothing.
func TestEndToEnd(t *testing.T) { testEndToEnd(t, newEnv(t)) }

func testEndToEnd(t *testing.T, e *env) {
	ctx := e.ctx
	e.startWorker(workerConfig{ID: "w-e2e", Concurrency: 2})

	add, err := addTask.Enqueue(ctx, addArgs{A: 2, B: 40})
	if err != nil {
		t.Fatalf("enqueue demo.add: %v", err)
	}
	fail, err := failTask.Enqueue(ctx, "boom")
	if err != nil {
		t.Fatalf("enqueue demo.fail: %v", err)
	}
	unknown, err := unknownTask.Enqueue(ctx, addArgs{A: 1, B: 2})
	if err != nil {
		t.Fatalf("enqueue unknown task: %v", err)
	}
	// Arguments that do not fit the task's type: a string for demo.add's
	// struct, written straight to the backend.
	badArgs, err := serializer.Default.Marshal("not an AddArgs")
	if err != nil {
		t.Fatal(err)
	}
	bad := &task.Message{
		ID: task.NewID(), TaskName: addTask.Name(), Queue: task.DefaultQueue, Backend: task.DefaultBackendName,
		Args: badArgs, EnqueuedAt: time.Now(),
	}
	if err := e.B.Enqueue(ctx, bad); err != nil {
		t.Fatalf("enqueue bad arguments: %v", err)
	}
	// The worker carries on after those failures.
	after, err := addTask.Enqueue(ctx, addArgs{A: 5, B: 6})
	if err != nil {
		t.Fatal(err)
	}

	third := e.client()
	const timeout = 30 * time.Second
	final := []task.Status{task.StatusComplete, task.StatusFailed}

	r := e.waitStatus(third, add.ID, timeout, final...)
	if r.Status != task.StatusComplete || r.Err != nil {
		t.Fatalf("demo.add: status %s, err %v; want COMPLETE", r.Status, r.Err)
	}
	var sum int
	if err := r.Decode(&sum); err != nil || sum != 42 {
		t.Errorf("demo.add value = %d, %v; want 42", sum, err)
	}
	if r.TaskName != "demo.add" || r.Queue != task.DefaultQueue || r.Backend != task.DefaultBackendName {
		t.Errorf("demo.add result: task %q queue %q backend %q", r.TaskName, r.Queue, r.Backend)
	}
	if r.Attempts != 1 || !slices.Equal(r.WorkerIDs, []string{"w-e2e"}) {
		t.Errorf("demo.add: attempts %d, workers %v; want 1, [w-e2e]", r.Attempts, r.WorkerIDs)
	}
	if !r.EnqueuedAt.Equal(add.EnqueuedAt.Truncate(time.Microsecond)) {
		t.Errorf("demo.add: EnqueuedAt %v, the producer's was %v", r.EnqueuedAt, add.EnqueuedAt)
	}
	if r.StartedAt.Before(r.EnqueuedAt) || r.FinishedAt.Before(r.StartedAt) || !r.RunAfter.IsZero() {
		t.Errorf("demo.add times: enqueued %v, run_after %v, started %v, finished %v", r.EnqueuedAt, r.RunAfter, r.StartedAt, r.FinishedAt)
	}

	// The typed API on the third client: Task.GetResult by id only.
	task.Configure(map[string]task.Backend{task.DefaultBackendName: third})
	typed, err := addTask.GetResult(ctx, add.ID)
	if err != nil {
		t.Fatalf("addTask.GetResult from a third client: %v", err)
	}
	if v, err := typed.Value(); err != nil || v != 42 || typed.Status != task.StatusComplete {
		t.Errorf("typed result: %s, %d, %v; want COMPLETE 42", typed.Status, v, err)
	}
	if _, err := failTask.GetResult(ctx, add.ID); !errors.Is(err, task.ErrResultMismatch) {
		t.Errorf("failTask.GetResult(id of a demo.add) = %v; want ErrResultMismatch", err)
	}
	if _, err := addTask.GetResult(ctx, task.NewID()); !errors.Is(err, task.ErrResultNotFound) {
		t.Errorf("GetResult(unknown id) = %v; want ErrResultNotFound", err)
	}

	r = e.waitStatus(third, fail.ID, timeout, final...)
	if r.Status != task.StatusFailed || r.Err == nil {
		t.Fatalf("demo.fail: status %s, err %v; want FAILED with an error", r.Status, r.Err)
	}
	if r.Err.Type != "" || r.Err.Message != "demo.fail: boom" {
		t.Errorf("demo.fail error: Type %q Message %q; want no type (an errors.New error), \"demo.fail: boom\"", r.Err.Type, r.Err.Message)
	}
	if !strings.Contains(r.Err.Traceback, "boom") {
		t.Errorf("demo.fail traceback %q does not mention the error", r.Err.Traceback)
	}
	if r.Value != nil || r.Attempts != 1 || r.FinishedAt.IsZero() {
		t.Errorf("demo.fail: value %q, attempts %d, finished %v", r.Value, r.Attempts, r.FinishedAt)
	}
	typedFail, err := failTask.GetResult(ctx, fail.ID)
	if err != nil {
		t.Fatal(err)
	}
	var te *task.Error
	if _, err := typedFail.Value(); !errors.As(err, &te) || te.Message != "demo.fail: boom" {
		t.Errorf("typed demo.fail Value() error = %v; want the task's *task.Error", err)
	}

	r = e.waitStatus(third, unknown.ID, timeout, final...)
	if r.Status != task.StatusFailed || r.Err == nil || r.Err.Type != task.ErrorTypeUnknownTask {
		t.Fatalf("unknown task: status %s, err %+v; want FAILED with Type %s", r.Status, r.Err, task.ErrorTypeUnknownTask)
	}
	if !strings.Contains(r.Err.Message, unknownTask.Name()) {
		t.Errorf("unknown task error %q does not name the task", r.Err.Message)
	}

	r = e.waitStatus(third, bad.ID, timeout, final...)
	if r.Status != task.StatusFailed || r.Err == nil || r.Err.Type != task.ErrorTypeDecodeArgs {
		t.Fatalf("bad arguments: status %s, err %+v; want FAILED with Type %s", r.Status, r.Err, task.ErrorTypeDecodeArgs)
	}

	r = e.waitStatus(third, after.ID, timeout, final...)
	if err := r.Decode(&sum); err != nil || sum != 11 {
		t.Errorf("demo.add after the failures: %s, %d, %v; want COMPLETE 11", r.Status, sum, err)
	}
}

// TestPriorityAndFIFO: tasks enqueued while no worker runs start by
// priority (higher first), then in enqueue order, also for tasks of one
// EnqueueMany batch (same millisecond).
func TestPriorityAndFIFO(t *testing.T) { testPriorityAndFIFO(t, newEnv(t)) }

func testPriorityAndFIFO(t *testing.T, e *env) {
	ctx := e.ctx

	type item struct {
		prio int
		tag  string
	}
	var want []item
	enqueue := func(prio int) {
		tag := fmt.Sprintf("p%d-%d", prio, len(want))
		if _, err := recordTask.Using(task.Priority(prio)).Enqueue(ctx, sleepArgs{Tag: tag}); err != nil {
			t.Fatalf("enqueue: %v", err)
		}
		want = append(want, item{prio, tag})
	}
	for _, p := range []int{0, 5, -5, 5, 0, 10, -5, 0, 10, 5, 100, -100, 0, 0, 1, -1} {
		enqueue(p)
	}
	// A batch at one priority: one script call, one millisecond.
	var batch []sleepArgs
	for i := 0; i < 6; i++ {
		tag := fmt.Sprintf("p5-batch%d", i)
		batch = append(batch, sleepArgs{Tag: tag})
		want = append(want, item{5, tag})
	}
	if _, err := recordTask.Using(task.Priority(5)).EnqueueMany(ctx, batch); err != nil {
		t.Fatalf("enqueue batch: %v", err)
	}
	for _, p := range []int{5, 0, 10} {
		enqueue(p)
	}
	slices.SortStableFunc(want, func(a, b item) int { return b.prio - a.prio })

	e.startWorker(workerConfig{ID: "w-order", Concurrency: 1})
	e.waitDrained(task.DefaultQueue, 30*time.Second)

	var got []string
	for i, x := range e.executions() {
		// Concurrency 1: strictly start, end, start, end...
		if wantKind := []string{"start", "end"}[i%2]; x.Kind != wantKind {
			t.Fatalf("execution %d is %v; want a %s (concurrency 1)", i, x, wantKind)
		}
		if x.Kind == "start" {
			got = append(got, strings.TrimSpace(x.Tag))
		}
	}
	var wantTags []string
	for _, w := range want {
		wantTags = append(wantTags, w.tag)
	}
	if !slices.Equal(got, wantTags) {
		t.Errorf("start order:\n got  %v\n want %v", got, wantTags)
	}
}

// TestPriorityAcrossQueues: a worker serving two queues takes the highest
// priority of both, and among equal priorities the oldest task.
func TestPriorityAcrossQueues(t *testing.T) { testPriorityAcrossQueues(t, newEnv(t)) }

func testPriorityAcrossQueues(t *testing.T, e *env) {
	ctx := e.ctx
	steps := []struct {
		queue string
		prio  int
	}{
		{"qa", 0}, {"qb", 0}, {"qb", 3}, {"qa", 3}, {"qa", 0}, {"qb", 7}, {"qb", 0}, {"qa", 7}, {"qa", -2}, {"qb", 3},
	}
	type item struct {
		prio int
		tag  string
	}
	var want []item
	for i, s := range steps {
		tag := fmt.Sprintf("%s-p%d-%d", s.queue, s.prio, i)
		if _, err := recordTask.Using(task.Queue(s.queue), task.Priority(s.prio)).Enqueue(ctx, sleepArgs{Tag: tag}); err != nil {
			t.Fatal(err)
		}
		want = append(want, item{s.prio, tag})
		// FIFO across queues is by enqueue time at millisecond resolution
		// (within one queue it is exact): keep the enqueues apart.
		time.Sleep(3 * time.Millisecond)
	}
	slices.SortStableFunc(want, func(a, b item) int { return b.prio - a.prio })

	e.startWorker(workerConfig{ID: "w-queues", Queues: []string{"qa", "qb"}, Concurrency: 1})
	e.waitDrained("qa", 30*time.Second)
	e.waitDrained("qb", 30*time.Second)
	var got, wantTags []string
	for _, x := range e.executions() {
		if x.Kind == "start" {
			got = append(got, strings.TrimSpace(x.Tag))
		}
	}
	for _, w := range want {
		wantTags = append(wantTags, w.tag)
	}
	if !slices.Equal(got, wantTags) {
		t.Errorf("start order across queues:\n got  %v\n want %v", got, wantTags)
	}
}

// TestRunAfter: deferred tasks start no earlier than their run_after and
// soon after it, also when a later-enqueued task is due earlier.
func TestRunAfter(t *testing.T) { testRunAfter(t, newEnv(t)) }

func testRunAfter(t *testing.T, e *env) {
	ctx := e.ctx
	e.startWorker(workerConfig{ID: "w-defer", Concurrency: 4, Ready: true})

	const late = 150 * time.Millisecond
	type deferred struct {
		name string
		r    *task.Result[int]
	}
	var ds []deferred
	enq := func(name string, opt task.Option) {
		r, err := addTask.Using(opt).Enqueue(ctx, addArgs{A: len(ds), B: 1})
		if err != nil {
			t.Fatalf("enqueue %s: %v", name, err)
		}
		if r.RunAfter.IsZero() || r.Status != task.StatusNew {
			t.Fatalf("%s: RunAfter %v, status %s", name, r.RunAfter, r.Status)
		}
		ds = append(ds, deferred{name, r})
	}
	// The first one makes the scheduler sleep ~700ms; the later ones, due
	// earlier, must wake it.
	enq("RunAfter(700ms)", task.RunAfter(700*time.Millisecond))
	enq("RunAfter(300ms)", task.RunAfter(300*time.Millisecond))
	enq("RunAt(now+500ms)", task.RunAt(time.Now().Add(500*time.Millisecond)))
	enq("RunAfter(400ms)", task.RunAfter(400*time.Millisecond))

	for _, d := range ds {
		raw := e.waitStatus(e.B, d.r.ID, 30*time.Second, task.StatusComplete, task.StatusFailed)
		if raw.Status != task.StatusComplete {
			t.Errorf("%s: %s %v", d.name, raw.Status, raw.Err)
			continue
		}
		if !raw.RunAfter.Equal(d.r.RunAfter.Truncate(time.Microsecond)) {
			t.Errorf("%s: stored RunAfter %v, enqueued with %v", d.name, raw.RunAfter, d.r.RunAfter)
		}
		delay := raw.StartedAt.Sub(raw.RunAfter)
		t.Logf("%s: started %v after its run_after", d.name, delay)
		if delay < 0 {
			t.Errorf("%s started %v BEFORE its run_after (%v < %v)", d.name, -delay, raw.StartedAt, raw.RunAfter)
		}
		if delay > late {
			t.Errorf("%s started %v after its run_after; want within %v", d.name, delay, late)
		}
	}
}

// TestConcurrencyLimit: a worker with --concurrency 3 never runs more than
// three tasks at once, and does run three at once.
func TestConcurrencyLimit(t *testing.T) {
	e := newEnv(t)
	e.startWorker(workerConfig{ID: "w-conc", Concurrency: 3, Ready: true})
	args := make([]sleepArgs, 12)
	for i := range args {
		args[i] = sleepArgs{Ms: 150, Tag: strconv.Itoa(i)}
	}
	if _, err := recordTask.EnqueueMany(e.ctx, args); err != nil {
		t.Fatal(err)
	}
	e.waitDrained(task.DefaultQueue, 30*time.Second)

	xs := e.executions()
	if len(xs) != 2*len(args) {
		t.Fatalf("%d execution records; want %d", len(xs), 2*len(args))
	}
	running, most := map[string]bool{}, 0
	for _, x := range xs {
		switch x.Kind {
		case "start":
			if running[x.ID] {
				t.Fatalf("%v: started twice", x)
			}
			running[x.ID] = true
		case "end":
			if !running[x.ID] {
				t.Fatalf("%v: ended without a start", x)
			}
			delete(running, x.ID)
		}
		most = max(most, len(running))
	}
	if most != 3 {
		t.Errorf("at most %d tasks ran at once; want exactly 3 (--concurrency 3, 12 tasks)", most)
	}
}

// TestGracefulShutdown: on SIGTERM a worker lets a task that can finish
// within --shutdown-timeout finish, hands the others straight back to the
// queue (long before their lease would expire) and exits; another worker
// then runs them.
func TestGracefulShutdown(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	const (
		shutdownTimeout = 500 * time.Millisecond
		short           = 700 * time.Millisecond
		long            = 3 * time.Second // cannot finish in the window
		lease           = 30 * time.Second
	)
	a := e.startWorker(workerConfig{ID: "w-drain-a", Concurrency: 4, ShutdownTimeout: shutdownTimeout, Lease: lease, Ready: true})

	rs, err := sleepTask.EnqueueMany(ctx, []sleepArgs{{Ms: int(short / time.Millisecond), Tag: "short"}, {Ms: int(long / time.Millisecond)}, {Ms: int(long / time.Millisecond)}, {Ms: int(long / time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	shortR, longRs := rs[0], rs[1:]
	for _, r := range rs {
		e.waitStatus(e.B, r.ID, 30*time.Second, task.StatusRunning)
	}
	if err := shortR.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// SIGTERM while the short task has 300ms to go: it can finish within
	// the 500ms window, the long ones cannot.
	sigAt := shortR.StartedAt.Add(short - 300*time.Millisecond)
	if wait := time.Until(sigAt); wait > 0 {
		time.Sleep(wait)
	} else if -wait > 150*time.Millisecond {
		t.Fatalf("saw the tasks running only %v after the short one started; too late to test the shutdown window", short-300*time.Millisecond-wait)
	}
	sent := time.Now()
	a.Signal(syscall.SIGTERM)
	st := a.WaitExit(5 * time.Second)
	if st == nil {
		t.Fatalf("worker did not exit within 5s of SIGTERM (--shutdown-timeout %v)", shutdownTimeout)
	}
	took := time.Since(sent)
	t.Logf("worker exited %v after SIGTERM with %v", took, st)
	if !st.Success() {
		t.Errorf("worker exit status after SIGTERM: %v; want 0", st)
	}
	if took > shutdownTimeout+1500*time.Millisecond {
		t.Errorf("worker took %v to exit after SIGTERM; want about --shutdown-timeout %v", took, shutdownTimeout)
	}

	// Straight after the exit: the short task is COMPLETE, the long ones are
	// NEW again (not RUNNING until their 30s lease runs out).
	third := e.client()
	r, err := third.GetResult(ctx, shortR.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != task.StatusComplete {
		t.Errorf("the task that could finish in the shutdown window is %s (%v); want COMPLETE", r.Status, r.Err)
	} else if r.FinishedAt.Before(sent) {
		t.Errorf("the short task finished at %v, before SIGTERM at %v: the test did not test the window", r.FinishedAt, sent)
	}
	for _, lr := range longRs {
		r, err := third.GetResult(ctx, lr.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != task.StatusNew || r.Attempts != 1 || !slices.Equal(r.WorkerIDs, []string{a.ID}) {
			t.Errorf("unfinished task after shutdown: status %s, attempts %d, workers %v; want NEW, 1, [%s]", r.Status, r.Attempts, r.WorkerIDs, a.ID)
		}
	}
	c, err := e.B.Count(ctx, task.DefaultQueue)
	if err != nil {
		t.Fatal(err)
	}
	if c.Pending != 3 || c.Running != 0 {
		t.Errorf("after shutdown the queue has %+v; want 3 pending, 0 running", c)
	}

	if t.Failed() {
		t.FailNow() // the rest would only wait for the 30s lease
	}
	b := e.startWorker(workerConfig{ID: "w-drain-b", Concurrency: 4})
	for _, lr := range longRs {
		r := e.waitStatus(e.B, lr.ID, 30*time.Second, task.StatusComplete, task.StatusFailed)
		if r.Status != task.StatusComplete || r.Attempts != 2 || !slices.Equal(r.WorkerIDs, []string{a.ID, b.ID}) {
			t.Errorf("handed-back task: status %s (%v), attempts %d, workers %v; want COMPLETE, 2, [%s %s]", r.Status, r.Err, r.Attempts, r.WorkerIDs, a.ID, b.ID)
		}
		var ran string
		if err := r.Decode(&ran); err == nil && ran != b.ID {
			t.Errorf("handed-back task returned worker %q; want %q", ran, b.ID)
		}
	}
}

// TestExactlyOnceWithoutFaults: four worker processes share 2,000 tasks on
// one queue; without faults each runs exactly once, and every process does
// a fair part of the work.
func TestExactlyOnceWithoutFaults(t *testing.T) { testExactlyOnceWithoutFaults(t, newEnv(t)) }

func testExactlyOnceWithoutFaults(t *testing.T, e *env) {
	ctx := e.ctx
	workers := []string{"w-once-1", "w-once-2", "w-once-3", "w-once-4"}
	for _, id := range workers {
		e.startWorker(workerConfig{ID: id, Concurrency: 8, Ready: true})
	}
	const n = 2000
	args := make([]sleepArgs, n)
	for i := range args {
		args[i] = sleepArgs{Ms: i % 3, Tag: strconv.Itoa(i)}
	}
	start := time.Now()
	rs, err := recordTask.EnqueueMany(ctx, args)
	if err != nil {
		t.Fatalf("EnqueueMany(%d): %v", n, err)
	}
	e.waitDrained(task.DefaultQueue, 60*time.Second)
	t.Logf("%d tasks on %d workers took %v", n, len(workers), time.Since(start))

	ids := make([]string, n)
	for i, r := range rs {
		ids[i] = r.ID
	}
	results := e.results(e.client(), ids)
	ranBy := map[string]string{}
	for i, r := range results {
		if r.Status != task.StatusComplete || r.Attempts != 1 || len(r.WorkerIDs) != 1 {
			t.Errorf("task %d (%s): status %s (%v), attempts %d, workers %v; want COMPLETE, 1 attempt, 1 worker", i, r.ID, r.Status, r.Err, r.Attempts, r.WorkerIDs)
			continue
		}
		ranBy[r.ID] = r.WorkerIDs[0]
	}

	starts, ends := map[string]int{}, map[string]int{}
	share := map[string]int{}
	for _, x := range e.executions() {
		switch x.Kind {
		case "start":
			starts[x.ID]++
			share[x.Worker]++
			if x.Attempt != 1 {
				t.Errorf("%v: attempt %d", x, x.Attempt)
			}
			if w, ok := ranBy[x.ID]; ok && w != x.Worker {
				t.Errorf("%v: the result says worker %s", x, w)
			}
		case "end":
			ends[x.ID]++
		}
	}
	for i, id := range ids {
		if starts[id] != 1 || ends[id] != 1 {
			t.Errorf("task %d (%s) started %d and ended %d times; want exactly once", i, id, starts[id], ends[id])
		}
	}
	if len(starts) != n {
		t.Errorf("%d distinct ids in demo:executions; want %d", len(starts), n)
	}
	t.Logf("shares: %v", share)
	// Idle workers all wait on the queue and claim in small batches, so
	// none should be starved; a quarter of the even share leaves room for
	// a noisy machine (one process descheduled for a while).
	for _, w := range workers {
		if least := n / len(workers) / 4; share[w] < least {
			t.Errorf("worker %s ran %d tasks; want at least %d of %d (shares %v)", w, share[w], least, n, share)
		}
	}
}

// TestSIGKILLMidTask: a worker killed while running a task loses it; after
// the lease expires another worker runs it again and it ends COMPLETE.
func TestSIGKILLMidTask(t *testing.T) { testSIGKILLMidTask(t, newEnv(t)) }

func testSIGKILLMidTask(t *testing.T, e *env) {
	ctx := e.ctx
	const lease = time.Second
	a := e.startWorker(workerConfig{ID: "w-kill-a", Concurrency: 1, Lease: lease, Ready: true})
	// 3s: longer than the lease, and than the 2s within which an idle
	// worker's scheduler looks for expired leases, so that B's own attempt
	// only completes if B keeps renewing its lease.
	res, err := recordTask.Enqueue(ctx, sleepArgs{Ms: 3000, Tag: "victim"})
	if err != nil {
		t.Fatal(err)
	}
	e.eventually(30*time.Second, "worker A starts the task", func() (bool, string) {
		for _, x := range e.executions() {
			if x.Kind == "start" && x.ID == res.ID {
				return true, ""
			}
		}
		return false, "no start record"
	})
	// B is idle and already running when A dies: it must notice the
	// expired lease itself (its scheduler), not just on start-up.
	b := e.startWorker(workerConfig{ID: "w-kill-b", Concurrency: 1, Lease: lease, Ready: true})
	if r := e.waitStatus(e.B, res.ID, time.Second, task.StatusRunning); r.Attempts != 1 {
		t.Fatalf("before the kill: attempts %d", r.Attempts)
	}
	a.Kill()
	killed := time.Now()

	r := e.waitStatus(e.B, res.ID, 30*time.Second, task.StatusComplete, task.StatusFailed)
	if r.Status != task.StatusComplete || r.Attempts != 2 || !slices.Equal(r.WorkerIDs, []string{a.ID, b.ID}) {
		t.Fatalf("after SIGKILL: status %s (%v), attempts %d, workers %v; want COMPLETE, 2, [%s %s]", r.Status, r.Err, r.Attempts, r.WorkerIDs, a.ID, b.ID)
	}
	// The lease was renewed every lease/3 until the kill, so it expired at
	// least ~2/3 lease after it; the reaper then acts at once.
	// StartedAt is the first attempt's, LastAttemptedAt the second's.
	if !r.StartedAt.Before(killed) || !r.LastAttemptedAt.After(r.StartedAt) {
		t.Errorf("started %v, last attempt %v, killed %v: want the first start before the kill, the last after it", r.StartedAt, r.LastAttemptedAt, killed)
	}
	rerun := r.LastAttemptedAt.Sub(killed)
	t.Logf("second attempt started %v after the SIGKILL (lease %v)", rerun, lease)
	if rerun < lease/2 {
		t.Errorf("second attempt started %v after the kill: before the lease (%v) could have expired", rerun, lease)
	}
	if rerun > lease+2*time.Second {
		t.Errorf("second attempt started %v after the kill; want soon after the lease (%v) expired", rerun, lease)
	}

	var got []string
	for _, x := range e.executions() {
		if x.ID == res.ID {
			got = append(got, fmt.Sprintf("%s %d %s", x.Kind, x.Attempt, x.Worker))
		}
	}
	want := []string{"start 1 " + a.ID, "start 2 " + b.ID, "end 2 " + b.ID}
	if !slices.Equal(got, want) {
		t.Errorf("executions of the task: %q; want %q", got, want)
	}
}

// TestThroughput10k: the "done when": a producer and two worker
// processes complete 10,000 tasks, and every result is readable by id. The
// elapsed time is logged, not asserted.
func TestThroughput10k(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	e := newEnv(t)
	ctx := e.ctx
	e.startWorker(workerConfig{ID: "w-tp-1", Concurrency: 16, Ready: true})
	e.startWorker(workerConfig{ID: "w-tp-2", Concurrency: 16, Ready: true})

	const n, producers = 10000, 8
	ids := make([]string, n)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < n; i += producers {
				r, err := addTask.Enqueue(ctx, addArgs{A: i, B: 1})
				if err != nil {
					errs <- fmt.Errorf("enqueue %d: %w", i, err)
					return
				}
				ids[i] = r.ID
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	enqueued := time.Since(start)
	e.waitDrained(task.DefaultQueue, 100*time.Second)
	done := time.Since(start)
	results := e.results(e.client(), ids)
	read := time.Since(start) - done

	perWorker := map[string]int{}
	bad := 0
	for i, r := range results {
		var v int
		if r.Status != task.StatusComplete || r.Decode(&v) != nil || v != i+1 || r.Attempts != 1 {
			if bad++; bad <= 10 {
				t.Errorf("task %d (%s): status %s (%v), value %d, attempts %d; want COMPLETE %d, 1 attempt", i, r.ID, r.Status, r.Err, v, r.Attempts, i+1)
			}
			continue
		}
		perWorker[strings.Join(r.WorkerIDs, ",")]++
	}
	if bad > 0 {
		t.Errorf("%d of %d tasks are not COMPLETE with the right value", bad, n)
	}
	t.Logf("%d tasks: enqueued by %d goroutines in %v, all finished after %v (%.0f tasks/s), %d results read by id in %v; per worker %v",
		n, producers, enqueued.Round(time.Millisecond), done.Round(time.Millisecond), float64(n)/done.Seconds(), n, read.Round(time.Millisecond), perWorker)
}

// TestRedisRestart: workers ride out a Redis restart (an empty Redis comes
// back on the same port): they back off, reconnect and run new tasks, and
// Enqueue fails within its deadline while Redis is down.
func TestRedisRestart(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	e.startWorker(workerConfig{ID: "w-restart", Concurrency: 2, Ready: true})

	e.Redis.stop()
	dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	began := time.Now()
	_, err := addTask.Enqueue(dctx, addArgs{A: 1, B: 2})
	cancel()
	if err == nil {
		t.Fatal("Enqueue succeeded with Redis down")
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("Enqueue with Redis down returned after %v; want within its 500ms deadline", took)
	}
	e.Redis.Restart()

	// The producer that was connected before the restart enqueues again,
	// although Redis forgot its scripts. (Nothing else has loaded them into
	// the new Redis yet, so this does not pass by accident.)
	var r *task.Result[int]
	var lastErr error
	for try := 1; try <= 3; try++ {
		if r, lastErr = addTask.Enqueue(ctx, addArgs{A: 30, B: 4}); lastErr == nil {
			break
		}
		t.Logf("enqueue attempt %d on the producer after the Redis restart: %v", try, lastErr)
	}
	if lastErr != nil {
		t.Errorf("the producer that was connected before the Redis restart cannot enqueue after it: %v", lastErr)
	}
	// ... and reads results (a one-off error is logged, a lasting one fails).
	if r != nil {
		var getErr error
		for try := 1; try <= 3; try++ {
			if _, getErr = e.B.GetResult(ctx, r.ID); getErr == nil {
				break
			}
			t.Logf("GetResult attempt %d on the producer after the Redis restart: %v", try, getErr)
		}
		if getErr != nil {
			t.Errorf("the producer that was connected before the Redis restart cannot read results after it: %v", getErr)
		}
	}

	// A fresh producer and client: whatever the old one does, the worker
	// must have resumed.
	fresh := e.client()
	task.Configure(map[string]task.Backend{task.DefaultBackendName: fresh})
	r2, err := addTask.Enqueue(ctx, addArgs{A: 20, B: 3})
	if err != nil {
		t.Fatalf("enqueue on the restarted Redis: %v", err)
	}
	for _, c := range []struct {
		r    *task.Result[int]
		want int
	}{{r2, 23}, {r, 34}} {
		if c.r == nil {
			continue
		}
		raw := e.waitStatus(fresh, c.r.ID, 30*time.Second, task.StatusComplete, task.StatusFailed)
		var v int
		if raw.Status != task.StatusComplete || raw.Decode(&v) != nil || v != c.want {
			t.Errorf("task enqueued after the restart: %s %v %d; want COMPLETE %d", raw.Status, raw.Err, v, c.want)
		}
	}
}

// TestScriptCacheFlush: Redis may forget the Lua scripts (SCRIPT FLUSH, a
// failover to a replica that never saw them); producers and workers that
// loaded them before must carry on.
func TestScriptCacheFlush(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	e.startWorker(workerConfig{ID: "w-flush", Concurrency: 2, Ready: true})
	// Two producers, so that a NOSCRIPT one of them meets does not make the
	// other one reload its scripts: p1 (e.B) reads, p2 enqueues.
	p2 := e.client()
	task.Configure(map[string]task.Backend{task.DefaultBackendName: p2})
	r, err := addTask.Enqueue(ctx, addArgs{A: 1, B: 2})
	if err != nil {
		t.Fatal(err)
	}
	e.waitStatus(e.B, r.ID, 30*time.Second, task.StatusComplete)

	// A read right after the flush succeeds (reads are safe to retry, so
	// the broker does it).
	if err := e.R.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if raw, err := e.B.GetResult(ctx, r.ID); err != nil {
		t.Errorf("GetResult right after SCRIPT FLUSH: %v", err)
	} else if raw.Status != task.StatusComplete {
		t.Errorf("after SCRIPT FLUSH the result is %s; want COMPLETE", raw.Status)
	}

	// An enqueue right after the flush must succeed at once: the caller
	// cannot know whether a failed enqueue is safe to retry. (Enqueues go
	// through p2, which loaded the enqueue script before.)
	if err := e.R.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	r, err = addTask.Enqueue(ctx, addArgs{A: 3, B: 4})
	if err != nil {
		t.Fatalf("Enqueue right after SCRIPT FLUSH: %v", err)
	}
	rs, err := addTask.EnqueueMany(ctx, []addArgs{{A: 5, B: 6}, {A: 7, B: 8}})
	if err != nil {
		t.Fatalf("EnqueueMany after SCRIPT FLUSH: %v", err)
	}
	// The worker (claim, finish) carries on too.
	for i, id := range []string{r.ID, rs[0].ID, rs[1].ID} {
		raw := e.waitStatus(e.B, id, 30*time.Second, task.StatusComplete, task.StatusFailed)
		var v int
		if want := []int{7, 11, 15}[i]; raw.Status != task.StatusComplete || raw.Decode(&v) != nil || v != want {
			t.Errorf("task %d after SCRIPT FLUSH: %s %v %d; want COMPLETE %d", i, raw.Status, raw.Err, v, want)
		}
	}
}

// TestNewQueueServedAtOnce: a worker serving every queue ('*') runs a task
// on a queue that did not exist when it started without waiting for its
// periodic look at the list of queues (every 5 s).
func TestNewQueueServedAtOnce(t *testing.T) { testNewQueueServedAtOnce(t, newEnv(t)) }

func testNewQueueServedAtOnce(t *testing.T, e *env) {
	e.startWorker(workerConfig{ID: "w-star", Queues: []string{"*"}, Concurrency: 2, Ready: true})
	for i, q := range []string{"brand-new-1", "brand-new-2"} {
		r, err := addTask.Using(task.Queue(q)).Enqueue(e.ctx, addArgs{A: i, B: 1})
		if err != nil {
			t.Fatal(err)
		}
		raw := e.waitStatus(e.B, r.ID, 10*time.Second, task.StatusComplete, task.StatusFailed)
		wait := raw.StartedAt.Sub(raw.EnqueuedAt)
		t.Logf("task on new queue %s started %v after its enqueue", q, wait)
		if raw.Status != task.StatusComplete {
			t.Fatalf("task on %s: %s %v", q, raw.Status, raw.Err)
		}
		// Well under the 5 s refresh (and the 1 s poll).
		if wait > 500*time.Millisecond {
			t.Errorf("task on new queue %s started %v after its enqueue: the worker did not learn of the queue at once", q, wait)
		}
	}
}

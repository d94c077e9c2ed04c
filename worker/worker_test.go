package worker_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// Task names are process-wide: everything here is "workertest.*".
var (
	addTask = task.Define("workertest.add", func(ctx context.Context, a [2]int) (int, error) {
		return a[0] + a[1], nil
	})
	failTask = task.Define("workertest.fail", func(ctx context.Context, msg string) (int, error) {
		return 0, errors.New(msg)
	})
	panicTask = task.Define("workertest.panic", func(ctx context.Context, msg string) (int, error) {
		panic(msg)
	})
	infoTask = task.Define("workertest.info", func(ctx context.Context, _ int) (task.Info, error) {
		info, ok := task.InfoFrom(ctx)
		if !ok {
			return info, errors.New("no task.Info in the context")
		}
		return info, nil
	})
	// gateTask runs under the control of the test's gate (see newGate).
	gateTask = task.Define("workertest.gate", func(ctx context.Context, key string) (string, error) {
		g, ok := gates.Load(key)
		if !ok {
			return "", errors.New("no gate " + key)
		}
		return g.(*gate).run(ctx)
	})
)

// gate lets a test hold tasks while they run, count how many run at once,
// and see their context being cancelled.
type gate struct {
	untilCancelled bool          // wait for ctx instead of release
	release        chan struct{} // one receive lets one task go; close lets all go
	started        chan struct{} // one send per task start
	cancelled      chan struct{} // one send per task whose ctx was cancelled
	returned       chan struct{} // one send per task that returned
	cur, max       atomic.Int32
}

var gates sync.Map

func newGate(t *testing.T, untilCancelled bool) (*gate, string) {
	g := &gate{
		untilCancelled: untilCancelled,
		release:        make(chan struct{}),
		started:        make(chan struct{}, 100),
		cancelled:      make(chan struct{}, 100),
		returned:       make(chan struct{}, 100),
	}
	key := t.Name()
	gates.Store(key, g)
	t.Cleanup(func() { gates.Delete(key) })
	return g, key
}

func (g *gate) run(ctx context.Context) (string, error) {
	n := g.cur.Add(1)
	for {
		m := g.max.Load()
		if n <= m || g.max.CompareAndSwap(m, n) {
			break
		}
	}
	defer func() { g.returned <- struct{}{} }()
	defer g.cur.Add(-1)
	g.started <- struct{}{}
	if g.untilCancelled {
		<-ctx.Done()
		g.cancelled <- struct{}{}
		return "late", nil
	}
	<-g.release
	return "released", nil
}

func recv(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type env struct {
	t   *testing.T
	m   *miniredis.Miniredis
	b   *broker.Redis
	ctx context.Context
}

// setup configures a broker on a fresh miniredis as the "default" backend.
// Tests using it must not be parallel.
func setup(t *testing.T) *env {
	t.Helper()
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: m.Addr()})
	b := broker.New(c, broker.Options{})
	task.Configure(map[string]task.Backend{"default": b})
	t.Cleanup(func() {
		task.Configure(nil)
		_ = c.Close()
	})
	return &env{t: t, m: m, b: b, ctx: context.Background()}
}

func (e *env) opts(o worker.Options) worker.Options {
	if o.Queues == nil {
		o.Queues = []string{task.DefaultQueue}
	}
	if o.WorkerID == "" {
		o.WorkerID = "w1"
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = time.Second
	}
	o.Logger = quiet
	return o
}

// runToEnd runs a worker that is expected to stop by itself (Batch or
// MaxTasks) and fails the test if it does not within 10s.
func (e *env) runToEnd(o worker.Options) *worker.Worker {
	e.t.Helper()
	w := worker.New(e.b, e.opts(o))
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if err := w.Run(ctx); err != nil {
		e.t.Fatalf("Run: %v", err)
	}
	if ctx.Err() != nil {
		e.t.Fatal("Run did not return by itself")
	}
	return w
}

// start runs a worker in the background; stop cancels it and waits.
func (e *env) start(o worker.Options) (w *worker.Worker, stop func() time.Duration, done <-chan struct{}) {
	e.t.Helper()
	w = worker.New(e.b, e.opts(o))
	ctx, cancel := context.WithCancel(e.ctx)
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		if err := w.Run(ctx); err != nil {
			e.t.Errorf("Run: %v", err)
		}
	}()
	stop = func() time.Duration {
		start := time.Now()
		cancel()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			e.t.Fatal("Run did not return after cancel")
		}
		return time.Since(start)
	}
	e.t.Cleanup(func() {
		cancel()
		<-ch
	})
	return w, stop, ch
}

func (e *env) get(id string) *task.RawResult {
	e.t.Helper()
	r, err := e.b.GetResult(e.ctx, id)
	if err != nil {
		e.t.Fatalf("GetResult(%s): %v", id, err)
	}
	return r
}

func (e *env) count() broker.Counts {
	e.t.Helper()
	c, err := e.b.Count(e.ctx, task.DefaultQueue)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func refresh[R any](t *testing.T, r *task.Result[R]) *task.Result[R] {
	t.Helper()
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRunsTasksAndStoresResults(t *testing.T) {
	e := setup(t)
	add1 := must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{1, 2}))
	fail := must[*task.Result[int]](t)(failTask.Enqueue(e.ctx, "boom"))
	pan := must[*task.Result[int]](t)(panicTask.Enqueue(e.ctx, "kaboom"))
	add2 := must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{3, 4}))

	w := e.runToEnd(worker.Options{Batch: true, Concurrency: 1, WorkerID: "w1"})
	if w.Processed() != 4 {
		t.Errorf("Processed = %d, want 4", w.Processed())
	}
	for _, r := range []*task.Result[int]{add1, add2} {
		refresh(t, r)
		if r.Status != task.StatusComplete || r.Attempts != 1 || !slices.Equal(r.WorkerIDs, []string{"w1"}) ||
			r.StartedAt.IsZero() || r.FinishedAt.Before(r.StartedAt) {
			t.Errorf("add result = %+v", r)
		}
	}
	if v, err := add1.Value(); err != nil || v != 3 {
		t.Errorf("add1 = %d, %v", v, err)
	}
	if v, err := add2.Value(); err != nil || v != 7 {
		t.Errorf("add2 = %d, %v", v, err)
	}
	refresh(t, fail)
	if fail.Status != task.StatusFailed || fail.Err == nil || fail.Err.Message != "boom" || fail.Err.Type != "" {
		t.Errorf("fail = %s %+v", fail.Status, fail.Err)
	}
	// The panic fails its task; the worker carries on with the next one.
	refresh(t, pan)
	if pan.Status != task.StatusFailed || pan.Err == nil || pan.Err.Type != task.ErrorTypePanic ||
		!strings.Contains(pan.Err.Message, "kaboom") || !strings.Contains(pan.Err.Traceback, "worker_test.go") {
		t.Errorf("panic = %s %+v\n%s", pan.Status, pan.Err, pan.Err.Traceback)
	}
	if c := e.count(); c != (broker.Counts{}) {
		t.Errorf("Count = %+v, want empty", c)
	}
}

// TestBadTasksFail: nothing that cannot run is dropped; each ends FAILED
// with the reason, and the good task next to them completes.
func TestBadTasksFail(t *testing.T) {
	e := setup(t)
	good := must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{1, 1}))
	poison := task.NewID()
	e.m.HSet("{gotasks:default}:tasks", poison, "garbage")
	e.m.ZAdd("{gotasks:default}:pending", 0, poison) // first in line
	raw := func(name string, args any) string {
		b, err := serializer.Default.Marshal(args)
		if err != nil {
			t.Fatal(err)
		}
		m := &task.Message{ID: task.NewID(), TaskName: name, Queue: task.DefaultQueue, Backend: "default", Args: b, EnqueuedAt: time.Now()}
		if err := e.b.Enqueue(e.ctx, m); err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	unknown := raw("workertest.not-defined", 1)
	wrongArgs := raw(addTask.Name(), map[string]string{"not": "an array"})

	w := e.runToEnd(worker.Options{Batch: true, Concurrency: 2})
	if w.Processed() != 4 {
		t.Errorf("Processed = %d, want 4", w.Processed())
	}
	for id, typ := range map[string]string{
		poison:    task.ErrorTypeBadPayload,
		unknown:   task.ErrorTypeUnknownTask,
		wrongArgs: task.ErrorTypeDecodeArgs,
	} {
		r := e.get(id)
		if r.Status != task.StatusFailed || r.Err == nil || r.Err.Type != typ || r.Err.Message == "" {
			t.Errorf("%s: %s %+v, want FAILED %s", id, r.Status, r.Err, typ)
		}
	}
	if v, err := refresh(t, good).Value(); err != nil || v != 2 {
		t.Errorf("good task = %d, %v", v, err)
	}
	if c := e.count(); c != (broker.Counts{}) {
		t.Errorf("Count = %+v, want empty", c)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	e := setup(t)
	g, key := newGate(t, false)
	const n, limit = 10, 3
	var rs []*task.Result[string]
	for range n {
		rs = append(rs, must[*task.Result[string]](t)(gateTask.Enqueue(e.ctx, key)))
	}
	done := make(chan *worker.Worker)
	go func() { done <- e.runToEnd(worker.Options{Batch: true, Concurrency: limit}) }()
	for released := 0; released < n; released++ {
		want := int32(min(limit, n-released))
		waitFor(t, "the pool to fill", func() bool {
			if m := g.max.Load(); m > limit {
				t.Fatalf("%d tasks ran at once, Concurrency is %d", m, limit)
			}
			return g.cur.Load() == want
		})
		g.release <- struct{}{}
	}
	w := <-done
	if m := g.max.Load(); m != limit {
		t.Errorf("at most %d tasks ran at once, want exactly %d", m, limit)
	}
	if w.Processed() != n {
		t.Errorf("Processed = %d", w.Processed())
	}
	for _, r := range rs {
		if refresh(t, r).Status != task.StatusComplete {
			t.Errorf("%s: %s", r.ID, r.Status)
		}
	}
}

func TestMaxTasks(t *testing.T) {
	e := setup(t)
	var rs []*task.Result[int]
	for i := range 5 {
		rs = append(rs, must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{i, i})))
	}
	w := e.runToEnd(worker.Options{MaxTasks: 2, Concurrency: 4})
	if w.Processed() != 2 {
		t.Errorf("Processed = %d, want 2", w.Processed())
	}
	complete := 0
	for _, r := range rs {
		if refresh(t, r).Status == task.StatusComplete {
			complete++
		}
	}
	if complete != 2 {
		t.Errorf("%d tasks complete, want 2", complete)
	}
	if c := e.count(); c != (broker.Counts{Pending: 3}) {
		t.Errorf("Count = %+v, want 3 pending", c)
	}
}

func TestBatch(t *testing.T) {
	e := setup(t)
	// Nothing to do: returns at once.
	if w := e.runToEnd(worker.Options{Batch: true}); w.Processed() != 0 {
		t.Errorf("Processed = %d", w.Processed())
	}
	now := time.Now()
	e.m.SetTime(now)
	ready := must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{1, 1}))
	soon := must[*task.Result[int]](t)(addTask.Using(task.RunAt(now.Add(time.Hour))).Enqueue(e.ctx, [2]int{2, 2}))
	later := must[*task.Result[int]](t)(addTask.Using(task.RunAt(now.Add(5*time.Hour))).Enqueue(e.ctx, [2]int{3, 3}))
	if w := e.runToEnd(worker.Options{Batch: true}); w.Processed() != 1 {
		t.Errorf("Processed = %d, want 1", w.Processed())
	}
	if refresh(t, ready).Status != task.StatusComplete || refresh(t, soon).Status != task.StatusNew {
		t.Errorf("ready %s, soon %s", ready.Status, soon.Status)
	}
	// Batch promotes the deferred tasks that have come due.
	e.m.SetTime(now.Add(2 * time.Hour))
	if w := e.runToEnd(worker.Options{Batch: true}); w.Processed() != 1 {
		t.Errorf("Processed = %d, want 1", w.Processed())
	}
	if refresh(t, soon).Status != task.StatusComplete || refresh(t, later).Status != task.StatusNew {
		t.Errorf("soon %s, later %s", soon.Status, later.Status)
	}
	if c := e.count(); c != (broker.Counts{Deferred: 1}) {
		t.Errorf("Count = %+v", c)
	}
}

// TestAllQueues: with no Queues the worker serves every queue, highest
// priority first, minus Exclude.
func TestAllQueues(t *testing.T) {
	e := setup(t)
	var mu sync.Mutex
	var order []string
	defer task.OnStarted(func(ctx context.Context, r *task.RawResult) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, r.ID)
	})()
	lo := must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{1, 1}))
	hi := must[*task.Result[int]](t)(addTask.Using(task.Queue("other"), task.Priority(5)).Enqueue(e.ctx, [2]int{2, 2}))
	skip := must[*task.Result[int]](t)(addTask.Using(task.Queue("skipped"), task.Priority(9)).Enqueue(e.ctx, [2]int{3, 3}))
	w := worker.New(e.b, worker.Options{Batch: true, Concurrency: 1, Exclude: []string{"skipped"}, Logger: quiet, ShutdownTimeout: time.Second})
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if err := w.Run(ctx); err != nil || ctx.Err() != nil {
		t.Fatalf("Run = %v, ctx %v", err, ctx.Err())
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(order, []string{hi.ID, lo.ID}) {
		t.Errorf("ran %v, want %v", order, []string{hi.ID, lo.ID})
	}
	if refresh(t, skip).Status != task.StatusNew {
		t.Errorf("excluded queue was served")
	}
}

// TestShutdownHandsBackUnfinished: a task still running when
// ShutdownTimeout ends goes straight back to pending, with its attempt.
func TestShutdownHandsBackUnfinished(t *testing.T) {
	e := setup(t)
	g, key := newGate(t, false)
	r := must[*task.Result[string]](t)(gateTask.Enqueue(e.ctx, key))
	_, stop, _ := e.start(worker.Options{Concurrency: 1, ShutdownTimeout: 100 * time.Millisecond})
	recv(t, g.started, "the task to start")
	if took := stop(); took < 100*time.Millisecond {
		t.Errorf("Run returned %v after cancel, before ShutdownTimeout", took)
	}
	// At once: no waiting for the lease.
	if c := e.count(); c != (broker.Counts{Pending: 1}) {
		t.Errorf("Count after shutdown = %+v, want 1 pending", c)
	}
	refresh(t, r)
	if r.Status != task.StatusNew || r.Attempts != 1 || !slices.Equal(r.WorkerIDs, []string{"w1"}) {
		t.Errorf("handed back = %s attempts %d workers %v; want NEW 1 [w1]", r.Status, r.Attempts, r.WorkerIDs)
	}
	// The abandoned attempt finishing later writes nothing.
	close(g.release)
	recv(t, g.returned, "the abandoned task to return")
	if got := e.get(r.ID); got.Status != task.StatusNew {
		t.Errorf("abandoned attempt wrote %s", got.Status)
	}
	// The next worker runs it again.
	e.runToEnd(worker.Options{Batch: true, WorkerID: "w2"})
	refresh(t, r)
	if v, err := r.Value(); err != nil || v != "released" || r.Attempts != 2 || !slices.Equal(r.WorkerIDs, []string{"w1", "w2"}) {
		t.Errorf("rerun = %q, %v, attempts %d workers %v", v, err, r.Attempts, r.WorkerIDs)
	}
}

// TestShutdownLetsTasksFinish: a task that ends within ShutdownTimeout is
// stored, and nothing new is claimed after the cancel.
func TestShutdownLetsTasksFinish(t *testing.T) {
	e := setup(t)
	g, key := newGate(t, false)
	first := must[*task.Result[string]](t)(gateTask.Enqueue(e.ctx, key))
	second := must[*task.Result[string]](t)(gateTask.Enqueue(e.ctx, key))
	w, stop, done := e.start(worker.Options{Concurrency: 1, ShutdownTimeout: 10 * time.Second})
	recv(t, g.started, "the task to start")
	stopped := make(chan struct{})
	go func() {
		stop()
		close(stopped)
	}()
	// Run must wait for the task.
	select {
	case <-done:
		t.Fatal("Run returned while its task was still running, well before ShutdownTimeout")
	case <-time.After(100 * time.Millisecond):
	}
	close(g.release)
	recv(t, stopped, "Run to return")
	if v, err := refresh(t, first).Value(); err != nil || v != "released" {
		t.Errorf("first = %q, %v (%s)", v, err, first.Status)
	}
	// The second task was prefetched (claimed while the first ran): it
	// went back unstarted when shutdown began, its claim undone.
	if refresh(t, second).Status != task.StatusNew || !second.StartedAt.IsZero() ||
		(second.Attempts != 0 && !slices.Equal(second.WorkerIDs, []string{task.UndeliveredWorker})) {
		t.Errorf("second = %s attempts %d workers %v started %v: started after shutdown began", second.Status, second.Attempts, second.WorkerIDs, second.StartedAt)
	}
	if w.Processed() != 1 {
		t.Errorf("Processed = %d", w.Processed())
	}
}

// TestLostLease: when a running task's lease is taken away (it expired and
// another worker claimed the task), the renew loop cancels the task and
// its late result is discarded.
func TestLostLease(t *testing.T) {
	e := setup(t)
	g, key := newGate(t, true)
	r := must[*task.Result[string]](t)(gateTask.Enqueue(e.ctx, key))
	// MaxTasks 1: the worker cannot claim the task again itself, and Run
	// returns once the first attempt is settled.
	_, _, done := e.start(worker.Options{Concurrency: 1, MaxTasks: 1, NoScheduler: true, LeaseDuration: 300 * time.Millisecond})
	recv(t, g.started, "the task to start")

	// Move the Redis clock past the lease and reap it. The worker keeps
	// renewing on the same clock, so a renewal can slip in between: move on
	// until the reap wins.
	for k := 1; ; k++ {
		e.m.SetTime(time.Now().Add(time.Duration(k) * time.Hour))
		n, _, err := e.b.Reap(e.ctx, task.DefaultQueue, 10)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if k > 100 {
			t.Fatal("the lease never expired")
		}
	}
	cs, err := e.b.Claim(e.ctx, []string{task.DefaultQueue}, 1, time.Hour, "w2")
	if err != nil || len(cs) != 1 {
		t.Fatalf("second Claim = %v, %v", cs, err)
	}
	second := cs[0].Result
	if second.Attempts != 2 {
		t.Fatalf("second attempt = %d", second.Attempts)
	}
	recv(t, g.cancelled, "the renew loop to cancel the task")
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its only task ended")
	}
	got := e.get(r.ID)
	if got.Status != task.StatusRunning || got.Attempts != 2 || !slices.Equal(got.WorkerIDs, []string{"w1", "w2"}) {
		t.Errorf("late result overwrote attempt 2: %s attempts %d workers %v", got.Status, got.Attempts, got.WorkerIDs)
	}
	second.Status = task.StatusComplete
	second.Value, _ = serializer.Default.Marshal("fresh")
	if err := e.b.Finish(e.ctx, second); err != nil {
		t.Fatalf("Finish of attempt 2: %v", err)
	}
	if v, err := refresh(t, r).Value(); err != nil || v != "fresh" {
		t.Errorf("value = %q, %v", v, err)
	}
}

// TestRenewKeepsLeases: a task running well past LeaseDuration keeps its
// lease (the worker's own scheduler would requeue it otherwise) and
// completes as its first attempt.
func TestRenewKeepsLeases(t *testing.T) {
	e := setup(t)
	g, key := newGate(t, false)
	r := must[*task.Result[string]](t)(gateTask.Enqueue(e.ctx, key))
	const lease = 300 * time.Millisecond
	_, _, done := e.start(worker.Options{Concurrency: 1, MaxTasks: 1, LeaseDuration: lease})
	recv(t, g.started, "the task to start")
	started := time.Now()
	for time.Since(started) < 4*lease {
		if n, _, err := e.b.Reap(e.ctx, task.DefaultQueue, 10); err != nil || n != 0 {
			t.Fatalf("Reap = %d, %v: the lease was not renewed", n, err)
		}
		time.Sleep(lease / 10)
	}
	close(g.release)
	recv(t, done, "Run to return")
	if v, err := refresh(t, r).Value(); err != nil || v != "released" || r.Attempts != 1 {
		t.Errorf("result = %q, %v, attempts %d; want the first attempt to keep its lease and complete", v, err, r.Attempts)
	}
}

func TestInfoFrom(t *testing.T) {
	e := setup(t)
	// A retry: another worker claimed it once and handed it back.
	retried := must[*task.Result[task.Info]](t)(infoTask.Enqueue(e.ctx, 0))
	cs, err := e.b.Claim(e.ctx, []string{task.DefaultQueue}, 1, time.Minute, "w0")
	if err != nil || len(cs) != 1 {
		t.Fatalf("Claim = %v, %v", cs, err)
	}
	if n, err := e.b.Requeue(e.ctx, task.DefaultQueue, []*task.RawResult{cs[0].Result}); err != nil || n != 1 {
		t.Fatalf("Requeue = %d, %v", n, err)
	}
	fresh := must[*task.Result[task.Info]](t)(infoTask.Enqueue(e.ctx, 1))
	w := e.runToEnd(worker.Options{Batch: true, WorkerID: "info worker"})
	if w.ID() != "info_worker" {
		t.Errorf("ID = %q, want the space replaced", w.ID())
	}
	for _, c := range []struct {
		r       *task.Result[task.Info]
		attempt int
	}{{retried, 2}, {fresh, 1}} {
		v, err := refresh(t, c.r).Value()
		want := task.Info{ResultID: c.r.ID, TaskName: infoTask.Name(), Attempt: c.attempt, WorkerID: "info_worker"}
		if err != nil || v != want {
			t.Errorf("Info = %+v, %v; want %+v", v, err, want)
		}
	}
}

func TestHooks(t *testing.T) {
	e := setup(t)
	type event struct {
		kind     string
		id       string
		status   task.Status
		attempts int
		workers  string
		finished bool
	}
	var mu sync.Mutex
	var events []event
	record := func(kind string) task.Hook {
		return func(ctx context.Context, r *task.RawResult) {
			if r.TaskName != addTask.Name() && r.TaskName != failTask.Name() {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			events = append(events, event{kind, r.ID, r.Status, r.Attempts, strings.Join(r.WorkerIDs, ","), !r.FinishedAt.IsZero()})
		}
	}
	t.Cleanup(task.OnStarted(record("started")))
	t.Cleanup(task.OnFinished(record("finished")))
	ok := must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{1, 1}))
	bad := must[*task.Result[int]](t)(failTask.Enqueue(e.ctx, "no"))
	e.runToEnd(worker.Options{Batch: true, Concurrency: 1, WorkerID: "hw"})
	mu.Lock()
	defer mu.Unlock()
	// Each task's started hook comes before its finished hook; the hooks
	// of different tasks are not ordered (the next task starts while the
	// last one's outcome is being written).
	want := map[string][]event{
		ok.ID:  {{"started", ok.ID, task.StatusRunning, 1, "hw", false}, {"finished", ok.ID, task.StatusComplete, 1, "hw", true}},
		bad.ID: {{"started", bad.ID, task.StatusRunning, 1, "hw", false}, {"finished", bad.ID, task.StatusFailed, 1, "hw", true}},
	}
	got := map[string][]event{}
	for _, ev := range events {
		got[ev.id] = append(got[ev.id], ev)
	}
	for id, w := range want {
		if !slices.Equal(got[id], w) {
			t.Errorf("events of %s:\n got %+v\nwant %+v", id, got[id], w)
		}
	}
	if len(events) != 4 {
		t.Errorf("%d events, want 4: %+v", len(events), events)
	}
}

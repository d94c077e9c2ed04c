package worker_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// roundTrips counts the commands and pipelines a client sends.
type roundTrips struct {
	n    atomic.Int64
	mu   sync.Mutex
	seen map[string]int
}

func (h *roundTrips) note(s string) {
	h.mu.Lock()
	if h.seen == nil {
		h.seen = map[string]int{}
	}
	h.seen[s]++
	h.mu.Unlock()
}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		h.note(fmt.Sprint(cmd.Args()[:min(2, len(cmd.Args()))]))
		return next(ctx, cmd)
	}
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		h.note(fmt.Sprint("pipe", len(cmds), cmds[0].Args()[:min(2, len(cmds[0].Args()))]))
		return next(ctx, cmds)
	}
}

// TestNextTaskClaimedWithOutcome: a busy worker of concurrency 1 makes
// about one round trip per task, not two: its claims prefetch the next
// tasks and its outcome writes carry those that finished meanwhile;
// MaxTasks still holds exactly.
func TestNextTaskClaimedWithOutcome(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	b := broker.New(c, broker.Options{})
	task.Configure(map[string]task.Backend{"default": b})
	t.Cleanup(func() { task.Configure(nil) })
	ctx := context.Background()

	const n, max = 60, 40
	args := make([][2]int, n)
	for i := range args {
		args[i] = [2]int{i, 1}
	}
	rs, err := addTask.EnqueueMany(ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	hook := &roundTrips{}
	c.AddHook(hook)
	w := worker.New(b, worker.Options{Queues: []string{task.DefaultQueue}, Concurrency: 1, MaxTasks: max,
		NoScheduler: true, WorkerID: "w1", Logger: quiet})
	runCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w.Run(runCtx); err != nil {
		t.Fatal(err)
	}
	trips := hook.n.Load()
	if runCtx.Err() != nil {
		t.Fatalf("Run did not stop at MaxTasks (%d processed)", w.Processed())
	}
	if w.Processed() != max {
		t.Fatalf("Processed = %d, want %d", w.Processed(), max)
	}
	// Claims are FIFO: the first max tasks ran, the rest wait.
	for i, r := range rs {
		want := task.StatusComplete
		if i >= max {
			want = task.StatusNew
		}
		if err := r.Refresh(ctx); err != nil || r.Status != want {
			t.Fatalf("task %d: %s (%v), want %s", i, r.Status, err, want)
		}
	}
	if c, err := b.Count(ctx, task.DefaultQueue); err != nil || c != (broker.Counts{Pending: n - max}) {
		t.Fatalf("Count = %+v, %v; want %d pending and nothing running", c, err, n-max)
	}
	// Two per task without the chained claims; a few for the start.
	t.Logf("%d round trips for %d tasks", trips, max)
	if trips > max+10 {
		t.Errorf("%d round trips for %d tasks, want about one per task: %v", trips, max, hook.seen)
	}
}

// finishesOf counts the pipelines that carry a finish of one task id.
type finishesOf struct {
	id string
	n  atomic.Int64
}

func (h *finishesOf) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *finishesOf) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *finishesOf) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			for _, a := range c.Args() {
				if a == h.id {
					h.n.Add(1)
					return next(ctx, cmds)
				}
			}
		}
		return next(ctx, cmds)
	}
}

// TestFailingWriteIsRetriedWhileOthersFlow: an outcome whose write keeps
// failing (its result key holds a string) is tried again after a backoff
// of its own, holding its task's lease, while the worker runs and stores
// the next tasks.
func TestFailingWriteIsRetriedWhileOthersFlow(t *testing.T) {
	e := setup(t)
	x := must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{1, 2}))
	y := must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{3, 4}))
	if err := e.m.Set("{gotasks:default}:r:"+x.ID, "not a hash"); err != nil {
		t.Fatal(err)
	}
	hook := &finishesOf{id: x.ID}
	e.b.Client().AddHook(hook)
	_, stop, _ := e.start(worker.Options{Concurrency: 1, NoScheduler: true})
	waitFor(t, "three tries to store x", func() bool { return hook.n.Load() >= 3 })
	waitFor(t, "y to complete meanwhile", func() bool { return e.get(y.ID).Status == task.StatusComplete })
	if c := e.count(); c.Running != 1 || c.Pending != 0 {
		t.Errorf("while x's write fails: %+v, want x running (its lease held), nothing pending", c)
	}
	stop()
}

// briefTask takes a little time, so that the fetch loop is polling the
// empty queue while the storer's claim is in flight.
var briefTask = task.Define("workertest.brief", func(ctx context.Context, _ int) (int, error) {
	time.Sleep(35 * time.Millisecond)
	return 1, nil
})

// slowPipes makes every pipeline's reply arrive late, so that the storer's
// claims stay in flight long enough to meet the fetch loop.
type slowPipes struct{}

func (*slowPipes) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (*slowPipes) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (*slowPipes) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		time.Sleep(300 * time.Millisecond)
		return err
	}
}

// TestMaxTasksWaitsForClaimsInFlight: with MaxTasks 2 and one task, the
// worker keeps claiming after the storer's claim (made with the first
// task's outcome, found nothing) held a reservation for a while: a task
// enqueued after that still runs here.
func TestMaxTasksWaitsForClaimsInFlight(t *testing.T) {
	e := setup(t)
	first := must[*task.Result[int]](t)(briefTask.Enqueue(e.ctx, 0))
	e.b.Client().AddHook(&slowPipes{})
	w, _, done := e.start(worker.Options{Concurrency: 2, MaxTasks: 2, NoScheduler: true, PollInterval: 10 * time.Millisecond})
	// Processed counts an outcome once its round trip (and the claim that
	// went with it) has come back.
	waitFor(t, "the first outcome and its claim", func() bool { return w.Processed() >= 1 })
	if refresh(t, first).Status != task.StatusComplete {
		t.Fatalf("first task %s", first.Status)
	}
	second := must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{2, 2}))
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after MaxTasks")
	}
	if w.Processed() != 2 || refresh(t, second).Status != task.StatusComplete {
		t.Errorf("Processed = %d, second task %s; want 2 and COMPLETE", w.Processed(), second.Status)
	}
}

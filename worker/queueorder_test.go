package worker_test

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// fill enqueues n add tasks on queue q.
func (e *env) fill(q string, n int) []*task.Result[int] {
	e.t.Helper()
	args := make([][2]int, n)
	rs, err := addTask.Using(task.Queue(q)).EnqueueMany(e.ctx, args)
	if err != nil {
		e.t.Fatal(err)
	}
	return rs
}

// TestWeightedQueuesShareTheClaims: 6:3:1 over 600 tasks while every
// queue has a backlog gives each queue its share (the turns are a
// smooth round-robin, one claim of one task each here, so exactly).
func TestWeightedQueuesShareTheClaims(t *testing.T) {
	e := setup(t)
	backlog := map[string]int{"wa": 420, "wb": 240, "wc": 120}
	for q, n := range backlog {
		e.fill(q, n)
	}
	const total = 600
	w := worker.New(e.b, e.opts(worker.Options{Queues: []string{"wc", "wb", "wa"}, QueueOrder: worker.Weighted,
		Weights: map[string]int{"wa": 6, "wb": 3, "wc": 1}, MaxTasks: total, Concurrency: 1, Prefetch: -1}))
	// A generous bound: 600 round trips under the race detector on a
	// busy machine.
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	if err := w.Run(ctx); err != nil || ctx.Err() != nil {
		t.Fatalf("Run = %v (%v), %d processed", err, ctx.Err(), w.Processed())
	}
	for q, share := range map[string]float64{"wa": 0.6, "wb": 0.3, "wc": 0.1} {
		c, err := e.b.Count(e.ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		ran := backlog[q] - int(c.Pending)
		t.Logf("queue %s (weight share %.0f%%): %d of %d tasks", q, 100*share, ran, total)
		if want := share * total; math.Abs(float64(ran)-want) > 0.1*want {
			t.Errorf("queue %s: %d of %d tasks, want %.0f ± 10%%", q, ran, total, want)
		}
	}
}

// TestStrictQueueOrder: the first queue drains before the second starts.
func TestStrictQueueOrder(t *testing.T) {
	e := setup(t)
	first, second := e.fill("sa", 50), e.fill("sb", 50)
	e.runToEnd(worker.Options{Queues: []string{"sa", "sb"}, QueueOrder: worker.Strict, Batch: true, Concurrency: 4})
	var lastFirst, firstSecond time.Time
	for _, r := range first {
		if refresh(t, r).Status != task.StatusComplete {
			t.Fatalf("%s: %s", r.ID, r.Status)
		}
		lastFirst = slices.MaxFunc([]time.Time{lastFirst, r.StartedAt}, time.Time.Compare)
	}
	for _, r := range second {
		if refresh(t, r).Status != task.StatusComplete {
			t.Fatalf("%s: %s", r.ID, r.Status)
		}
		if firstSecond.IsZero() || r.StartedAt.Before(firstSecond) {
			firstSecond = r.StartedAt
		}
	}
	if firstSecond.Before(lastFirst) {
		t.Errorf("a task of the second queue started at %v, before the first queue's last at %v", firstSecond, lastFirst)
	}
}

package broker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

type uniqArgs struct{ N int }

// uniqTask is a unique task; tests vary it with Using.
var uniqTask = task.Define("broker_test.unique", func(ctx context.Context, a uniqArgs) (int, error) {
	return a.N, nil
}, task.Unique())

// useRedis makes e's broker the default backend for the test.
func (e *env) useRedis() {
	task.Configure(map[string]task.Backend{task.DefaultBackendName: e.b})
	e.t.Cleanup(func() { task.Configure(nil) })
}

// mustDup checks that err is a duplicate of the task with id holder.
func mustDup(t *testing.T, err error, holder string) {
	t.Helper()
	var d *task.DuplicateError
	if !errors.Is(err, task.ErrDuplicate) || !errors.As(err, &d) {
		t.Fatalf("err = %v, want a *task.DuplicateError", err)
	}
	if d.ID != holder {
		t.Fatalf("duplicate of %s, want %s", d.ID, holder)
	}
}

// finish claims the one ready task of queue and finishes it COMPLETE.
func (e *env) finish(queue string) *task.RawResult {
	e.t.Helper()
	r := e.claim1(queue, "w1", time.Minute)
	v, err := serializer.Default.Marshal(r.Attempts)
	if err != nil {
		e.t.Fatal(err)
	}
	r.Status, r.Value = task.StatusComplete, v
	if err := e.b.Finish(e.ctx, r); err != nil {
		e.t.Fatal(err)
	}
	return r
}

func TestUniqueRejectsSecondEnqueueUntilTheFirstFinishes(t *testing.T) {
	e := setup(t)
	e.useRedis()
	first, err := uniqTask.Enqueue(e.ctx, uniqArgs{1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = uniqTask.Enqueue(e.ctx, uniqArgs{1})
	mustDup(t, err, first.ID)
	if c := e.count(task.DefaultQueue); c.Pending != 1 {
		t.Fatalf("pending = %d, want 1 (the duplicate is not stored)", c.Pending)
	}
	// A retry keeps the key: the task is unfinished.
	r := e.claim1(task.DefaultQueue, "w1", time.Minute)
	if r.ID != first.ID {
		t.Fatalf("claimed %s, want %s", r.ID, first.ID)
	}
	r.Status, r.Errors = task.StatusNew, []*task.Error{{Message: "boom"}}
	if err := e.b.Retry(e.ctx, r); err != nil {
		t.Fatal(err)
	}
	_, err = uniqTask.Enqueue(e.ctx, uniqArgs{1})
	mustDup(t, err, first.ID)

	// Finished: released.
	if got := e.finish(task.DefaultQueue); got.ID != first.ID {
		t.Fatalf("finished %s, want %s", got.ID, first.ID)
	}
	again, err := uniqTask.Enqueue(e.ctx, uniqArgs{1})
	if err != nil {
		t.Fatalf("after the first finished: %v", err)
	}
	_, err = uniqTask.Enqueue(e.ctx, uniqArgs{1})
	mustDup(t, err, again.ID)
	// Other arguments are another task.
	if _, err := uniqTask.Enqueue(e.ctx, uniqArgs{2}); err != nil {
		t.Fatalf("other args: %v", err)
	}
}

func TestUniqueEnqueueOrGetReturnsTheHolder(t *testing.T) {
	e := setup(t)
	e.useRedis()
	first, dup, err := uniqTask.EnqueueOrGet(e.ctx, uniqArgs{7})
	if err != nil || dup {
		t.Fatalf("first: dup %v, err %v", dup, err)
	}
	e.finish(task.DefaultQueue)
	// Finished, so a new task; its result is NEW.
	second, dup, err := uniqTask.EnqueueOrGet(e.ctx, uniqArgs{7})
	if err != nil || dup || second.ID == first.ID {
		t.Fatalf("second: %v, dup %v, err %v", second, dup, err)
	}
	got, dup, err := uniqTask.EnqueueOrGet(e.ctx, uniqArgs{7})
	if err != nil || !dup {
		t.Fatalf("third: dup %v, err %v", dup, err)
	}
	if got.ID != second.ID || got.Status != task.StatusNew {
		t.Fatalf("third got %s (%s), want %s NEW", got.ID, got.Status, second.ID)
	}
}

func TestUniqueForHoldsTheWindowAfterFinishing(t *testing.T) {
	e := setup(t)
	e.useRedis()
	hourly := uniqTask.Using(task.UniqueFor(time.Hour))
	first, err := hourly.Enqueue(e.ctx, uniqArgs{1})
	if err != nil {
		t.Fatal(err)
	}
	e.finish(task.DefaultQueue)
	_, err = hourly.Enqueue(e.ctx, uniqArgs{1})
	mustDup(t, err, first.ID)
	// Finished, and the window still holds it: the result is COMPLETE.
	got, dup, err := hourly.EnqueueOrGet(e.ctx, uniqArgs{1})
	if err != nil || !dup || got.Status != task.StatusComplete {
		t.Fatalf("EnqueueOrGet in the window: %+v, dup %v, err %v", got, dup, err)
	}
	// A task held until it finishes sees the window too.
	_, err = uniqTask.Enqueue(e.ctx, uniqArgs{1})
	mustDup(t, err, first.ID)

	e.m.FastForward(time.Hour - time.Millisecond)
	_, err = hourly.Enqueue(e.ctx, uniqArgs{1})
	mustDup(t, err, first.ID)
	e.m.FastForward(time.Millisecond)
	if _, err := hourly.Enqueue(e.ctx, uniqArgs{1}); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestUniqueEnqueueManyReportsDuplicatesAndStoresTheRest(t *testing.T) {
	e := setup(t)
	e.useRedis()
	earlier, err := uniqTask.Enqueue(e.ctx, uniqArgs{1})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := uniqTask.EnqueueMany(e.ctx, []uniqArgs{{1}, {2}, {3}, {2}})
	if !errors.Is(err, task.ErrDuplicate) {
		t.Fatalf("err = %v, want ErrDuplicate", err)
	}
	if rs[0] != nil || rs[1] == nil || rs[2] == nil || rs[3] != nil {
		t.Fatalf("results %v: want nil for [0] and [3]", rs)
	}
	var d *task.DuplicateError
	if !errors.As(err, &d) || d.ID != earlier.ID {
		t.Fatalf("first duplicate %v, want of %s", d, earlier.ID)
	}
	if c := e.count(task.DefaultQueue); c.Pending != 3 {
		t.Fatalf("pending = %d, want 3", c.Pending)
	}
	for _, r := range rs[1:3] {
		if got := e.get(r.ID); got.Status != task.StatusNew {
			t.Fatalf("%s is %s", r.ID, got.Status)
		}
	}
	// Across batches.
	_, err = uniqTask.EnqueueMany(e.ctx, []uniqArgs{{3}})
	mustDup(t, err, rs[2].ID)
}

func TestUniqueKeyIgnoresArgsAndQueuesAreIndependent(t *testing.T) {
	e := setup(t)
	e.useRedis()
	byUser := uniqTask.Using(task.UniqueKey("user:42"))
	first, err := byUser.Enqueue(e.ctx, uniqArgs{1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = byUser.Enqueue(e.ctx, uniqArgs{2})
	mustDup(t, err, first.ID)
	if _, err := byUser.Using(task.UniqueKey("user:43")).Enqueue(e.ctx, uniqArgs{2}); err != nil {
		t.Fatalf("another key: %v", err)
	}
	if _, err := byUser.Using(task.Queue("other")).Enqueue(e.ctx, uniqArgs{2}); err != nil {
		t.Fatalf("another queue: %v", err)
	}
	// The keys live under the queue's tag (Redis Cluster).
	for _, k := range e.m.Keys() {
		if k != "gotasks:queues" && k != "gotasks:newqueue" && k[0] != '{' {
			t.Errorf("key %q has no hash tag", k)
		}
	}
}

func TestUniqueFinishFreesTheEntry(t *testing.T) {
	e := setup(t)
	e.useRedis()
	first, err := uniqTask.Enqueue(e.ctx, uniqArgs{1})
	if err != nil {
		t.Fatal(err)
	}
	e.finish(task.DefaultQueue)
	// The stale entry is dropped by the next enqueue of the key, which
	// then holds it alone.
	second, err := uniqTask.Enqueue(e.ctx, uniqArgs{1})
	if err != nil {
		t.Fatal(err)
	}
	fields, err := e.m.HKeys("{gotasks:default}:unique")
	if err != nil {
		t.Fatal(err)
	}
	if len(fields) != 2 {
		t.Fatalf("unique fields %v, want the 2 of %s only (not %s's)", fields, second.ID, first.ID)
	}
	for _, f := range fields {
		if f == "i:"+first.ID {
			t.Fatalf("entry of finished %s left: %v", first.ID, fields)
		}
	}
}

// TestUniqueEntryDeletedWhenTheTaskLeaves: finishing, cancelling and
// purging a unique task delete its entry at once (not only at the next
// enqueue of its key), so keys never enqueued again do not pile up.
func TestUniqueEntryDeletedWhenTheTaskLeaves(t *testing.T) {
	e := setup(t)
	e.useRedis()
	entries := func() int {
		t.Helper()
		if !e.m.Exists("{gotasks:default}:unique") {
			return 0
		}
		fields, err := e.m.HKeys("{gotasks:default}:unique")
		if err != nil {
			t.Fatal(err)
		}
		return len(fields)
	}
	enqueue := func(n int) *task.Result[int] {
		t.Helper()
		r, err := uniqTask.Enqueue(e.ctx, uniqArgs{n})
		if err != nil {
			t.Fatal(err)
		}
		if got := entries(); got != 2 {
			t.Fatalf("after enqueueing: %d unique fields, want 2", got)
		}
		return r
	}

	enqueue(1)
	e.finish(task.DefaultQueue)
	if got := entries(); got != 0 {
		t.Errorf("after finishing: %d unique fields left, want 0", got)
	}

	r := enqueue(2)
	if _, err := e.b.Cancel(e.ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if got := entries(); got != 0 {
		t.Errorf("after cancelling: %d unique fields left, want 0", got)
	}

	enqueue(3)
	if n, err := e.b.Purge(e.ctx, task.DefaultQueue); err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v; want 1", n, err)
	}
	if got := entries(); got != 0 {
		t.Errorf("after purging: %d unique fields left, want 0", got)
	}
}

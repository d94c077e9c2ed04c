package task_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
)

func TestDefineRegistersByName(t *testing.T) {
	name := taskName(t, "add")
	add := task.Define(name, func(ctx context.Context, p [2]int) (int, error) { return p[0] + p[1], nil })
	if add.Name() != name {
		t.Fatalf("Name() = %q, want %q", add.Name(), name)
	}
	d, ok := task.Lookup(name)
	if !ok {
		t.Fatalf("Lookup(%q) did not find the task", name)
	}
	if d.Name() != name {
		t.Errorf("Lookup(%q).Name() = %q", name, d.Name())
	}
	if got, ok := d.(*task.Task[[2]int, int]); !ok || got != add {
		t.Errorf("Lookup returned %T %p, want the defined task %p", d, d, add)
	}
	if _, ok := task.Lookup(name + ".nope"); ok {
		t.Errorf("Lookup of an undefined name succeeded")
	}
	names := task.Registered()
	if !slices.Contains(names, name) {
		t.Errorf("Registered() does not list %q", name)
	}
	if !slices.IsSorted(names) {
		t.Errorf("Registered() is not sorted: %q", names)
	}
	if v, err := add.Call(context.Background(), [2]int{2, 3}); err != nil || v != 5 {
		t.Errorf("Call = %d, %v", v, err)
	}
}

func TestDefineDuplicatePanics(t *testing.T) {
	name := taskName(t, "dup")
	first := task.Define(name, identity[int])
	msg := mustPanic(t, func() { task.Define(name, identity[string]) })
	wantContains(t, "panic", msg, name, "already defined")
	// The first definition is still the registered one.
	if d, _ := task.Lookup(name); d != task.Definition(first) {
		t.Errorf("a failed duplicate Define replaced the task")
	}
}

func TestDefineRejectsEmptyNameAndNilFunc(t *testing.T) {
	wantContains(t, "panic", mustPanic(t, func() { task.Define("", identity[int]) }), "empty")
	name := taskName(t, "nilfn")
	wantContains(t, "panic", mustPanic(t, func() { task.Define[int, int](name, nil) }), name, "nil")
	if _, ok := task.Lookup(name); ok {
		t.Errorf("a Define that panicked registered the task")
	}
}

func TestOptionDefaults(t *testing.T) {
	tk := task.Define(taskName(t, "defaults"), identity[int])
	if tk.PriorityValue() != 0 || tk.QueueName() != "default" || tk.BackendName() != "default" {
		t.Errorf("defaults: priority %d, queue %q, backend %q; want 0, default, default",
			tk.PriorityValue(), tk.QueueName(), tk.BackendName())
	}
	if task.DefaultPriority != 0 || task.DefaultQueue != "default" || task.DefaultBackendName != "default" ||
		task.MinPriority != -100 || task.MaxPriority != 100 {
		t.Errorf("documented constants changed")
	}

	// And the defaults are what Enqueue records.
	useDummy(t, task.BackendOptions{})
	res, err := tk.Enqueue(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Priority != 0 || res.Queue != "default" || res.Backend != "default" || !res.RunAfter.IsZero() {
		t.Errorf("enqueued with priority %d, queue %q, backend %q, run after %v",
			res.Priority, res.Queue, res.Backend, res.RunAfter)
	}
}

func TestDefineWithOptions(t *testing.T) {
	tk := task.Define(taskName(t, "opts"), identity[int], task.Priority(7), task.Queue("emails"), task.UseBackend("other"))
	if tk.PriorityValue() != 7 || tk.QueueName() != "emails" || tk.BackendName() != "other" {
		t.Errorf("got priority %d, queue %q, backend %q", tk.PriorityValue(), tk.QueueName(), tk.BackendName())
	}
}

func TestUsingReturnsModifiedCopy(t *testing.T) {
	orig := task.Define(taskName(t, "orig"), identity[string], task.Priority(1), task.Queue("a"))
	cp := orig.Using(task.Priority(-5), task.Queue("b"), task.UseBackend("other"))
	if cp == orig {
		t.Fatal("Using returned the same pointer")
	}
	if cp.Name() != orig.Name() {
		t.Errorf("copy name %q, want %q", cp.Name(), orig.Name())
	}
	if cp.PriorityValue() != -5 || cp.QueueName() != "b" || cp.BackendName() != "other" {
		t.Errorf("copy: priority %d, queue %q, backend %q", cp.PriorityValue(), cp.QueueName(), cp.BackendName())
	}
	if orig.PriorityValue() != 1 || orig.QueueName() != "a" || orig.BackendName() != "default" {
		t.Errorf("original changed: priority %d, queue %q, backend %q", orig.PriorityValue(), orig.QueueName(), orig.BackendName())
	}
	// The registry still holds the original, and the copy runs the same code.
	if d, _ := task.Lookup(orig.Name()); d != task.Definition(orig) {
		t.Errorf("Using changed the registered task")
	}
	if v, err := cp.Call(context.Background(), "same code"); v != "same code" || err != nil {
		t.Errorf("copy Call = %q, %v", v, err)
	}
	// Using on a copy does not affect the copy it was made from either.
	cp2 := cp.Using(task.Queue("c"))
	if cp.QueueName() != "b" || cp2.QueueName() != "c" || cp2.PriorityValue() != -5 {
		t.Errorf("chained Using: %q/%q/%d", cp.QueueName(), cp2.QueueName(), cp2.PriorityValue())
	}

	// Enqueue uses the copy's settings.
	d := useDummy(t, task.BackendOptions{})
	if _, err := orig.Using(task.Priority(42), task.Queue("q2")).Enqueue(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := orig.Enqueue(context.Background(), "y"); err != nil {
		t.Fatal(err)
	}
	rs := d.Results()
	if len(rs) != 2 || rs[0].Priority != 42 || rs[0].Queue != "q2" || rs[1].Priority != 1 || rs[1].Queue != "a" {
		t.Errorf("stored: %+v", rs)
	}
}

func TestEnqueueValidation(t *testing.T) {
	ctx := context.Background()
	type withChan struct {
		Name string
		C    chan int
	}
	type withFunc struct{ F func() }

	imm := task.NewImmediateBackend("imm", task.BackendOptions{})
	restricted := task.NewDummyBackend("restricted", task.BackendOptions{Queues: []string{"emails", "reports"}})
	open := task.NewDummyBackend("open", task.BackendOptions{Queues: []string{}})
	configure(t, map[string]task.Backend{"imm": imm, "restricted": restricted, "open": open})

	ran := 0
	tk := task.Define(taskName(t, "v"), func(ctx context.Context, a any) (int, error) { ran++; return 1, nil },
		task.UseBackend("imm"))

	invalid := []struct {
		name string
		tk   *task.Task[any, int]
		args any
		want []string // in the message
	}{
		{"priority above max", tk.Using(task.Priority(101)), 1, []string{"priority", "101"}},
		{"priority below min", tk.Using(task.Priority(-101)), 1, []string{"priority", "-101"}},
		{"priority far out", tk.Using(task.Priority(1 << 20)), 1, []string{"priority"}},
		{"queue not allowed", tk.Using(task.UseBackend("restricted")), 1, []string{`"default"`, "not allowed", "restricted", "emails"}},
		{"queue not allowed 2", tk.Using(task.UseBackend("restricted"), task.Queue("email")), 1, []string{`"email"`}},
		{"empty queue name", tk.Using(task.Queue("")), 1, []string{"queue name"}},
		{"queue name with space", tk.Using(task.Queue("my queue")), 1, []string{`"my queue"`}},
		{"queue name with slash", tk.Using(task.Queue("a/b")), 1, []string{"a/b"}},
		{"queue name too long", tk.Using(task.Queue(strings.Repeat("q", 101))), 1, []string{"queue name"}},
		{"non-ASCII queue name", tk.Using(task.Queue("file_d'attente_é")), 1, []string{"queue name"}},
		{"queue name with a brace", tk.Using(task.Queue("a{b}")), 1, []string{"queue name"}},
		{"RunAfter on immediate", tk.Using(task.RunAfter(time.Minute)), 1, []string{"imm", "RunAfter"}},
		{"RunAt on immediate", tk.Using(task.RunAt(time.Now().Add(time.Hour))), 1, []string{"imm", "RunAt"}},
		{"RunAt in the past on immediate", tk.Using(task.RunAt(time.Unix(1, 0))), 1, []string{"RunAt"}},
		{"chan field", tk, withChan{Name: "x", C: make(chan int)}, []string{"serialized", "chan"}},
		{"nil chan field", tk, withChan{}, []string{"serialized", "chan"}},
		{"func field", tk, withFunc{F: func() {}}, []string{"serialized", "func"}},
		{"bare chan", tk, make(chan int), []string{"serialized", "chan"}},
		{"chan on dummy", tk.Using(task.UseBackend("open")), withChan{}, []string{"serialized"}},
	}
	for _, c := range invalid {
		t.Run(c.name, func(t *testing.T) {
			res, err := c.tk.Enqueue(ctx, c.args)
			if !errors.Is(err, task.ErrInvalidTask) {
				t.Fatalf("err = %v, want ErrInvalidTask", err)
			}
			if res != nil {
				t.Errorf("a result came with the error: %+v", res)
			}
			wantContains(t, "error", err.Error(), append([]string{tk.Name()}, c.want...)...)
		})
	}
	if ran != 0 {
		t.Errorf("an invalid task ran %d times", ran)
	}
	if n := len(restricted.Results()) + len(open.Results()); n != 0 {
		t.Errorf("invalid tasks were stored: %d", n)
	}

	valid := []struct {
		name string
		tk   *task.Task[any, int]
	}{
		{"priority max", tk.Using(task.Priority(100))},
		{"priority min", tk.Using(task.Priority(-100))},
		{"allowed queue", tk.Using(task.UseBackend("restricted"), task.Queue("reports"))},
		{"empty queue list allows any", tk.Using(task.UseBackend("open"), task.Queue("anything"))},
		{"odd but valid queue name", tk.Using(task.Queue("a.b:c-d_9"))},
		{"every allowed character", tk.Using(task.Queue("AZaz09_.:-"))},
		{"100-char queue name", tk.Using(task.Queue(strings.Repeat("q", 100)))},
		{"RunAfter 0 on immediate", tk.Using(task.RunAfter(0))},
		{"negative RunAfter on immediate", tk.Using(task.RunAfter(-time.Hour))},
		{"zero RunAt on immediate", tk.Using(task.RunAt(time.Time{}))},
		{"RunAfter 0 replaces RunAt", tk.Using(task.RunAt(time.Now().Add(time.Hour)), task.RunAfter(0))},
		{"RunAt on a backend with Defer", tk.Using(task.UseBackend("open"), task.RunAt(time.Now().Add(time.Hour)))},
	}
	for _, c := range valid {
		t.Run(c.name, func(t *testing.T) {
			if _, err := c.tk.Enqueue(ctx, 1); err != nil {
				t.Fatalf("Enqueue: %v", err)
			}
		})
	}
}

func TestEnqueueUnknownBackend(t *testing.T) {
	ctx := context.Background()
	tk := task.Define(taskName(t, "ub"), identity[int])

	// Nothing configured: only "default" exists.
	_, err := tk.Using(task.UseBackend("nope")).Enqueue(ctx, 1)
	if !errors.Is(err, task.ErrUnknownBackend) || !errors.Is(err, task.ErrInvalidTask) {
		t.Fatalf("err = %v, want ErrUnknownBackend and ErrInvalidTask", err)
	}
	wantContains(t, "error", err.Error(), `"nope"`, tk.Name())

	// Configured without a "default": the task's default backend is unknown.
	configure(t, map[string]task.Backend{"other": task.NewDummyBackend("other", task.BackendOptions{})})
	_, err = tk.Enqueue(ctx, 1)
	if !errors.Is(err, task.ErrUnknownBackend) {
		t.Fatalf("err = %v, want ErrUnknownBackend", err)
	}
	wantContains(t, "error", err.Error(), `"default"`, "other")
	if _, err := tk.EnqueueMany(ctx, []int{1, 2}); !errors.Is(err, task.ErrUnknownBackend) {
		t.Fatalf("EnqueueMany err = %v, want ErrUnknownBackend", err)
	}
	if _, err := tk.GetResult(ctx, task.NewID()); !errors.Is(err, task.ErrUnknownBackend) {
		t.Fatalf("GetResult err = %v, want ErrUnknownBackend", err)
	}
}

// A backend without priority support refuses a non-default priority, like
// django-tasks does.
func TestEnqueuePriorityNeedsBackendSupport(t *testing.T) {
	fb := newFakeBackend("nopri")
	fb.features.Priority = false
	configure(t, map[string]task.Backend{"nopri": fb})
	tk := task.Define(taskName(t, "p"), identity[int], task.UseBackend("nopri"))
	_, err := tk.Using(task.Priority(5)).Enqueue(context.Background(), 1)
	if !errors.Is(err, task.ErrInvalidTask) {
		t.Fatalf("err = %v, want ErrInvalidTask", err)
	}
	wantContains(t, "error", err.Error(), "nopri", "priorit")
	if _, err := tk.Using(task.Priority(0)).Enqueue(context.Background(), 1); err != nil {
		t.Fatalf("priority 0: %v", err)
	}
	if fb.enqueueCount() != 1 {
		t.Errorf("backend Enqueue called %d times, want 1", fb.enqueueCount())
	}
}

func TestEnqueueRunAfterAndRunAt(t *testing.T) {
	ctx := context.Background()
	d := useDummy(t, task.BackendOptions{})
	tk := task.Define(taskName(t, "later"), identity[int])
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

	res, err := tk.Using(task.RunAfter(90*time.Minute)).Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.RunAfter.Sub(res.EnqueuedAt); got != 90*time.Minute {
		t.Errorf("RunAfter(90m): run after is %v after enqueued", got)
	}

	res, err = tk.Using(task.RunAt(at)).Enqueue(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !res.RunAfter.Equal(at) {
		t.Errorf("RunAt(%v): run after %v", at, res.RunAfter)
	}

	// The last of RunAfter/RunAt wins.
	res, err = tk.Using(task.RunAfter(time.Minute), task.RunAt(at)).Enqueue(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !res.RunAfter.Equal(at) {
		t.Errorf("RunAfter then RunAt: run after %v, want %v", res.RunAfter, at)
	}
	res, err = tk.Using(task.RunAt(at), task.RunAfter(time.Minute)).Enqueue(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.RunAfter.Sub(res.EnqueuedAt); got != time.Minute {
		t.Errorf("RunAt then RunAfter: run after is %v after enqueued", got)
	}

	// Defined with a delay: each Enqueue counts from its own time.
	later := task.Define(taskName(t, "defined-later"), identity[int], task.RunAfter(time.Hour))
	res, err = later.Enqueue(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.RunAfter.Sub(res.EnqueuedAt); got != time.Hour {
		t.Errorf("Define(RunAfter(1h)): %v", got)
	}

	stored := d.Results()
	if len(stored) != 5 || !stored[1].RunAfter.Equal(at) || stored[0].RunAfter.IsZero() {
		t.Errorf("the backend did not store the run-after times: %+v", stored)
	}
}

func TestEnqueueResultFields(t *testing.T) {
	ctx := context.Background()
	useDummy(t, task.BackendOptions{})
	tk := task.Define(taskName(t, "fields"), identity[string], task.Priority(3), task.Queue("q"))
	before := time.Now()
	res, err := tk.Enqueue(ctx, "hello")
	after := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	if !task.ValidID(res.ID) || res.TaskName != tk.Name() || res.Status != task.StatusNew ||
		res.Priority != 3 || res.Queue != "q" || res.Backend != "default" {
		t.Errorf("result: %+v", res)
	}
	if res.EnqueuedAt.Before(before) || res.EnqueuedAt.After(after) {
		t.Errorf("EnqueuedAt %v not within [%v, %v]", res.EnqueuedAt, before, after)
	}
	if !res.StartedAt.IsZero() || !res.FinishedAt.IsZero() || res.Attempts != 0 || len(res.WorkerIDs) != 0 || res.Err != nil {
		t.Errorf("a NEW result has run data: %+v", res)
	}
	if res.IsFinished() {
		t.Errorf("a NEW result IsFinished")
	}
}

func TestEnqueueBackendError(t *testing.T) {
	boom := errors.New("redis is down")
	fb := newFakeBackend("flaky")
	fb.enqueueErr = boom
	configure(t, map[string]task.Backend{"default": fb})
	tk := task.Define(taskName(t, "f"), identity[int])
	res, err := tk.Enqueue(context.Background(), 1)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the backend's error", err)
	}
	if errors.Is(err, task.ErrInvalidTask) {
		t.Errorf("a backend failure is reported as an invalid task: %v", err)
	}
	if res != nil {
		t.Errorf("result with the error: %+v", res)
	}
	wantContains(t, "error", err.Error(), tk.Name())
}

func TestEnqueueMany(t *testing.T) {
	ctx := context.Background()
	d := useDummy(t, task.BackendOptions{})
	tk := task.Define(taskName(t, "many"), identity[string], task.Queue("bulk"))
	args := []string{"a", "b", "c", "d"}
	rs, err := tk.EnqueueMany(ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != len(args) {
		t.Fatalf("%d results for %d args", len(rs), len(args))
	}
	stored := d.Results()
	if len(stored) != len(args) {
		t.Fatalf("%d stored", len(stored))
	}
	seen := map[string]bool{}
	for i, r := range rs {
		if r.Status != task.StatusNew || r.Queue != "bulk" || r.TaskName != tk.Name() {
			t.Errorf("result %d: %+v", i, r)
		}
		if seen[r.ID] {
			t.Errorf("duplicate id %s", r.ID)
		}
		seen[r.ID] = true
		if stored[i].ID != r.ID {
			t.Errorf("stored[%d] is %s, want %s (enqueue order)", i, stored[i].ID, r.ID)
		}
		var a string
		if err := stored[i].DecodeArgs(&a); err != nil || a != args[i] {
			t.Errorf("stored[%d] args = %q, %v; want %q", i, a, err, args[i])
		}
	}
	if rs, err := tk.EnqueueMany(ctx, nil); rs != nil || err != nil {
		t.Errorf("EnqueueMany(nil) = %v, %v", rs, err)
	}
}

func TestEnqueueManyAllOrNothing(t *testing.T) {
	ctx := context.Background()
	d := useDummy(t, task.BackendOptions{Queues: []string{"ok"}})
	type payload struct {
		N int
		V any
	}
	tk := task.Define(taskName(t, "aon"), identity[payload], task.Queue("ok"))

	// The third element cannot be serialized: nothing at all is enqueued.
	args := []payload{{1, "fine"}, {2, 3.5}, {3, make(chan int)}, {4, "fine"}}
	rs, err := tk.EnqueueMany(ctx, args)
	if !errors.Is(err, task.ErrInvalidTask) {
		t.Fatalf("err = %v, want ErrInvalidTask", err)
	}
	wantContains(t, "error", err.Error(), "args[2]", "chan")
	if rs != nil {
		t.Errorf("results with the error: %v", rs)
	}
	if n := len(d.Results()); n != 0 {
		t.Fatalf("%d tasks stored after a failed EnqueueMany, want 0", n)
	}

	// Same for a task-level problem.
	for _, bad := range []*task.Task[payload, payload]{
		tk.Using(task.Priority(200)),
		tk.Using(task.Queue("not-allowed")),
	} {
		if _, err := bad.EnqueueMany(ctx, []payload{{1, "x"}, {2, "y"}}); !errors.Is(err, task.ErrInvalidTask) {
			t.Errorf("err = %v, want ErrInvalidTask", err)
		}
	}
	if n := len(d.Results()); n != 0 {
		t.Fatalf("%d tasks stored after failed EnqueueMany calls, want 0", n)
	}

	// And on the ImmediateBackend no task runs.
	configure(t, nil)
	ran := 0
	imm := task.Define(taskName(t, "aon-imm"), func(ctx context.Context, p payload) (int, error) { ran++; return p.N, nil })
	if _, err := imm.EnqueueMany(ctx, args); !errors.Is(err, task.ErrInvalidTask) {
		t.Fatalf("err = %v, want ErrInvalidTask", err)
	}
	if ran != 0 {
		t.Fatalf("%d tasks ran although the batch was invalid", ran)
	}
	rs2, err := imm.EnqueueMany(ctx, []payload{{1, nil}, {2, nil}})
	if err != nil || ran != 2 || len(rs2) != 2 {
		t.Fatalf("valid batch: %v, %d ran, %d results", err, ran, len(rs2))
	}
	for i, r := range rs2 {
		if v, err := r.Value(); err != nil || v != i+1 {
			t.Errorf("result %d: %d, %v", i, v, err)
		}
	}
}

func TestEnqueueManyUsesBatchEnqueuer(t *testing.T) {
	bb := &batchBackend{fakeBackend: newFakeBackend("batch")}
	configure(t, map[string]task.Backend{"default": bb})
	tk := task.Define(taskName(t, "b"), identity[int])
	rs, err := tk.EnqueueMany(context.Background(), []int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(bb.batches) != 1 || len(bb.batches[0]) != 3 {
		t.Fatalf("batches: %d (want one batch of 3)", len(bb.batches))
	}
	if bb.enqueueCount() != 0 {
		t.Errorf("Enqueue called %d times besides the batch", bb.enqueueCount())
	}
	for i, m := range bb.batches[0] {
		if m.ID != rs[i].ID || m.TaskName != tk.Name() {
			t.Errorf("message %d: %+v, result %s", i, m, rs[i].ID)
		}
	}
}

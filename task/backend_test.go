package task_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

func TestConfigureDefaultIsImmediate(t *testing.T) {
	t.Cleanup(func() { task.Configure(nil) })
	task.Configure(nil)
	b, err := task.BackendFor("default")
	if err != nil {
		t.Fatal(err)
	}
	if b != task.DefaultBackend() {
		t.Errorf("BackendFor(default) and DefaultBackend() differ")
	}
	if b.Name() != "default" {
		t.Errorf("Name() = %q", b.Name())
	}
	if f := b.Features(); f != (task.Features{Defer: false, GetResult: false, Priority: true}) {
		t.Errorf("implicit default features = %+v, want an ImmediateBackend's", f)
	}
	if len(b.Queues()) != 0 {
		t.Errorf("implicit default restricts queues: %v", b.Queues())
	}
	if _, err := task.BackendFor("other"); !errors.Is(err, task.ErrUnknownBackend) {
		t.Errorf("BackendFor(other) with nothing configured: %v", err)
	}

	tk := task.Define(taskName(t, "hello"), func(ctx context.Context, who string) (string, error) { return "hello " + who, nil })
	res, err := tk.Enqueue(context.Background(), "world")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := res.Value(); res.Status != task.StatusComplete || err != nil || v != "hello world" {
		t.Fatalf("Enqueue on the implicit default: %s, %q, %v", res.Status, v, err)
	}
}

func TestConfigureReplacesAndRestores(t *testing.T) {
	ctx := context.Background()
	t.Cleanup(func() { task.Configure(nil) })
	tk := task.Define(taskName(t, "t"), identity[int])

	first := task.NewDummyBackend("default", task.BackendOptions{})
	second := task.NewDummyBackend("default", task.BackendOptions{})
	extra := task.NewDummyBackend("extra", task.BackendOptions{})
	m := map[string]task.Backend{"default": first, "extra": extra}
	task.Configure(m)
	if task.DefaultBackend() != task.Backend(first) {
		t.Fatalf("DefaultBackend() is not the configured one")
	}
	if b, err := task.BackendFor("extra"); err != nil || b != task.Backend(extra) {
		t.Fatalf("BackendFor(extra) = %v, %v", b, err)
	}
	// Configure copies the map: later changes to it do not apply.
	m["late"] = second
	delete(m, "extra")
	if _, err := task.BackendFor("late"); !errors.Is(err, task.ErrUnknownBackend) {
		t.Errorf("a backend added to the map after Configure is visible: %v", err)
	}
	if _, err := task.BackendFor("extra"); err != nil {
		t.Errorf("a backend removed from the map after Configure is gone: %v", err)
	}

	if _, err := tk.Enqueue(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Using(task.UseBackend("extra")).Enqueue(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if len(first.Results()) != 1 || len(extra.Results()) != 1 {
		t.Fatalf("stored: default %d, extra %d", len(first.Results()), len(extra.Results()))
	}

	// A second Configure replaces the whole registry.
	task.Configure(map[string]task.Backend{"default": second})
	if task.DefaultBackend() != task.Backend(second) {
		t.Fatalf("second Configure did not replace default")
	}
	if _, err := task.BackendFor("extra"); !errors.Is(err, task.ErrUnknownBackend) {
		t.Errorf("extra survived a Configure without it: %v", err)
	}

	// An empty (non-nil) map means no backends at all.
	task.Configure(map[string]task.Backend{})
	if task.DefaultBackend() != nil {
		t.Errorf("DefaultBackend() with an empty configuration = %v, want nil", task.DefaultBackend())
	}
	if _, err := tk.Enqueue(ctx, 3); !errors.Is(err, task.ErrUnknownBackend) {
		t.Errorf("Enqueue with no backends: %v", err)
	}

	// Configure(nil) restores the implicit ImmediateBackend.
	task.Configure(nil)
	res, err := tk.Enqueue(ctx, 4)
	if err != nil || res.Status != task.StatusComplete {
		t.Fatalf("after Configure(nil): %v, %+v", err, res)
	}
	if len(second.Results()) != 0 {
		t.Errorf("Configure(nil) still enqueued on the old backend")
	}
}

func TestDummyBackend(t *testing.T) {
	ctx := context.Background()
	d := useDummy(t, task.BackendOptions{})
	ran := false
	tk := task.Define(taskName(t, "d"), func(ctx context.Context, s string) (int, error) { ran = true; return len(s), nil })
	if d.Name() != "default" {
		t.Errorf("Name() = %q", d.Name())
	}
	if f := d.Features(); f != (task.Features{Defer: true, GetResult: true, Priority: true}) {
		t.Errorf("Features() = %+v", f)
	}
	if len(d.Results()) != 0 {
		t.Fatalf("a new DummyBackend has results")
	}

	var ids []string
	for _, s := range []string{"one", "two", "three"} {
		res, err := tk.Using(task.Priority(len(s))).Enqueue(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != task.StatusNew {
			t.Errorf("Dummy result status %s, want NEW", res.Status)
		}
		if _, err := res.Value(); !errors.Is(err, task.ErrNotFinished) {
			t.Errorf("Value() = %v, want ErrNotFinished", err)
		}
		ids = append(ids, res.ID)
	}
	if ran {
		t.Fatal("the DummyBackend ran a task")
	}
	rs := d.Results()
	if len(rs) != 3 {
		t.Fatalf("Results() has %d, want 3", len(rs))
	}
	for i, r := range rs {
		if r.ID != ids[i] || r.TaskName != tk.Name() || r.Status != task.StatusNew || r.Backend != "default" {
			t.Errorf("Results()[%d] = %+v, want id %s (enqueue order)", i, r, ids[i])
		}
	}
	var arg string
	if err := rs[2].DecodeArgs(&arg); err != nil || arg != "three" || rs[2].Priority != 5 {
		t.Errorf("Results()[2]: args %q, %v, priority %d", arg, err, rs[2].Priority)
	}

	// Results returns copies: changing them does not change the backend.
	rs[0].Status = task.StatusComplete
	rs[0].WorkerIDs = append(rs[0].WorkerIDs, "x")
	if again := d.Results(); again[0].Status != task.StatusNew || len(again[0].WorkerIDs) != 0 {
		t.Errorf("mutating Results() changed the stored result: %+v", again[0])
	}
	got, err := d.GetResult(ctx, ids[1])
	if err != nil || got.ID != ids[1] {
		t.Errorf("GetResult = %+v, %v", got, err)
	}

	d.Clear()
	if n := len(d.Results()); n != 0 {
		t.Fatalf("Results() after Clear has %d", n)
	}
	if _, err := d.GetResult(ctx, ids[0]); !errors.Is(err, task.ErrResultNotFound) {
		t.Errorf("GetResult after Clear: %v, want ErrResultNotFound", err)
	}
	// Still usable after Clear.
	res, err := tk.Enqueue(ctx, "four")
	if err != nil {
		t.Fatal(err)
	}
	if rs := d.Results(); len(rs) != 1 || rs[0].ID != res.ID {
		t.Errorf("after Clear and Enqueue: %v", rs)
	}
}

func TestDummyBackendWithJSON(t *testing.T) {
	d := useDummy(t, task.BackendOptions{Serializer: serializer.JSON{}})
	type args struct {
		To string `json:"to"`
	}
	tk := task.Define(taskName(t, "json"), identity[args])
	if _, err := tk.Enqueue(context.Background(), args{To: "ada"}); err != nil {
		t.Fatal(err)
	}
	rs := d.Results()
	if len(rs) != 1 || string(rs[0].Args) != `{"to":"ada"}` || !json.Valid(rs[0].Args) {
		t.Fatalf("args stored as %q", rs[0].Args)
	}
	var a args
	if err := rs[0].DecodeArgs(&a); err != nil || a.To != "ada" {
		t.Fatalf("DecodeArgs = %+v, %v", a, err)
	}
}

func TestImmediateBackendOptions(t *testing.T) {
	imm := task.NewImmediateBackend("fast", task.BackendOptions{Queues: []string{"only"}})
	if imm.Name() != "fast" {
		t.Errorf("Name() = %q", imm.Name())
	}
	if f := imm.Features(); f.Defer || f.GetResult || !f.Priority {
		t.Errorf("Features() = %+v", f)
	}
	q := imm.Queues()
	if len(q) != 1 || q[0] != "only" {
		t.Errorf("Queues() = %v", q)
	}
	q[0] = "changed"
	if imm.Queues()[0] != "only" {
		t.Errorf("Queues() returned the backend's own slice")
	}

	configure(t, map[string]task.Backend{"fast": imm})
	ran := 0
	tk := task.Define(taskName(t, "imm"), func(ctx context.Context, n int) (int, error) { ran++; return n, nil }, task.UseBackend("fast"))
	if _, err := tk.Enqueue(context.Background(), 1); !errors.Is(err, task.ErrInvalidTask) {
		t.Errorf("queue default on a backend allowing only %q: %v", "only", err)
	}
	res, err := tk.Using(task.Queue("only")).Enqueue(context.Background(), 2)
	if err != nil || res.Status != task.StatusComplete || res.Backend != "fast" || res.Queue != "only" {
		t.Fatalf("allowed queue: %v, %+v", err, res)
	}
	if ran != 1 {
		t.Errorf("ran %d times, want 1", ran)
	}
}

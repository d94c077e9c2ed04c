package task_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/gotasks/gotasks/task"
)

// recorder collects hook calls for one task name (hooks are global, so it
// ignores other tasks).
type recorder struct {
	task   string
	mu     sync.Mutex
	events []string
	ids    []string
}

func (r *recorder) hook(kind string) task.Hook {
	return func(ctx context.Context, res *task.RawResult) {
		if res.TaskName != r.task {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.events = append(r.events, fmt.Sprintf("%s:%s", kind, res.Status))
		r.ids = append(r.ids, res.ID)
	}
}

func (r *recorder) register(t *testing.T) (removeAll func()) {
	t.Helper()
	removes := []func(){
		task.OnEnqueued(r.hook("enqueued")),
		task.OnStarted(r.hook("started")),
		task.OnFinished(r.hook("finished")),
	}
	removeAll = func() {
		for _, rm := range removes {
			rm()
		}
	}
	t.Cleanup(removeAll)
	return removeAll
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func TestHooksImmediate(t *testing.T) {
	ctx := context.Background()
	ok := task.Define(taskName(t, "ok"), identity[int])
	rec := &recorder{task: ok.Name()}
	rec.register(t)

	res, err := ok.Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"enqueued:NEW", "started:RUNNING", "finished:COMPLETE"}
	if got := rec.got(); !slices.Equal(got, want) {
		t.Fatalf("hooks: %v, want %v", got, want)
	}
	for _, id := range rec.ids {
		if id != res.ID {
			t.Errorf("hook saw id %s, result is %s", id, res.ID)
		}
	}

	fail := task.Define(taskName(t, "fail"), func(ctx context.Context, _ int) (int, error) { return 0, errors.New("x") })
	recFail := &recorder{task: fail.Name()}
	recFail.register(t)
	if _, err := fail.Enqueue(ctx, 1); err != nil {
		t.Fatal(err)
	}
	want = []string{"enqueued:NEW", "started:RUNNING", "finished:FAILED"}
	if got := recFail.got(); !slices.Equal(got, want) {
		t.Fatalf("hooks of a failing task: %v, want %v", got, want)
	}

	// An invalid task fires nothing.
	if _, err := ok.Using(task.Priority(1000)).Enqueue(ctx, 1); !errors.Is(err, task.ErrInvalidTask) {
		t.Fatal(err)
	}
	if n := len(rec.got()); n != 3 {
		t.Errorf("an invalid Enqueue fired hooks: %v", rec.got())
	}
}

func TestHooksDummy(t *testing.T) {
	useDummy(t, task.BackendOptions{})
	tk := task.Define(taskName(t, "d"), identity[int])
	rec := &recorder{task: tk.Name()}
	rec.register(t)
	rs, err := tk.EnqueueMany(context.Background(), []int{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rec.got(), []string{"enqueued:NEW", "enqueued:NEW"}; !slices.Equal(got, want) {
		t.Fatalf("hooks: %v, want %v", got, want)
	}
	if rec.ids[0] != rs[0].ID || rec.ids[1] != rs[1].ID {
		t.Errorf("hook ids %v, results %s %s", rec.ids, rs[0].ID, rs[1].ID)
	}
}

// With a backend that stores the task, started and finished fire where the
// worker runs it (here: the fake worker), not at Enqueue.
func TestHooksWorker(t *testing.T) {
	ctx := context.Background()
	fb := newFakeBackend("default")
	configure(t, map[string]task.Backend{"default": fb})
	tk := task.Define(taskName(t, "w"), identity[int])
	rec := &recorder{task: tk.Name()}
	rec.register(t)
	res, err := tk.Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.got(); !slices.Equal(got, []string{"enqueued:NEW"}) {
		t.Fatalf("after Enqueue: %v", got)
	}
	fb.claim(t, res.ID, "w1")
	fb.complete(t, ctx, res.ID)
	want := []string{"enqueued:NEW", "started:RUNNING", "finished:COMPLETE"}
	if got := rec.got(); !slices.Equal(got, want) {
		t.Fatalf("after the worker: %v, want %v", got, want)
	}

	// A backend error fires no enqueued hook.
	fb.enqueueErr = errors.New("down")
	if _, err := tk.Enqueue(ctx, 2); err == nil {
		t.Fatal("Enqueue succeeded")
	}
	if got := rec.got(); len(got) != 3 {
		t.Errorf("a failed Enqueue fired hooks: %v", got)
	}
}

func TestHookRemove(t *testing.T) {
	ctx := context.Background()
	tk := task.Define(taskName(t, "rm"), identity[int])
	rec := &recorder{task: tk.Name()}
	removeAll := rec.register(t)
	other := &recorder{task: tk.Name()}
	other.register(t)

	if _, err := tk.Enqueue(ctx, 1); err != nil {
		t.Fatal(err)
	}
	removeAll()
	removeAll() // removing twice is harmless
	if _, err := tk.Enqueue(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.got()); n != 3 {
		t.Errorf("removed hooks fired: %v", rec.got())
	}
	if n := len(other.got()); n != 6 {
		t.Errorf("removing one set of hooks removed others too: %v", other.got())
	}
}

func TestPanickingHookDoesNotBreakEnqueue(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })

	tk := task.Define(taskName(t, "p"), func(ctx context.Context, n int) (int, error) { return n + 1, nil })
	for _, on := range []func(task.Hook) func(){task.OnEnqueued, task.OnStarted, task.OnFinished} {
		rm := on(func(ctx context.Context, r *task.RawResult) {
			if r.TaskName == tk.Name() {
				panic("hook bug")
			}
		})
		t.Cleanup(rm)
	}
	// A hook registered after the panicking ones still runs.
	rec := &recorder{task: tk.Name()}
	rec.register(t)

	res, err := tk.Enqueue(ctx, 1)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if v, err := res.Value(); err != nil || v != 2 {
		t.Fatalf("Value() = %d, %v", v, err)
	}
	if got := rec.got(); len(got) != 3 {
		t.Errorf("hooks after a panicking hook: %v", got)
	}
	wantContains(t, "log", logs.String(), "hook panicked", "hook bug", tk.Name())

	// Also on the DummyBackend.
	useDummy(t, task.BackendOptions{})
	if _, err := tk.Enqueue(ctx, 1); err != nil {
		t.Fatalf("Enqueue on Dummy: %v", err)
	}
}

// Hooks may be added and removed while tasks are enqueued elsewhere. Run
// with -race.
func TestHooksConcurrent(t *testing.T) {
	ctx := context.Background()
	tk := task.Define(taskName(t, "c"), identity[int])
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := tk.Enqueue(ctx, i); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				rm := task.OnFinished(func(context.Context, *task.RawResult) {})
				rm()
			}
		}()
	}
	wg.Wait()
}

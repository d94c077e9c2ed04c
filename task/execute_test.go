package task_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

// These tests run on the ImmediateBackend (nothing configured), which runs
// each task through task.Execute at Enqueue, and on task.Execute directly,
// as a worker calls it.

func TestTaskErrorRecordsGoType(t *testing.T) {
	ctx := context.Background()
	readConfig := task.Define(taskName(t, "read"), func(ctx context.Context, path string) (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("read config: %w", err)
		}
		return string(b), nil
	})
	missing := filepath.Join(t.TempDir(), "missing.toml")
	res, err := readConfig.Enqueue(ctx, missing)
	if err != nil {
		t.Fatalf("Enqueue: %v (a failing task is not an Enqueue error)", err)
	}
	if res.Status != task.StatusFailed || res.Err == nil || !res.IsFinished() {
		t.Fatalf("result: %+v", res)
	}
	e := res.Err
	if e.Type != "*fs.PathError" {
		t.Errorf("Type = %q, want *fs.PathError", e.Type)
	}
	wantContains(t, "Message", e.Message, "read config: ", missing)
	if e.Traceback == "" {
		t.Errorf("Traceback is empty")
	}
	wantContains(t, "Traceback", e.Traceback, "*fs.PathError: open ", "syscall.Errno: ")
	if strings.Contains(e.Traceback, "*fmt.wrapError") {
		t.Errorf("Traceback names the anonymous wrapper *fmt.wrapError:\n%s", e.Traceback)
	}
	wantContains(t, "Error()", e.Error(), "*fs.PathError: read config: ")
	if _, err := res.Value(); err != error(e) {
		t.Errorf("Value() error = %v, want the *Error", err)
	}
}

func TestTaskErrorTypes(t *testing.T) {
	ctx := context.Background()
	errs := []struct {
		err  error
		want string
	}{
		{errors.New("plain"), ""},
		{fmt.Errorf("outer: %w", fmt.Errorf("middle: %w", &fs.PathError{Op: "open", Path: "p", Err: fs.ErrNotExist})), "*fs.PathError"},
		{fmt.Errorf("no wrap %v", 1), ""},
		{errors.Join(&os.LinkError{Op: "link", Old: "a", New: "b", Err: fs.ErrExist}, errors.New("x")), "*os.LinkError"},
		{fmt.Errorf("a: %w, b: %w", &os.SyscallError{Syscall: "read", Err: fs.ErrClosed}, errors.New("b")), "*os.SyscallError"},
		{context.DeadlineExceeded, "context.DeadlineExceeded"},
		{myErr{"custom"}, "task_test.myErr"},
	}
	for _, c := range errs {
		tk := task.Define(taskName(t, "err"), func(ctx context.Context, _ int) (int, error) { return 7, c.err })
		res, err := tk.Enqueue(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != task.StatusFailed || res.Err == nil {
			t.Fatalf("%v: result %+v", c.err, res)
		}
		if res.Err.Type != c.want || res.Err.Message != c.err.Error() {
			t.Errorf("%v: Error = {%q, %q}, want {%q, %q}", c.err, res.Err.Type, res.Err.Message, c.want, c.err.Error())
		}
		if v, _ := res.Value(); v != 0 {
			t.Errorf("%v: the value returned with the error leaked: %d", c.err, v)
		}
	}
}

type myErr struct{ s string }

func (e myErr) Error() string { return e.s }

// stackErr carries its own stack, as errors from some libraries do.
type stackErr struct{}

func (stackErr) Error() string { return "with stack" }
func (stackErr) Stack() []byte { return []byte("goroutine 1 [running]:\nmain.somewhere()\n") }

func TestNewError(t *testing.T) {
	if task.NewError(nil) != nil {
		t.Errorf("NewError(nil) != nil")
	}
	e := &task.Error{Type: "T", Message: "m", Traceback: "tb"}
	if task.NewError(e) != e {
		t.Errorf("NewError of an *Error should return it unchanged")
	}
	wrapped := task.NewError(fmt.Errorf("ctx: %w", e))
	if wrapped == e || wrapped.Type != "T" || wrapped.Message != "ctx: T: m" {
		t.Errorf("NewError of a wrapped *Error = %+v", wrapped)
	}
	s := task.NewError(fmt.Errorf("wrapped: %w", stackErr{}))
	wantContains(t, "Traceback", s.Traceback, "main.somewhere()", "task_test.stackErr")

	if got := (&task.Error{Type: "T", Message: "m"}).Error(); got != "T: m" {
		t.Errorf("Error() = %q", got)
	}
	if got := (&task.Error{Message: "m"}).Error(); got != "m" {
		t.Errorf("Error() without a type = %q", got)
	}
}

// panickingTaskBody is a named function so that the test can look for it in
// the recorded stack.
func panickingTaskBody(ctx context.Context, n int) (int, error) {
	if n > 0 {
		panic(fmt.Sprintf("boom %d", n))
	}
	return 0, nil
}

func TestTaskPanicIsFailed(t *testing.T) {
	ctx := context.Background()
	tk := task.Define(taskName(t, "panic"), panickingTaskBody)
	res, err := tk.Enqueue(ctx, 42)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if res.Status != task.StatusFailed || res.Err == nil || res.FinishedAt.IsZero() {
		t.Fatalf("result: %+v", res)
	}
	if res.Err.Type != task.ErrorTypePanic {
		t.Errorf("Type = %q, want %q", res.Err.Type, task.ErrorTypePanic)
	}
	wantContains(t, "Message", res.Err.Message, "boom 42")
	wantContains(t, "Traceback", res.Err.Traceback, "panickingTaskBody", "goroutine")

	// A panic with an error value records the error's type.
	perr := task.Define(taskName(t, "panic-err"), func(ctx context.Context, _ int) (int, error) {
		panic(&fs.PathError{Op: "stat", Path: "/x", Err: fs.ErrPermission})
	})
	res, err = perr.Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Err == nil || res.Err.Type != "*fs.PathError" {
		t.Fatalf("panic(error): %+v", res.Err)
	}
	wantContains(t, "Message", res.Err.Message, "panic", "stat /x")

	// A runtime error (nil map write) does not crash the caller either.
	nilMap := task.Define(taskName(t, "nil-map"), func(ctx context.Context, _ int) (int, error) {
		var m map[string]int
		m["x"] = 1
		return 0, nil
	})
	res, err = nilMap.Enqueue(ctx, 1)
	if err != nil || res.Status != task.StatusFailed || res.Err == nil {
		t.Fatalf("nil map write: %v, %+v", err, res)
	}
	wantContains(t, "Message", res.Err.Message, "nil map")
}

func TestUnserializableReturnValueIsFailed(t *testing.T) {
	ctx := context.Background()
	ch := task.Define(taskName(t, "chan"), func(ctx context.Context, _ int) (chan int, error) {
		return make(chan int), nil
	})
	res, err := ch.Enqueue(ctx, 1)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if res.Status != task.StatusFailed || res.Err == nil {
		t.Fatalf("result: %+v", res)
	}
	if res.Err.Type != task.ErrorTypeEncodeResult {
		t.Errorf("Type = %q, want %q", res.Err.Type, task.ErrorTypeEncodeResult)
	}
	wantContains(t, "Message", res.Err.Message, ch.Name(), "chan")

	type link struct{ Next *link }
	cyc := task.Define(taskName(t, "cycle"), func(ctx context.Context, _ int) (*link, error) {
		l := &link{}
		l.Next = l
		return l, nil
	})
	cres, err := cyc.Enqueue(ctx, 1)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if cres.Status != task.StatusFailed || cres.Err == nil || cres.Err.Type != task.ErrorTypeEncodeResult {
		t.Fatalf("cyclic return value: %+v", cres.Err)
	}
	wantContains(t, "Message", cres.Err.Message, "cycle")
}

func TestExecuteUnknownTask(t *testing.T) {
	name := taskName(t, "never-defined")
	r := &task.RawResult{
		ID: task.NewID(), TaskName: name, Status: task.StatusRunning,
		StartedAt: time.Now(), Attempts: 1, WorkerIDs: []string{"w"},
	}
	task.Execute(context.Background(), r)
	if r.Status != task.StatusFailed || r.Err == nil || r.FinishedAt.IsZero() || r.Value != nil {
		t.Fatalf("result: %+v", r)
	}
	if r.Err.Type != task.ErrorTypeUnknownTask {
		t.Errorf("Type = %q, want %q", r.Err.Type, task.ErrorTypeUnknownTask)
	}
	wantContains(t, "Message", r.Err.Message, name, "not defined")
}

func TestExecuteArgsThatDoNotDecode(t *testing.T) {
	type point struct{ X, Y int }
	calls := 0
	tk := task.Define(taskName(t, "point"), func(ctx context.Context, p point) (int, error) { calls++; return p.X, nil })
	for name, args := range map[string][]byte{
		"a string for a struct": mustMarshal(t, serializer.Msgpack{}, "not a point"),
		"garbage":               {0xc1, 0xc1},
		"empty":                 nil,
		"JSON read as msgpack":  mustMarshal(t, serializer.JSON{}, point{1, 2}),
	} {
		r := &task.RawResult{ID: task.NewID(), TaskName: tk.Name(), Status: task.StatusRunning, Attempts: 1, Args: args}
		task.Execute(context.Background(), r)
		if r.Status != task.StatusFailed || r.Err == nil || r.Err.Type != task.ErrorTypeDecodeArgs {
			t.Errorf("%s: status %s, error %+v; want FAILED %s", name, r.Status, r.Err, task.ErrorTypeDecodeArgs)
			continue
		}
		wantContains(t, name+": Message", r.Err.Message, tk.Name())
	}
	if calls != 0 {
		t.Errorf("the task ran %d times with arguments that do not decode", calls)
	}

	// The same JSON bytes decode when the result says they are JSON.
	r := &task.RawResult{ID: task.NewID(), TaskName: tk.Name(), Status: task.StatusRunning, Attempts: 1,
		Args: mustMarshal(t, serializer.JSON{}, point{5, 6}), Serializer: serializer.JSON{}}
	task.Execute(context.Background(), r)
	var x int
	if r.Status != task.StatusComplete || r.Err != nil || (serializer.JSON{}).Unmarshal(r.Value, &x) != nil || x != 5 {
		t.Fatalf("JSON args: %+v (value %d)", r, x)
	}
}

func mustMarshal(t testing.TB, s serializer.Serializer, v any) []byte {
	t.Helper()
	b, err := s.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestExecuteComplete(t *testing.T) {
	tk := task.Define(taskName(t, "ok"), func(ctx context.Context, s string) (string, error) { return strings.ToUpper(s), nil })
	r := &task.RawResult{ID: task.NewID(), TaskName: tk.Name(), Status: task.StatusRunning, Attempts: 1,
		Args: mustMarshal(t, serializer.Default, "abc"), Err: &task.Error{Message: "from an earlier attempt"}}
	before := time.Now()
	task.Execute(context.Background(), r)
	var out string
	if r.Status != task.StatusComplete || r.Err != nil || r.FinishedAt.Before(before) || r.Decode(&out) != nil || out != "ABC" {
		t.Fatalf("result: %+v, value %q", r, out)
	}
}

func TestInfoFrom(t *testing.T) {
	ctx := context.Background()
	if info, ok := task.InfoFrom(ctx); ok {
		t.Errorf("InfoFrom outside a task = %+v, true", info)
	}

	type key struct{}
	var got task.Info
	var gotOK bool
	var callerValue any
	tk := task.Define(taskName(t, "info"), func(ctx context.Context, _ int) (int, error) {
		got, gotOK = task.InfoFrom(ctx)
		callerValue = ctx.Value(key{})
		return 0, nil
	})

	// Immediate backend.
	res, err := tk.Enqueue(context.WithValue(ctx, key{}, "from the caller"), 1)
	if err != nil {
		t.Fatal(err)
	}
	if !gotOK {
		t.Fatal("InfoFrom inside a task: ok = false")
	}
	want := task.Info{ResultID: res.ID, TaskName: tk.Name(), Attempt: 1, WorkerID: task.ImmediateWorkerID}
	if got != want {
		t.Errorf("InfoFrom = %+v, want %+v", got, want)
	}
	if task.ImmediateWorkerID != "immediate" {
		t.Errorf("ImmediateWorkerID = %q", task.ImmediateWorkerID)
	}
	if callerValue != "from the caller" {
		t.Errorf("the task's context lost the caller's values: %v", callerValue)
	}
	if res.Attempts != 1 || len(res.WorkerIDs) != 1 || res.WorkerIDs[0] != "immediate" {
		t.Errorf("result attempts %d, workers %v", res.Attempts, res.WorkerIDs)
	}

	// Call runs the function without a backend, so there is no Info.
	gotOK = true
	if _, err := tk.Call(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if gotOK {
		t.Errorf("InfoFrom inside Call: ok = true")
	}

	// Through Execute, as a worker retrying the task on another machine.
	r := &task.RawResult{ID: task.NewID(), TaskName: tk.Name(), Status: task.StatusRunning, Attempts: 3,
		WorkerIDs: []string{"w-a", "w-b"}, Args: mustMarshal(t, serializer.Default, 1)}
	task.Execute(ctx, r)
	want = task.Info{ResultID: r.ID, TaskName: tk.Name(), Attempt: 3, WorkerID: "w-b"}
	if !gotOK || got != want {
		t.Errorf("InfoFrom via Execute = %+v, %v; want %+v", got, gotOK, want)
	}
}

func TestImmediateBackendRunsAtEnqueue(t *testing.T) {
	ctx := context.Background()
	if b := task.DefaultBackend(); b == nil || b.Name() != "default" {
		t.Fatalf("DefaultBackend() = %v with nothing configured", b)
	}
	tk := task.Define(taskName(t, "sq"), func(ctx context.Context, n int) (int, error) { return n * n, nil })
	before := time.Now()
	res, err := tk.Enqueue(ctx, 9)
	after := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != task.StatusComplete || !res.IsFinished() || res.Err != nil {
		t.Fatalf("result: %+v", res)
	}
	if v, err := res.Value(); err != nil || v != 81 {
		t.Fatalf("Value() = %d, %v", v, err)
	}
	if res.EnqueuedAt.Before(before) || res.StartedAt.Before(res.EnqueuedAt) || res.FinishedAt.Before(res.StartedAt) || res.FinishedAt.After(after) {
		t.Errorf("times out of order: enqueued %v started %v finished %v", res.EnqueuedAt, res.StartedAt, res.FinishedAt)
	}
	if _, err := tk.GetResult(ctx, res.ID); !errors.Is(err, task.ErrNotSupported) {
		t.Errorf("Task.GetResult on Immediate: %v, want ErrNotSupported", err)
	}
	if _, err := task.DefaultBackend().GetResult(ctx, res.ID); !errors.Is(err, task.ErrNotSupported) {
		t.Errorf("Backend.GetResult on Immediate: %v, want ErrNotSupported", err)
	}
}

// Arguments and return values go through the backend's serializer even on
// the ImmediateBackend: the task sees a copy, not the caller's value.
func TestImmediateBackendSerializes(t *testing.T) {
	ctx := context.Background()
	type box struct {
		Items []string `json:"items"`
		When  time.Time
	}
	for _, ser := range []serializer.Serializer{nil, serializer.JSON{}} {
		configure(t, map[string]task.Backend{"default": task.NewImmediateBackend("default", task.BackendOptions{Serializer: ser})})
		var seen *box
		tk := task.Define(taskName(t, "box"), func(ctx context.Context, b *box) (*box, error) {
			seen = b
			b.Items = append(b.Items, "added by the task")
			return b, nil
		})
		in := &box{Items: []string{"a"}, When: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
		res, err := tk.Enqueue(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if seen == in {
			t.Errorf("%v: the task got the caller's pointer, not a decoded copy", ser)
		}
		if len(in.Items) != 1 {
			t.Errorf("%v: the task changed the caller's value: %v", ser, in.Items)
		}
		out, err := res.Value()
		if err != nil || len(out.Items) != 2 || !out.When.Equal(in.When) {
			t.Errorf("%v: Value() = %+v, %v", ser, out, err)
		}
	}
}

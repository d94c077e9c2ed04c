package task_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

func TestNewIDShapeAndUniqueness(t *testing.T) {
	const n = 10_000
	seen := make(map[string]bool, n)
	for i := 0; i < n; i++ {
		id := task.NewID()
		if len(id) != 26 {
			t.Fatalf("id %q has %d characters, want 26", id, len(id))
		}
		if !task.ValidID(id) {
			t.Fatalf("ValidID(%q) = false for a new id", id)
		}
		if strings.ContainsAny(id, "ILOU") || strings.ToUpper(id) != id {
			t.Fatalf("id %q is not Crockford base32", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q after %d ids", id, i)
		}
		seen[id] = true
	}
}

// Ids made in different milliseconds sort in creation order, as text.
func TestNewIDSortsByTime(t *testing.T) {
	prev := task.NewID()
	for i := 0; i < 5; i++ {
		// Wait (without sleeping) for the millisecond to change.
		start := time.Now().UnixMilli()
		for time.Now().UnixMilli() == start {
		}
		id := task.NewID()
		if id <= prev {
			t.Fatalf("id %s made after %s sorts before it", id, prev)
		}
		prev = id
	}
}

func TestValidIDAcceptsULIDsAndCallerIDs(t *testing.T) {
	good := task.NewID()
	cases := map[string]bool{
		good:                          true,
		"01ARZ3NDEKTSV4RRFFQ69G5FAV":  true, // the ULID spec's example
		strings.ToLower(good):         true, // a caller's id (WithID)
		"order:1234-charge.v2_retry":  true,
		"x":                           true,
		strings.Repeat("a", 64):       true,
		strings.Repeat("a", 65):       false, // over MaxIDLength
		"":                            false,
		"has space":                   false,
		"a/b":                         false, // would be a path segment in the dashboard
		".":                           false,
		"..":                          false,
		"...":                         true,
		"a\x00b":                      false,
		"{tag}":                       false, // would change a Redis Cluster hash tag
		"01ARZ3NDEKTSV4RRFFQ69G5FÄ":   false,
		"01ARZ3NDEKTSV4RRFFQ69G5FA\n": false,
	}
	for id, want := range cases {
		if got := task.ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestStatusIsFinished(t *testing.T) {
	for s, want := range map[task.Status]bool{
		task.StatusNew: false, task.StatusRunning: false, task.StatusComplete: true, task.StatusFailed: true,
	} {
		if s.IsFinished() != want {
			t.Errorf("%s.IsFinished() = %v", s, !want)
		}
		r := &task.RawResult{Status: s}
		if r.IsFinished() != want {
			t.Errorf("RawResult{%s}.IsFinished() = %v", s, !want)
		}
	}
	if task.StatusNew != "NEW" || task.StatusRunning != "RUNNING" || task.StatusComplete != "COMPLETE" || task.StatusFailed != "FAILED" {
		t.Errorf("status strings changed")
	}
}

// TestResultLifecycle follows a result through NEW → RUNNING → COMPLETE with
// a backend whose "worker" the test drives, reading it with Refresh.
func TestResultLifecycle(t *testing.T) {
	ctx := context.Background()
	fb := newFakeBackend("default")
	configure(t, map[string]task.Backend{"default": fb})
	double := task.Define(taskName(t, "double"), func(ctx context.Context, n int) (int, error) { return 2 * n, nil })

	res, err := double.Enqueue(ctx, 21)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != task.StatusNew || res.IsFinished() {
		t.Fatalf("status %s after Enqueue", res.Status)
	}
	v, err := res.Value()
	if !errors.Is(err, task.ErrNotFinished) || v != 0 {
		t.Fatalf("Value() of a NEW result = %d, %v; want ErrNotFinished", v, err)
	}
	wantContains(t, "error", err.Error(), res.ID, "NEW")

	fb.claim(t, res.ID, "w1")
	if res.Status != task.StatusNew {
		t.Fatalf("the result changed without Refresh: %s", res.Status)
	}
	if err := res.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if res.Status != task.StatusRunning || res.Attempts != 1 || res.StartedAt.IsZero() || len(res.WorkerIDs) != 1 || res.WorkerIDs[0] != "w1" {
		t.Fatalf("after claim: %+v", res)
	}
	if _, err := res.Value(); !errors.Is(err, task.ErrNotFinished) {
		t.Fatalf("Value() of a RUNNING result: %v", err)
	}

	fb.complete(t, ctx, res.ID)
	if err := res.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if res.Status != task.StatusComplete || !res.IsFinished() || res.FinishedAt.IsZero() || res.FinishedAt.Before(res.StartedAt) || res.Err != nil {
		t.Fatalf("after complete: %+v", res)
	}
	if v, err := res.Value(); err != nil || v != 42 {
		t.Fatalf("Value() = %d, %v; want 42", v, err)
	}

	// Task.GetResult reads the same result, typed.
	got, err := double.GetResult(ctx, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := got.Value(); err != nil || v != 42 || got.ID != res.ID || got.Status != task.StatusComplete {
		t.Fatalf("GetResult: %+v, %d, %v", got, v, err)
	}
	// A result from GetResult can be refreshed too.
	if err := got.Refresh(ctx); err != nil {
		t.Fatal(err)
	}

	// The caller's copy of WorkerIDs is its own.
	res.WorkerIDs[0] = "mutated"
	if again, _ := double.GetResult(ctx, res.ID); again.WorkerIDs[0] != "w1" {
		t.Errorf("mutating a Result changed the stored one")
	}
}

func TestResultFailedValueIsTheError(t *testing.T) {
	ctx := context.Background()
	fb := newFakeBackend("default")
	configure(t, map[string]task.Backend{"default": fb})
	fail := task.Define(taskName(t, "fail"), func(ctx context.Context, n int) (string, error) {
		return "ignored", errors.New("no luck")
	})
	res, err := fail.Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	fb.claim(t, res.ID, "w")
	fb.complete(t, ctx, res.ID)
	if err := res.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if res.Status != task.StatusFailed || !res.IsFinished() || res.Err == nil {
		t.Fatalf("after a failure: %+v", res)
	}
	v, err := res.Value()
	if v != "" {
		t.Errorf("Value() of a FAILED result returned %q", v)
	}
	var te *task.Error
	if !errors.As(err, &te) || te != res.Err {
		t.Fatalf("Value() error = %#v, want the result's *Error %#v", err, res.Err)
	}
	if te.Type != "" || te.Message != "no luck" {
		t.Errorf("Error = %+v", te)
	}
	if errors.Is(err, task.ErrNotFinished) {
		t.Errorf("a FAILED result reports ErrNotFinished")
	}
}

func TestRefreshErrors(t *testing.T) {
	ctx := context.Background()
	// The ImmediateBackend keeps no results: Refresh says so.
	tk := task.Define(taskName(t, "imm"), identity[int])
	res, err := tk.Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Refresh(ctx); !errors.Is(err, task.ErrNotSupported) {
		t.Errorf("Refresh on the ImmediateBackend: %v, want ErrNotSupported", err)
	}
	if v, err := res.Value(); err != nil || v != 1 {
		t.Errorf("a failed Refresh lost the value: %d, %v", v, err)
	}

	// A Result that did not come from a backend.
	var zero task.Result[int]
	if err := zero.Refresh(ctx); err == nil {
		t.Errorf("Refresh of a zero Result succeeded")
	}

	// A result the backend has forgotten.
	d := useDummy(t, task.BackendOptions{})
	res, err = tk.Enqueue(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	d.Clear()
	if err := res.Refresh(ctx); !errors.Is(err, task.ErrResultNotFound) {
		t.Errorf("Refresh of a cleared result: %v, want ErrResultNotFound", err)
	}
}

func TestTaskGetResult(t *testing.T) {
	ctx := context.Background()
	useDummy(t, task.BackendOptions{})
	a := task.Define(taskName(t, "a"), identity[string])
	b := task.Define(taskName(t, "b"), identity[string])
	res, err := a.Enqueue(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}

	got, err := a.GetResult(ctx, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != res.ID || got.TaskName != a.Name() || got.Status != task.StatusNew || !got.EnqueuedAt.Equal(res.EnqueuedAt) {
		t.Errorf("GetResult = %+v, want %+v", got, res)
	}

	_, err = b.GetResult(ctx, res.ID)
	if !errors.Is(err, task.ErrResultMismatch) {
		t.Fatalf("another task's id: %v, want ErrResultMismatch", err)
	}
	wantContains(t, "error", err.Error(), a.Name(), b.Name())

	for _, id := range []string{task.NewID(), "not-an-id", ""} {
		if _, err := a.GetResult(ctx, id); !errors.Is(err, task.ErrResultNotFound) {
			t.Errorf("GetResult(%q) = %v, want ErrResultNotFound", id, err)
		}
	}
}

// A stored return value that does not decode into R is an error, not a
// silently zero value.
func TestTaskGetResultWrongValueType(t *testing.T) {
	ctx := context.Background()
	fb := newFakeBackend("default")
	configure(t, map[string]task.Backend{"default": fb})
	tk := task.Define(taskName(t, "int"), identity[int])
	res, err := tk.Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := fb.GetResult(ctx, res.ID)
	raw.Status = task.StatusComplete
	raw.Value, _ = serializer.Default.Marshal("not an int")
	fb.store(raw)
	if _, err := tk.GetResult(ctx, res.ID); err == nil {
		t.Fatal("GetResult decoded a string into an int")
	}
	if err := res.Refresh(ctx); err == nil {
		t.Fatal("Refresh decoded a string into an int")
	}
}

func TestBackendGetResultRawResult(t *testing.T) {
	ctx := context.Background()
	type in struct {
		Name string `json:"name"`
		N    int    `json:"n"`
	}
	fb := newFakeBackend("default")
	configure(t, map[string]task.Backend{"default": fb})
	tk := task.Define(taskName(t, "raw"), func(ctx context.Context, a in) ([]string, error) {
		return []string{a.Name, a.Name}, nil
	})
	res, err := tk.Enqueue(ctx, in{"x", 3})
	if err != nil {
		t.Fatal(err)
	}

	raw, err := task.DefaultBackend().GetResult(ctx, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if raw.ID != res.ID || raw.TaskName != tk.Name() || raw.Status != task.StatusNew {
		t.Fatalf("raw = %+v", raw)
	}
	var args in
	if err := raw.DecodeArgs(&args); err != nil || args != (in{"x", 3}) {
		t.Fatalf("DecodeArgs = %+v, %v", args, err)
	}
	var out []string
	if err := raw.Decode(&out); !errors.Is(err, task.ErrNotFinished) {
		t.Fatalf("Decode of a NEW result: %v, want ErrNotFinished", err)
	}

	fb.claim(t, res.ID, "w")
	fb.complete(t, ctx, res.ID)
	raw, err = task.DefaultBackend().GetResult(ctx, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Decode(&out); err != nil || len(out) != 2 || out[0] != "x" {
		t.Fatalf("Decode = %v, %v", out, err)
	}

	if _, err := task.DefaultBackend().GetResult(ctx, task.NewID()); !errors.Is(err, task.ErrResultNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
}

func TestRawResultDecode(t *testing.T) {
	val, _ := serializer.JSON{}.Marshal(map[string]int{"a": 1})
	r := &task.RawResult{Status: task.StatusComplete, Value: val, Serializer: serializer.JSON{}}
	var m map[string]int
	if err := r.Decode(&m); err != nil || m["a"] != 1 {
		t.Fatalf("Decode with JSON: %v, %v", m, err)
	}
	// Without a Serializer, msgpack: JSON bytes do not decode as msgpack into a map.
	r.Serializer = nil
	if err := r.Decode(&m); err == nil {
		t.Fatalf("JSON bytes decoded as msgpack")
	}

	fail := &task.Error{Type: "T", Message: "m"}
	r = &task.RawResult{Status: task.StatusFailed, Err: fail}
	if err := r.Decode(&m); err != error(fail) {
		t.Fatalf("Decode of a FAILED result = %v, want its *Error", err)
	}
	for _, s := range []task.Status{task.StatusNew, task.StatusRunning} {
		r := &task.RawResult{Status: s}
		if err := r.Decode(&m); !errors.Is(err, task.ErrNotFinished) {
			t.Fatalf("Decode of a %s result = %v", s, err)
		}
	}
}

func TestNewRawResult(t *testing.T) {
	msg := &task.Message{
		ID: task.NewID(), TaskName: "n", Queue: "q", Priority: 9, Backend: "b",
		Args: []byte{1}, EnqueuedAt: time.Unix(100, 0), RunAfter: time.Unix(200, 0),
	}
	r := task.NewRawResult(msg, serializer.JSON{})
	if r.ID != msg.ID || r.TaskName != "n" || r.Queue != "q" || r.Priority != 9 || r.Backend != "b" ||
		r.Status != task.StatusNew || !r.EnqueuedAt.Equal(msg.EnqueuedAt) || !r.RunAfter.Equal(msg.RunAfter) ||
		len(r.Args) != 1 || r.Serializer == nil || r.Serializer.Name() != "json" {
		t.Fatalf("NewRawResult = %+v", r)
	}
}

// A backend that stored FAILED without details must still yield a usable
// error, not a nil *Error inside a non-nil error.
func TestFailedWithoutErrorDetails(t *testing.T) {
	raw := &task.RawResult{ID: task.NewID(), Status: task.StatusFailed}
	var v int
	err := raw.Decode(&v)
	var te *task.Error
	if !errors.As(err, &te) || te == nil || te.Error() == "" {
		t.Fatalf("Decode of a FAILED result without Err = %#v", err)
	}
}

package task

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Internal tests: they move the in-process backends' clock (memoryStore.now)
// instead of sleeping through windows.

type uArgs struct{ N int }

var uTask = Define("task.unique_test", func(ctx context.Context, a uArgs) (int, error) { return a.N, nil }, Unique())

// useBackend configures b as the default backend for the test.
func useBackend(t *testing.T, b Backend) {
	t.Cleanup(func() { Configure(nil) })
	Configure(map[string]Backend{DefaultBackendName: b})
}

func wantDup(t *testing.T, err error, holder string) {
	t.Helper()
	var d *DuplicateError
	if !errors.Is(err, ErrDuplicate) || !errors.As(err, &d) || d.ID != holder {
		t.Fatalf("err = %v, want a duplicate of %s", err, holder)
	}
}

func TestUniqueOptionsAreValidated(t *testing.T) {
	useBackend(t, NewDummyBackend(DefaultBackendName, BackendOptions{}))
	ctx := context.Background()
	for name, opt := range map[string]Option{
		"UniqueFor(0)":    UniqueFor(0),
		"UniqueFor(-1)":   UniqueFor(-time.Second),
		"UniqueKey(\"\")": UniqueKey(""),
	} {
		if _, err := uTask.Using(opt).Enqueue(ctx, uArgs{1}); !errors.Is(err, ErrInvalidTask) {
			t.Errorf("%s: err = %v, want ErrInvalidTask", name, err)
		}
	}
	noUnique := &DummyBackend{memoryStore{name: DefaultBackendName}}
	useBackend(t, withoutUnique{noUnique})
	if _, err := uTask.Enqueue(ctx, uArgs{1}); !errors.Is(err, ErrInvalidTask) {
		t.Errorf("backend without SupportsUnique: err = %v, want ErrInvalidTask", err)
	}
}

// withoutUnique is a backend that does not support unique tasks.
type withoutUnique struct{ *DummyBackend }

func (w withoutUnique) SupportsUnique() bool { return false }

func TestUniqueOnDummy(t *testing.T) {
	d := NewDummyBackend(DefaultBackendName, BackendOptions{})
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	d.now = func() time.Time { return now }
	useBackend(t, d)
	ctx := context.Background()

	first, err := uTask.Enqueue(ctx, uArgs{1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = uTask.Enqueue(ctx, uArgs{1})
	wantDup(t, err, first.ID)
	got, dup, err := uTask.EnqueueOrGet(ctx, uArgs{1})
	if err != nil || !dup || got.ID != first.ID || got.Status != StatusNew {
		t.Fatalf("EnqueueOrGet = %+v, dup %v, err %v; want %s", got, dup, err, first.ID)
	}
	rs, err := uTask.EnqueueMany(ctx, []uArgs{{1}, {2}, {2}})
	if !errors.Is(err, ErrDuplicate) || rs[0] != nil || rs[1] == nil || rs[2] != nil {
		t.Fatalf("EnqueueMany = %v, %v", rs, err)
	}
	if n := len(d.Results()); n != 2 {
		t.Fatalf("%d stored, want 2", n)
	}

	byKey := uTask.Using(UniqueKey("k"), UniqueFor(time.Minute))
	w, err := byKey.Enqueue(ctx, uArgs{1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = byKey.Enqueue(ctx, uArgs{2})
	wantDup(t, err, w.ID)
	now = now.Add(time.Minute)
	if _, err := byKey.Enqueue(ctx, uArgs{3}); err != nil {
		t.Fatalf("after the window: %v", err)
	}

	d.Clear()
	if _, err := uTask.Enqueue(ctx, uArgs{1}); err != nil {
		t.Fatalf("after Clear: %v", err)
	}
}

func TestUniqueOnImmediate(t *testing.T) {
	b := NewImmediateBackend(DefaultBackendName, BackendOptions{}).(*immediateBackend)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	b.now = func() time.Time { return now }
	useBackend(t, b)
	ctx := context.Background()
	// Each has finished when Enqueue returns: no duplicate without a window.
	for range 2 {
		if r, err := uTask.Enqueue(ctx, uArgs{1}); err != nil || r.Status != StatusComplete {
			t.Fatalf("Enqueue = %v, %v", r, err)
		}
	}
	hourly := uTask.Using(UniqueFor(time.Hour))
	first, err := hourly.Enqueue(ctx, uArgs{1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = hourly.Enqueue(ctx, uArgs{1})
	wantDup(t, err, first.ID)
	// No results to read back on Immediate.
	if _, dup, err := hourly.EnqueueOrGet(ctx, uArgs{1}); !dup || !errors.Is(err, ErrDuplicate) || !errors.Is(err, ErrNotSupported) {
		t.Fatalf("EnqueueOrGet: dup %v, err %v", dup, err)
	}
	now = now.Add(time.Hour)
	if _, err := hourly.Enqueue(ctx, uArgs{1}); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

package task_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gotasks/gotasks/task"
)

// memSteps is a StepStore in memory, counting its reads and writes.
type memSteps struct {
	m             map[string][]byte
	loads, writes int
}

func (s *memSteps) LoadSteps(context.Context) (map[string][]byte, error) {
	s.loads++
	out := map[string][]byte{}
	for k, v := range s.m {
		out[k] = v
	}
	return out, nil
}

func (s *memSteps) SaveStep(_ context.Context, name string, v []byte) error {
	s.writes++
	s.m[name] = v
	return nil
}

func TestStepRunsOnceAndReturnsTheStoredResult(t *testing.T) {
	store := &memSteps{m: map[string][]byte{}}
	ctx := task.WithStepStore(context.Background(), store)
	calls := 0
	charge := func(context.Context) (string, error) { calls++; return "ch_1", nil }
	for range 3 { // the first attempt, then two more that find it
		v, err := task.Step(ctx, "charge", charge)
		if err != nil || v != "ch_1" {
			t.Fatalf("Step = %q, %v", v, err)
		}
	}
	if calls != 1 || store.writes != 1 {
		t.Errorf("fn ran %d times, %d writes; want 1, 1", calls, store.writes)
	}
	// A failed step stores nothing and runs again.
	boom := errors.New("boom")
	fails := 0
	for range 2 {
		if _, err := task.Step(ctx, "email", func(context.Context) (int, error) { fails++; return 0, boom }); !errors.Is(err, boom) {
			t.Fatalf("failing step = %v, want its error", err)
		}
	}
	if fails != 2 || store.writes != 1 {
		t.Errorf("failing step ran %d times, %d writes; want 2, 1", fails, store.writes)
	}
	// A stored result that does not decode into the type asked is a
	// bad payload, not a silent zero.
	if _, err := task.Step(ctx, "charge", func(context.Context) (int, error) { return 0, nil }); err == nil || !strings.Contains(err.Error(), "does not decode") {
		t.Errorf("Step with another type = %v, want a decode error", err)
	}
	for _, name := range []string{"", strings.Repeat("x", task.MaxStepName+1)} {
		if _, err := task.Step(ctx, name, charge); !errors.Is(err, task.ErrStepName) {
			t.Errorf("Step(%q) = %v, want ErrStepName", name, err)
		}
	}
}

func TestStepOutsideARunnerCallsFn(t *testing.T) {
	calls := 0
	for range 2 {
		if v, err := task.Step(context.Background(), "s", func(context.Context) (int, error) { calls++; return 7, nil }); err != nil || v != 7 {
			t.Fatalf("Step = %d, %v", v, err)
		}
	}
	if calls != 2 {
		t.Errorf("fn ran %d times outside a runner, want 2 (nothing stores)", calls)
	}
}

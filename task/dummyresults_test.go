package task_test

import (
	"context"
	"testing"

	"github.com/gotasks/gotasks/task"
)

// The DummyBackend keeps its results in the process that enqueued them
// and still reports Features.GetResult, so that code reading results takes
// the same path in a test as on Redis.
func TestTheDummyBackendServesItsResultsWithinItsProcess(t *testing.T) {
	ctx := context.Background()
	d := useDummy(t, task.BackendOptions{})
	if !d.Features().GetResult {
		t.Fatalf("Features().GetResult = false")
	}
	tk := task.Define(taskName(t, "stored"), identity[string])
	first, err := tk.Using(task.WithID("invoice-9")).Enqueue(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	got, err := tk.GetResult(ctx, first.ID)
	if err != nil || got.ID != first.ID || got.Status != task.StatusNew {
		t.Fatalf("Task.GetResult = %+v, %v", got, err)
	}
	if err := got.Refresh(ctx); err != nil {
		t.Errorf("Refresh: %v", err)
	}
	// An enqueue sent again is answered with the stored task's own state,
	// read back through GetResult because the feature is reported.
	again, err := tk.Using(task.WithID("invoice-9")).Enqueue(ctx, "a")
	if err != nil || again.ID != first.ID || !again.EnqueuedAt.Equal(first.EnqueuedAt) {
		t.Errorf("enqueued again: %+v, %v; want the stored task, enqueued at %v", again, err, first.EnqueuedAt)
	}
}

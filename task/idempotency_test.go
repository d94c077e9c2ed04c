package task_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gotasks/gotasks/task"
)

type orderArgs struct {
	Order int
	Tags  map[string]int
}

var chargeTask = task.Define("tasktest.charge", func(ctx context.Context, a orderArgs) (int, error) { return a.Order, nil })

func TestWithIDEnqueuedAgainIsTheSameTask(t *testing.T) {
	d := useDummy(t, task.BackendOptions{})
	ctx := context.Background()
	args := orderArgs{Order: 7, Tags: map[string]int{"a": 1, "b": 2, "c": 3, "d": 4}}
	var enqueued int
	task.OnEnqueued(func(ctx context.Context, r *task.RawResult) {
		if r.ID == "order-7" {
			enqueued++
		}
	})
	first, err := chargeTask.Using(task.WithID("order-7")).Enqueue(ctx, args)
	if err != nil || first.ID != "order-7" {
		t.Fatalf("first Enqueue = %v, %v", first, err)
	}
	// The same task and arguments (a map: encoded in one order every
	// time) under the id: the stored task, not a second one.
	for range 3 {
		again, err := chargeTask.Using(task.WithID("order-7")).Enqueue(ctx, orderArgs{Order: 7, Tags: map[string]int{"d": 4, "c": 3, "b": 2, "a": 1}})
		if err != nil || again.ID != "order-7" || again.Status != task.StatusNew {
			t.Fatalf("Enqueue again = %+v, %v; want the stored task", again, err)
		}
	}
	if n := len(d.Results()); n != 1 {
		t.Errorf("%d tasks stored, want 1", n)
	}
	if enqueued != 4 {
		t.Errorf("enqueued hook fired %d times, want once per successful call (4)", enqueued)
	}
	// Other arguments under the id: refused, nothing stored.
	_, err = chargeTask.Using(task.WithID("order-7")).Enqueue(ctx, orderArgs{Order: 8})
	if !errors.Is(err, task.ErrDuplicateID) || errors.Is(err, task.ErrMaybeEnqueued) {
		t.Errorf("other arguments under a taken id = %v, want ErrDuplicateID", err)
	}
	if n := len(d.Results()); n != 1 {
		t.Errorf("%d tasks stored, want 1", n)
	}
}

func TestWithIDRefusesBadIDsAndBatches(t *testing.T) {
	useDummy(t, task.BackendOptions{})
	ctx := context.Background()
	for _, id := range []string{"", "with space", "slash/ed", strings.Repeat("x", task.MaxIDLength+1), "{tag}"} {
		if _, err := chargeTask.Using(task.WithID(id)).Enqueue(ctx, orderArgs{}); !errors.Is(err, task.ErrInvalidTask) {
			t.Errorf("WithID(%q) = %v, want ErrInvalidTask", id, err)
		}
	}
	if _, err := chargeTask.Using(task.WithID("one")).EnqueueMany(ctx, []orderArgs{{}, {}}); !errors.Is(err, task.ErrInvalidTask) {
		t.Errorf("EnqueueMany WithID = %v, want ErrInvalidTask", err)
	}
}

func TestMaybeEnqueuedErrorCarriesTheIDs(t *testing.T) {
	cause := errors.New("read tcp: connection reset by peer")
	var err error = &task.MaybeEnqueuedError{IDs: []string{"a", "b", "c", "d"}, Err: cause}
	err = errors.Join(errors.New("other"), err)
	var m *task.MaybeEnqueuedError
	if !errors.Is(err, task.ErrMaybeEnqueued) || !errors.Is(err, cause) || !errors.As(err, &m) || len(m.IDs) != 4 {
		t.Fatalf("%v: Is/As do not find ErrMaybeEnqueued, the cause and the ids", err)
	}
	wantContains(t, "message", err.Error(), "connection reset", "WithID", "a, b, c and 1 more")
}

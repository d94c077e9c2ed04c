package task_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

type viewArgs struct{ N int }

// spoil changes everything the view points to, as a careless task might.
func spoil(t *testing.T, v *task.RawResult) {
	t.Helper()
	for i := range v.WorkerIDs {
		v.WorkerIDs[i] = "spoiled"
	}
	for _, e := range v.Errors {
		e.Message = "spoiled"
	}
	for i := range v.Args {
		v.Args[i] = 0xc1
	}
	v.Status, v.Attempts, v.Errors = task.StatusComplete, 99, append(v.Errors, &task.Error{Message: "extra"})
}

func TestResultFromIsFalseOutsideATask(t *testing.T) {
	if r, ok := task.ResultFrom(context.Background()); ok || r != nil {
		t.Errorf("ResultFrom outside a task = %+v, %v", r, ok)
	}
}

func TestATaskOnTheImmediateBackendSeesItsWholeResult(t *testing.T) {
	ctx := context.Background()
	views := make(chan *task.RawResult, 1)
	tk := task.Define(taskName(t, "view"), func(ctx context.Context, a viewArgs) (int, error) {
		info, _ := task.InfoFrom(ctx)
		if info.Attempt < 3 {
			return 0, fmt.Errorf("attempt %d: %w", info.Attempt, errors.New("upstream unavailable"))
		}
		v, ok := task.ResultFrom(ctx)
		if !ok {
			return 0, errors.New("no result view")
		}
		spoil(t, v)
		again, _ := task.ResultFrom(ctx) // fresh: the spoiled copy was the task's own
		views <- again
		return a.N, nil
	}, task.MaxAttempts(4), task.Queue("views"), task.Priority(7))

	res, err := tk.Enqueue(ctx, viewArgs{N: 5})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := res.Value(); err != nil || v != 5 {
		t.Fatalf("Value = %d, %v", v, err)
	}
	v := <-views
	if v.ID != res.ID || v.TaskName != tk.Name() || v.Status != task.StatusRunning || v.Queue != "views" || v.Priority != 7 {
		t.Errorf("view = %s %s %s queue %s priority %d", v.ID, v.TaskName, v.Status, v.Queue, v.Priority)
	}
	if v.Attempts != 3 || v.MaxAttempts != 4 || !slices.Equal(v.WorkerIDs, []string{task.ImmediateWorkerID, task.ImmediateWorkerID, task.ImmediateWorkerID}) {
		t.Errorf("view: attempts %d of %d, workers %v", v.Attempts, v.MaxAttempts, v.WorkerIDs)
	}
	if len(v.Errors) != 2 || v.Errors[0].Message != "attempt 1: upstream unavailable" || v.Errors[1].Message != "attempt 2: upstream unavailable" {
		t.Errorf("view: errors of the earlier attempts %+v", v.Errors)
	}
	if !v.EnqueuedAt.Equal(res.EnqueuedAt) || v.StartedAt.Before(v.EnqueuedAt) || !v.FinishedAt.IsZero() || v.Err != nil || v.Value != nil {
		t.Errorf("view: enqueued %v, started %v, finished %v, err %v, value %v", v.EnqueuedAt, v.StartedAt, v.FinishedAt, v.Err, v.Value)
	}
	var a viewArgs
	if err := v.DecodeArgs(&a); err != nil || a.N != 5 {
		t.Errorf("view: DecodeArgs = %+v, %v", a, err)
	}
	// What the task did to its copy did not reach the result.
	if res.Attempts != 3 || len(res.Errors) != 2 || res.Errors[0].Message != "attempt 1: upstream unavailable" || slices.Contains(res.WorkerIDs, "spoiled") {
		t.Errorf("result after the task spoiled its view: attempts %d, errors %+v, workers %v", res.Attempts, res.Errors, res.WorkerIDs)
	}
}

func TestATaskRunByExecuteSeesItsResultAndCannotChangeIt(t *testing.T) {
	for _, timeout := range []time.Duration{0, time.Hour} { // in the caller's goroutine, and in one of its own
		t.Run(fmt.Sprintf("timeout %v", timeout), func(t *testing.T) {
			views := make(chan *task.RawResult, 1)
			tk := task.Define(taskName(t, "view"), func(ctx context.Context, a viewArgs) (int, error) {
				v, ok := task.ResultFrom(ctx)
				if !ok {
					return 0, errors.New("no result view")
				}
				spoil(t, v)
				again, _ := task.ResultFrom(ctx)
				views <- again
				return a.N, nil
			})
			args, err := serializer.Default.Marshal(viewArgs{N: 9})
			if err != nil {
				t.Fatal(err)
			}
			enqueued := time.Now().Add(-time.Minute)
			first := &task.Error{Type: task.ErrorTypePanic, Message: "first"}
			r := &task.RawResult{
				ID: task.NewID(), TaskName: tk.Name(), Status: task.StatusRunning, Priority: -3, Queue: "q", Backend: "redis",
				EnqueuedAt: enqueued, StartedAt: time.Now(), Attempts: 2, WorkerIDs: []string{"w1", "w2"},
				Err: first, Errors: []*task.Error{first}, Args: args,
				Limits: task.Limits{MaxAttempts: 5, Timeout: timeout},
			}
			task.Execute(context.Background(), r)

			if r.Status != task.StatusComplete {
				t.Fatalf("Execute: %s %+v", r.Status, r.Err)
			}
			v := <-views
			if v.ID != r.ID || v.TaskName != tk.Name() || v.Status != task.StatusRunning || v.Queue != "q" || v.Priority != -3 || v.Backend != "redis" {
				t.Errorf("view = %s %s %s queue %s priority %d backend %s", v.ID, v.TaskName, v.Status, v.Queue, v.Priority, v.Backend)
			}
			if v.Attempts != 2 || v.MaxAttempts != 5 || v.Timeout != timeout || !slices.Equal(v.WorkerIDs, []string{"w1", "w2"}) {
				t.Errorf("view: attempts %d of %d, timeout %v, workers %v", v.Attempts, v.MaxAttempts, v.Timeout, v.WorkerIDs)
			}
			if len(v.Errors) != 1 || v.Errors[0].Message != "first" || v.Err != nil || !v.FinishedAt.IsZero() || !v.EnqueuedAt.Equal(enqueued) {
				t.Errorf("view: errors %+v, err %v, finished %v, enqueued %v", v.Errors, v.Err, v.FinishedAt, v.EnqueuedAt)
			}
			if !slices.Equal(r.WorkerIDs, []string{"w1", "w2"}) || len(r.Errors) != 1 || r.Errors[0].Message != "first" || r.Attempts != 2 {
				t.Errorf("the worker's result changed: workers %v, errors %+v, attempts %d", r.WorkerIDs, r.Errors, r.Attempts)
			}
			var a viewArgs
			if err := r.DecodeArgs(&a); err != nil || a.N != 9 {
				t.Errorf("the worker's arguments changed: %+v, %v", a, err)
			}
		})
	}
}

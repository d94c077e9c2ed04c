package task_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
)

var errFlaky = errors.New("flaky upstream")

// A RetryPolicy decides the delay of each retry, and when to stop, from
// the attempt number and the error; Permanent and Retry still win, and
// MaxAttempts still bounds it.
func TestRetryPolicyDecidesDelaysAndStops(t *testing.T) {
	type call struct {
		attempt int
		err     string
	}
	var calls []call
	policy := func(attempt int, err error) (time.Duration, bool) {
		calls = append(calls, call{attempt, err.Error()})
		if !errors.Is(err, errFlaky) {
			return 0, false // anything else: no retry
		}
		return time.Duration(attempt) * time.Minute, true
	}
	var next error
	def := task.Define(taskName(t, "policy"), func(ctx context.Context, _ int) (int, error) { return 0, next },
		task.MaxAttempts(3), task.RetryPolicy(policy))

	fail := func(attempt int, err error) *task.RawResult {
		t.Helper()
		r := &task.RawResult{ID: "x", TaskName: def.Name(), Status: task.StatusRunning, Attempts: attempt,
			Limits: task.Limits{MaxAttempts: 3}}
		for range attempt - 1 {
			r.Errors = append(r.Errors, &task.Error{Message: "earlier"})
		}
		r.FinishedAt = time.Now()
		task.Fail(r, err)
		return r
	}
	// The policy's delay, by attempt.
	for _, a := range []int{1, 2} {
		r := fail(a, fmt.Errorf("call: %w", errFlaky))
		if r.Status != task.StatusNew || r.RunAfter.Sub(r.FinishedAt) != time.Duration(a)*time.Minute {
			t.Errorf("attempt %d: %s after %v; want NEW in %d min", a, r.Status, r.RunAfter.Sub(r.FinishedAt), a)
		}
	}
	// MaxAttempts bounds it: the policy is not asked after the last.
	asked := len(calls)
	if r := fail(3, errFlaky); r.Status != task.StatusFailed || len(calls) != asked {
		t.Errorf("the last attempt: %s, the policy asked %d more times; want FAILED, not asked", r.Status, len(calls)-asked)
	}
	// The policy stops.
	if r := fail(1, errors.New("bad request")); r.Status != task.StatusFailed {
		t.Errorf("an error the policy does not retry: %s; want FAILED", r.Status)
	}
	// Permanent and Retry win over the policy.
	asked = len(calls)
	if r := fail(1, task.Permanent(errFlaky)); r.Status != task.StatusFailed {
		t.Errorf("Permanent: %s; want FAILED", r.Status)
	}
	if r := fail(1, task.Retry(7*time.Second)); r.Status != task.StatusNew || r.RunAfter.Sub(r.FinishedAt) != 7*time.Second {
		t.Errorf("Retry(7s): %s after %v", r.Status, r.RunAfter.Sub(r.FinishedAt))
	}
	if len(calls) != asked {
		t.Errorf("the policy was asked %d times about Permanent and Retry; want never", len(calls)-asked)
	}
	if calls[0] != (call{1, "call: flaky upstream"}) {
		t.Errorf("the policy's first call %+v; want attempt 1 and the task's error", calls[0])
	}

	// On the Immediate backend, through a real run: the policy's verdict
	// stands.
	next = errors.New("bad request")
	res, err := def.Enqueue(context.Background(), 1)
	if err != nil || res.Status != task.StatusFailed || res.Attempts != 1 {
		t.Errorf("enqueued: %v, %+v; want FAILED after one attempt", err, res)
	}
}

// A policy that panics retries nothing, and crashes nothing.
func TestARetryPolicyThatPanicsRetriesNothing(t *testing.T) {
	def := task.Define(taskName(t, "panicky"), func(ctx context.Context, _ int) (int, error) { return 0, errFlaky },
		task.MaxAttempts(5), task.RetryPolicy(func(int, error) (time.Duration, bool) { panic("policy bug") }))
	res, err := def.Enqueue(context.Background(), 1)
	if err != nil || res.Status != task.StatusFailed || res.Attempts != 1 {
		t.Errorf("enqueued: %v, %+v; want FAILED after one attempt", err, res)
	}
}

// Given to Using, where the worker would never see it, RetryPolicy is
// refused at Enqueue.
func TestRetryPolicyInUsingIsRefused(t *testing.T) {
	def := task.Define(taskName(t, "using"), func(ctx context.Context, _ int) (int, error) { return 0, nil })
	_, err := def.Using(task.RetryPolicy(func(int, error) (time.Duration, bool) { return 0, false })).Enqueue(context.Background(), 1)
	if !errors.Is(err, task.ErrInvalidTask) {
		t.Errorf("Enqueue = %v; want ErrInvalidTask", err)
	}
	if _, err := def.Using(task.Priority(0)).Enqueue(context.Background(), 1); err != nil {
		t.Errorf("Using without a RetryPolicy: %v", err)
	}
}

package task

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Result is a typed handle on an enqueued task and, once it has finished,
// its return value (django-tasks' TaskResult).
type Result[R any] struct {
	ID         string
	TaskName   string
	Status     Status
	Priority   int
	Queue      string
	Backend    string
	EnqueuedAt time.Time
	RunAfter   time.Time // zero when not deferred
	StartedAt  time.Time // when the first attempt started; zero until then
	// LastAttemptedAt is when the latest attempt started (django-tasks'
	// last_attempted_at); StartedAt for a task run once.
	LastAttemptedAt time.Time
	FinishedAt      time.Time // zero until finished
	// Attempts counts the claims of the task (each attempt number is used
	// once: it fences the attempt's outcome); WorkerIDs holds the worker
	// of each attempt, UndeliveredWorker for a claim handed back before
	// it started (a worker shutting down).
	Attempts    int
	WorkerIDs   []string
	Err         *Error   // non-nil only when Status == StatusFailed
	Errors      []*Error // every failed attempt's error, oldest first (retries)
	MaxAttempts int
	Metadata    Metadata // see Meta; nil when there is none
	// Progress is what the task last reported (SetProgress), while it
	// runs and after; nil if nothing.
	Progress *Progress
	// CancelRequested is set on a RUNNING task whose cancel was asked
	// for (Cancel): its worker stops it; Wait for its end.
	CancelRequested bool

	value   R
	backend Backend
}

func newResult[R any](raw *RawResult, b Backend) (*Result[R], error) {
	r := &Result[R]{backend: b}
	if err := r.set(raw); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Result[R]) set(raw *RawResult) error {
	var v R
	if raw.Status == StatusComplete {
		if err := raw.Decode(&v); err != nil {
			return fmt.Errorf("result %s: return value does not decode into %T: %w", raw.ID, v, err)
		}
	}
	r.ID, r.TaskName, r.Status, r.Priority = raw.ID, raw.TaskName, raw.Status, raw.Priority
	r.Queue, r.Backend = raw.Queue, raw.Backend
	r.EnqueuedAt, r.RunAfter, r.StartedAt, r.FinishedAt = raw.EnqueuedAt, raw.RunAfter, raw.StartedAt, raw.FinishedAt
	r.LastAttemptedAt = raw.LastAttemptedAt
	r.Metadata = raw.Metadata.Clone()
	r.Attempts, r.WorkerIDs, r.Err = raw.Attempts, slices.Clone(raw.WorkerIDs), raw.Err
	r.Errors, r.MaxAttempts = slices.Clone(raw.Errors), raw.MaxAttempts
	r.Progress, r.CancelRequested = nil, raw.CancelRequested
	if raw.Progress != nil {
		p := *raw.Progress
		r.Progress = &p
	}
	r.value = v
	return nil
}

// Value returns the task's return value. It returns ErrNotFinished while the
// task is NEW or RUNNING, the task's *Error when it FAILED, and an error
// wrapping ErrCancelled when it was CANCELLED.
func (r *Result[R]) Value() (R, error) {
	var zero R
	switch r.Status {
	case StatusComplete:
		return r.value, nil
	case StatusFailed:
		return zero, failure(r.Err)
	case StatusCancelled:
		return zero, fmt.Errorf("result %s: %w", r.ID, ErrCancelled)
	}
	return zero, fmt.Errorf("result %s is %s: %w", r.ID, r.Status, ErrNotFinished)
}

// IsFinished reports whether the task is COMPLETE, FAILED or CANCELLED.
func (r *Result[R]) IsFinished() bool {
	return r.Status.IsFinished()
}

// Refresh reloads the result from its backend.
func (r *Result[R]) Refresh(ctx context.Context) error {
	if r.backend == nil {
		return fmt.Errorf("refresh %s: result has no backend", r.ID)
	}
	raw, err := r.backend.GetResult(ctx, r.ID)
	if err != nil {
		return fmt.Errorf("refresh %s: %w", r.ID, err)
	}
	return r.set(raw)
}

// Wait refreshes the result until it is finished or ctx is done. On a
// backend that is a FinishWaiter (Redis) it refreshes as soon as the
// backend tells of the task's finish, and every interval as well, in case
// that news is lost (pub/sub cut off, events turned off); on others it
// refreshes every interval. A zero interval means 50ms. It is a
// convenience for scripts and tests; services usually read results when
// they need them.
func (r *Result[R]) Wait(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = 50 * time.Millisecond
	}
	if r.IsFinished() {
		return nil
	}
	finished, stop := r.watch(ctx)
	if stop != nil {
		defer stop()
		// Watching started: a finish from now on is told. One that came
		// before is read now.
		if err := r.Refresh(ctx); err != nil {
			return err
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for !r.IsFinished() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", r.ID, ctx.Err())
		case <-t.C:
		case <-finished:
		}
		if err := r.Refresh(ctx); err != nil {
			return err
		}
	}
	return nil
}

// watch starts watching r's finish if its backend can (FinishWaiter);
// stop is nil when it cannot, and Wait only polls.
func (r *Result[R]) watch(ctx context.Context) (<-chan struct{}, func()) {
	fw, ok := r.backend.(FinishWaiter)
	if !ok || r.Queue == "" {
		return nil, nil
	}
	finished, stop, err := fw.WaitFinished(ctx, r.ID, r.Queue)
	if err != nil {
		return nil, nil
	}
	return finished, stop
}

package task

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// StatusCancelled is the final status of a task cancelled before it
// started (see Canceller); cancelling is the only way a task gets it.
const StatusCancelled Status = "CANCELLED"

// Errors of cancellation. Match them with errors.Is.
var (
	// ErrNotCancellable is wrapped by the error of cancelling a task that
	// has started (RUNNING) or finished (COMPLETE, FAILED, CANCELLED); a
	// *NotCancellableError carries the status it had.
	ErrNotCancellable = errors.New("gotasks: task cannot be cancelled")
	// ErrCancelled is returned by Result.Value for a CANCELLED task.
	ErrCancelled = errors.New("gotasks: task was cancelled")
)

// NotCancellableError is the error of cancelling a task that is no longer
// waiting to run. It wraps ErrNotCancellable.
type NotCancellableError struct {
	ID     string
	Status Status // the task's status when the cancellation was refused
}

// Error says which task and why.
func (e *NotCancellableError) Error() string {
	return fmt.Sprintf("%v: task %s is %s", ErrNotCancellable, e.ID, e.Status)
}

// Unwrap makes errors.Is(err, ErrNotCancellable) hold.
func (e *NotCancellableError) Unwrap() error { return ErrNotCancellable }

// Canceller is implemented by backends that can cancel a task that has not
// started yet: NEW, deferred, or waiting for a retry. Cancel makes it
// CANCELLED, a final status, so that no worker ever runs it, and returns
// the CANCELLED result, which the backend then keeps like any finished
// result. A task that is RUNNING or finished is left alone and the error
// wraps ErrNotCancellable (as a *NotCancellableError); an unknown id gives
// ErrResultNotFound.
//
// Running tasks are not interrupted: stopping code in another process
// midway would leave whatever it was doing half done, which only the task
// itself can avoid.
type Canceller interface {
	Cancel(ctx context.Context, id string) (*RawResult, error)
}

// Cancel cancels the task if it has not started yet, and updates r to the
// CANCELLED result. See Canceller for what can be cancelled; a backend
// that cannot cancel (such as the ImmediateBackend, whose tasks have run by
// the time Enqueue returns) gives ErrNotSupported.
func (r *Result[R]) Cancel(ctx context.Context) error {
	if r.backend == nil {
		return fmt.Errorf("cancel %s: result has no backend", r.ID)
	}
	c, ok := r.backend.(Canceller)
	if !ok {
		return fmt.Errorf("cancel %s: backend %q: %w", r.ID, r.backend.Name(), ErrNotSupported)
	}
	raw, err := c.Cancel(ctx, r.ID)
	if err != nil {
		var nc *NotCancellableError
		if errors.As(err, &nc) && nc.ID == r.ID {
			// The refusal tells the current status; a caller that then
			// looks at r should not see the stale one.
			r.Status = nc.Status
		}
		return fmt.Errorf("cancel %s: %w", r.ID, err)
	}
	return r.set(raw)
}

// Cancel cancels a stored task that is still NEW: nothing runs the
// DummyBackend's tasks, so only the tests that mark results otherwise see
// any other status.
func (d *DummyBackend) Cancel(ctx context.Context, id string) (*RawResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.byID[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q in backend %q", ErrResultNotFound, id, d.name)
	}
	if r.Status != StatusNew {
		return nil, &NotCancellableError{ID: id, Status: r.Status}
	}
	r.Status, r.FinishedAt = StatusCancelled, time.Now()
	return r.clone(), nil
}

package task

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"
)

// Info describes the attempt a task is running in (django-tasks'
// takes_context). Get it with InfoFrom; ResultFrom gives the task's whole
// result (times, earlier errors, limits).
type Info struct {
	ResultID string
	TaskName string
	Attempt  int // 1 for the first attempt
	WorkerID string
}

type infoKey struct{}

// InfoFrom returns the Info of the task running with ctx; ok is false
// outside a task.
func InfoFrom(ctx context.Context) (Info, bool) {
	i, ok := ctx.Value(infoKey{}).(Info)
	return i, ok
}

type resultKey struct{}

// ResultFrom returns, inside a running task, its result as the backend
// sees it when the attempt starts (django-tasks' TaskContext.task_result):
// Status RUNNING, EnqueuedAt, StartedAt, Attempts (this one included),
// WorkerIDs (this attempt's worker last), Errors (those of the earlier
// attempts, oldest first), MaxAttempts and the other Limits, Queue,
// Priority, Backend and the encoded Args (DecodeArgs works). FinishedAt is
// zero and Err and Value are nil: the attempt has not finished. ok is false
// outside a task.
//
// Each call returns a fresh deep copy: the task may change it, or hand it
// to other goroutines, without touching the result its worker stores. It
// is a snapshot and is not updated while the task runs.
func ResultFrom(ctx context.Context) (*RawResult, bool) {
	r, ok := ctx.Value(resultKey{}).(*RawResult)
	if !ok {
		return nil, false
	}
	return r.deepCopy(), true
}

// runningView is the snapshot of r that ResultFrom copies: r as it stands
// when the attempt starts, without the outcome of an earlier attempt. It
// shares r's Args (nothing writes to them) and its *Error values (never
// changed once made), so that an attempt does not copy its arguments
// unless the task asks for the view.
func runningView(r *RawResult) *RawResult {
	v := *r
	v.WorkerIDs, v.Errors = slices.Clone(r.WorkerIDs), slices.Clone(r.Errors)
	v.FinishedAt, v.Err, v.Value = time.Time{}, nil, nil
	return &v
}

// deepCopy copies r and everything it points to but its serializer, so
// that no change to the copy reaches r.
func (r *RawResult) deepCopy() *RawResult {
	c := *r
	c.WorkerIDs = slices.Clone(r.WorkerIDs)
	c.Args, c.Value = bytes.Clone(r.Args), bytes.Clone(r.Value)
	if r.Err != nil {
		e := *r.Err
		c.Err = &e
	}
	if r.Errors != nil {
		c.Errors = make([]*Error, len(r.Errors))
		for i, e := range r.Errors {
			if e != nil {
				ec := *e
				c.Errors[i] = &ec
			}
		}
	}
	return &c
}

// Execute runs the task r names, for backends and workers. r must be the
// RUNNING result of a claimed task (StartedAt, Attempts and WorkerIDs set);
// the last WorkerIDs entry is the worker running it.
//
// Execute fires the started hook, runs the task with Info and a snapshot
// of r (see ResultFrom) in its context (bounded by r.Timeout), through the
// process-wide run middleware (UseRun), recovers a panic, and sets
// r.FinishedAt and the outcome: COMPLETE with r.Value; or, on failure,
// r.Err (also appended to r.Errors) and either FAILED or, when the task
// may be retried, NEW with r.RunAfter set to the time of the next attempt.
// It never panics. It does not fire the finished hook: call Finished once
// the result is stored.
//
// A task that calls runtime.Goexit (directly, or through a helper such as
// testing.T.FailNow) fails its attempt with ErrorTypeGoexit. Goexit cannot
// be stopped: without a Timeout and without run middleware the task runs
// in the caller's goroutine, and then Execute records that outcome in r
// and never returns, because the goroutine dies. Callers that must carry
// on run Execute in a goroutine they can lose, and find r finished once it
// is gone.
func Execute(ctx context.Context, r *RawResult) { execute(ctx, r, nil, nil) }

// ExecuteWith is Execute with run middleware of the caller's own (a
// worker's, a backend's) inside the process-wide one: mws[0] is the
// outermost of them. Workers pass worker.Options.RunMiddleware, the
// ImmediateBackend BackendOptions.RunMiddleware.
func ExecuteWith(ctx context.Context, r *RawResult, mws ...RunMiddleware) { execute(ctx, r, mws, nil) }

func execute(ctx context.Context, r *RawResult, mws []RunMiddleware, a *Apart) {
	info := Info{ResultID: r.ID, TaskName: r.TaskName, Attempt: r.Attempts}
	if n := len(r.WorkerIDs); n > 0 {
		info.WorkerID = r.WorkerIDs[n-1]
	}
	ctx = context.WithValue(ctx, infoKey{}, info)
	ctx = context.WithValue(ctx, resultKey{}, runningView(r))
	// Panics are recovered below (runRecovered, runThrough, and around
	// hooks), so the only way out of here that skips "returned = true" is
	// runtime.Goexit: this deferred call is then the last code to run on
	// this goroutine.
	returned := false
	defer func() {
		if !returned {
			r.FinishedAt = time.Now()
			Fail(r, goexitError())
		}
	}()
	emit(ctx, hookStarted, r)
	value, err := runLimited(ctx, r, mws, a)
	returned = true
	r.FinishedAt = time.Now()
	if err == nil {
		r.Status, r.Err, r.Value = StatusComplete, nil, value
		return
	}
	if errors.Is(context.Cause(ctx), ErrCancelled) {
		Cancelled(r, err)
		return
	}
	Fail(r, err)
}

// Cancelled records the end of an attempt whose cancel was asked for
// while it ran (its context was cancelled with cause ErrCancelled), and
// that returned err: CANCELLED when err is its context's error
// (context.Canceled or ErrCancelled, wrapped or not), otherwise FAILED
// with err. Either way no attempt follows: a cancelled task is not
// retried. Workers call it for an attempt that failed after the cancel.
func Cancelled(r *RawResult, err error) {
	if r.FinishedAt.IsZero() {
		r.FinishedAt = time.Now()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, ErrCancelled) {
		r.Status, r.Err, r.Value = StatusCancelled, nil, nil
		return
	}
	fail := NewError(err)
	r.Err, r.Value = fail, nil
	r.Errors = append(r.Errors, fail)
	r.Status = StatusFailed
}

// Fail records err as the failure of r's current attempt and decides what
// comes next: a retry (status NEW, RunAfter the time of the next attempt)
// if attempts remain and err allows one, otherwise FAILED. Workers call it
// for failures that happen outside Execute.
func Fail(r *RawResult, err error) {
	fail := NewError(err)
	r.Err, r.Value = fail, nil
	r.Errors = append(r.Errors, fail)
	if r.FinishedAt.IsZero() {
		r.FinishedAt = time.Now()
	}
	if delay, ok := retryDelay(r, err); ok {
		r.Status, r.RunAfter = StatusNew, r.FinishedAt.Add(delay)
		return
	}
	r.Status = StatusFailed
}

// Finished fires the finished hook for r; workers call it once the final
// result is stored.
func Finished(ctx context.Context, r *RawResult) { emit(ctx, hookFinished, r) }

// runLimited runs the task, through the run middleware (see runChain),
// under r.Timeout. A task that ignores its context is abandoned
// TimeoutGrace after the deadline: it keeps running in its goroutine, but
// the attempt is over and its result is dropped.
func runLimited(ctx context.Context, r *RawResult, mws []RunMiddleware, a *Apart) ([]byte, error) {
	if r.Timeout <= 0 {
		return runChain(ctx, r, mws, a)
	}
	tctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	type outcome struct {
		value []byte
		err   error
	}
	done := make(chan outcome, 1)
	rc := *r // the abandoned goroutine must not share r with the caller
	go func() {
		// Sent from a deferred call so that a task that calls
		// runtime.Goexit, which ends this goroutine, still reports at
		// once: runChain then never returns and o keeps the Goexit
		// failure (a panic cannot get past runChain).
		o := outcome{err: goexitError()}
		defer func() { done <- o }()
		o.value, o.err = runChain(tctx, &rc, mws, nil) // not on a: it may be abandoned
	}()
	timedOut := func(err error) error {
		msg := fmt.Sprintf("attempt exceeded its timeout of %v", r.Timeout)
		if err != nil {
			msg += ": " + err.Error()
		}
		return &Error{Type: ErrorTypeTimeout, Message: msg}
	}
	select {
	case o := <-done:
		if o.err != nil && errors.Is(tctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, timedOut(o.err)
		}
		return o.value, o.err
	case <-tctx.Done():
	}
	grace := time.NewTimer(TimeoutGrace)
	defer grace.Stop()
	select {
	case o := <-done:
		if o.err != nil && ctx.Err() == nil {
			return nil, timedOut(o.err)
		}
		return o.value, o.err
	case <-grace.C:
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &Error{Type: ErrorTypeTimeout, Message: fmt.Sprintf(
			"attempt exceeded its timeout of %v and ignored its cancelled context for %v more; abandoned (its goroutine may still be running)", r.Timeout, TimeoutGrace)}
	}
}

func runRecovered(ctx context.Context, r *RawResult) (value []byte, err error) {
	def, ok := Lookup(r.TaskName)
	if !ok {
		return nil, &Error{Type: ErrorTypeUnknownTask, Message: fmt.Sprintf("%v: %q is not defined in this worker (is its package imported by the worker's main?)", ErrUnknownTask, r.TaskName)}
	}
	defer func() {
		if p := recover(); p != nil {
			err = panicError(p, debug.Stack())
		}
	}()
	return def.run(ctx, r)
}

// goexitError is the failure of an attempt whose task called
// runtime.Goexit: it neither returned nor panicked.
func goexitError() *Error {
	return &Error{Type: ErrorTypeGoexit, Message: "the task called runtime.Goexit (directly or through a helper such as testing.T.FailNow) instead of returning"}
}

func panicError(p any, stack []byte) *Error {
	e := &Error{Type: ErrorTypePanic, Message: fmt.Sprintf("panic: %v", p), Traceback: string(stack)}
	if err, ok := p.(error); ok {
		// The error's type when it says something (see NewError), else
		// gotasks.Panic.
		if t := errorType(err); t != "" {
			e.Type = t
		}
		e.Message = "panic: " + err.Error()
	}
	return e
}

package task

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"
)

// Info describes the attempt a task is running in (django-tasks'
// takes_context). Get it with InfoFrom.
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

// Execute runs the task r names, for backends and workers. r must be the
// RUNNING result of a claimed task (StartedAt, Attempts and WorkerIDs set);
// the last WorkerIDs entry is the worker running it.
//
// Execute fires the started hook, runs the task with Info in its context,
// recovers a panic, and sets r.Status to COMPLETE (with r.Value) or FAILED
// (with r.Err) and r.FinishedAt. It never panics. It does not fire the
// finished hook: call Finished once the result is stored.
func Execute(ctx context.Context, r *RawResult) {
	info := Info{ResultID: r.ID, TaskName: r.TaskName, Attempt: r.Attempts}
	if n := len(r.WorkerIDs); n > 0 {
		info.WorkerID = r.WorkerIDs[n-1]
	}
	ctx = context.WithValue(ctx, infoKey{}, info)
	emit(ctx, hookStarted, r)
	value, fail := runRecovered(ctx, r)
	r.FinishedAt = time.Now()
	if fail != nil {
		r.Status, r.Err, r.Value = StatusFailed, fail, nil
		return
	}
	r.Status, r.Err, r.Value = StatusComplete, nil, value
}

// Finished fires the finished hook for r; workers call it once the final
// result is stored.
func Finished(ctx context.Context, r *RawResult) { emit(ctx, hookFinished, r) }

func runRecovered(ctx context.Context, r *RawResult) (value []byte, fail *Error) {
	def, ok := Lookup(r.TaskName)
	if !ok {
		return nil, &Error{Type: ErrorTypeUnknownTask, Message: fmt.Sprintf("%v: %q is not defined in this worker (is its package imported by the worker's main?)", ErrUnknownTask, r.TaskName)}
	}
	defer func() {
		if p := recover(); p != nil {
			fail = panicError(p, debug.Stack())
		}
	}()
	return def.run(ctx, r)
}

func panicError(p any, stack []byte) *Error {
	e := &Error{Type: ErrorTypePanic, Message: fmt.Sprintf("panic: %v", p), Traceback: string(stack)}
	if err, ok := p.(error); ok {
		e.Type = errorType(err)
		e.Message = "panic: " + err.Error()
	}
	return e
}

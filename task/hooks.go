package task

import (
	"context"
	"log/slog"
	"slices"
	"sync"
)

// Hook is called with a result at a point of its life (Django's task
// signals). Hooks run synchronously, in the goroutine that enqueues or
// runs the task (a worker runs its finished hooks on the goroutine that
// completes stored outcomes, one at a time), so they should be quick; a
// panicking hook is logged and ignored. The result must not be modified.
type Hook func(ctx context.Context, r *RawResult)

type hookKind int

const (
	hookEnqueued hookKind = iota
	hookStarted
	hookFinished
	hookKinds
)

type hookEntry struct {
	id int
	fn Hook
}

var hooks struct {
	sync.RWMutex
	next int
	fns  [hookKinds][]hookEntry // in registration order
}

// OnEnqueued registers h to run after a task is enqueued (in the enqueuing
// process). It returns a function that removes the hook.
func OnEnqueued(h Hook) (remove func()) { return addHook(hookEnqueued, h) }

// OnStarted registers h to run when a task starts (in the worker process,
// before the task's function). It returns a function that removes the hook.
func OnStarted(h Hook) (remove func()) { return addHook(hookStarted, h) }

// OnFinished registers h to run when a task has finished and its result is
// stored, COMPLETE, FAILED or CANCELLED while it ran (in the worker
// process). Cancelling a task that has not started does not run it: no
// worker is involved. It returns a function that removes the hook.
func OnFinished(h Hook) (remove func()) { return addHook(hookFinished, h) }

func addHook(k hookKind, h Hook) func() {
	hooks.Lock()
	defer hooks.Unlock()
	id := hooks.next
	hooks.next++
	hooks.fns[k] = append(hooks.fns[k], hookEntry{id, h})
	return func() {
		hooks.Lock()
		defer hooks.Unlock()
		hooks.fns[k] = slices.DeleteFunc(slices.Clone(hooks.fns[k]), func(e hookEntry) bool { return e.id == id })
	}
}

func emit(ctx context.Context, k hookKind, r *RawResult) {
	hooks.RLock()
	fns := hooks.fns[k] // never mutated in place, so safe to use unlocked
	hooks.RUnlock()
	for _, e := range fns {
		callHook(ctx, e.fn, r)
	}
}

func callHook(ctx context.Context, h Hook, r *RawResult) {
	defer func() {
		if p := recover(); p != nil {
			slog.ErrorContext(ctx, "gotasks: hook panicked", "task", r.TaskName, "id", r.ID, "panic", p)
		}
	}()
	h(ctx, r)
}

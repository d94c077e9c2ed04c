package task

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
)

// EnqueueFunc stores msgs on b: what Backend.Enqueue (one message) or
// BatchEnqueuer.EnqueueMany does.
type EnqueueFunc func(ctx context.Context, b Backend, msgs []*Message) error

// EnqueueMiddleware wraps every Enqueue and EnqueueMany call: it may add or
// change msgs[i].Metadata (validated again after the chain, so bounds
// hold), refuse with an error the caller sees (nothing stored), time or
// log, and sees the outcome.
//
// It runs in the caller's goroutine, once per call (EnqueueMany: once for
// the whole batch), after the task and its arguments are validated and
// its messages built, and before the enqueued hook. msgs are the call's
// messages: change them in place (their Metadata, which each message owns)
// and pass the same slice to next, or do not call next at all. Their other
// fields have been validated and must not change. The error next returns
// is the backend's (or the metadata check's, wrapping ErrInvalidTask);
// what the middleware returns is what the caller gets, wrapped.
// After a nil error, the backend may have set msgs[i].DuplicateOf or
// msgs[i].Existing (see Message): such a message was not stored again.
type EnqueueMiddleware func(next EnqueueFunc) EnqueueFunc

// RunFunc runs one attempt of the task r names and returns the encoded
// return value or the error; a panic in the task comes back as a *Error
// of type gotasks.Panic (the innermost layer recovers it), a
// runtime.Goexit as gotasks.Goexit.
//
// r is the attempt's RUNNING result (Metadata, Attempts, Limits…): read
// it, do not change it. A panic whose value is an error of a named type
// carries that type instead of gotasks.Panic (see Error).
type RunFunc func(ctx context.Context, r *RawResult) (value []byte, err error)

// RunMiddleware wraps every execution, on workers and on the Immediate
// backend (so tests see the same chain): it may change the context
// (values, deadline), time, log, recover, short-circuit with an error (the
// attempt fails with it, and is retried by the usual rules), and sees the
// outcome.
//
// The function a RunMiddleware returns is called for many attempts, from
// several goroutines at once: a worker builds a chain once per slot and
// reuses it (see Apart), so keep per-attempt state in the RunFunc's
// variables, not in the factory's.
//
// It runs in the goroutine of the attempt, after the started hook and with
// the task's Info and ResultFrom already in ctx; r's Timeout bounds the
// whole chain and the task, so ctx carries the attempt's deadline. A value
// returned without calling next completes the attempt with it (it must be
// encoded with r's serializer). A panic in a middleware fails the attempt
// as a panic in the task does. With run middleware the task runs in a
// goroutine of its own, so that a task that calls runtime.Goexit ends that
// goroutine and the middleware see the failure; without any, nothing
// changes and nothing is spent.
type RunMiddleware func(next RunFunc) RunFunc

// EnqueueMiddlewareProvider is implemented by backends that carry enqueue
// middleware of their own (BackendOptions.EnqueueMiddleware for the
// in-process backends, broker.Options.EnqueueMiddleware for Redis): Task
// runs it inside the process-wide middleware (see UseEnqueue).
type EnqueueMiddlewareProvider interface {
	EnqueueMiddleware() []EnqueueMiddleware
}

// middleware holds the process-wide lists. Readers load them without a
// lock (one atomic load per enqueue or attempt); Use* replaces the list
// under mu, never changing a list in place.
var middleware struct {
	mu      sync.Mutex
	enqueue atomic.Pointer[[]EnqueueMiddleware]
	run     atomic.Pointer[[]RunMiddleware]
}

// UseEnqueue adds process-wide enqueue middleware; the first added is the
// outermost. Every Task.Enqueue and EnqueueMany goes through the
// process-wide list first (outermost), then through its backend's own
// (BackendOptions.EnqueueMiddleware, broker.Options.EnqueueMiddleware);
// within a list, the first is the outermost. Nil entries are ignored.
// Like Define, it is meant for program start-up: calls already running
// keep the chain they started with.
func UseEnqueue(mw ...EnqueueMiddleware) { use(&middleware.enqueue, mw) }

// UseRun adds process-wide run middleware; the first added is the
// outermost. Every attempt, on workers and on the ImmediateBackend, goes
// through the process-wide list first (outermost), then through its
// runner's own (worker.Options.RunMiddleware, BackendOptions.RunMiddleware;
// ExecuteWith's mws); within a list, the first is the outermost. Nil
// entries are ignored. Like Define, it is meant for program start-up:
// attempts already running keep the chain they started with.
func UseRun(mw ...RunMiddleware) { use(&middleware.run, mw) }

func use[M any](list *atomic.Pointer[[]M], mw []M) {
	middleware.mu.Lock()
	defer middleware.mu.Unlock()
	var old []M
	if p := list.Load(); p != nil {
		old = *p
	}
	l := slices.Concat(old, mw)
	list.Store(&l)
}

// enqueueMiddlewareOf returns the enqueue middleware of an enqueue on b:
// the process-wide list and b's own.
func enqueueMiddlewareOf(b Backend) (global, own []EnqueueMiddleware) {
	if p := middleware.enqueue.Load(); p != nil {
		global = *p
	}
	if p, ok := b.(EnqueueMiddlewareProvider); ok {
		own = p.EnqueueMiddleware()
	}
	return global, own
}

// enqueueOne stores msg on b through the enqueue middleware (Task.Enqueue).
// Without any, it is b.Enqueue: no slice is made for the one message.
func enqueueOne(ctx context.Context, b Backend, msg *Message) error {
	global, own := enqueueMiddlewareOf(b)
	if len(global) == 0 && len(own) == 0 {
		return b.Enqueue(ctx, msg)
	}
	return enqueueChain(global, own, storeEach)(ctx, b, []*Message{msg})
}

// enqueueMany stores msgs on b through the enqueue middleware
// (Task.EnqueueMany).
func enqueueMany(ctx context.Context, b Backend, msgs []*Message) error {
	global, own := enqueueMiddlewareOf(b)
	if len(global) == 0 && len(own) == 0 {
		return storeBatch(ctx, b, msgs)
	}
	return enqueueChain(global, own, storeBatch)(ctx, b, msgs)
}

// enqueueChain wraps store in the metadata check, then own, then global.
func enqueueChain(global, own []EnqueueMiddleware, store EnqueueFunc) EnqueueFunc {
	f := checkMetadata(store)
	for _, l := range [][]EnqueueMiddleware{own, global} {
		for i := len(l) - 1; i >= 0; i-- {
			if l[i] != nil {
				f = l[i](f)
			}
		}
	}
	return f
}

// checkMetadata is the innermost layer of enqueue middleware: it checks
// the metadata the middleware left against the bounds before anything is
// stored.
func checkMetadata(store EnqueueFunc) EnqueueFunc {
	return func(ctx context.Context, b Backend, msgs []*Message) error {
		for i, m := range msgs {
			if err := validateMetadata(m.Metadata); err != nil {
				if len(msgs) > 1 {
					return fmt.Errorf("args[%d]: metadata after the enqueue middleware: %w", i, err)
				}
				return fmt.Errorf("metadata after the enqueue middleware: %w", err)
			}
		}
		return store(ctx, b, msgs)
	}
}

// storeEach stores msgs one Enqueue at a time.
func storeEach(ctx context.Context, b Backend, msgs []*Message) error {
	for i, m := range msgs {
		if err := b.Enqueue(ctx, m); err != nil {
			if len(msgs) == 1 {
				return err
			}
			return fmt.Errorf("%d of %d (the earlier ones are enqueued): %w", i+1, len(msgs), err)
		}
	}
	return nil
}

// storeBatch stores msgs in one EnqueueMany where b can, else one by one.
func storeBatch(ctx context.Context, b Backend, msgs []*Message) error {
	if be, ok := b.(BatchEnqueuer); ok {
		return be.EnqueueMany(ctx, msgs)
	}
	return storeEach(ctx, b, msgs)
}

// runChain runs the attempt r of its task through the run middleware: the
// process-wide list, then own; on a's goroutine if a is not nil (see
// Apart). Without any middleware, it is runRecovered: nothing is
// allocated.
func runChain(ctx context.Context, r *RawResult, own []RunMiddleware, a *Apart) ([]byte, error) {
	global := middleware.run.Load()
	if (global == nil || len(*global) == 0) && len(own) == 0 {
		return runRecovered(ctx, r)
	}
	if a != nil {
		return runChainApart(ctx, r, a, global, own)
	}
	var g []RunMiddleware
	if global != nil {
		g = *global
	}
	return runThrough(ctx, r, g, own)
}

// runThrough builds the chain around runApart and runs it; a panic in a
// middleware fails the attempt as one in the task does.
func runThrough(ctx context.Context, r *RawResult, global, own []RunMiddleware) (value []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			value, err = nil, panicError(p, debug.Stack())
		}
	}()
	return buildChain(runApart, global, own)(ctx, r)
}

// buildChain wraps inner in own, then global; within a list the first is
// the outermost.
func buildChain(inner RunFunc, global, own []RunMiddleware) RunFunc {
	f := inner
	for _, l := range [][]RunMiddleware{own, global} {
		for i := len(l) - 1; i >= 0; i-- {
			if l[i] != nil {
				f = l[i](f)
			}
		}
	}
	return f
}

// runApart is the innermost layer of run middleware: it runs the task in a
// goroutine of its own and waits for it, so that a task that calls
// runtime.Goexit ends that goroutine, not the middleware's, and comes back
// as a gotasks.Goexit error. Panics are recovered by runRecovered.
func runApart(ctx context.Context, r *RawResult) ([]byte, error) {
	type outcome struct {
		value []byte
		err   error
	}
	done := make(chan outcome, 1)
	go func() {
		o := outcome{err: goexitError()} // kept if the task calls runtime.Goexit
		defer func() { done <- o }()
		o.value, o.err = runRecovered(ctx, r)
	}()
	o := <-done
	return o.value, o.err
}

package task

import (
	"context"
	"runtime/debug"
)

// Apart is a goroutine kept to run tasks behind run middleware. With run
// middleware a task runs in a goroutine other than the middleware's, so
// that a task that calls runtime.Goexit ends that goroutine and the
// middleware see the failure (see RunMiddleware). A new goroutine per
// attempt costs its start and, above all, growing a fresh stack as deep
// as the task's: ~2 µs, the whole cost of a pass-through middleware on a
// worker. An Apart keeps one goroutine, and its grown stack, for attempt
// after attempt, and the chain of middleware built around it.
//
// A worker keeps one per slot (ExecuteApart). The zero value is ready:
// its goroutine starts at its first attempt with run middleware, and
// never without any. Close ends it. An Apart runs one attempt at a time:
// it is not for concurrent use.
type Apart struct {
	jobs chan func()
	done chan bool

	// The chain built around this Apart, and what it was built from:
	// rebuilt when the process-wide list or the runner's own changes.
	chain  RunFunc
	global *[]RunMiddleware
	own    []RunMiddleware
}

// ExecuteApart is ExecuteWith, with the task run on a's goroutine when
// there is run middleware (a nil a: a new goroutine per attempt, as
// ExecuteWith does). A task with a Timeout runs on a goroutine of its own
// anyway: one that ignores its context is abandoned, still running, and
// must not hold a up.
func ExecuteApart(ctx context.Context, r *RawResult, a *Apart, mws ...RunMiddleware) {
	execute(ctx, r, mws, a)
}

// Close ends a's goroutine, if it has one. a is ready for use again.
func (a *Apart) Close() {
	if a.jobs != nil {
		close(a.jobs)
		a.jobs, a.done = nil, nil
	}
}

// do runs fn on a's goroutine and waits for it; it reports whether fn
// returned (false: it called runtime.Goexit, which ended the goroutine;
// the next call starts another).
func (a *Apart) do(fn func()) bool {
	if a.jobs == nil {
		a.jobs, a.done = make(chan func()), make(chan bool)
		go serveApart(a.jobs, a.done)
	}
	a.jobs <- fn
	if ok := <-a.done; ok {
		return true
	}
	a.jobs, a.done = nil, nil // that goroutine is gone
	return false
}

// serveApart is the loop of an Apart's goroutine.
func serveApart(jobs <-chan func(), done chan<- bool) {
	for fn := range jobs {
		runReporting(fn, done)
	}
}

// runReporting runs fn and sends on done whether it returned; the send is
// deferred, so that it happens when fn calls runtime.Goexit too.
func runReporting(fn func(), done chan<- bool) {
	returned := false
	defer func() { done <- returned }()
	fn()
	returned = true
}

// chainFor returns the chain of global and own around a's goroutine,
// building it only when they changed.
func (a *Apart) chainFor(global *[]RunMiddleware, own []RunMiddleware) RunFunc {
	if a.chain != nil && a.global == global && sameList(a.own, own) {
		return a.chain
	}
	var g []RunMiddleware
	if global != nil {
		g = *global
	}
	a.chain, a.global, a.own = buildChain(a.runApart, g, own), global, own
	return a.chain
}

// sameList reports whether a and b are the same slice (not only equal):
// a runner passes its own list, unchanged, to every attempt.
func sameList(a, b []RunMiddleware) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// runApart is the innermost layer of a's chain: runApart's, on a's
// goroutine.
func (a *Apart) runApart(ctx context.Context, r *RawResult) (value []byte, err error) {
	if !a.do(func() { value, err = runRecovered(ctx, r) }) {
		return nil, goexitError()
	}
	return value, err
}

// runChainApart runs the attempt r through the run middleware on a's
// goroutine; a panic in a middleware fails the attempt as one in the task
// does.
func runChainApart(ctx context.Context, r *RawResult, a *Apart, global *[]RunMiddleware, own []RunMiddleware) (value []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			value, err = nil, panicError(p, debug.Stack())
		}
	}()
	return a.chainFor(global, own)(ctx, r)
}

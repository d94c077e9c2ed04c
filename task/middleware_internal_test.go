package task

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// nopBackend stores nothing and allocates nothing.
type nopBackend struct{}

func (nopBackend) Name() string                                    { return "nop" }
func (nopBackend) Features() Features                              { return Features{} }
func (nopBackend) Queues() []string                                { return nil }
func (nopBackend) Enqueue(ctx context.Context, msg *Message) error { return nil }
func (nopBackend) GetResult(context.Context, string) (*RawResult, error) {
	return nil, ErrResultNotFound
}

// Without middleware the chains cost nothing: running a task through the
// empty run chain allocates what running it directly does, and an enqueue
// through the empty enqueue chain what the backend's Enqueue does.
func TestEmptyMiddlewareChainsAllocateNothing(t *testing.T) {
	e, r := middleware.enqueue.Load(), middleware.run.Load()
	middleware.enqueue.Store(nil)
	middleware.run.Store(nil)
	t.Cleanup(func() {
		middleware.enqueue.Store(e)
		middleware.run.Store(r)
	})
	name := "TestEmptyMiddlewareChainsAllocateNothing.noop"
	Define(name, func(ctx context.Context, _ struct{}) (struct{}, error) { return struct{}{}, nil })
	t.Cleanup(func() { Unregister(name) })
	ctx := context.Background()
	res := &RawResult{ID: "x", TaskName: name, Status: StatusRunning, Attempts: 1, Args: []byte{0x80}}

	// Measured in turn until they agree, at most 10 times: sync.Pool
	// (the serializers' buffers) drops a share of what it is given under
	// the race detector, which makes any one count vary; an allocation of
	// the chain's own would show in every one.
	var a Apart
	var direct, chained, apart float64
	for range 10 {
		direct = testing.AllocsPerRun(100, func() { _, _ = runRecovered(ctx, res) })
		chained = testing.AllocsPerRun(100, func() { _, _ = runChain(ctx, res, nil, nil) })
		apart = testing.AllocsPerRun(100, func() { _, _ = runChain(ctx, res, nil, &a) })
		if chained <= direct && apart <= direct {
			break
		}
	}
	if chained > direct {
		t.Errorf("a task through the empty run chain: %v allocations, directly %v", chained, direct)
	}
	if apart > direct {
		t.Errorf("a task through the empty run chain with an Apart: %v allocations, directly %v", apart, direct)
	}
	if a.jobs != nil {
		t.Error("an Apart started its goroutine without any run middleware")
	}

	msg := &Message{ID: "x", TaskName: name}
	if n := testing.AllocsPerRun(100, func() { _ = enqueueOne(ctx, nopBackend{}, msg) }); n != 0 {
		t.Errorf("an enqueue through the empty chain: %v allocations, want 0", n)
	}
	msgs := []*Message{msg, msg}
	if n := testing.AllocsPerRun(100, func() { _ = enqueueMany(ctx, nopBackend{}, msgs) }); n != 0 {
		t.Errorf("a batch through the empty chain: %v allocations, want 0", n)
	}
}

// An Apart runs attempt after attempt on one goroutine, through a chain
// built once: the middleware's factory is called once, and the task runs
// on a goroutine other than the middleware's. A task that calls
// runtime.Goexit ends that goroutine and fails as gotasks.Goexit, and
// the next attempt gets a new one; Close ends it.
func TestAnApartRunsEveryAttemptOnItsGoroutineThroughOneChain(t *testing.T) {
	goexit := false
	var taskG, mwG []uint64
	name := "TestAnApartRunsEveryAttempt.task"
	Define(name, func(ctx context.Context, _ struct{}) (struct{}, error) {
		taskG = append(taskG, goid())
		if goexit {
			runtime.Goexit()
		}
		return struct{}{}, nil
	})
	t.Cleanup(func() { Unregister(name) })
	built := 0
	own := []RunMiddleware{func(next RunFunc) RunFunc {
		built++
		return func(ctx context.Context, r *RawResult) ([]byte, error) {
			mwG = append(mwG, goid())
			return next(ctx, r)
		}
	}}
	ctx := context.Background()
	res := &RawResult{ID: "x", TaskName: name, Status: StatusRunning, Attempts: 1, Args: []byte{0x80}}
	before := runtime.NumGoroutine()
	var a Apart
	for range 5 {
		if _, err := runChain(ctx, res, own, &a); err != nil {
			t.Fatal(err)
		}
	}
	if built != 1 {
		t.Errorf("the chain was built %d times for 5 attempts; want once", built)
	}
	if len(slices.Compact(slices.Clone(taskG))) != 1 || taskG[0] == mwG[0] {
		t.Errorf("task goroutines %v, middleware goroutines %v; want one task goroutine, not the middleware's", taskG, mwG)
	}
	goexit = true
	if _, err := runChain(ctx, res, own, &a); !isType(err, ErrorTypeGoexit) {
		t.Fatalf("a task that called runtime.Goexit: %v; want %s", err, ErrorTypeGoexit)
	}
	goexit = false
	if _, err := runChain(ctx, res, own, &a); err != nil {
		t.Fatalf("the attempt after a Goexit: %v", err)
	}
	if n := len(taskG); taskG[n-1] == taskG[0] {
		t.Error("the attempt after a Goexit ran on the goroutine that Goexit ended")
	}
	a.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Close, %d before", n, before)
	}
}

func isType(err error, typ string) bool {
	var e *Error
	return errors.As(err, &e) && e.Type == typ
}

// goid is the current goroutine's id, read from its stack trace header.
func goid() uint64 {
	var buf [64]byte
	s := string(buf[:runtime.Stack(buf[:], false)])
	s = strings.TrimPrefix(s, "goroutine ")
	n, _ := strconv.ParseUint(s[:strings.IndexByte(s, ' ')], 10, 64)
	return n
}

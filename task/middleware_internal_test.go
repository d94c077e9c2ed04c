package task

import (
	"context"
	"testing"
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

	direct := testing.AllocsPerRun(100, func() { _, _ = runRecovered(ctx, res) })
	chained := testing.AllocsPerRun(100, func() { _, _ = runChain(ctx, res, nil) })
	if chained != direct {
		t.Errorf("a task through the empty run chain: %v allocations, directly %v", chained, direct)
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

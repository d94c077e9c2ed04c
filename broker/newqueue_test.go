package broker_test

import (
	"testing"
	"time"

	"github.com/gotasks/gotasks/broker"
)

// TestWaitReadyOrNew: a worker serving every queue waits on the queues it
// knows and is woken, with newQueue set, by the first enqueue on a queue
// Redis has never seen; not by later enqueues on it, from any process.
func TestWaitReadyOrNew(t *testing.T) {
	e := setup(t)
	e.enqueue(newMsg(t, "brokertest.new", "old", 0, 1))
	// A worker that knows "old" takes its wake-up token and the
	// new-queue token of "old" itself.
	if _, err := e.b.WaitReadyOrNew(e.ctx, []string{"old"}, time.Second); err != nil {
		t.Fatal(err)
	}
	_, _ = e.b.WaitReadyOrNew(e.ctx, []string{"old"}, time.Millisecond)
	if newQ, err := e.b.WaitReadyOrNew(e.ctx, []string{"old"}, 20*time.Millisecond); err != nil || newQ {
		t.Fatalf("nothing happened: newQueue %v, err %v", newQ, err)
	}

	// A producer that has never seen "fresh" registers it: new queue.
	producer := e.newBroker(broker.Options{})
	woke := make(chan bool, 1)
	go func() {
		newQ, err := e.b.WaitReadyOrNew(e.ctx, []string{"old"}, 5*time.Second)
		if err != nil {
			t.Error(err)
		}
		woke <- newQ
	}()
	if err := producer.Enqueue(e.ctx, newMsg(t, "brokertest.new", "fresh", 0, 2)); err != nil {
		t.Fatal(err)
	}
	if !<-woke {
		t.Fatal("the first enqueue on a new queue did not wake the worker as newQueue")
	}

	// Another process enqueueing on it again: not new any more.
	another := e.newBroker(broker.Options{})
	if err := another.Enqueue(e.ctx, newMsg(t, "brokertest.new", "fresh", 0, 3)); err != nil {
		t.Fatal(err)
	}
	if newQ, err := e.b.WaitReadyOrNew(e.ctx, []string{"old"}, 20*time.Millisecond); err != nil || newQ {
		t.Errorf("an enqueue on a known queue woke the worker as newQueue (err %v)", err)
	}
	// An enqueue on a known queue wakes it the usual way.
	e.enqueue(newMsg(t, "brokertest.new", "old", 0, 4))
	if newQ, err := e.b.WaitReadyOrNew(e.ctx, []string{"old"}, time.Second); err != nil || newQ {
		t.Errorf("an enqueue on old: newQueue %v, err %v; want a plain wake-up", newQ, err)
	}
}

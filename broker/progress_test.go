package broker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
)

// Progress is written only by the holder of the attempt, read back while
// the task runs, kept in the result by the finish that stores it, and its
// live entry is dropped.
func TestProgressIsFencedReadLiveAndKeptWithTheResult(t *testing.T) {
	e := setup(t)
	m := newMsg(t, "brokertest.progress", "q", 0, 1)
	e.enqueue(m)
	r := e.claim1("q", "w", time.Minute)
	at := time.UnixMilli(time.Now().UnixMilli())
	p := task.Progress{Done: 2, Total: 5, Message: "two of five, with spaces", At: at}
	if err := e.b.SetProgress(e.ctx, r, p); err != nil {
		t.Fatal(err)
	}
	if got := e.get(m.ID).Progress; got == nil || *got != p {
		t.Fatalf("live progress %+v, want %+v", got, p)
	}
	stale := *r
	stale.Attempts++
	if err := e.b.SetProgress(e.ctx, &stale, task.Progress{Done: 9}); !errors.Is(err, broker.ErrLeaseLost) {
		t.Errorf("progress of an attempt not held: %v; want ErrLeaseLost", err)
	}
	final := task.Progress{Done: 5, Total: 5, Message: "done", At: at}
	r.Status, r.Progress = task.StatusComplete, &final
	if err := e.b.Finish(e.ctx, r); err != nil {
		t.Fatal(err)
	}
	if got := e.get(m.ID).Progress; got == nil || *got != final {
		t.Errorf("kept progress %+v, want %+v", got, final)
	}
	if e.m.Exists("{gotasks:q}:progress") {
		t.Error("the live entry is left after the finish")
	}
	if err := e.b.SetProgress(e.ctx, r, p); !errors.Is(err, broker.ErrLeaseLost) {
		t.Errorf("progress after the finish: %v; want ErrLeaseLost", err)
	}
}

package broker_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
)

// TestStoreBatch: one Store call finishes, fails and retries tasks of two
// queues; each outcome is fenced on its own (a lost lease refuses only
// that one), and it still works after Redis forgot its scripts.
func TestStoreBatch(t *testing.T) {
	for _, flush := range []bool{false, true} {
		e := setup(t)
		e.m.SetTime(base)
		var msgs []*task.Message
		for i, q := range []string{"q", "q", "r", "r", "q"} {
			msgs = append(msgs, newMsg(t, "brokertest.store", q, 0, i))
		}
		e.enqueue(msgs...)
		got := append(e.claim([]string{"q"}, 3, time.Minute, "w"), e.claim([]string{"r"}, 2, time.Minute, "w")...)
		if len(got) != 5 {
			t.Fatalf("claimed %d, want 5", len(got))
		}
		rs := make([]*task.RawResult, len(got))
		for i, c := range got {
			rs[i] = c.Result
		}
		complete, failed, retried, stale, bad := rs[0], rs[1], rs[3], rs[4], rs[2]
		task.Fail(failed, errors.New("boom"))
		complete.Status, complete.Value = task.StatusComplete, []byte{0x2a}
		retried.Status, retried.RunAfter = task.StatusNew, base.Add(time.Minute)
		retried.Errors = []*task.Error{{Type: "x", Message: "first try"}}
		stale.Status = task.StatusComplete
		stale.Attempts++ // not the attempt that holds the lease
		bad.Status = task.StatusRunning

		if flush {
			// A batch before the flush, so that the broker believes its
			// scripts are loaded and the next batch meets NOSCRIPT.
			e.enqueue(newMsg(t, "brokertest.store", "warm", 0, 1), newMsg(t, "brokertest.store", "warm", 0, 2))
			var warm []*task.RawResult
			for _, c := range e.claim([]string{"warm"}, 2, time.Minute, "w") {
				c.Result.Status = task.StatusComplete
				warm = append(warm, c.Result)
			}
			if errs := e.b.Store(e.ctx, warm...); len(warm) != 2 || errs[0] != nil || errs[1] != nil {
				t.Fatalf("warm-up Store of %d: %v", len(warm), errs)
			}
			if err := e.b.Client().ScriptFlush(e.ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		errs := e.b.Store(e.ctx, complete, failed, retried, stale, bad)
		for i, want := range []error{nil, nil, nil, broker.ErrLeaseLost} {
			if (want == nil) != (errs[i] == nil) || want != nil && !errors.Is(errs[i], want) {
				t.Errorf("flush=%v: Store error %d = %v; want %v", flush, i, errs[i], want)
			}
		}
		if errs[4] == nil {
			t.Errorf("flush=%v: storing a RUNNING result: no error", flush)
		}
		if r := e.get(complete.ID); r.Status != task.StatusComplete || r.FinishedAt.IsZero() || complete.FinishedAt.IsZero() {
			t.Errorf("flush=%v: completed task: %s, finished %v (%v)", flush, r.Status, r.FinishedAt, complete.FinishedAt)
		}
		if r := e.get(failed.ID); r.Status != task.StatusFailed || r.Err == nil || r.Err.Message != "boom" {
			t.Errorf("flush=%v: failed task: %s, %v", flush, r.Status, r.Err)
		}
		if r := e.get(retried.ID); r.Status != task.StatusNew || len(r.Errors) != 1 || !r.RunAfter.Equal(base.Add(time.Minute)) {
			t.Errorf("flush=%v: retried task: %s, errors %v, run_after %v", flush, r.Status, r.Errors, r.RunAfter)
		}
		for _, r := range []*task.RawResult{stale, bad} {
			if g := e.get(r.ID); g.Status != task.StatusRunning {
				t.Errorf("flush=%v: refused outcome of %s changed it to %s", flush, r.ID, g.Status)
			}
		}
		if c := e.count("q"); c.Running != 1 || c.Pending != 0 {
			t.Errorf("flush=%v: queue q: %+v; want the refused one still running", flush, c)
		}
		if c := e.count("r"); c.Running != 1 || c.Deferred != 1 {
			t.Errorf("flush=%v: queue r: %+v; want 1 running (stale), 1 deferred (retry)", flush, c)
		}
	}
}

// TestEnqueueManyRefusesAnIDTwice: one id twice in a batch (one ready, one
// deferred) would leave it in two sets over one stored value; the batch is
// refused whole.
func TestEnqueueManyRefusesAnIDTwice(t *testing.T) {
	e := setup(t)
	m := newMsg(t, "brokertest.twice", "q", 0, 1)
	twin := *m
	twin.RunAfter = time.Now().Add(time.Hour)
	err := e.b.EnqueueMany(e.ctx, []*task.Message{m, &twin})
	if !errors.Is(err, task.ErrInvalidTask) {
		t.Fatalf("EnqueueMany with an id twice: %v, want ErrInvalidTask", err)
	}
	if c := e.count("q"); c != (broker.Counts{}) {
		t.Errorf("something was stored: %+v", c)
	}
}

// TestStoreFinishesInOneCall: the finishes of one queue share a script
// call (more than one when there are more than 128). Each is still fenced
// on its own: of two attempts of one id only the one holding the lease is
// written, an outcome given twice is written once, and the totals, the
// failed index and the unique keys come out as if each were alone.
func TestStoreFinishesInOneCall(t *testing.T) {
	e := setup(t, broker.Options{ResultTTL: time.Hour, FailedTTL: time.Hour})
	e.m.SetTime(base)
	e.useRedis()
	const n = 300
	var msgs []*task.Message
	for i := range n {
		msgs = append(msgs, newMsg(t, "brokertest.many", "q", 0, i))
	}
	e.enqueue(msgs...)
	u, err := uniqTask.Using(task.Queue("q")).Enqueue(e.ctx, uniqArgs{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	var rs []*task.RawResult
	for _, c := range e.claim([]string{"q"}, n+1, time.Minute, "w") {
		rs = append(rs, c.Result)
	}
	if len(rs) != n+1 {
		t.Fatalf("claimed %d, want %d", len(rs), n+1)
	}
	for i, r := range rs {
		if i%3 == 0 {
			task.Fail(r, errors.New("boom"))
		} else {
			r.Status, r.Value = task.StatusComplete, []byte{0x2a}
		}
	}
	// An earlier attempt of rs[5] (its lease was lost) first, and rs[6]
	// twice in a row (in the same script call).
	old := *rs[5]
	old.Attempts--
	twice := *rs[6]
	batch := append([]*task.RawResult{&old}, rs[:7]...)
	batch = append(batch, &twice)
	batch = append(batch, rs[7:]...)

	errs := e.b.Store(e.ctx, batch...)
	if !errors.Is(errs[0], broker.ErrLeaseLost) || !errors.Is(errs[8], broker.ErrLeaseLost) {
		t.Errorf("stale attempt: %v; outcome given twice: %v; want ErrLeaseLost for both", errs[0], errs[8])
	}
	errs = append(errs[1:8], errs[9:]...)
	failed := 0
	for i, r := range rs {
		if errs[i] != nil {
			t.Fatalf("Store %s: %v", r.ID, errs[i])
		}
		g := e.get(r.ID)
		if g.Status != r.Status || !g.FinishedAt.Equal(base) || !r.FinishedAt.Equal(base) {
			t.Fatalf("%s: stored %s finished %v (%v), want %s at %v", r.ID, g.Status, g.FinishedAt, r.FinishedAt, r.Status, base)
		}
		if r.Status == task.StatusFailed {
			failed++
		}
		if ttl := e.m.TTL("{gotasks:q}:r:" + r.ID); ttl != time.Hour {
			t.Fatalf("%s: result TTL %v, want 1h", r.ID, ttl)
		}
	}
	s, err := e.b.StatsOf(e.ctx, "q")
	if err != nil || s.Running != 0 || s.Pending != 0 || s.Failed != int64(failed) ||
		s.FailedTotal != int64(failed) || s.Completed != int64(n+1-failed) {
		t.Errorf("StatsOf = %+v, %v; want nothing left, %d failed, %d complete", s, err, failed, n+1-failed)
	}
	if got, _ := e.m.HKeys("{gotasks:q}:tasks"); len(got) != 0 {
		t.Errorf("%d tasks left in the tasks hash", len(got))
	}
	if e.m.Exists("{gotasks:q}:unique") {
		t.Error("the unique task's entry was not released")
	}
	// Its key is free again.
	if _, err := uniqTask.Using(task.Queue("q")).Enqueue(e.ctx, uniqArgs{N: 1}); err != nil {
		t.Errorf("enqueue again after %s finished: %v", u.ID, err)
	}
}

// TestStoreBatchWithUnreadableValue: a running task whose stored value
// has lost its header (written by something else) is refused in a batch
// without failing the script: Redis keeps what a failed script wrote, so
// the tasks before it in the batch would be half-finished.
func TestStoreBatchWithUnreadableValue(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	var msgs []*task.Message
	for i := range 4 {
		msgs = append(msgs, newMsg(t, "brokertest.garbage", "q", 0, i))
	}
	e.enqueue(msgs...)
	var rs []*task.RawResult
	for _, c := range e.claim([]string{"q"}, 4, time.Minute, "w") {
		c.Result.Status = task.StatusComplete
		rs = append(rs, c.Result)
	}
	e.m.HSet("{gotasks:q}:tasks", rs[1].ID, "no header")
	// And a result key that holds a string.
	if err := e.m.Set("{gotasks:q}:r:"+rs[3].ID, "junk"); err != nil {
		t.Fatal(err)
	}
	errs := e.b.Store(e.ctx, rs...)
	if errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], broker.ErrLeaseLost) ||
		errs[3] == nil || !strings.Contains(errs[3].Error(), "another type") {
		t.Fatalf("Store = %v; want nil, ErrLeaseLost, nil, a key of another type", errs)
	}
	for _, r := range []*task.RawResult{rs[0], rs[2]} {
		if g := e.get(r.ID); g.Status != task.StatusComplete {
			t.Errorf("%s: %s, want COMPLETE", r.ID, g.Status)
		}
	}
	if c := e.count("q"); c != (broker.Counts{Running: 2}) {
		t.Errorf("Count = %+v; want the two refused ones still running", c)
	}
}

// FAILED results are kept for FailedTTL (the dead-letter set), the others
// for ResultTTL, in the same Store; the failed index expires with them.
func TestFailedResultsAreKeptForFailedTTL(t *testing.T) {
	e := setup(t, broker.Options{ResultTTL: time.Hour, FailedTTL: 48 * time.Hour})
	e.m.SetTime(base)
	ok, bad := newMsg(t, "brokertest.dlq", "q", 0, 1), newMsg(t, "brokertest.dlq", "q", 0, 2)
	e.enqueue(ok, bad)
	got := e.claim([]string{"q"}, 2, time.Minute, "w")
	for _, c := range got {
		c.Result.Status = task.StatusComplete
		if c.Result.ID == bad.ID {
			c.Result.Status, c.Result.Err = task.StatusFailed, &task.Error{Message: "boom"}
		}
	}
	for _, err := range e.b.Store(e.ctx, got[0].Result, got[1].Result) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if ttl := e.m.TTL("{gotasks:q}:r:" + ok.ID); ttl != time.Hour {
		t.Errorf("COMPLETE kept %v, want ResultTTL 1h", ttl)
	}
	if ttl := e.m.TTL("{gotasks:q}:r:" + bad.ID); ttl != 48*time.Hour {
		t.Errorf("FAILED kept %v, want FailedTTL 48h", ttl)
	}
	e.m.SetTime(base.Add(2 * time.Hour))
	if s, _ := e.b.StatsOf(e.ctx, "q"); s.Failed != 1 {
		t.Errorf("after the result TTL the failed count is %d, want 1 (kept 48h)", s.Failed)
	}
	e.m.SetTime(base.Add(49 * time.Hour))
	if s, _ := e.b.StatsOf(e.ctx, "q"); s.Failed != 0 {
		t.Errorf("after FailedTTL the failed count is %d, want 0", s.Failed)
	}
}

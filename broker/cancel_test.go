package broker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/internal/redistest"
	"github.com/gotasks/gotasks/task"
)

// The cancel of a running task, on a real redis-server: asked for in
// T:cancel, told on T:cancels, ended by the finish (any outcome), refused
// as a retry, and honoured by the reaper once the holder's lease expired.

// onRedis is setup on a real redis-server (pub/sub as Redis does it).
func onRedis(t *testing.T, o broker.Options) *env {
	t.Helper()
	s := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: s.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return &env{t: t, b: broker.New(rdb, o), ctx: context.Background()}
}

// nextCancel reads the next event of sub, which must be a cancel asked.
func nextCancel(t *testing.T, sub *broker.Subscription) broker.Event {
	t.Helper()
	select {
	case ev := <-sub.Events():
		if ev.Kind != broker.EventCancelRequested {
			t.Fatalf("event %+v, want %s", ev, broker.EventCancelRequested)
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no cancel event within 5s")
	}
	return broker.Event{}
}

func TestCancelRunningIsAskedAndTold(t *testing.T) {
	// Cancels are told even with events off: a worker needs them.
	e := onRedis(t, broker.Options{Events: broker.EventsOff})
	sub, err := e.b.SubscribeCancels(e.ctx, []string{"q"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	a, b := newMsg(t, "brokertest.cancel", "q", 0, 1), newMsg(t, "brokertest.cancel", "q", 0, 2)
	e.enqueue(a, b)
	ra := e.claim1("q", "w", time.Minute)
	rb := e.claim1("q", "w", time.Minute)

	got, err := e.b.Cancel(e.ctx, ra.ID)
	if err != nil || got.Status != task.StatusRunning || !got.CancelRequested || got.ID != ra.ID {
		t.Fatalf("Cancel of a running task = %+v, %v; want RUNNING, CancelRequested", got, err)
	}
	if ev := nextCancel(t, sub); ev.ID != ra.ID || ev.Attempt != 1 || ev.Queue != "q" || ev.Task != "brokertest.cancel" {
		t.Errorf("cancel event %+v", ev)
	}
	// Asked twice: told once (the next message is b's).
	if got, err := e.b.Cancel(e.ctx, ra.ID); err != nil || !got.CancelRequested {
		t.Fatalf("second Cancel = %+v, %v", got, err)
	}
	if _, err := e.b.Cancel(e.ctx, rb.ID); err != nil {
		t.Fatal(err)
	}
	if ev := nextCancel(t, sub); ev.ID != rb.ID {
		t.Errorf("after a second cancel of %s, the next message is of %s; want %s (told once)", ra.ID, ev.ID, rb.ID)
	}
	if r := e.get(ra.ID); r.Status != task.StatusRunning || !r.CancelRequested {
		t.Errorf("GetResult: %s, cancel requested %v", r.Status, r.CancelRequested)
	}
	asked, err := e.b.CancelsAsked(e.ctx, "q", []string{ra.ID, task.NewID()})
	if err != nil || len(asked) != 2 || !asked[0] || asked[1] {
		t.Errorf("CancelsAsked = %v, %v; want [true false]", asked, err)
	}
	lost, cancels, err := e.b.RenewWatch(e.ctx, "q", []*task.RawResult{ra, rb}, time.Minute)
	if err != nil || len(lost) != 0 || len(cancels) != 2 {
		t.Errorf("RenewWatch = lost %d, cancels %d, %v; want 0, 2", len(lost), len(cancels), err)
	}
}

func TestCancelAskedEndsWithTheWorkersOutcome(t *testing.T) {
	e := onRedis(t, broker.Options{})
	c, d := newMsg(t, "brokertest.cancel", "q", 0, 1), newMsg(t, "brokertest.cancel", "q", 0, 2)
	e.enqueue(c, d)
	rc := e.claim1("q", "w", time.Minute)
	rd := e.claim1("q", "w", time.Minute)
	for _, r := range []*task.RawResult{rc, rd} {
		if _, err := e.b.Cancel(e.ctx, r.ID); err != nil {
			t.Fatal(err)
		}
	}
	// c returned its context's error: CANCELLED. d completed anyway: its
	// outcome stands.
	rc.Status = task.StatusCancelled
	rd.Status = task.StatusComplete
	if errs := e.b.Store(e.ctx, rc, rd); errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	if r := e.get(rc.ID); r.Status != task.StatusCancelled || r.CancelRequested || r.FinishedAt.IsZero() {
		t.Errorf("cancelled task: %s, cancel requested %v", r.Status, r.CancelRequested)
	}
	if r := e.get(rd.ID); r.Status != task.StatusComplete {
		t.Errorf("completed task: %s", r.Status)
	}
	if asked, err := e.b.CancelsAsked(e.ctx, "q", []string{rc.ID, rd.ID}); err != nil || asked[0] || asked[1] {
		t.Errorf("CancelsAsked after the finish = %v, %v; want none left", asked, err)
	}
	st, err := e.b.QueueStats(e.ctx)
	if err != nil || len(st) != 1 || st[0].Cancelled != 1 || st[0].Completed != 1 {
		t.Errorf("queue stats %+v, %v; want 1 cancelled, 1 completed", st, err)
	}
	// A later Cancel is told what it ended as.
	_, err = e.b.Cancel(e.ctx, rc.ID)
	wantNotCancellable(t, err, task.StatusCancelled)
}

func TestRetryRefusedOnceCancelAsked(t *testing.T) {
	e := onRedis(t, broker.Options{})
	m := newMsg(t, "brokertest.cancel", "q", 0, 1)
	m.Limits.MaxAttempts = 3
	e.enqueue(m)
	r := e.claim1("q", "w", time.Minute)
	if _, err := e.b.Cancel(e.ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	task.Fail(r, errors.New("boom"))
	if r.Status != task.StatusNew {
		t.Fatalf("Fail left %s, want a retry (NEW)", r.Status)
	}
	if err := e.b.Store(e.ctx, r)[0]; !errors.Is(err, broker.ErrCancelAsked) {
		t.Fatalf("Store of a retry after a cancel = %v, want ErrCancelAsked", err)
	}
	if g := e.get(r.ID); g.Status != task.StatusRunning || len(g.Errors) != 0 {
		t.Errorf("after the refused retry: %s with %d errors; want RUNNING, nothing written", g.Status, len(g.Errors))
	}
	r.Status = task.StatusFailed
	e.store(r)
	if g := e.get(r.ID); g.Status != task.StatusFailed {
		t.Errorf("stored as FAILED: %s", g.Status)
	}
}

// waitReaped reaps q until n tasks were handled, for up to 5s.
func (e *env) waitReaped(q string, n int) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	got := 0
	for got < n {
		k, _, err := e.b.Reap(e.ctx, q, 100)
		if err != nil {
			e.t.Fatal(err)
		}
		got += k
		if time.Now().After(deadline) {
			e.t.Fatalf("reaped %d of %d tasks in 5s", got, n)
		}
		if got < n {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func TestReaperCancelsWhatADeadWorkerHeld(t *testing.T) {
	e := onRedis(t, broker.Options{})
	dead, live := newMsg(t, "brokertest.cancel", "q", 0, 1), newMsg(t, "brokertest.cancel", "q", 0, 2)
	e.enqueue(dead, live)
	rd := e.claim1("q", "w", 20*time.Millisecond)
	e.claim1("q", "w", 20*time.Millisecond)
	if _, err := e.b.Cancel(e.ctx, rd.ID); err != nil {
		t.Fatal(err)
	}
	// Both leases expire: the cancelled one ends CANCELLED, the other
	// runs again.
	e.waitReaped("q", 2)
	if r := e.get(rd.ID); r.Status != task.StatusCancelled {
		t.Errorf("cancelled task whose worker died: %s, want CANCELLED", r.Status)
	}
	if r := e.get(live.ID); r.Status != task.StatusNew {
		t.Errorf("other task: %s, want NEW (back in its queue)", r.Status)
	}
	got := e.claim([]string{"q"}, 10, time.Minute, "w2")
	if len(got) != 1 || got[0].Result.ID != live.ID {
		t.Errorf("claimed %v after the reap, want only %s", ids(got), live.ID)
	}
	// The holder's late finish is refused.
	rd.Status = task.StatusComplete
	if err := e.b.Store(e.ctx, rd)[0]; !errors.Is(err, broker.ErrLeaseLost) {
		t.Errorf("finish by the dead holder = %v, want ErrLeaseLost", err)
	}
	if n, next, err := e.b.Reap(e.ctx, "q", 100); err != nil || n != 0 || next.IsZero() {
		t.Errorf("second reap = %d, next %v, %v; want 0 and w2's lease", n, next, err)
	}
}

func TestHandBackOfCancelAskedLeavesItToTheReaper(t *testing.T) {
	e := onRedis(t, broker.Options{})
	m := newMsg(t, "brokertest.cancel", "q", 0, 1)
	e.enqueue(m)
	r := e.claim1("q", "w", time.Hour)
	if _, err := e.b.Cancel(e.ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := e.b.Requeue(e.ctx, "q", []*task.RawResult{r}); err != nil || n != 0 {
		t.Fatalf("Requeue = %d, %v; want 0 (not handed back)", n, err)
	}
	if c := e.count("q"); c.Pending != 0 {
		t.Errorf("%d pending after the hand-back, want 0", c.Pending)
	}
	// Its lease ended with the hand-back.
	e.waitReaped("q", 1)
	if g := e.get(r.ID); g.Status != task.StatusCancelled {
		t.Errorf("handed back after its cancel was asked: %s, want CANCELLED", g.Status)
	}
}

func TestCancelOfRunningSentTwiceAcrossItsEnd(t *testing.T) {
	hook := &twice{}
	b, _ := onRealRedis(t, hook)
	e := &env{t: t, b: b, ctx: context.Background()}
	m := newMsg(t, "brokertest.twice", "q", 0, 1)
	e.enqueue(m)
	r := e.claim1("q", "w", time.Minute)
	// Loaded first: a NOSCRIPT reply is no run at all.
	if _, err := b.CancelIn(e.ctx, "q", task.NewID()); !errors.Is(err, task.ErrResultNotFound) {
		t.Fatal(err)
	}
	// The first run asks for the cancel; before the re-sent one arrives
	// the worker stores CANCELLED. The caller is told the task is
	// CANCELLED, as Redis holds, not that it cannot be cancelled.
	hook.match = scriptWithKey(":cancels", nil)
	hook.gap = func() {
		hook.match = nil
		r.Status = task.StatusCancelled
		if err := b.Store(e.ctx, r)[0]; err != nil {
			t.Errorf("store CANCELLED: %v", err)
		}
	}
	got, err := b.CancelIn(e.ctx, "q", m.ID)
	if hook.hits != 1 {
		t.Fatalf("%d cancel calls sent twice, want 1", hook.hits)
	}
	if err != nil || got.Status != task.StatusCancelled {
		t.Fatalf("Cancel re-sent after the task ended = %+v, %v; want CANCELLED", got, err)
	}
}

package broker_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
)

// The ready tasks of a queue are in two keys (scripts.go): T:ready, a list
// of the tasks at priority 0, and T:pending, a sorted set of the others.
// These tests check what that split must not change: the claim order,
// original places on return, counts, pages and removal.

func TestReadyListLayout(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	a := newMsg(t, "brokertest.l", "q", 0, "a")
	e.enqueue(a) // the lone-task path of the enqueue script
	hi, b, lo, c := newMsg(t, "brokertest.l", "q", 5, "hi"), newMsg(t, "brokertest.l", "q", 0, "b"),
		newMsg(t, "brokertest.l", "q", -5, "lo"), newMsg(t, "brokertest.l", "q", 0, "c")
	e.enqueue(hi, b, lo, c) // the batch path

	if got := e.ready("q"); !slices.Equal(got, []string{a.ID, b.ID, c.ID}) {
		t.Errorf("ready = %v, want a b c", got)
	}
	got := e.zmembers("{gotasks:q}:pending")
	slices.Sort(got)
	want := []string{hi.ID, lo.ID}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("pending set = %v, want hi and lo", got)
	}
	if c := e.count("q"); c != (broker.Counts{Pending: 5}) {
		t.Errorf("Count = %+v, want 5 pending", c)
	}
	if s, err := e.b.StatsOf(e.ctx, "q"); err != nil || s.Pending != 5 {
		t.Errorf("StatsOf = %+v, %v; want 5 pending", s, err)
	}
	order := ids(e.claim([]string{"q"}, 2, time.Minute, "w"))
	order = append(order, ids(e.claim([]string{"q"}, 10, time.Minute, "w"))...)
	if want := []string{hi.ID, a.ID, b.ID, c.ID, lo.ID}; !slices.Equal(order, want) {
		t.Errorf("claim order = %v, want hi a b c lo", order)
	}
	if e.m.Exists("{gotasks:q}:ready") || e.m.Exists("{gotasks:q}:pending") {
		t.Errorf("ready keys left after claiming all: %v", e.m.Keys())
	}
}

// TestReturnedTasksKeepTheirPlace: tasks handed back by a graceful
// shutdown (Requeue) or after a lost lease (Reap), in any order and in
// several steps, go back into the list at their original places.
func TestReturnedTasksKeepTheirPlace(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	var msgs []*task.Message
	for i := range 6 {
		msgs = append(msgs, newMsg(t, "brokertest.back", "q", 0, i))
	}
	e.enqueue(msgs...)
	m := msgIDs(msgs)
	r0 := e.claim1("q", "w1", time.Second)
	r1 := e.claim1("q", "w1", time.Minute)
	r2 := e.claim1("q", "w2", time.Second)
	r3 := e.claim1("q", "w2", time.Minute)

	if n, err := e.b.Requeue(e.ctx, "q", []*task.RawResult{r3}); err != nil || n != 1 {
		t.Fatalf("Requeue(3) = %d, %v", n, err)
	}
	if got := e.ready("q"); !slices.Equal(got, []string{m[3], m[4], m[5]}) {
		t.Fatalf("after requeue of 3: %v", got)
	}
	// 0 and 2 expire and are reaped in one step; 1 is handed back last.
	e.m.SetTime(base.Add(2 * time.Second))
	if n, _, err := e.b.Reap(e.ctx, "q", 100); err != nil || n != 2 {
		t.Fatalf("Reap = %d, %v; want 2", n, err)
	}
	if got := e.ready("q"); !slices.Equal(got, []string{m[0], m[2], m[3], m[4], m[5]}) {
		t.Fatalf("after reap of 0 and 2: %v", got)
	}
	if n, err := e.b.Requeue(e.ctx, "q", []*task.RawResult{r1}); err != nil || n != 1 {
		t.Fatalf("Requeue(1) = %d, %v", n, err)
	}
	if got := e.ready("q"); !slices.Equal(got, m) {
		t.Fatalf("after requeue of 1: %v, want the enqueue order", got)
	}
	_, _ = r0, r2

	// A batch handed back in reverse order, with a newer task behind it.
	late := newMsg(t, "brokertest.back", "q", 0, "late")
	claimed := e.claim([]string{"q"}, 4, time.Minute, "w3")
	e.enqueue(late)
	var back []*task.RawResult
	for _, c := range slices.Backward(claimed) {
		back = append(back, c.Result)
	}
	if n, err := e.b.Requeue(e.ctx, "q", back); err != nil || n != 4 {
		t.Fatalf("Requeue(4) = %d, %v", n, err)
	}
	if got, want := e.ready("q"), append(slices.Clone(m), late.ID); !slices.Equal(got, want) {
		t.Errorf("after requeue of a reversed batch: %v, want %v", got, want)
	}
	if got, want := ids(e.claim([]string{"q"}, 100, time.Minute, "w4")), append(slices.Clone(m), late.ID); !slices.Equal(got, want) {
		t.Errorf("claim order = %v, want %v", got, want)
	}
}

// TestPriorityZeroInPendingSet: a task at priority 0 in the sorted set, as
// versions before T:ready stored it, is still claimed (before the list,
// being older), counted, listed and cancellable.
func TestPriorityZeroInPendingSet(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	old, old2 := newMsg(t, "brokertest.old", "q", 0, "old"), newMsg(t, "brokertest.old", "q", 0, "old2")
	e.enqueue(old, old2)
	c := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: e.m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	// Move both to the old layout: score (100-0)·2^45 + seq.
	for _, id := range []string{old.ID, old2.ID} {
		v := c.HGet(e.ctx, "{gotasks:q}:tasks", id).Val()
		seq, err := strconv.ParseInt(strings.Fields(v)[2], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		c.LRem(e.ctx, "{gotasks:q}:ready", 1, id)
		c.ZAdd(e.ctx, "{gotasks:q}:pending", redis.Z{Score: float64(100<<45 + seq), Member: id})
	}
	e.m.SetTime(base.Add(time.Second))
	hi, now := newMsg(t, "brokertest.old", "q", 1, "hi"), newMsg(t, "brokertest.old", "q", 0, "now")
	e.enqueue(hi, now)

	if c := e.count("q"); c.Pending != 4 {
		t.Errorf("Count = %+v, want 4 pending", c)
	}
	s, err := e.b.StatsOf(e.ctx, "q")
	if err != nil || s.Pending != 4 || s.OldestAge != time.Second || s.NextAge != 0 {
		t.Errorf("StatsOf = %+v, %v; want 4 pending, the oldest 1s, the next (hi) 0s", s, err)
	}
	want := []string{hi.ID, old.ID, old2.ID, now.ID}
	if got := listIDs(t, e, 0, 10); !slices.Equal(got, want) {
		t.Errorf("ListTasks = %v, want hi old old2 now", got)
	}
	if _, err := e.b.CancelIn(e.ctx, "q", old2.ID); err != nil {
		t.Fatal(err)
	}
	if got := ids(e.claim([]string{"q"}, 10, time.Minute, "w")); !slices.Equal(got, []string{hi.ID, old.ID, now.ID}) {
		t.Errorf("claim order = %v, want hi old now", got)
	}
}

func listIDs(t *testing.T, e *env, offset, limit int) []string {
	t.Helper()
	rs, err := e.b.ListTasks(e.ctx, "q", broker.StatePending, offset, limit)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// TestPendingPagesInClaimOrder: ListTasks pages through both keys, in the
// order a worker claims, at every offset and page size.
func TestPendingPagesInClaimOrder(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	var msgs []*task.Message
	for i, p := range []int{0, 3, 0, -2, 1, 0, -2, 3, 0, -1, 0} {
		msgs = append(msgs, newMsg(t, "brokertest.page", "q", p, i))
	}
	e.enqueue(msgs...)
	want := slices.Clone(msgs)
	slices.SortStableFunc(want, func(a, b *task.Message) int { return b.Priority - a.Priority })
	for limit := 1; limit <= 4; limit++ {
		var got []string
		for off := 0; off < len(msgs)+limit; off += limit {
			got = append(got, listIDs(t, e, off, limit)...)
		}
		if !slices.Equal(got, msgIDs(want)) {
			t.Errorf("pages of %d = %v, want %v", limit, got, msgIDs(want))
		}
	}
	if got := ids(e.claim([]string{"q"}, 100, time.Minute, "w")); !slices.Equal(got, msgIDs(want)) {
		t.Errorf("claim order = %v, want the listed order", got)
	}
}

func TestCancelAndPurgeReady(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	a, b, c, hi := newMsg(t, "brokertest.cp", "q", 0, "a"), newMsg(t, "brokertest.cp", "q", 0, "b"),
		newMsg(t, "brokertest.cp", "q", 0, "c"), newMsg(t, "brokertest.cp", "q", 2, "hi")
	e.enqueue(a, b, c, hi)
	if _, err := e.b.CancelIn(e.ctx, "q", b.ID); err != nil {
		t.Fatal(err)
	}
	if got := e.ready("q"); !slices.Equal(got, []string{a.ID, c.ID}) {
		t.Errorf("ready after cancelling b = %v, want a c", got)
	}
	if got := e.get(b.ID); got.Status != task.StatusCancelled {
		t.Errorf("b is %s, want CANCELLED", got.Status)
	}
	later := newMsg(t, "brokertest.cp", "q", 0, "later")
	later.RunAfter = base.Add(time.Hour)
	e.enqueue(later)
	n, err := e.b.Purge(e.ctx, "q")
	if err != nil || n != 4 {
		t.Fatalf("Purge = %d, %v; want 4 (a, c, hi and the deferred one)", n, err)
	}
	if c := e.count("q"); c != (broker.Counts{}) {
		t.Errorf("Count after purge = %+v", c)
	}
	if got, _ := e.m.HKeys("{gotasks:q}:tasks"); len(got) != 0 {
		t.Errorf("tasks left after purge: %v", got)
	}
}

// TestUnclaim: a task claimed and never started goes back to its place
// with its delivery undone (worker, start time), after an earlier attempt
// as well; the attempt number (the claim's fencing token) is never given
// back; a claim the caller no longer holds is left alone.
func TestUnclaim(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	a, b := newMsg(t, "brokertest.unclaim", "q", 0, "a"), newMsg(t, "brokertest.unclaim", "q", 0, "b")
	e.enqueue(a, b)
	ra := e.claim1("q", "w1", time.Minute)
	if n, err := e.b.Unclaim(e.ctx, "q", []*task.RawResult{ra}); err != nil || n != 1 {
		t.Fatalf("Unclaim = %d, %v", n, err)
	}
	if g := e.get(a.ID); g.Status != task.StatusNew || g.Attempts != 1 || !slices.Equal(g.WorkerIDs, []string{task.UndeliveredWorker}) || !g.StartedAt.IsZero() {
		t.Errorf("after Unclaim: %s, %d attempts, workers %v, started %v; want NEW, 1 (kept), undelivered, not started", g.Status, g.Attempts, g.WorkerIDs, g.StartedAt)
	}
	// A second attempt claimed and undone leaves the first one's record.
	ra = e.claim1("q", "w1", time.Minute)
	if _, err := e.b.Requeue(e.ctx, "q", []*task.RawResult{ra}); err != nil {
		t.Fatal(err)
	}
	ra = e.claim1("q", "w2", time.Minute)
	if ra.ID != a.ID {
		t.Fatalf("claimed %s, want a back at the head", ra.ID)
	}
	if n, err := e.b.Unclaim(e.ctx, "q", []*task.RawResult{ra}); err != nil || n != 1 {
		t.Fatalf("Unclaim = %d, %v", n, err)
	}
	if g := e.get(a.ID); g.Attempts != 3 || !slices.Equal(g.WorkerIDs, []string{"-", "w1", "-"}) {
		t.Errorf("after undoing attempt 3: %d attempts, workers %v; want 3, [- w1 -]", g.Attempts, g.WorkerIDs)
	}
	if n, err := e.b.Unclaim(e.ctx, "q", []*task.RawResult{ra}); err != nil || n != 0 {
		t.Errorf("Unclaim of a claim no longer held = %d, %v; want 0", n, err)
	}
	if got := ids(e.claim([]string{"q"}, 10, time.Minute, "w3")); !slices.Equal(got, []string{a.ID, b.ID}) {
		t.Errorf("claim order = %v, want a b", got)
	}
}

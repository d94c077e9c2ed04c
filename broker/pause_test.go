package broker_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
)

// A paused queue gives no task to any claim (of one queue, of several, or
// made along with outcomes), still takes enqueues, and shows its state;
// Resume wakes an idle worker and claims take its tasks again, in order.
func TestAPausedQueueGivesNoTaskUntilItIsResumed(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	before := newMsg(t, "brokertest.pause", "q", 0, 1)
	e.enqueue(before)
	e.enqueue(newMsg(t, "brokertest.pause", "other", 0, 2))

	since, changed, err := e.b.Pause(e.ctx, "q")
	if err != nil || !changed || !since.Equal(base.Truncate(time.Millisecond)) {
		t.Fatalf("Pause = %v, %v, %v; want the miniredis clock %v, true, nil", since, changed, err, base)
	}
	// Pausing again (a script sent twice, two operators) keeps the first
	// time and says it changed nothing.
	e.m.SetTime(base.Add(time.Minute))
	if again, changed, err := e.b.Pause(e.ctx, "q"); err != nil || changed || !again.Equal(since) {
		t.Fatalf("Pause again = %v, %v, %v; want %v, false, nil", again, changed, err, since)
	}

	// Enqueue still works; the tasks wait.
	after := newMsg(t, "brokertest.pause", "q", 5, 3)
	e.enqueue(after)
	e.m.Del("{gotasks:q}:wake") // as if an idle worker had taken the token
	if got := e.claim([]string{"q"}, 10, time.Minute, "w"); len(got) != 0 {
		t.Fatalf("claimed %d tasks of a paused queue", len(got))
	}
	if e.m.Exists("{gotasks:q}:wake") {
		t.Error("an empty claim of a paused queue left a wake token: idle workers would spin")
	}
	// Several queues: the planner skips the paused one.
	if got := ids(e.claim([]string{"q", "other"}, 10, time.Minute, "w")); len(got) != 1 {
		t.Fatalf("claim of q and other = %v; want other's task alone", got)
	}
	// Claims made along with outcomes take nothing either.
	if errs, got, err := e.b.StoreAndClaim(e.ctx, nil, "q", 5, time.Minute, "w2"); err != nil || len(got) != 0 || len(errs) != 0 {
		t.Fatalf("StoreAndClaim of a paused queue = %v, %d tasks, %v", errs, len(got), err)
	}

	c := e.count("q")
	if !c.Paused || c.Pending != 2 {
		t.Errorf("Count = %+v; want paused with 2 pending", c)
	}
	s, err := e.b.StatsOf(e.ctx, "q")
	if err != nil || !s.Paused() || !s.PausedSince.Equal(since) || s.Pending != 2 {
		t.Errorf("StatsOf = %+v, %v; want paused since %v, 2 pending", s, err, since)
	}
	if p, err := e.b.PausedSince(e.ctx, "q"); err != nil || !p.Equal(since) {
		t.Errorf("PausedSince = %v, %v; want %v", p, err, since)
	}
	if s, _ := e.b.StatsOf(e.ctx, "other"); s.Paused() {
		t.Error("the other queue reads as paused")
	}

	ok, err := e.b.Resume(e.ctx, "q")
	if err != nil || !ok {
		t.Fatalf("Resume = %v, %v; want true", ok, err)
	}
	if !e.m.Exists("{gotasks:q}:wake") {
		t.Error("Resume left no wake token: idle workers would wait for the next enqueue or poll")
	}
	if ok, err := e.b.Resume(e.ctx, "q"); err != nil || ok {
		t.Errorf("Resume again = %v, %v; want false (not paused)", ok, err)
	}
	if got := ids(e.claim([]string{"q"}, 10, time.Minute, "w")); !slices.Equal(got, []string{after.ID, before.ID}) {
		t.Errorf("claimed after Resume %v; want %v (priority first)", got, []string{after.ID, before.ID})
	}
	if c := e.count("q"); c.Paused {
		t.Error("Count still says paused")
	}
}

// A claim sent again after the queue was paused in between (its reply
// lost) still delivers the tasks its first run took: they were claimed
// before the pause. Pause and Resume sent twice report what they did.
func TestPauseResumeAndAClaimAcrossThemAreSafeToSendTwice(t *testing.T) {
	hook := &twice{}
	b, direct := onRealRedis(t, hook)
	ctx := t.Context()
	msgs := []*task.Message{newMsg(t, "brokertest.pause", "q", 0, 1), newMsg(t, "brokertest.pause", "q", 0, 2)}
	if err := b.EnqueueMany(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	// Load the claim script first, so that the run sent twice is the
	// one that claims (not a NOSCRIPT and its EVAL); the same for
	// Pause and Resume.
	if _, err := b.Claim(ctx, []string{"warm"}, 1, time.Minute, "w1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Pause(ctx, "warm"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Resume(ctx, "warm"); err != nil {
		t.Fatal(err)
	}
	hook.match = scriptWithKey(":claim:w1:c", nil)
	hook.gap = func() { direct.Set(ctx, "{gotasks:q}:paused", "1", 0) }
	got, err := b.Claim(ctx, []string{"q"}, 1, time.Minute, "w1")
	if err != nil || len(got) != 1 || hook.hits != 1 || got[0].Result.ID != msgs[0].ID {
		t.Fatalf("Claim sent again after a pause = %d tasks, %v (%d re-sent); want the first task", len(got), err, hook.hits)
	}
	if n := direct.ZCard(ctx, "{gotasks:q}:running").Val(); n != 1 {
		t.Errorf("%d running; want the 1 claimed before the pause", n)
	}
	direct.Del(ctx, "{gotasks:q}:paused")

	hook.gap = nil
	hook.match = scriptWithKey(":paused", nil)
	// The first run pauses it; the run whose reply counts finds it paused
	// (changed false): the caller asked for that state and has it.
	if _, _, err := b.Pause(ctx, "q"); err != nil {
		t.Fatalf("Pause sent twice = %v", err)
	}
	if direct.Exists(ctx, "{gotasks:q}:paused").Val() != 1 {
		t.Fatal("Pause sent twice left the queue unpaused")
	}
	if _, err := b.Resume(ctx, "q"); err != nil {
		t.Fatalf("Resume sent twice = %v", err)
	}
	if direct.Exists(ctx, "{gotasks:q}:paused").Val() != 0 {
		t.Fatal("Resume sent twice left the queue paused")
	}
	if hook.hits != 3 {
		t.Errorf("%d calls sent twice, want 3", hook.hits)
	}
	hook.match = nil
	if next, err := b.Claim(ctx, []string{"q"}, 10, time.Minute, "w1"); err != nil || len(next) != 1 || next[0].Result.ID != msgs[1].ID {
		t.Errorf("Claim after Resume = %d tasks, %v; want the second task", len(next), err)
	}
}

func TestPauseRefusesABadQueueName(t *testing.T) {
	e := setup(t)
	for _, q := range []string{"", "a b", string(make([]byte, 101))} {
		if _, _, err := e.b.Pause(e.ctx, q); !errors.Is(err, task.ErrInvalidTask) {
			t.Errorf("Pause(%q) = %v; want ErrInvalidTask", q, err)
		}
		if _, err := e.b.Resume(e.ctx, q); !errors.Is(err, task.ErrInvalidTask) {
			t.Errorf("Resume(%q) = %v; want ErrInvalidTask", q, err)
		}
	}
}

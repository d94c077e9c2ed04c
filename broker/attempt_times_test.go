package broker_test

import (
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
)

// A task keeps when its first attempt started (StartedAt) beside when its
// latest one did (LastAttemptedAt), while it runs again, once finished,
// and when cancelled between attempts (django-tasks' started_at and
// last_attempted_at).
func TestFirstStartAndLastAttemptAreBothKept(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	m := newMsg(t, "brokertest.times", "q", 0, 1)
	e.enqueue(m)
	r := e.claim1("q", "w1", time.Minute)
	if !r.StartedAt.Equal(base) || !r.LastAttemptedAt.Equal(base) {
		t.Fatalf("first claim: started %v, last attempt %v; want both %v", r.StartedAt, r.LastAttemptedAt, base)
	}
	r.Status, r.Err = task.StatusNew, &task.Error{Message: "again"}
	r.Errors = []*task.Error{r.Err}
	if err := e.b.Retry(e.ctx, r); err != nil {
		t.Fatal(err)
	}
	later := base.Add(time.Minute)
	e.m.SetTime(later)
	r = e.claim1("q", "w2", time.Minute)
	if !r.StartedAt.Equal(base) || !r.LastAttemptedAt.Equal(later) {
		t.Fatalf("second claim: started %v, last attempt %v; want %v, %v", r.StartedAt, r.LastAttemptedAt, base, later)
	}
	if g := e.get(m.ID); !g.StartedAt.Equal(base) || !g.LastAttemptedAt.Equal(later) || g.Status != task.StatusRunning {
		t.Errorf("running: %s, started %v, last attempt %v; want %v, %v", g.Status, g.StartedAt, g.LastAttemptedAt, base, later)
	}
	r.Status = task.StatusComplete
	if err := e.b.Finish(e.ctx, r); err != nil {
		t.Fatal(err)
	}
	if g := e.get(m.ID); !g.StartedAt.Equal(base) || !g.LastAttemptedAt.Equal(later) || g.Status != task.StatusComplete {
		t.Errorf("finished: %s, started %v, last attempt %v; want %v, %v", g.Status, g.StartedAt, g.LastAttemptedAt, base, later)
	}
	if n := e.m.Exists("{gotasks:q}:first"); n {
		t.Errorf("the first-start record outlives the task: %s", e.m.Dump())
	}

	// Cancelled while waiting for its second attempt: both times stay.
	c := newMsg(t, "brokertest.times", "q", 0, 2)
	e.enqueue(c)
	e.m.SetTime(base)
	rc := e.claim1("q", "w1", time.Minute)
	rc.Status, rc.Err, rc.RunAfter = task.StatusNew, &task.Error{Message: "again"}, later.Add(time.Hour)
	rc.Errors = []*task.Error{rc.Err}
	if err := e.b.Retry(e.ctx, rc); err != nil {
		t.Fatal(err)
	}
	if got, err := e.b.Cancel(e.ctx, c.ID); err != nil || !got.StartedAt.Equal(base) {
		t.Fatalf("Cancel: %+v, %v", got, err)
	}
}

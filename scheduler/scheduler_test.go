package scheduler_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/scheduler"
	"github.com/gotasks/gotasks/task"
)

var base = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func setup(t *testing.T) (*miniredis.Miniredis, *broker.Redis) {
	t.Helper()
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return m, broker.New(c, broker.Options{})
}

func msg(queue string, runAfter time.Time) *task.Message {
	return &task.Message{
		ID: task.NewID(), TaskName: "schedulertest.x", Queue: queue, Backend: "default",
		Args: []byte{0xc0}, EnqueuedAt: time.Now(), RunAfter: runAfter,
	}
}

func enqueue(t *testing.T, b *broker.Redis, msgs ...*task.Message) {
	t.Helper()
	if err := b.EnqueueMany(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, b *broker.Redis, q string) broker.Counts {
	t.Helper()
	c, err := b.Count(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestTick(t *testing.T) {
	m, b := setup(t)
	ctx := context.Background()
	s := scheduler.New(b, scheduler.Options{Logger: quiet})
	m.SetTime(base)
	d1, d2 := msg("q", base.Add(10*time.Second)), msg("q", base.Add(20*time.Second))
	r := msg("q", time.Time{})
	enqueue(t, b, d1, d2, r)
	if got, err := b.Claim(ctx, []string{"q"}, 1, 5*time.Second, "w"); err != nil || len(got) != 1 || got[0].Result.ID != r.ID {
		t.Fatalf("Claim = %v, %v", got, err)
	}

	// Nothing due: the next thing is the lease expiry.
	next, err := s.Tick(ctx, "q")
	if err != nil || !next.Equal(base.Add(5*time.Second)) {
		t.Errorf("Tick at start = %v, %v; want the lease expiry %v", next, err, base.Add(5*time.Second))
	}
	if c := count(t, b, "q"); c != (broker.Counts{Deferred: 2, Running: 1}) {
		t.Errorf("Count = %+v", c)
	}

	// The lease expires: reaped; next is d1.
	m.SetTime(base.Add(6 * time.Second))
	next, err = s.Tick(ctx, "q")
	if err != nil || !next.Equal(d1.RunAfter) {
		t.Errorf("Tick after lease expiry = %v, %v; want %v", next, err, d1.RunAfter)
	}
	if c := count(t, b, "q"); c != (broker.Counts{Pending: 1, Deferred: 2}) {
		t.Errorf("Count after reap = %+v", c)
	}

	// Not a millisecond early.
	m.SetTime(d1.RunAfter.Add(-time.Millisecond))
	if next, err = s.Tick(ctx, "q"); err != nil || !next.Equal(d1.RunAfter) {
		t.Errorf("Tick 1ms early = %v, %v", next, err)
	}
	if c := count(t, b, "q"); c.Deferred != 2 {
		t.Errorf("promoted early: %+v", c)
	}

	m.SetTime(d1.RunAfter)
	next, err = s.Tick(ctx, "q")
	if err != nil || !next.Equal(d2.RunAfter) {
		t.Errorf("Tick at d1 = %v, %v; want %v", next, err, d2.RunAfter)
	}
	if c := count(t, b, "q"); c != (broker.Counts{Pending: 2, Deferred: 1}) {
		t.Errorf("Count after promote = %+v", c)
	}

	// A lease that expires before the next deferred task is what comes next.
	if got, err := b.Claim(ctx, []string{"q"}, 1, time.Second, "w"); err != nil || len(got) != 1 {
		t.Fatalf("Claim = %v, %v", got, err)
	}
	if next, err = s.Tick(ctx, "q"); err != nil || !next.Equal(d1.RunAfter.Add(time.Second)) {
		t.Errorf("Tick with a lease = %v, %v; want %v", next, err, d1.RunAfter.Add(time.Second))
	}

	m.SetTime(base.Add(time.Hour))
	next, err = s.Tick(ctx, "q")
	if err != nil || !next.IsZero() {
		t.Errorf("final Tick = %v, %v; want zero", next, err)
	}
	if c := count(t, b, "q"); c != (broker.Counts{Pending: 3}) {
		t.Errorf("final Count = %+v", c)
	}
}

// TestTickMoreThanABatch: one Tick promotes and reaps everything due, even
// beyond the per-script limit.
func TestTickMoreThanABatch(t *testing.T) {
	m, b := setup(t)
	ctx := context.Background()
	m.SetTime(base)
	const n = 1500 // more than one script call handles
	var ready, deferred []*task.Message
	for range n {
		ready = append(ready, msg("q", time.Time{}))
		deferred = append(deferred, msg("q", base.Add(2*time.Second)))
	}
	enqueue(t, b, ready...)
	if got, err := b.Claim(ctx, []string{"q"}, n, time.Second, "dead-worker"); err != nil || len(got) != n {
		t.Fatalf("Claim = %d, %v", len(got), err)
	}
	enqueue(t, b, deferred...)
	m.SetTime(base.Add(time.Minute))
	next, err := scheduler.New(b, scheduler.Options{Logger: quiet}).Tick(ctx, "q")
	if err != nil || !next.IsZero() {
		t.Fatalf("Tick = %v, %v", next, err)
	}
	if c := count(t, b, "q"); c != (broker.Counts{Pending: 2 * n}) {
		t.Errorf("Count = %+v, want %d pending", c, 2*n)
	}
}

func TestTickRedisError(t *testing.T) {
	m, b := setup(t)
	m.SetError("LOADING Redis is loading")
	if _, err := scheduler.New(b, scheduler.Options{Logger: quiet}).Tick(context.Background(), "q"); err == nil {
		t.Error("Tick with Redis failing = nil error")
	}
	m.SetError("")
	if _, err := scheduler.New(b, scheduler.Options{Logger: quiet}).Tick(context.Background(), "q"); err != nil {
		t.Errorf("Tick after recovery: %v", err)
	}
}

func runScheduler(t *testing.T, s *scheduler.Scheduler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

// TestRunPromotesOnTime runs on the real clock: a deferred task enqueued
// while the scheduler sleeps (MaxSleep is long) is promoted when it is due,
// not before and not much after.
func TestRunPromotesOnTime(t *testing.T) {
	_, b := setup(t)
	runScheduler(t, scheduler.New(b, scheduler.Options{Queues: []string{"q"}, MaxSleep: time.Minute, Logger: quiet}))
	for _, delay := range []time.Duration{300 * time.Millisecond, 100 * time.Millisecond} {
		d := msg("q", time.Now().Add(delay))
		enqueue(t, b, d)
		due := d.RunAfter
		var seen time.Time
		waitFor(t, "promotion", 5*time.Second, func() bool {
			seen = time.Now()
			return count(t, b, "q").Pending > 0
		})
		if seen.Before(due) {
			t.Errorf("promoted %v before run_after", due.Sub(seen))
		}
		if late := seen.Sub(due); late > 500*time.Millisecond {
			t.Errorf("promoted %v after run_after", late)
		}
		if got, err := b.Claim(context.Background(), []string{"q"}, 5, time.Minute, "w"); err != nil || len(got) != 1 || got[0].Result.ID != d.ID {
			t.Fatalf("Claim = %v, %v", got, err)
		}
	}
}

// TestRunReapsExpiredLeases: the scheduler sleeps until the next lease
// expiry, not MaxSleep, and requeues the task then.
func TestRunReapsExpiredLeases(t *testing.T) {
	_, b := setup(t)
	enqueue(t, b, msg("q", time.Time{}))
	claimed := time.Now()
	if got, err := b.Claim(context.Background(), []string{"q"}, 1, 200*time.Millisecond, "dead-worker"); err != nil || len(got) != 1 {
		t.Fatalf("Claim = %v, %v", got, err)
	}
	runScheduler(t, scheduler.New(b, scheduler.Options{MaxSleep: time.Minute, Logger: quiet}))
	waitFor(t, "the expired lease to be reaped", 5*time.Second, func() bool { return count(t, b, "q").Pending == 1 })
	if d := time.Since(claimed); d < 200*time.Millisecond {
		t.Errorf("reaped after %v, before the lease expired", d)
	}
	if c := count(t, b, "q"); c.Running != 0 {
		t.Errorf("Count = %+v", c)
	}
}

// TestRunDiscoversQueues: with no Queues, queues that appear later are
// served, except the excluded ones.
func TestRunDiscoversQueues(t *testing.T) {
	_, b := setup(t)
	runScheduler(t, scheduler.New(b, scheduler.Options{Exclude: []string{"skip"}, RefreshInterval: 20 * time.Millisecond, Logger: quiet}))
	// Far enough ahead that the enqueue, however slow the machine, stores
	// both as deferred (a run_after already past is stored ready).
	at := time.Now().Add(500 * time.Millisecond)
	enqueue(t, b, msg("skip", at), msg("new", at))
	waitFor(t, "the new queue's task to be promoted", 5*time.Second, func() bool { return count(t, b, "new").Pending == 1 })
	// Both queues became known together; give the excluded one's loop, were
	// there one, that long again.
	time.Sleep(100 * time.Millisecond)
	if c := count(t, b, "skip"); c != (broker.Counts{Deferred: 1}) {
		t.Errorf("excluded queue was served: %+v", c)
	}
}

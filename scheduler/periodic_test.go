package scheduler_test

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	_ "time/tzdata" // the zone tests must not depend on the host's zoneinfo

	"github.com/gotasks/gotasks/gotaskstest"
	"github.com/gotasks/gotasks/scheduler"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

var periodicTask = task.Define("schedulertest.periodic", func(ctx context.Context, args map[string]int) (int, error) {
	return len(args), nil
}, task.Queue("periodic"))

// fakeClock is a clock the test moves by hand; the periodic loops sleep on
// its After.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Set moves the clock to t and wakes the sleepers whose time has come.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(t) {
			keep = append(keep, w)
		} else {
			w.ch <- t
		}
	}
	c.waiters = keep
}

// sleepers returns how many loops sleep until at.
func (c *fakeClock) sleepers(at time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, w := range c.waiters {
		if w.at.Equal(at) {
			n++
		}
	}
	return n
}

// logBuffer collects log output from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

func mustEntry(t *testing.T, spec string, opts ...scheduler.PeriodicOption) *scheduler.Entry {
	t.Helper()
	e, err := scheduler.NewEntry(periodicTask, spec, map[string]int{"a": 1, "b": 2}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func pending(t *testing.T, env *gotaskstest.Env) int64 {
	t.Helper()
	return count(t, env.Broker, "periodic").Pending
}

// TestEntryNext: specs are read in UTC by default and in the entry's zone
// otherwise, following DST; @every ticks are aligned to the epoch.
func TestEntryNext(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// Berlin moves from CET (+1) to CEST (+2) on 2030-03-31: 09:00 local is
	// 08:00Z before and 07:00Z after.
	for _, tc := range []struct {
		spec string
		opts []scheduler.PeriodicOption
		from string
		want string
	}{
		{"0 9 * * *", nil, "2030-03-29T12:00:00Z", "2030-03-30T09:00:00Z"},
		{"0 9 * * *", []scheduler.PeriodicOption{scheduler.In(berlin)}, "2030-03-29T12:00:00Z", "2030-03-30T08:00:00Z"},
		{"0 9 * * *", []scheduler.PeriodicOption{scheduler.In(berlin)}, "2030-03-30T08:00:00Z", "2030-03-31T07:00:00Z"},
		{"CRON_TZ=Europe/Berlin 0 9 * * *", nil, "2030-03-30T08:00:00Z", "2030-03-31T07:00:00Z"},
		// The parser's behaviour in the hours DST skips or repeats: 02:30
		// does not exist on 2030-03-31, so that day has no tick; on
		// 2030-10-27 it happens twice, and so does the tick.
		{"CRON_TZ=Europe/Berlin 30 2 * * *", nil, "2030-03-30T12:00:00Z", "2030-04-01T00:30:00Z"},
		{"CRON_TZ=Europe/Berlin 30 2 * * *", nil, "2030-10-26T12:00:00Z", "2030-10-27T00:30:00Z"},
		{"CRON_TZ=Europe/Berlin 30 2 * * *", nil, "2030-10-27T00:30:00Z", "2030-10-27T01:30:00Z"},
		{"TZ=America/New_York @daily", nil, "2030-01-01T12:00:00Z", "2030-01-02T05:00:00Z"},
		{"*/15 * * * *", nil, "2030-01-01T10:07:30Z", "2030-01-01T10:15:00Z"},
		// The same ticks whenever the scheduler asks.
		{"@every 15m", nil, "2030-01-01T10:07:30Z", "2030-01-01T10:15:00Z"},
		{"@every 15m", nil, "2030-01-01T10:14:59Z", "2030-01-01T10:15:00Z"},
		{"@every 15m", nil, "2030-01-01T10:15:00Z", "2030-01-01T10:30:00Z"},
		{"@every 1h", []scheduler.PeriodicOption{scheduler.In(berlin)}, "2030-01-01T10:07:30Z", "2030-01-01T11:00:00Z"},
	} {
		e := mustEntry(t, tc.spec, tc.opts...)
		if got := e.Next(utc(tc.from)); !got.Equal(utc(tc.want)) {
			t.Errorf("%q %v: Next(%s) = %v, want %s", tc.spec, tc.opts != nil, tc.from, got.UTC(), tc.want)
		}
	}
}

// TestEntryName: the default name is the same for the same entry and differs
// with the arguments; map order does not matter.
func TestEntryName(t *testing.T) {
	a := mustEntry(t, "@hourly")
	b, err := scheduler.NewEntry(periodicTask, "@hourly", map[string]int{"b": 2, "a": 1})
	if err != nil {
		t.Fatal(err)
	}
	c, err := scheduler.NewEntry(periodicTask, "@hourly", map[string]int{"a": 1})
	if err != nil {
		t.Fatal(err)
	}
	if a.Name() != b.Name() || a.Name() == c.Name() || !strings.HasPrefix(a.Name(), "schedulertest.periodic:") {
		t.Errorf("names %q %q %q", a.Name(), b.Name(), c.Name())
	}
	if n := mustEntry(t, "@hourly", scheduler.EntryName("hourly-report")).Name(); n != "hourly-report" {
		t.Errorf("EntryName: %q", n)
	}
}

func TestNewEntryInvalid(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		spec string
		opts []scheduler.PeriodicOption
	}{
		{spec: ""},
		{spec: "61 * * * *"},
		{spec: "* * * *"},
		{spec: "0 * * * * *"}, // seconds field: not the standard five
		{spec: "@fortnightly"},
		{spec: "@every 500ms"},
		{spec: "@every 1.5s"},
		{spec: "@every soon"},
		{spec: "CRON_TZ=Nowhere/Land 0 9 * * *"},
		{spec: "CRON_TZ=UTC"},
		{spec: "0 0 30 2 *"}, // February 30th never comes
		{spec: "CRON_TZ=UTC 0 9 * * *", opts: []scheduler.PeriodicOption{scheduler.In(berlin)}},
		{spec: "@hourly", opts: []scheduler.PeriodicOption{scheduler.Grace(0)}},
	} {
		if e, err := scheduler.NewEntry(periodicTask, tc.spec, nil, tc.opts...); err == nil {
			t.Errorf("NewEntry(%q) = %v, nil error", tc.spec, e.Name())
		}
	}
	mustPanic(t, "Periodic with an invalid spec", func() { scheduler.Periodic(periodicTask, "61 * * * *", nil) })
	e := scheduler.Periodic(periodicTask, "@yearly", nil, scheduler.EntryName("schedulertest.dup"))
	defer scheduler.Unregister(e)
	mustPanic(t, "Periodic with a name registered twice", func() {
		scheduler.Periodic(periodicTask, "@daily", nil, scheduler.EntryName("schedulertest.dup"))
	})
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", what)
		}
	}()
	f()
}

// TestPeriodicExactlyOnce: three schedulers on one clock race for each
// tick; each tick is enqueued once and logged once.
func TestPeriodicExactlyOnce(t *testing.T) {
	env := gotaskstest.New(t)
	tick := time.Date(2030, 1, 2, 3, 5, 0, 0, time.UTC)
	clk := newFakeClock(tick.Add(-30 * time.Second))
	e := mustEntry(t, "* * * * *")
	var logs logBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for range 3 {
		runScheduler(t, scheduler.New(env.Broker, scheduler.WithClock(scheduler.Options{
			Queues: []string{"periodic"}, Entries: []*scheduler.Entry{e}, Logger: log,
		}, clk)))
	}
	// The tick 30 s before they started is within the grace: the first one
	// to start enqueues it.
	waitFor(t, "three schedulers waiting for the tick", 5*time.Second, func() bool { return clk.sleepers(tick) == 3 })
	if n := pending(t, env); n != 1 {
		t.Fatalf("after the start: %d tasks, want 1", n)
	}
	for i, at := range []time.Time{tick, tick.Add(time.Minute), tick.Add(2 * time.Minute)} {
		clk.Set(at)
		waitFor(t, "three schedulers waiting for the next tick", 5*time.Second, func() bool { return clk.sleepers(at.Add(time.Minute)) == 3 })
		if n := pending(t, env); n != int64(i+2) {
			t.Fatalf("after tick %v: %d tasks, want %d", at, n, i+2)
		}
	}
	if n := logs.count("enqueued periodic task"); n != 4 {
		t.Errorf("%d enqueue log lines, want 4:\n%s", n, logs.buf.String())
	}
	key := "gotasks:periodic:" + e.Name() + ":" + strconv.FormatInt(tick.Unix(), 10)
	if ttl := env.Redis.TTL(key); ttl != scheduler.DefaultGrace+5*time.Minute {
		t.Errorf("TTL of %s = %v", key, ttl)
	}
}

// TestPeriodicNoBurst: ticks a scheduler missed by more than the grace,
// whether it was not running or stalled, are skipped, not replayed.
func TestPeriodicNoBurst(t *testing.T) {
	env := gotaskstest.New(t)
	start := time.Date(2030, 1, 2, 10, 2, 0, 0, time.UTC)
	clk := newFakeClock(start)
	e := mustEntry(t, "*/5 * * * *")
	runScheduler(t, scheduler.New(env.Broker, scheduler.WithClock(scheduler.Options{
		Queues: []string{"periodic"}, Entries: []*scheduler.Entry{e}, Logger: quiet,
	}, clk)))
	step := func(now, wantNext time.Time, want int64) {
		t.Helper()
		clk.Set(now)
		waitFor(t, "the scheduler to wait for "+wantNext.Format(time.TimeOnly), 5*time.Second, func() bool { return clk.sleepers(wantNext) == 1 })
		if n := pending(t, env); n != want {
			t.Fatalf("at %v: %d tasks, want %d", now, n, want)
		}
	}
	at := func(h, m, s int) time.Time { return time.Date(2030, 1, 2, h, m, s, 0, time.UTC) }
	// Started 2 minutes after the 10:00 tick: more than the grace, skipped.
	step(start, at(10, 5, 0), 0)
	step(at(10, 5, 0), at(10, 10, 0), 1)
	// Five hours pass at once (a suspended process; the same holds for
	// one that was not running): only the 15:00 tick, 30 s late, is
	// enqueued, not the 59 before it.
	step(at(15, 0, 30), at(15, 5, 0), 2)
	// The 15:05 tick is found 2 minutes late: skipped.
	step(at(15, 7, 0), at(15, 10, 0), 2)
	step(at(15, 10, 0), at(15, 15, 0), 3)
}

// TestPeriodicRedisError: a tick whose claim fails is retried until Redis
// answers, and enqueued once.
func TestPeriodicRedisError(t *testing.T) {
	env := gotaskstest.New(t)
	tick := time.Date(2030, 1, 2, 3, 5, 0, 0, time.UTC)
	clk := newFakeClock(tick.Add(-30 * time.Second))
	var logs logBuffer
	runScheduler(t, scheduler.New(env.Broker, scheduler.WithClock(scheduler.Options{
		Queues: []string{"periodic"}, Entries: []*scheduler.Entry{mustEntry(t, "0 * * * *")},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}, clk)))
	waitFor(t, "the scheduler to wait for the tick", 5*time.Second, func() bool { return clk.sleepers(tick.Add(55*time.Minute)) == 1 })
	env.Redis.SetError("LOADING Redis is loading")
	clk.Set(tick.Add(55 * time.Minute))
	waitFor(t, "a failed claim", 5*time.Second, func() bool { return logs.count("periodic tick failed, retrying") > 0 })
	env.Redis.SetError("")
	waitFor(t, "the scheduler to wait for the next tick", 5*time.Second, func() bool { return clk.sleepers(tick.Add(115*time.Minute)) == 1 })
	if n := pending(t, env); n != 1 {
		t.Errorf("%d tasks, want 1", n)
	}
}

var e2eRuns atomic.Int64

var e2eTask = task.Define("schedulertest.e2e", func(ctx context.Context, who string) (string, error) {
	e2eRuns.Add(1)
	return "hello " + who, nil
}, task.Queue("periodic-e2e"))

// TestPeriodicWorker: an entry registered with Periodic is enqueued by the
// scheduler inside a worker, which runs the tasks.
func TestPeriodicWorker(t *testing.T) {
	env := gotaskstest.New(t)
	e := scheduler.Periodic(e2eTask, "@every 1s", "world")
	t.Cleanup(func() { scheduler.Unregister(e) })
	e2eRuns.Store(0)
	w := worker.New(env.Broker, worker.Options{Queues: []string{"periodic-e2e"}, Concurrency: 1, Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	// The first run is the tick of the second the worker started in (within
	// the grace); the second comes a second later.
	waitFor(t, "two periodic runs", 10*time.Second, func() bool { return e2eRuns.Load() >= 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("worker Run = %v", err)
	}
}

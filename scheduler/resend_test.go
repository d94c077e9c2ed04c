package scheduler_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/gotaskstest"
	"github.com/gotasks/gotasks/scheduler"
)

// resend runs every SETNX and script call twice, as go-redis does when a
// reply is lost: the first run takes effect, the caller sees the second.
type resend struct{}

func (resend) DialHook(next redis.DialHook) redis.DialHook { return next }
func (resend) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		switch strings.ToLower(cmd.Name()) {
		case "setnx", "set", "evalsha", "eval":
			_ = next(ctx, cmd)
		}
		return next(ctx, cmd)
	}
}
func (resend) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		_ = next(ctx, cmds)
		return next(ctx, cmds)
	}
}

// TestPeriodicTickSurvivesLostReplies: with every claim of a tick and
// every enqueue sent twice (their first replies lost), each tick is still
// enqueued, and once: the scheduler knows its own claim, and the tick's
// task has an id of its own that the second enqueue finds.
func TestPeriodicTickSurvivesLostReplies(t *testing.T) {
	env := gotaskstest.New(t)
	env.Broker.Client().AddHook(resend{})
	tick := time.Date(2030, 1, 2, 3, 5, 0, 0, time.UTC)
	clk := newFakeClock(tick.Add(-time.Second))
	var logs logBuffer
	runScheduler(t, scheduler.New(env.Broker, scheduler.WithClock(scheduler.Options{
		Queues: []string{"periodic"}, Entries: []*scheduler.Entry{mustEntry(t, "* * * * *")},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}, clk)))
	// The tick a second before the start is within the grace: enqueued at
	// once, then one task per tick.
	waitFor(t, "the scheduler to wait for the tick", 5*time.Second, func() bool { return clk.sleepers(tick) == 1 })
	if n := pending(t, env); n != 1 {
		t.Fatalf("after the start: %d tasks, want 1\n%s", n, logs.buf.String())
	}
	for i, at := range []time.Time{tick, tick.Add(time.Minute)} {
		clk.Set(at)
		waitFor(t, "the scheduler to wait for the next tick", 5*time.Second, func() bool { return clk.sleepers(at.Add(time.Minute)) == 1 })
		if n := pending(t, env); n != int64(i+2) {
			t.Fatalf("after tick %v: %d tasks, want %d\n%s", at, n, i+2, logs.buf.String())
		}
	}
	if n := logs.count("enqueued periodic task"); n != 3 {
		t.Errorf("%d enqueue log lines, want 3:\n%s", n, logs.buf.String())
	}
}

package broker_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/internal/redistest"
	"github.com/gotasks/gotasks/task"
)

// Every script must be safe to run twice: go-redis sends a command again
// when its reply was lost. These tests run each one twice through a hook
// that repeats the command exactly as go-redis' retry would (same
// arguments, after the first run took effect), and check that the caller
// sees what Redis holds. The network suite in integration/ loses real
// replies with toxiproxy.

// twice is a go-redis hook that runs every command whose arguments match
// once more before its reply counts, as a re-send after a lost reply does;
// gap, if set, runs between the two runs.
type twice struct {
	match func(args []any) bool
	gap   func()
	hits  int
}

func (h *twice) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *twice) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.match != nil && h.match(cmd.Args()) {
			h.hits++
			_ = next(ctx, cmd) // the run whose reply is "lost"
			if h.gap != nil {
				h.gap()
			}
		}
		return next(ctx, cmd)
	}
}
func (h *twice) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if h.match != nil && h.match(c.Args()) {
				h.hits++
				_ = next(ctx, cmds)
				break
			}
		}
		return next(ctx, cmds)
	}
}

// scriptWithKey matches a script call (EVALSHA or EVAL) among whose keys
// one ends with suffix, and whose arguments include want (if not nil).
func scriptWithKey(suffix string, want any) func([]any) bool {
	return func(args []any) bool {
		if len(args) < 4 {
			return false
		}
		name, _ := args[0].(string)
		if name != "evalsha" && name != "eval" {
			return false
		}
		hasKey, hasArg := false, want == nil
		for _, a := range args[3:] {
			if s, ok := a.(string); ok && len(s) >= len(suffix) && s[len(s)-len(suffix):] == suffix {
				hasKey = true
			}
			if want != nil && a == want {
				hasArg = true
			}
		}
		return hasKey && hasArg
	}
}

// onRealRedis runs fn on a broker over a redis-server whose client runs
// commands matched by hook twice.
func onRealRedis(t *testing.T, hook *twice) (*broker.Redis, *redis.Client) {
	t.Helper()
	s := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: s.Addr()})
	direct := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: s.Addr()})
	t.Cleanup(func() { _ = rdb.Close(); _ = direct.Close() })
	rdb.AddHook(hook)
	return broker.New(rdb, broker.Options{}), direct
}

func TestEnqueueSentTwiceStoresOnceAndSucceeds(t *testing.T) {
	hook := &twice{}
	b, direct := onRealRedis(t, hook)
	ctx := context.Background()
	hook.match = scriptWithKey(":tasks", nil)
	one := newMsg(t, "brokertest.twice", "q", 0, 1)
	if err := b.Enqueue(ctx, one); err != nil || !one.Existing {
		t.Fatalf("Enqueue sent twice = %v (existing %v); want success, found by the second run", err, one.Existing)
	}
	many := []*task.Message{newMsg(t, "brokertest.twice", "q", 0, 2), newMsg(t, "brokertest.twice", "q", 5, 3)}
	if err := b.EnqueueMany(ctx, many); err != nil {
		t.Fatalf("EnqueueMany sent twice = %v", err)
	}
	if hook.hits != 2 {
		t.Fatalf("%d calls sent twice, want 2", hook.hits)
	}
	if n := direct.HLen(ctx, "{gotasks:q}:tasks").Val(); n != 3 {
		t.Errorf("%d tasks stored, want 3", n)
	}
	if n := direct.LLen(ctx, "{gotasks:q}:ready").Val() + direct.ZCard(ctx, "{gotasks:q}:pending").Val(); n != 3 {
		t.Errorf("%d tasks ready, want 3 (each once)", n)
	}
}

func TestClaimSentTwiceDeliversTheSameTasks(t *testing.T) {
	hook := &twice{}
	b, direct := onRealRedis(t, hook)
	ctx := context.Background()
	var msgs []*task.Message
	for i := range 5 {
		msgs = append(msgs, newMsg(t, "brokertest.twice", "q", 0, i))
	}
	if err := b.EnqueueMany(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	hook.match = scriptWithKey(":claim:w1:c", nil)
	got, err := b.Claim(ctx, []string{"q"}, 2, time.Minute, "w1")
	if err != nil || len(got) != 2 || hook.hits == 0 {
		t.Fatalf("Claim sent twice = %d tasks, %v (%d re-sent)", len(got), err, hook.hits)
	}
	hook.match = nil
	running := direct.ZRange(ctx, "{gotasks:q}:running", 0, -1).Val()
	var ids []string
	for _, c := range got {
		ids = append(ids, c.Result.ID)
		if c.Result.Attempts != 1 {
			t.Errorf("%s: attempt %d, want 1", c.Result.ID, c.Result.Attempts)
		}
	}
	slices.Sort(running)
	slices.Sort(ids)
	if !slices.Equal(running, ids) {
		t.Errorf("running in Redis %v, delivered %v: a claim sent twice must deliver what it holds", running, ids)
	}
	// The next claim takes the next tasks, not the replayed ones.
	next, err := b.Claim(ctx, []string{"q"}, 10, time.Minute, "w1")
	if err != nil || len(next) != 3 {
		t.Fatalf("next Claim = %d tasks, %v; want the other 3", len(next), err)
	}
}

func TestUnclaimSentTwiceAfterAnotherClaimLeavesThatClaim(t *testing.T) {
	hook := &twice{}
	b, direct := onRealRedis(t, hook)
	ctx := context.Background()
	m := newMsg(t, "brokertest.twice", "q", 0, 1)
	if err := b.Enqueue(ctx, m); err != nil {
		t.Fatal(err)
	}
	got, err := b.Claim(ctx, []string{"q"}, 1, time.Minute, "w1")
	if err != nil || len(got) != 1 {
		t.Fatal(len(got), err)
	}
	// w2 claims the task between the two runs of w1's unclaim.
	other := broker.New(direct, broker.Options{})
	var w2 []broker.Claimed
	hook.match = anyScript
	hook.gap = func() { w2, err = other.Claim(ctx, []string{"q"}, 1, time.Minute, "w2") }
	if n, err := b.Unclaim(ctx, "q", []*task.RawResult{got[0].Result}); err != nil {
		t.Fatalf("Unclaim = %d, %v", n, err)
	}
	hook.match = nil
	if err != nil || len(w2) != 1 {
		t.Fatalf("w2 claimed %d tasks in the gap (%v), want 1", len(w2), err)
	}
	if w2[0].Result.Attempts == got[0].Result.Attempts {
		t.Fatalf("w2 holds attempt %d, the token w1 handed back", w2[0].Result.Attempts)
	}
	r, err := other.GetResult(ctx, m.ID)
	if err != nil || r.Status != task.StatusRunning || r.Attempts != w2[0].Result.Attempts {
		t.Fatalf("after w1's unclaim ran twice: %+v, %v; want RUNNING under w2's attempt %d", r, err, w2[0].Result.Attempts)
	}
	fin := *w2[0].Result
	fin.Status = task.StatusComplete
	if err := other.Finish(ctx, &fin); err != nil {
		t.Errorf("w2's finish = %v: its claim was undone", err)
	}
}

// anyScript matches every script call.
func anyScript(args []any) bool {
	name, _ := args[0].(string)
	return name == "evalsha" || name == "eval"
}

func TestFinishAndRetrySentTwiceReportSuccess(t *testing.T) {
	hook := &twice{}
	b, _ := onRealRedis(t, hook)
	ctx := context.Background()
	done, again := newMsg(t, "brokertest.twice", "q", 0, 1), newMsg(t, "brokertest.twice", "q", 0, 2)
	if err := b.EnqueueMany(ctx, []*task.Message{done, again}); err != nil {
		t.Fatal(err)
	}
	got, err := b.Claim(ctx, []string{"q"}, 2, time.Minute, "w1")
	if err != nil || len(got) != 2 {
		t.Fatal(len(got), err)
	}
	hook.match = anyScript
	r := got[0].Result
	r.Status, r.Value = task.StatusComplete, []byte{0xc0}
	if err := b.Finish(ctx, r); err != nil || r.FinishedAt.IsZero() {
		t.Fatalf("Finish sent twice = %v (finished at %v); want success", err, r.FinishedAt)
	}
	hook.match = anyScript
	x := got[1].Result
	x.Status, x.RunAfter = task.StatusNew, time.Now().Add(time.Hour)
	x.Err = &task.Error{Type: "t", Message: "once more"}
	x.Errors = []*task.Error{x.Err}
	if err := b.Retry(ctx, x); err != nil {
		t.Fatalf("Retry sent twice = %v; want success", err)
	}
	if hook.hits != 2 {
		t.Fatalf("%d calls sent twice, want 2", hook.hits)
	}
	hook.match = nil
	if g, err := b.GetResult(ctx, done.ID); err != nil || g.Status != task.StatusComplete {
		t.Errorf("finished task: %+v, %v", g, err)
	}
	if g, err := b.GetResult(ctx, again.ID); err != nil || g.Status != task.StatusNew || len(g.Errors) != 1 {
		t.Errorf("retried task: %+v, %v; want NEW with one error", g, err)
	}
}

func TestCancelSentTwiceReportsCancelled(t *testing.T) {
	hook := &twice{}
	b, _ := onRealRedis(t, hook)
	ctx := context.Background()
	m := newMsg(t, "brokertest.twice", "q", 0, 1)
	if err := b.Enqueue(ctx, m); err != nil {
		t.Fatal(err)
	}
	hook.match = anyScript
	r, err := b.CancelIn(ctx, "q", m.ID)
	if err != nil || r.Status != task.StatusCancelled || hook.hits == 0 {
		t.Fatalf("Cancel sent twice = %+v, %v (%d re-sent); want CANCELLED", r, err, hook.hits)
	}
	hook.match = nil
	// A second Cancel of its own (another call) is told the truth.
	var nc *task.NotCancellableError
	if _, err := b.CancelIn(ctx, "q", m.ID); !errors.As(err, &nc) || nc.Status != task.StatusCancelled {
		t.Errorf("another Cancel = %v, want not cancellable: CANCELLED", err)
	}
}

// TestScriptFlushNeverFailsACall: Redis losing its scripts while producers
// and claimers run (SCRIPT FLUSH, as a restart or failover does) makes no
// call fail and no goroutine panic: the broker loads them again or sends
// the script's text.
func TestScriptFlushNeverFailsACall(t *testing.T) {
	s := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: s.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	b := broker.New(rdb, broker.Options{})
	ctx := context.Background()
	stop := make(chan struct{})
	var flusher sync.WaitGroup
	flusher.Add(1)
	go func() {
		defer flusher.Done()
		for {
			select {
			case <-stop:
				return
			default:
				rdb.ScriptFlush(ctx)
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				batch := []*task.Message{newMsg(t, "brokertest.flush", "q", 0, i), newMsg(t, "brokertest.flush", "q", 0, i)}
				if err := b.EnqueueMany(ctx, batch); err != nil {
					errs <- err
				}
				if err := b.Enqueue(ctx, newMsg(t, "brokertest.flush", "q", g, i)); err != nil {
					errs <- err
				}
				cl, err := b.Claim(ctx, []string{"q"}, 2, time.Minute, "w")
				if err != nil {
					errs <- err
				}
				for _, c := range cl {
					c.Result.Status = task.StatusComplete
					if err := b.Finish(ctx, c.Result); err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	flusher.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a call failed while Redis flushed its scripts: %v", err)
	}
}

// TestEnqueueWithoutAnswerIsMaybeEnqueued: an enqueue whose request went
// out and got no answer (Redis stopped) may be stored: its error wraps
// ErrMaybeEnqueued and names the id, and enqueueing it again once Redis
// answers stores it once. An enqueue that never went out does not.
func TestEnqueueWithoutAnswerIsMaybeEnqueued(t *testing.T) {
	s := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		Addr: s.Addr(), ReadTimeout: 100 * time.Millisecond, MaxRetries: 1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	b := broker.New(rdb, broker.Options{})
	ctx := context.Background()
	if err := b.Enqueue(ctx, newMsg(t, "brokertest.maybe", "q", 0, 0)); err != nil {
		t.Fatal(err) // scripts loaded, queue registered
	}
	m := newMsg(t, "brokertest.maybe", "q", 0, 1)
	s.Pause()
	err := b.Enqueue(ctx, m)
	s.Resume()
	var me *task.MaybeEnqueuedError
	if !errors.Is(err, task.ErrMaybeEnqueued) || !errors.As(err, &me) || !slices.Equal(me.IDs, []string{m.ID}) {
		t.Fatalf("Enqueue with no answer = %v; want ErrMaybeEnqueued naming %s", err, m.ID)
	}
	again := *m
	if err := b.Enqueue(ctx, &again); err != nil {
		t.Fatalf("Enqueue again = %v", err)
	}
	if n := rdb.HLen(ctx, "{gotasks:q}:tasks").Val(); n != 2 {
		t.Errorf("%d tasks stored, want 2 (the first, and m once)", n)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Enqueue(done, newMsg(t, "brokertest.maybe", "q", 0, 2)); err == nil || errors.Is(err, task.ErrMaybeEnqueued) {
		t.Errorf("Enqueue with a cancelled context = %v; want an error that is certain", err)
	}
}

func TestRetryFailedSentTwiceReportsSuccess(t *testing.T) {
	hook := &twice{}
	b, _ := onRealRedis(t, hook)
	ctx := context.Background()
	m := newMsg(t, "brokertest.twice", "q", 0, 1)
	if err := b.Enqueue(ctx, m); err != nil {
		t.Fatal(err)
	}
	got, err := b.Claim(ctx, []string{"q"}, 1, time.Minute, "w1")
	if err != nil || len(got) != 1 {
		t.Fatal(len(got), err)
	}
	r := got[0].Result
	r.Status, r.Err = task.StatusFailed, &task.Error{Message: "no"}
	if err := b.Finish(ctx, r); err != nil {
		t.Fatal(err)
	}
	hook.match = anyScript
	if err := b.RetryFailed(ctx, m.ID); err != nil || hook.hits == 0 {
		t.Fatalf("RetryFailed sent twice = %v (%d re-sent); want success", err, hook.hits)
	}
	hook.match = nil
	if g, err := b.GetResult(ctx, m.ID); err != nil || g.Status != task.StatusNew {
		t.Errorf("after RetryFailed: %+v, %v; want NEW", g, err)
	}
	if c, err := b.Count(ctx, "q"); err != nil || c.Pending != 1 {
		t.Errorf("%+v, %v; want 1 pending (once)", c, err)
	}
}

// keepArgs keeps the arguments of the first command that match.
type keepArgs struct {
	match func(args []any) bool
	args  []any
}

func (h *keepArgs) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *keepArgs) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.args == nil && h.match(cmd.Args()) {
			h.args = slices.Clone(cmd.Args())
		}
		return next(ctx, cmd)
	}
}
func (h *keepArgs) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestLateCopyOfAnOlderClaimTakesNothing: a claim whose request reaches
// Redis late, after a newer claim of the same worker (its connection was
// given up, the call sent again and answered, and the worker went on),
// takes no task: no one reads its reply, and what it took would wait
// for its lease.
func TestLateCopyOfAnOlderClaimTakesNothing(t *testing.T) {
	s := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: s.Addr()})
	direct := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: s.Addr()})
	t.Cleanup(func() { _ = rdb.Close(); _ = direct.Close() })
	keep := &keepArgs{match: scriptWithKey(":claim:w:c", nil)}
	rdb.AddHook(keep)
	b := broker.New(rdb, broker.Options{})
	ctx := context.Background()
	for i := range 4 {
		if err := b.Enqueue(ctx, newMsg(t, "brokertest.late", "q", 0, i)); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // the first is the call whose copy comes late
		if got, err := b.Claim(ctx, []string{"q"}, 1, time.Minute, "w"); err != nil || len(got) != 1 {
			t.Fatalf("Claim = %d, %v", len(got), err)
		}
	}
	if keep.args == nil {
		t.Fatal("the first claim was not seen")
	}
	v, err := direct.Do(ctx, keep.args...).Slice()
	if err != nil || len(v) != 1 {
		t.Fatalf("the late copy of the first claim = %v, %v; want no task", v, err)
	}
	if c, err := b.Count(ctx, "q"); err != nil || c.Running != 2 || c.Pending != 2 {
		t.Errorf("after the late copy: %+v, %v; want 2 running, 2 pending", c, err)
	}
}

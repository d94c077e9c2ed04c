package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/internal/redistest"
	"github.com/gotasks/gotasks/task"
)

// Concurrent Enqueue calls on a queue are stored by shared script calls
// (see Enqueue). Each task must still be stored exactly once, as if
// enqueued alone, and one caller's refusal must not be another's.

func coalesceBackends(t *testing.T, fn func(t *testing.T, b *Redis)) {
	t.Run("miniredis", func(t *testing.T) {
		m := miniredis.RunT(t)
		rdb := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: m.Addr()})
		t.Cleanup(func() { _ = rdb.Close() })
		fn(t, New(rdb, Options{}))
	})
	t.Run("redis-server", func(t *testing.T) {
		s := redistest.Start(t)
		rdb := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: s.Addr()})
		t.Cleanup(func() { _ = rdb.Close() })
		fn(t, New(rdb, Options{}))
	})
}

func coalesceMsg(queue string, i int) *task.Message {
	return &task.Message{
		ID: task.NewID(), TaskName: "brokertest.co", Queue: queue, Backend: "default",
		Args: []byte(fmt.Sprintf("\xa4%04d", i%10000)), EnqueuedAt: time.Now(),
		Limits: task.Limits{MaxAttempts: 1, BackoffBase: time.Second, BackoffMax: 10 * time.Minute},
	}
}

// Many goroutines enqueueing at once: every task is stored once, and each
// goroutine's tasks are claimed in the order it enqueued them.
func TestConcurrentEnqueueStoresEachTaskOnce(t *testing.T) {
	coalesceBackends(t, func(t *testing.T, b *Redis) {
		ctx := context.Background()
		const goroutines, each = 24, 60
		ids := make([][]string, goroutines)
		var wg sync.WaitGroup
		errs := make(chan error, goroutines)
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					queue := []string{"a", "b"}[g%2]
					m := coalesceMsg(queue, i)
					if err := b.Enqueue(ctx, m); err != nil {
						errs <- err
						return
					}
					ids[g] = append(ids[g], m.ID)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		pos := map[string]int{}
		for _, q := range []string{"a", "b"} {
			c, err := b.Count(ctx, q)
			if err != nil || c.Pending != goroutines/2*each {
				t.Fatalf("%s: %+v, %v; want %d pending", q, c, err, goroutines/2*each)
			}
			for len(pos) < (goroutines/2*each)*(1+slices.Index([]string{"a", "b"}, q)) {
				cl, err := b.Claim(ctx, []string{q}, 100, time.Minute, "w")
				if err != nil || len(cl) == 0 {
					t.Fatalf("claim: %d, %v", len(cl), err)
				}
				for _, x := range cl {
					if _, dup := pos[x.Result.ID]; dup {
						t.Fatalf("%s claimed twice", x.Result.ID)
					}
					pos[x.Result.ID] = len(pos)
				}
			}
		}
		for g, gids := range ids {
			for i := 1; i < len(gids); i++ {
				if pos[gids[i]] < pos[gids[i-1]] {
					t.Fatalf("goroutine %d: task %d claimed before task %d", g, i, i-1)
				}
			}
		}
	})
}

// waiters returns waiters for msgs, as Enqueue queues them.
func waiters(ctx context.Context, msgs ...*task.Message) []*waiter {
	var ws []*waiter
	for _, m := range msgs {
		ws = append(ws, &waiter{ctx: ctx, msg: *m, done: make(chan struct{})})
	}
	return ws
}

// A flush in which one task's id is taken by a different task (which
// makes the script write nothing), stored before or given earlier in the
// flush, stores the others; only that caller gets ErrDuplicateID. The same
// task under its own id again is no error: it is the stored task.
func TestFlushIsolatesADuplicateID(t *testing.T) {
	coalesceBackends(t, func(t *testing.T, b *Redis) {
		ctx := context.Background()
		stored := coalesceMsg("q", 0)
		if err := b.Enqueue(ctx, stored); err != nil {
			t.Fatal(err)
		}
		a, c := coalesceMsg("q", 1), coalesceMsg("q", 2)
		other := func(m *task.Message) *task.Message {
			o := *m
			o.Args = []byte("\xa5other")
			return &o
		}
		again := *stored
		ws := waiters(ctx, a, other(stored), c, other(a), &again)
		b.flush(ws)
		for i, w := range ws {
			<-w.done
			switch i {
			case 0, 2:
				if w.err != nil || w.msg.Existing {
					t.Errorf("waiter %d: %v (existing %v), want stored", i, w.err, w.msg.Existing)
				}
			case 1, 3: // taken by another task: by an earlier call, by waiter 0
				if !errors.Is(w.err, task.ErrDuplicateID) {
					t.Errorf("waiter %d: %v, want ErrDuplicateID", i, w.err)
				}
			case 4:
				if w.err != nil || !w.msg.Existing {
					t.Errorf("waiter %d: %v (existing %v), want the stored task", i, w.err, w.msg.Existing)
				}
			}
		}
		if c, err := b.Count(ctx, "q"); err != nil || c.Pending != 3 {
			t.Fatalf("%+v, %v; want 3 pending", c, err)
		}
	})
}

// Unique tasks with one key in one flush: the first is stored, the others
// are its duplicates, reported to their own callers.
func TestFlushUniqueTasks(t *testing.T) {
	coalesceBackends(t, func(t *testing.T, b *Redis) {
		ctx := context.Background()
		var msgs []*task.Message
		for i := range 4 {
			m := coalesceMsg("q", i)
			m.Unique = &task.Uniqueness{Key: "k"}
			msgs = append(msgs, m)
		}
		ws := waiters(ctx, msgs...)
		b.flush(ws)
		for i, w := range ws {
			<-w.done
			want := msgs[0].ID
			if i == 0 {
				want = ""
			}
			if w.err != nil || w.msg.DuplicateOf != want {
				t.Errorf("waiter %d: DuplicateOf %q, %v; want %q", i, w.msg.DuplicateOf, w.err, want)
			}
		}
	})
}

// A caller that gives up before its task is sent returns its context's
// error, and its task is not stored; the one sent with it is.
func TestEnqueueGivesUpBeforeItIsSent(t *testing.T) {
	coalesceBackends(t, func(t *testing.T, b *Redis) {
		ctx := context.Background()
		co := b.queueKeys("q").co
		co.mu.Lock()
		co.inFlight = maxInFlight // as if other calls were in flight
		co.mu.Unlock()
		gaveUp, kept := coalesceMsg("q", 1), coalesceMsg("q", 2)
		cctx, cancel := context.WithCancelCause(ctx)
		stop := errors.New("caller gave up")
		results := make(chan error, 2)
		go func() { results <- b.Enqueue(cctx, gaveUp) }()
		go func() { results <- b.Enqueue(ctx, kept) }()
		for { // both queued behind the call in flight
			co.mu.Lock()
			n := len(co.waiting)
			co.mu.Unlock()
			if n == 2 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cancel(stop)
		if err := <-results; !errors.Is(err, stop) {
			t.Fatalf("the caller that gave up got %v", err)
		}
		b.handOff(co) // a call in flight ends: the waiting one is flushed
		if err := <-results; err != nil {
			t.Fatal(err)
		}
		for range maxInFlight - 1 { // the others end
			b.handOff(co)
		}
		if _, err := b.GetResultIn(ctx, "q", gaveUp.ID); !errors.Is(err, task.ErrResultNotFound) {
			t.Errorf("the task of the caller that gave up: %v", err)
		}
		if _, err := b.GetResultIn(ctx, "q", kept.ID); err != nil {
			t.Errorf("the other task: %v", err)
		}
		// The flush's own hand-off runs after it told its caller.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			co.mu.Lock()
			inFlight, waiting := co.inFlight, len(co.waiting)
			co.mu.Unlock()
			if inFlight == 0 && waiting == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("coalescer left with %d in flight and %d waiting", inFlight, waiting)
			}
		}
	})
}

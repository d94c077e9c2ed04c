package task_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
)

// watchingBackend is a fakeBackend that is a task.FinishWaiter: the test
// signals the watchers itself (tell), or makes watching fail (err).
type watchingBackend struct {
	*fakeBackend
	err error

	mu      sync.Mutex
	watches map[string]chan struct{}
	watched chan string // gets the id of each watch that starts
	stopped int
}

func newWatchingBackend() *watchingBackend {
	return &watchingBackend{fakeBackend: newFakeBackend(task.DefaultBackendName),
		watches: map[string]chan struct{}{}, watched: make(chan string, 10)}
}

func (w *watchingBackend) WaitFinished(ctx context.Context, id, queue string) (<-chan struct{}, func(), error) {
	if w.err != nil {
		return nil, nil, w.err
	}
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	w.watches[id] = ch
	w.mu.Unlock()
	w.watched <- id
	return ch, func() {
		w.mu.Lock()
		w.stopped++
		w.mu.Unlock()
	}, nil
}

// tell signals the watch of id, as an event would.
func (w *watchingBackend) tell(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.watches[id] <- struct{}{}
}

// waitIn runs res.Wait in a goroutine and returns its error's channel.
func waitIn[R any](res *task.Result[R], interval time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- res.Wait(ctx, interval)
	}()
	return done
}

func returns(t *testing.T, done <-chan error, within time.Duration, what string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Wait: %v (%s)", err, what)
		}
	case <-time.After(within):
		t.Fatalf("Wait did not return within %v: %s", within, what)
	}
}

func TestWaitReturnsWhenTheBackendTellsOfTheFinish(t *testing.T) {
	ctx := context.Background()
	w := newWatchingBackend()
	configure(t, map[string]task.Backend{task.DefaultBackendName: w})
	tk := task.Define(taskName(t, "t"), identity[int])
	res, err := tk.Enqueue(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	id := res.ID                   // Wait writes res meanwhile
	done := waitIn(res, time.Hour) // only the news can end it
	<-w.watched
	w.claim(t, id, "w1")
	w.complete(t, ctx, id)
	w.tell(id)
	returns(t, done, 5*time.Second, "told of the finish")
	if v, err := res.Value(); err != nil || v != 7 {
		t.Errorf("Value = %v, %v", v, err)
	}
	if w.stopped != 1 {
		t.Errorf("the watch was stopped %d times, want 1", w.stopped)
	}
}

func TestWaitReadsTheResultOnceItWatches(t *testing.T) {
	// The task finished before Wait began to watch: no news will come,
	// and the read right after the watch starts finds it.
	ctx := context.Background()
	w := newWatchingBackend()
	configure(t, map[string]task.Backend{task.DefaultBackendName: w})
	tk := task.Define(taskName(t, "t"), identity[int])
	res, err := tk.Enqueue(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	w.claim(t, res.ID, "w1")
	w.complete(t, ctx, res.ID)
	returns(t, waitIn(res, time.Hour), 5*time.Second, "finished before the watch")
}

func TestWaitPollsWhenTheBackendCannotWatch(t *testing.T) {
	ctx := context.Background()
	w := newWatchingBackend()
	w.err = errors.New("pub/sub refused")
	configure(t, map[string]task.Backend{task.DefaultBackendName: w})
	tk := task.Define(taskName(t, "t"), identity[int])
	res, err := tk.Enqueue(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	id := res.ID // Wait writes res meanwhile
	done := waitIn(res, 10*time.Millisecond)
	time.Sleep(30 * time.Millisecond)
	w.claim(t, id, "w1")
	w.complete(t, ctx, id)
	returns(t, done, 5*time.Second, "polling every 10ms")
}

func TestWaitPollsWhenTheNewsIsLost(t *testing.T) {
	ctx := context.Background()
	w := newWatchingBackend()
	configure(t, map[string]task.Backend{task.DefaultBackendName: w})
	tk := task.Define(taskName(t, "t"), identity[int])
	res, err := tk.Enqueue(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	id := res.ID // Wait writes res meanwhile
	done := waitIn(res, 10*time.Millisecond)
	<-w.watched
	w.claim(t, id, "w1")
	w.complete(t, ctx, id) // and no tell
	returns(t, done, 5*time.Second, "polling every 10ms")
}

// TestWaitOnRedisIsWokenByTheFinishEvent: with an interval of an hour,
// only the event of the finish can end the Wait.
func TestWaitOnRedisIsWokenByTheFinishEvent(t *testing.T) {
	ctx := context.Background()
	m := miniredis.RunT(t)
	open := func() *broker.Redis {
		c := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: m.Addr()})
		t.Cleanup(func() { _ = c.Close() })
		return broker.New(c, broker.Options{})
	}
	producer, worker := open(), open()
	t.Cleanup(func() { _ = producer.Close() })
	configure(t, map[string]task.Backend{task.DefaultBackendName: producer})
	tk := task.Define(taskName(t, "t"), identity[int])
	res, err := tk.Enqueue(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	queue := res.Queue // Wait writes res meanwhile
	done := waitIn(res, time.Hour)
	// Let Wait subscribe, claim, and finish as a worker does.
	time.Sleep(50 * time.Millisecond)
	got, err := worker.Claim(ctx, []string{queue}, 1, time.Minute, "w1")
	if err != nil || len(got) != 1 {
		t.Fatalf("Claim: %d, %v", len(got), err)
	}
	task.Execute(ctx, got[0].Result)
	if err := worker.Finish(ctx, got[0].Result); err != nil {
		t.Fatal(err)
	}
	returns(t, done, 5*time.Second, "the finish event")
	if v, err := res.Value(); err != nil || v != 7 {
		t.Errorf("Value = %v, %v", v, err)
	}
}

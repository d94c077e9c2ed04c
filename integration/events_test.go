package integration

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
)

// Events across processes: a cmd/worker process changes the tasks, the
// test process (the producer) subscribes and waits.

// kindsOf reads events from s until every id has an event for which
// done says it is over, and returns each id's kinds (with attempts) in
// order; it fails the test after timeout.
func kindsOf(t *testing.T, s *broker.Subscription, ids []string, timeout time.Duration, done func(broker.Event) bool) map[string][]string {
	t.Helper()
	got := map[string][]string{}
	over := map[string]bool{}
	deadline := time.After(timeout)
	for len(over) < len(ids) {
		select {
		case ev := <-s.Events():
			if !slices.Contains(ids, ev.ID) {
				continue
			}
			got[ev.ID] = append(got[ev.ID], fmt.Sprintf("%s#%d", ev.Kind, ev.Attempt))
			if done(ev) {
				over[ev.ID] = true
			}
		case <-deadline:
			t.Fatalf("timed out after %v; events so far: %v", timeout, got)
		}
	}
	return got
}

func TestEventsOfAWorkerProcessReachASubscriberInAnother(t *testing.T) {
	requireRedis(t)
	e := newEnv(t)
	const q = "events"
	s, err := e.client().Subscribe(e.ctx, []string{q})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e.startWorker(workerConfig{ID: "ev1", Queues: []string{q}, Concurrency: 2, Ready: true})

	ok, err := addTask.Using(task.Queue(q)).Enqueue(e.ctx, addArgs{A: 1, B: 2})
	if err != nil {
		t.Fatal(err)
	}
	flaky, err := flakyTask.Using(task.Queue(q), task.MaxAttempts(2), task.Backoff(10*time.Millisecond, 10*time.Millisecond)).
		Enqueue(e.ctx, flakyArgs{FailAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := failTask.Using(task.Queue(q)).Enqueue(e.ctx, "no")
	if err != nil {
		t.Fatal(err)
	}
	later, err := addTask.Using(task.Queue(q), task.RunAfter(time.Hour)).Enqueue(e.ctx, addArgs{A: 3, B: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.B.Cancel(e.ctx, later.ID); err != nil {
		t.Fatal(err)
	}
	got := kindsOf(t, s, []string{ok.ID, flaky.ID, bad.ID, later.ID}, 30*time.Second, func(ev broker.Event) bool {
		return ev.Status.IsFinished()
	})
	want := map[string][]string{
		ok.ID:    {"enqueued#0", "started#1", "completed#1"},
		flaky.ID: {"enqueued#0", "started#1", "retried#1", "started#2", "completed#2"},
		bad.ID:   {"enqueued#0", "started#1", "failed#1"},
		later.ID: {"enqueued#0", "cancelled#0"},
	}
	for id, w := range want {
		if !slices.Equal(got[id], w) {
			t.Errorf("events of %s: %v, want %v", id, got[id], w)
		}
	}
}

func TestWaitIsWokenByTheFinishEventOfAWorkerProcess(t *testing.T) {
	requireRedis(t)
	e := newEnv(t)
	e.startWorker(workerConfig{ID: "ev2", Concurrency: 4, Ready: true})
	for i := range 20 {
		res, err := addTask.Enqueue(e.ctx, addArgs{A: i, B: 1})
		if err != nil {
			t.Fatal(err)
		}
		// The interval is a minute: only the event can end the Wait in time.
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		err = res.Wait(ctx, time.Minute)
		cancel()
		if err != nil {
			t.Fatalf("task %d: Wait: %v", i, err)
		}
		if v, err := res.Value(); err != nil || v != i+1 {
			t.Fatalf("task %d: %v, %v", i, v, err)
		}
	}
}

func TestWaitPollsWhenItsUserMayNotSubscribe(t *testing.T) {
	requireRedis(t)
	e := newEnv(t)
	if err := e.R.Do(e.ctx, "ACL", "SETUSER", "nochan", "on", ">pw", "~*", "+@all", "resetchannels").Err(); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(e.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("nochan", "pw")
	b, err := broker.Open(u.String(), broker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Subscribe(e.ctx, []string{task.DefaultQueue}); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("Subscribe as nochan = %v, want NOPERM", err)
	}
	task.Configure(map[string]task.Backend{task.DefaultBackendName: b})
	e.startWorker(workerConfig{ID: "ev3", Ready: true})
	res, err := addTask.Enqueue(e.ctx, addArgs{A: 2, B: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if err := res.Wait(ctx, 50*time.Millisecond); err != nil {
		t.Fatalf("Wait without events: %v", err)
	}
	if v, err := res.Value(); err != nil || v != 4 {
		t.Fatalf("%v, %v", v, err)
	}
}

func TestWaitSurvivesItsPubSubConnectionBeingKilled(t *testing.T) {
	requireRedis(t)
	e := newEnv(t)
	e.startWorker(workerConfig{ID: "ev4", Ready: true})
	res, err := addTask.Using(task.RunAfter(1500*time.Millisecond)).Enqueue(e.ctx, addArgs{A: 5, B: 5})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
		defer cancel()
		done <- res.Wait(ctx, time.Minute)
	}()
	time.Sleep(300 * time.Millisecond) // Wait has subscribed
	if err := e.R.Do(e.ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Wait did not return after its subscription was killed and the task finished")
	}
}

// TestEventsOnCluster: on Redis Cluster the scripts SPUBLISH on their
// queue's shard, a subscriber holds one SSUBSCRIBE per queue, and a Wait
// is woken by the event, for queues on every shard.
func TestEventsOnCluster(t *testing.T) {
	c := startCluster(t)
	e := newEnvOn(t, c.URL())
	queues := queuesOnShards(t, e.R.(*redis.ClusterClient), 3)
	s, err := e.client().Subscribe(e.ctx, queues)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e.startWorker(workerConfig{ID: "evc", Queues: queues, Concurrency: 2, Ready: true})
	var ids []string
	for i, q := range queues {
		res, err := addTask.Using(task.Queue(q)).Enqueue(e.ctx, addArgs{A: i, B: 1})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		err = res.Wait(ctx, time.Minute) // only the event ends it in time
		cancel()
		if err != nil {
			t.Fatalf("Wait on %s: %v", q, err)
		}
	}
	got := kindsOf(t, s, ids, 10*time.Second, func(ev broker.Event) bool { return ev.Status.IsFinished() })
	for i, id := range ids {
		if want := []string{"enqueued#0", "started#1", "completed#1"}; !slices.Equal(got[id], want) {
			t.Errorf("events of %s on %s: %v, want %v", id, queues[i], got[id], want)
		}
	}
}

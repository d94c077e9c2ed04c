package broker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/internal/redistest"
	"github.com/gotasks/gotasks/task"
)

// seen is an event as the tests compare it: what it says, without its time.
type seen struct {
	Kind    broker.EventKind
	ID      string
	Task    string
	Queue   string
	Status  task.Status
	Attempt int
}

func (s seen) String() string {
	return fmt.Sprintf("%s %s %q #%d %s", s.Kind, s.ID, s.Task, s.Attempt, s.Status)
}

// subscribe subscribes b to queues, closed at cleanup.
func subscribe(t *testing.T, b *broker.Redis, queues []string, kinds ...broker.EventKind) *broker.Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := b.Subscribe(ctx, queues, kinds...)
	if err != nil {
		t.Fatalf("Subscribe(%v): %v", queues, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// collect reads n events from s (failing the test after 10s), then
// checks for 100ms that no more come.
func collect(t *testing.T, s *broker.Subscription, n int) []seen {
	t.Helper()
	var out []seen
	deadline := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case ev := <-s.Events():
			if ev.At.IsZero() {
				t.Errorf("event %+v has no time", ev)
			}
			out = append(out, seen{ev.Kind, ev.ID, ev.Task, ev.Queue, ev.Status, ev.Attempt})
		case <-deadline:
			t.Fatalf("got %d events, want %d:\n%s", len(out), n, lines(out))
		}
	}
	select {
	case ev := <-s.Events():
		t.Fatalf("an event more than the %d expected: %+v; before it:\n%s", n, ev, lines(out))
	case <-time.After(100 * time.Millisecond):
	}
	return out
}

func lines(evs []seen) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString("\t" + e.String() + "\n")
	}
	return b.String()
}

// longName is a task name that msgpack writes as str16 (over 255 bytes),
// with a space and a newline, which event messages must carry.
var longName = "brokertest.events long\n" + strings.Repeat("x", 300)

// lifecycle takes tasks of queue q through every kind of event and
// returns the events it expects, in order.
func lifecycle(t *testing.T, b *broker.Redis) []seen {
	t.Helper()
	ctx := context.Background()
	const q = "ev"
	name8 := "brokertest.events." + strings.Repeat("n", 20) // str8: over 31 bytes
	a := newMsg(t, longName, q, 0, 1)
	if err := b.Enqueue(ctx, a); err != nil {
		t.Fatal(err)
	}
	f, later := newMsg(t, name8, q, 5, 2), newMsg(t, "brokertest.events", q, 0, 3)
	later.RunAfter = time.Now().Add(time.Hour)
	if err := b.EnqueueMany(ctx, []*task.Message{f, later}); err != nil {
		t.Fatal(err)
	}
	got, err := b.Claim(ctx, []string{q}, 2, time.Minute, "w1")
	if err != nil || len(got) != 2 {
		t.Fatalf("Claim: %d tasks, %v", len(got), err)
	}
	rf, ra := got[0].Result, got[1].Result // priority 5 first
	ra.Status, ra.Err = task.StatusNew, &task.Error{Type: "t", Message: "again"}
	ra.Errors = []*task.Error{ra.Err}
	if err := b.Retry(ctx, ra); err != nil {
		t.Fatal(err)
	}
	rf.Status, rf.Err = task.StatusFailed, &task.Error{Type: "t", Message: "no"}
	if err := b.Finish(ctx, rf); err != nil {
		t.Fatal(err)
	}
	got, err = b.Claim(ctx, []string{q}, 1, time.Minute, "w1")
	if err != nil || len(got) != 1 {
		t.Fatalf("Claim again: %d tasks, %v", len(got), err)
	}
	ra = got[0].Result
	ra.Status, ra.Value = task.StatusComplete, []byte{0xc0}
	if err := b.Finish(ctx, ra); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CancelIn(ctx, q, later.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.RetryFailed(ctx, f.ID); err != nil {
		t.Fatal(err)
	}
	return []seen{
		{broker.EventEnqueued, a.ID, longName, q, task.StatusNew, 0},
		{broker.EventEnqueued, f.ID, name8, q, task.StatusNew, 0},
		{broker.EventEnqueued, later.ID, "brokertest.events", q, task.StatusNew, 0},
		{broker.EventStarted, f.ID, name8, q, task.StatusRunning, 1},
		{broker.EventStarted, a.ID, longName, q, task.StatusRunning, 1},
		{broker.EventRetried, a.ID, longName, q, task.StatusNew, 1},
		{broker.EventFailed, f.ID, name8, q, task.StatusFailed, 1},
		{broker.EventStarted, a.ID, longName, q, task.StatusRunning, 2},
		{broker.EventCompleted, a.ID, longName, q, task.StatusComplete, 2},
		{broker.EventCancelled, later.ID, "brokertest.events", q, task.StatusCancelled, 0},
		{broker.EventRetried, f.ID, name8, q, task.StatusNew, 1},
	}
}

func TestSubscriberSeesEveryKindOfEvent(t *testing.T) {
	onBoth(t, func(t *testing.T, b *broker.Redis, rdb *redis.Client) {
		// Another client, as another process would be.
		c := redis.NewClient(rdb.Options())
		t.Cleanup(func() { _ = c.Close() })
		watcher := broker.New(c, broker.Options{})
		s := subscribe(t, watcher, []string{"ev", "other"})
		want := lifecycle(t, b)
		if got := collect(t, s, len(want)); !slices.Equal(got, want) {
			t.Errorf("events:\n%s\nwant:\n%s", lines(got), lines(want))
		}
	})
}

func TestSubscriberGetsOnlyTheKindsItAsked(t *testing.T) {
	e := setup(t)
	s := subscribe(t, e.newBroker(broker.Options{}), []string{"ev"}, broker.EventCompleted, broker.EventCancelled)
	want := lifecycle(t, e.b)
	want = slices.DeleteFunc(want, func(s seen) bool {
		return s.Kind != broker.EventCompleted && s.Kind != broker.EventCancelled
	})
	if got := collect(t, s, len(want)); !slices.Equal(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", lines(got), lines(want))
	}
}

func TestSubscriberGetsNothingFromQueuesItDidNotAsk(t *testing.T) {
	e := setup(t)
	s := subscribe(t, e.newBroker(broker.Options{}), []string{"elsewhere"})
	lifecycle(t, e.b)
	collect(t, s, 0)
}

func TestEveryScriptSentTwicePublishesItsEventsOnce(t *testing.T) {
	hook := &twice{match: anyScript}
	b, direct := onRealRedis(t, hook)
	s := subscribe(t, broker.New(direct, broker.Options{}), []string{"ev"})
	want := lifecycle(t, b)
	if hook.hits < len(want)-2 { // EnqueueMany and Claim publish several in one call
		t.Fatalf("only %d calls were sent twice", hook.hits)
	}
	if got := collect(t, s, len(want)); !slices.Equal(got, want) {
		t.Errorf("events with every script sent twice:\n%s\nwant each once:\n%s", lines(got), lines(want))
	}
}

func TestEventsOffPublishesNothing(t *testing.T) {
	e := setup(t)
	off := e.newBroker(broker.Options{Events: broker.EventsOff})
	s := subscribe(t, e.b, []string{"ev"})
	lifecycle(t, off)
	collect(t, s, 0)
	if _, _, err := off.WaitFinished(context.Background(), "x", "ev"); !errors.Is(err, broker.ErrEventsOff) {
		t.Errorf("WaitFinished with events off = %v, want ErrEventsOff", err)
	}
}

func TestShardedEventsOnRedis7(t *testing.T) {
	srv := redistest.Start(t)
	open := func(m broker.EventMode) *broker.Redis {
		rdb := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: srv.Addr()})
		t.Cleanup(func() { _ = rdb.Close() })
		return broker.New(rdb, broker.Options{Events: m})
	}
	b := open(broker.EventsSharded)
	s := subscribe(t, open(broker.EventsSharded), []string{"ev"})
	plain := subscribe(t, open(broker.EventsPublish), []string{"ev"})
	want := lifecycle(t, b)
	if got := collect(t, s, len(want)); !slices.Equal(got, want) {
		t.Errorf("SSUBSCRIBE got:\n%s\nwant:\n%s", lines(got), lines(want))
	}
	collect(t, plain, 0) // SPUBLISH reaches shard subscribers only
}

func TestShardedEventsFallBackToPublishWhereThereIsNoSPUBLISH(t *testing.T) {
	// miniredis has no SPUBLISH or SSUBSCRIBE, as Redis before 7.0.
	e := setup(t)
	b := e.newBroker(broker.Options{Events: broker.EventsSharded})
	s := subscribe(t, e.newBroker(broker.Options{Events: broker.EventsSharded}), []string{"ev"})
	want := lifecycle(t, b)
	if got := collect(t, s, len(want)); !slices.Equal(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", lines(got), lines(want))
	}
}

func TestLargeBatchPublishesEveryTask(t *testing.T) {
	e := setup(t)
	s := subscribe(t, e.newBroker(broker.Options{}), []string{"big"})
	var msgs []*task.Message
	// As many as a Subscription holds for a reader that is not reading
	// yet (EventBuffer): the test reads only once the batch is stored.
	for i := range broker.EventBuffer {
		msgs = append(msgs, newMsg(t, "brokertest.big", "big", 0, i))
	}
	e.enqueue(msgs...)
	got := collect(t, s, len(msgs))
	for i, ev := range got {
		if ev.ID != msgs[i].ID || ev.Kind != broker.EventEnqueued {
			t.Fatalf("event %d: %v, want enqueued %s", i, ev, msgs[i].ID)
		}
	}
}

// aclUser makes a Redis user that may run every command on every key but
// may use no pub/sub channel, and returns a client logged in as it.
func aclUser(t *testing.T, admin *redis.Client) *redis.Client {
	t.Helper()
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "nochan", "on", ">pw", "~*", "+@all", "resetchannels").Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	o := *admin.Options()
	o.Username, o.Password = "nochan", "pw"
	c := redis.NewClient(&o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestAUserWithoutChannelsChangesTasksButHasNoEvents(t *testing.T) {
	_, direct := onRealRedis(t, &twice{})
	s := subscribe(t, broker.New(direct, broker.Options{}), []string{"ev"})
	b := broker.New(aclUser(t, direct), broker.Options{})
	lifecycle(t, b) // every change succeeds: the scripts' PUBLISH fails alone
	collect(t, s, 0)
	if _, err := b.Subscribe(context.Background(), []string{"ev"}); err == nil {
		t.Error("Subscribe as a user without channels succeeded")
	}
	if _, _, err := b.WaitFinished(context.Background(), "x", "ev"); err == nil {
		t.Error("WaitFinished as a user without channels succeeded")
	}
}

// finishOne enqueues a task on queue, claims it and returns it, ready
// to finish.
func finishOne(t *testing.T, b *broker.Redis, queue string) *task.RawResult {
	t.Helper()
	ctx := context.Background()
	if err := b.Enqueue(ctx, newMsg(t, "brokertest.wait", queue, 0, 1)); err != nil {
		t.Fatal(err)
	}
	got, err := b.Claim(ctx, []string{queue}, 1, time.Minute, "w1")
	if err != nil || len(got) != 1 {
		t.Fatalf("Claim: %d, %v", len(got), err)
	}
	r := got[0].Result
	r.Status, r.Value = task.StatusComplete, []byte{0xc0}
	return r
}

// signalled fails the test unless c gets a value within d.
func signalled(t *testing.T, c <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(d):
		t.Fatalf("no signal within %v: %s", d, what)
	}
}

// quiet fails the test if c gets a value within d.
func quiet(t *testing.T, c <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-c:
		t.Fatalf("a signal: %s", what)
	case <-time.After(d):
	}
}

func TestWaitFinishedSignalsTheFinishOfItsTaskOnly(t *testing.T) {
	e := setup(t)
	waiter := e.newBroker(broker.Options{})
	ctx := context.Background()
	r, other := finishOne(t, e.b, "w"), finishOne(t, e.b, "w")
	fin, stop, err := waiter.WaitFinished(ctx, r.ID, "w")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	// A second waiter on the same task shares the subscription.
	fin2, stop2, err := waiter.WaitFinished(ctx, r.ID, "w")
	if err != nil {
		t.Fatal(err)
	}
	defer stop2()
	if err := e.b.Finish(ctx, other); err != nil {
		t.Fatal(err)
	}
	quiet(t, fin, 100*time.Millisecond, "another task's finish woke the waiter")
	if err := e.b.Finish(ctx, r); err != nil {
		t.Fatal(err)
	}
	signalled(t, fin, 5*time.Second, "the task finished")
	signalled(t, fin2, 5*time.Second, "the task finished (second waiter)")
	if err := waiter.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := waiter.WaitFinished(ctx, r.ID, "w"); err == nil {
		t.Error("WaitFinished after Close succeeded")
	}
}

func TestWaitFinishedSignalsWhenPubSubWasCutOff(t *testing.T) {
	_, direct := onRealRedis(t, &twice{})
	ctx := context.Background()
	waiter := broker.New(redis.NewClient(direct.Options()), broker.Options{})
	t.Cleanup(func() { _ = waiter.Close(); _ = waiter.Client().Close() })
	b := broker.New(direct, broker.Options{})
	r := finishOne(t, b, "w")
	fin, stop, err := waiter.WaitFinished(ctx, r.ID, "w")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := direct.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	// The subscription comes back and says events may have been lost:
	// the waiter looks (it finds the task unfinished and waits on).
	signalled(t, fin, 10*time.Second, "reconnected after CLIENT KILL TYPE pubsub")
	if err := b.Finish(ctx, r); err != nil {
		t.Fatal(err)
	}
	signalled(t, fin, 5*time.Second, "the finish after the reconnection")
}

func TestSubscriptionTellsOfEventsMissedWhileCutOff(t *testing.T) {
	_, direct := onRealRedis(t, &twice{})
	ctx := context.Background()
	s := subscribe(t, broker.New(redis.NewClient(direct.Options()), broker.Options{}), []string{"ev"})
	if err := direct.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-s.Events():
		if ev.Kind != broker.EventMissed || ev.Queue != "ev" {
			t.Fatalf("after the cut: %+v, want missed on ev", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no missed event after CLIENT KILL TYPE pubsub")
	}
	m := newMsg(t, "brokertest.events", "ev", 0, 1)
	if err := broker.New(direct, broker.Options{}).Enqueue(ctx, m); err != nil {
		t.Fatal(err)
	}
	got := collect(t, s, 1)
	if got[0].Kind != broker.EventEnqueued || got[0].ID != m.ID {
		t.Errorf("after reconnecting: %v", got[0])
	}
}

func TestSlowReaderGetsMissed(t *testing.T) {
	e := setup(t)
	s := subscribe(t, e.newBroker(broker.Options{}), []string{"big"})
	var msgs []*task.Message
	for i := range broker.EventBuffer + 10 {
		msgs = append(msgs, newMsg(t, "brokertest.big", "big", 0, i))
	}
	e.enqueue(msgs...)
	// Nothing read until all are published: the buffer overflowed.
	time.Sleep(300 * time.Millisecond)
	for i := range broker.EventBuffer {
		select {
		case <-s.Events():
		case <-time.After(10 * time.Second):
			t.Fatalf("%d events buffered, want %d", i, broker.EventBuffer)
		}
	}
	if err := e.b.Enqueue(e.ctx, newMsg(t, "brokertest.big", "big", 0, -1)); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-s.Events():
		if ev.Kind != broker.EventMissed {
			t.Fatalf("after an overflow: %+v, want missed", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no missed event after the buffer overflowed")
	}
}

func TestSubscribeFailsWithoutRedis(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: m.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := broker.New(rdb, broker.Options{}).Subscribe(ctx, []string{"q"}); err == nil {
		t.Fatal("Subscribe without Redis succeeded")
	}
}

package broker_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

// base is the miniredis clock at the start of the tests that set it; the
// broker's scripts read the server clock (TIME), which SetTime controls.
var base = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

type env struct {
	t   *testing.T
	m   *miniredis.Miniredis
	b   *broker.Redis
	ctx context.Context
}

func setup(t *testing.T, opts ...broker.Options) *env {
	t.Helper()
	m := miniredis.RunT(t)
	e := &env{t: t, m: m, ctx: context.Background()}
	var o broker.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	e.b = e.newBroker(o)
	return e
}

// newBroker opens another broker (its own client, like another process) on
// the same miniredis.
func (e *env) newBroker(o broker.Options) *broker.Redis {
	c := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: e.m.Addr()})
	e.t.Cleanup(func() { _ = c.Close() })
	return broker.New(c, o)
}

func newMsg(t *testing.T, name, queue string, prio int, args any) *task.Message {
	t.Helper()
	raw, err := serializer.Default.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	return &task.Message{
		ID: task.NewID(), TaskName: name, Queue: queue, Priority: prio, Backend: "default",
		Args: raw, EnqueuedAt: time.Now(),
	}
}

func (e *env) enqueue(msgs ...*task.Message) {
	e.t.Helper()
	if err := e.b.EnqueueMany(e.ctx, msgs); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) claim(queues []string, n int, lease time.Duration, worker string) []broker.Claimed {
	e.t.Helper()
	got, err := e.b.Claim(e.ctx, queues, n, lease, worker)
	if err != nil {
		e.t.Fatalf("Claim: %v", err)
	}
	return got
}

// claim1 claims exactly one task and fails the test otherwise.
func (e *env) claim1(queue, worker string, lease time.Duration) *task.RawResult {
	e.t.Helper()
	got := e.claim([]string{queue}, 1, lease, worker)
	if len(got) != 1 {
		e.t.Fatalf("Claim(%s) got %d tasks, want 1", queue, len(got))
	}
	if got[0].Bad != nil {
		e.t.Fatalf("Claim(%s): bad payload: %v", queue, got[0].Bad)
	}
	return got[0].Result
}

func (e *env) get(id string) *task.RawResult {
	e.t.Helper()
	r, err := e.b.GetResult(e.ctx, id)
	if err != nil {
		e.t.Fatalf("GetResult(%s): %v", id, err)
	}
	return r
}

func (e *env) count(queue string) broker.Counts {
	e.t.Helper()
	c, err := e.b.Count(e.ctx, queue)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// ready returns the ids in queue's T:ready list (priority 0), head first.
func (e *env) ready(queue string) []string {
	e.t.Helper()
	key := "{gotasks:" + queue + "}:ready"
	if !e.m.Exists(key) {
		return nil
	}
	l, err := e.m.List(key)
	if err != nil {
		e.t.Fatalf("List(%s): %v", key, err)
	}
	return l
}

func (e *env) zmembers(key string) []string {
	e.t.Helper()
	if !e.m.Exists(key) {
		return nil
	}
	ms, err := e.m.ZMembers(key)
	if err != nil {
		e.t.Fatalf("ZMembers(%s): %v", key, err)
	}
	return ms
}

func ids(cs []broker.Claimed) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Result.ID
	}
	return out
}

func msgIDs(ms []*task.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func TestEnqueueStoresInHashTaggedKeys(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	msg := newMsg(t, "brokertest.send", "emails", 3, map[string]string{"to": "ann"})
	e.enqueue(msg)

	tag := "{gotasks:emails}"
	if got, _ := e.m.HKeys(tag + ":tasks"); !slices.Equal(got, []string{msg.ID}) {
		t.Errorf("%s:tasks fields = %v, want [%s]", tag, got, msg.ID)
	}
	if got := e.zmembers(tag + ":pending"); !slices.Equal(got, []string{msg.ID}) {
		t.Errorf("%s:pending = %v, want [%s]", tag, got, msg.ID)
	}
	for _, k := range []string{tag + ":running", tag + ":delayed"} {
		if e.m.Exists(k) {
			t.Errorf("%s exists after a plain enqueue", k)
		}
	}
	if ok, _ := e.m.SIsMember("gotasks:queues", "emails"); !ok {
		t.Errorf("queue not registered in gotasks:queues: %v", e.m.Keys())
	}
	for _, k := range e.m.Keys() {
		if k != "gotasks:queues" && k != "gotasks:newqueue" && !strings.HasPrefix(k, tag+":") {
			t.Errorf("key %q is outside the queue's hash tag", k)
		}
	}
	if c := e.count("emails"); c != (broker.Counts{Pending: 1}) {
		t.Errorf("Count = %+v, want 1 pending", c)
	}
	if qs, err := e.b.KnownQueues(e.ctx); err != nil || !slices.Equal(qs, []string{"emails"}) {
		t.Errorf("KnownQueues = %v, %v", qs, err)
	}

	// Another process finds the NEW result by id alone.
	other := e.newBroker(broker.Options{})
	r, err := other.GetResult(e.ctx, msg.ID)
	if err != nil {
		t.Fatalf("GetResult from another broker: %v", err)
	}
	if r.ID != msg.ID || r.TaskName != msg.TaskName || r.Queue != "emails" || r.Priority != 3 ||
		r.Backend != "default" || r.Status != task.StatusNew || r.Attempts != 0 || r.WorkerIDs != nil ||
		!r.StartedAt.IsZero() || !r.FinishedAt.IsZero() || !r.RunAfter.IsZero() {
		t.Errorf("GetResult = %+v", r)
	}
	if !r.EnqueuedAt.Equal(msg.EnqueuedAt.Truncate(time.Microsecond)) {
		t.Errorf("EnqueuedAt = %v, want %v", r.EnqueuedAt, msg.EnqueuedAt)
	}
	var args map[string]string
	if err := r.DecodeArgs(&args); err != nil || args["to"] != "ann" {
		t.Errorf("DecodeArgs = %v, %v", args, err)
	}
	var v string
	if err := r.Decode(&v); !errors.Is(err, task.ErrNotFinished) {
		t.Errorf("Decode of a NEW result = %v, want ErrNotFinished", err)
	}
}

func TestCustomPrefix(t *testing.T) {
	e := setup(t, broker.Options{Prefix: "app1"})
	msg := newMsg(t, "brokertest.send", "emails", 0, 1)
	e.enqueue(msg)
	for _, k := range e.m.Keys() {
		if strings.Contains(k, "gotasks") {
			t.Errorf("key %q ignores the prefix", k)
		}
	}
	if !e.m.Exists("{app1:emails}:tasks") || !e.m.Exists("{app1:emails}:ready") {
		t.Errorf("keys = %v, want {app1:emails}:tasks and :ready", e.m.Keys())
	}
	if ok, _ := e.m.SIsMember("app1:queues", "emails"); !ok {
		t.Errorf("queue not registered in app1:queues: %v", e.m.Keys())
	}
	// Applications sharing a Redis do not see each other's tasks.
	if _, err := e.newBroker(broker.Options{}).GetResult(e.ctx, msg.ID); !errors.Is(err, task.ErrResultNotFound) {
		t.Errorf("default prefix GetResult = %v, want ErrResultNotFound", err)
	}
	if got := e.newBroker(broker.Options{}).Options().Prefix; got != broker.DefaultPrefix {
		t.Errorf("default Prefix = %q", got)
	}
	if r, err := e.newBroker(broker.Options{Prefix: "app1"}).GetResult(e.ctx, msg.ID); err != nil || r.ID != msg.ID {
		t.Errorf("same prefix GetResult = %v, %v", r, err)
	}
	if got := e.claim([]string{"emails"}, 1, time.Minute, "w"); len(got) != 1 {
		t.Errorf("Claim with the prefix got %d tasks", len(got))
	}
}

func TestGetResultNotFound(t *testing.T) {
	e := setup(t)
	// No queue exists yet.
	if _, err := e.b.GetResult(e.ctx, task.NewID()); !errors.Is(err, task.ErrResultNotFound) {
		t.Errorf("empty Redis: err = %v, want ErrResultNotFound", err)
	}
	e.enqueue(newMsg(t, "brokertest.x", "a", 0, 1), newMsg(t, "brokertest.x", "b", 0, 1))
	for _, id := range []string{
		task.NewID(), "", "nope", "../../etc/passwd", "*", "01m87kj45kr135hege9fz6jxbx",
		"01M87KJ45KR135HEGE9FZ6JXBXX", "81M87KJ45KR135HEGE9FZ6JXBX", "{gotasks:a}:tasks",
	} {
		if r, err := e.b.GetResult(e.ctx, id); !errors.Is(err, task.ErrResultNotFound) {
			t.Errorf("GetResult(%q) = %v, %v; want ErrResultNotFound", id, r, err)
		}
	}
}

// TestClaimOrder checks priority first and exact FIFO within a priority,
// with the clock frozen so that every task shares one millisecond, and
// across a batch enqueued in one EnqueueMany.
func TestClaimOrder(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	prios := []int{0, 5, -3, 0, 5, 100, -100, 0, 5, -3, 0, 1}
	var msgs []*task.Message
	for _, p := range prios { // one script call each, same millisecond
		m := newMsg(t, "brokertest.o", "q", p, len(msgs))
		e.enqueue(m)
		msgs = append(msgs, m)
	}
	var batch []*task.Message
	for i := range 200 { // one EnqueueMany, same millisecond
		batch = append(batch, newMsg(t, "brokertest.o", "q", (i*7)%5-2, i))
	}
	e.enqueue(batch...)
	msgs = append(msgs, batch...)
	// A clock that steps back (Redis failover) does not break FIFO either.
	e.m.SetTime(base.Add(-time.Hour))
	late := newMsg(t, "brokertest.o", "q", 0, -1)
	e.enqueue(late)
	msgs = append(msgs, late)

	want := slices.Clone(msgs)
	slices.SortStableFunc(want, func(a, b *task.Message) int { return b.Priority - a.Priority })

	var got []string
	for range 20 {
		got = append(got, e.claim1("q", "w", time.Minute).ID)
	}
	got = append(got, ids(e.claim([]string{"q"}, 50, time.Minute, "w"))...)
	got = append(got, ids(e.claim([]string{"q"}, 1000, time.Minute, "w"))...)
	if !slices.Equal(got, msgIDs(want)) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i].ID {
				t.Fatalf("claim %d: got %s, want %s (priority %d); %d claimed of %d", i, got[i], want[i].ID, want[i].Priority, len(got), len(want))
			}
		}
		t.Fatalf("claimed %d tasks, want %d", len(got), len(want))
	}
	if c := e.count("q"); c != (broker.Counts{Running: int64(len(msgs))}) {
		t.Errorf("Count = %+v", c)
	}
}

func TestClaimAcrossQueues(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	a0 := newMsg(t, "brokertest.o", "a", 0, "a0")
	e.enqueue(a0)
	e.m.SetTime(base.Add(5 * time.Millisecond))
	b0 := newMsg(t, "brokertest.o", "b", 0, "b0")
	b5 := newMsg(t, "brokertest.o", "b", 5, "b5")
	e.enqueue(b0, b5)
	e.m.SetTime(base.Add(10 * time.Millisecond))
	a7 := newMsg(t, "brokertest.o", "a", 7, "a7")
	e.enqueue(a7)

	// b is listed first, but only a tie of equal age would go to it: a0 is
	// older than b0.
	qs := []string{"b", "a"}
	var got []string
	for range 4 {
		got = append(got, e.claim(qs, 1, time.Minute, "w")[0].Result.ID)
	}
	if want := []string{a7.ID, b5.ID, a0.ID, b0.ID}; !slices.Equal(got, want) {
		t.Errorf("claim order = %v, want a7 b5 a0 b0 = %v", got, want)
	}
	if got := e.claim(qs, 1, time.Minute, "w"); len(got) != 0 {
		t.Errorf("claim from empty queues got %v", ids(got))
	}
}

// TestClaimManyAcrossQueues: a claim of several tasks takes the best ones
// of all the queues, not everything of the queue with the best head.
func TestClaimManyAcrossQueues(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	a5, a0, a1 := newMsg(t, "brokertest.o", "a", 5, 0), newMsg(t, "brokertest.o", "a", 0, 0), newMsg(t, "brokertest.o", "a", -1, 0)
	e.enqueue(a5, a0, a1)
	e.m.SetTime(base.Add(time.Millisecond))
	b3, b0 := newMsg(t, "brokertest.o", "b", 3, 0), newMsg(t, "brokertest.o", "b", 0, 0)
	e.enqueue(b3, b0)

	got := ids(e.claim([]string{"a", "b"}, 3, time.Minute, "w"))
	slices.Sort(got)
	want := []string{a5.ID, b3.ID, a0.ID}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Claim(3) = %v, want a5 b3 a0 %v", got, want)
	}
	rest := ids(e.claim([]string{"b", "a"}, 10, time.Minute, "w"))
	slices.Sort(rest)
	want = []string{b0.ID, a1.ID}
	slices.Sort(want)
	if !slices.Equal(rest, want) {
		t.Errorf("rest = %v, want %v", rest, want)
	}
}

func TestClaimMarksRunning(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	msg := newMsg(t, "brokertest.r", "q", 2, "x")
	e.enqueue(msg)
	started := base.Add(1500 * time.Millisecond)
	e.m.SetTime(started)
	r := e.claim1("q", "worker-1", 30*time.Second)
	if r.ID != msg.ID || r.Status != task.StatusRunning || !r.StartedAt.Equal(started) || r.Attempts != 1 ||
		!slices.Equal(r.WorkerIDs, []string{"worker-1"}) || r.TaskName != msg.TaskName || r.Queue != "q" || r.Priority != 2 {
		t.Errorf("claimed = %+v", r)
	}
	if got := e.zmembers("{gotasks:q}:running"); !slices.Equal(got, []string{msg.ID}) {
		t.Errorf("running = %v", got)
	}
	if s, err := e.m.ZScore("{gotasks:q}:running", msg.ID); err != nil || int64(s) != started.Add(30*time.Second).UnixMilli() {
		t.Errorf("lease = %v (%v), want %d", s, err, started.Add(30*time.Second).UnixMilli())
	}
	if got := e.zmembers("{gotasks:q}:pending"); len(got) != 0 || e.m.Exists("{gotasks:q}:ready") {
		t.Errorf("pending = %v, ready = %v after claim", got, e.ready("q"))
	}
	g := e.newBroker(broker.Options{})
	got, err := g.GetResult(e.ctx, msg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != task.StatusRunning || !got.StartedAt.Equal(started) || got.Attempts != 1 || !slices.Equal(got.WorkerIDs, []string{"worker-1"}) {
		t.Errorf("GetResult = %+v", got)
	}
	if more := e.claim([]string{"q"}, 5, time.Minute, "worker-2"); len(more) != 0 {
		t.Errorf("the running task was claimed twice: %v", ids(more))
	}
}

func TestFinishComplete(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	msg := newMsg(t, "brokertest.c", "q", 0, 1)
	e.enqueue(msg)
	r := e.claim1("q", "w", time.Minute)
	finished := base.Add(3 * time.Second)
	e.m.SetTime(finished)
	r.Status = task.StatusComplete
	r.Value, _ = serializer.Default.Marshal("done!")
	if err := e.b.Finish(e.ctx, r); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if !r.FinishedAt.Equal(finished) {
		t.Errorf("FinishedAt = %v, want %v", r.FinishedAt, finished)
	}
	for _, k := range []string{"{gotasks:q}:running", "{gotasks:q}:tasks", "{gotasks:q}:pending", "{gotasks:q}:ready"} {
		if e.m.Exists(k) {
			t.Errorf("%s still exists after Finish: %v", k, e.m.Dump())
		}
	}
	rkey := "{gotasks:q}:r:" + msg.ID
	if ttl := e.m.TTL(rkey); ttl != broker.DefaultResultTTL {
		t.Errorf("TTL(%s) = %v, want %v", rkey, ttl, broker.DefaultResultTTL)
	}
	got, err := e.newBroker(broker.Options{}).GetResult(e.ctx, msg.ID)
	if err != nil {
		t.Fatal(err)
	}
	var v string
	if err := got.Decode(&v); err != nil || v != "done!" {
		t.Errorf("Decode = %q, %v", v, err)
	}
	if got.Status != task.StatusComplete || !got.FinishedAt.Equal(finished) || !got.StartedAt.Equal(base) ||
		got.Attempts != 1 || got.Err != nil || got.TaskName != msg.TaskName || got.Queue != "q" {
		t.Errorf("GetResult = %+v", got)
	}
	// The same Finish again (sent again after its reply was lost) finds
	// its own result: no error, the stored time. Another outcome for the
	// same attempt is refused.
	r.FinishedAt = time.Time{}
	if err := e.b.Finish(e.ctx, r); err != nil || !r.FinishedAt.Equal(finished) {
		t.Errorf("the same Finish again = %v, finished at %v; want nil, %v", err, r.FinishedAt, finished)
	}
	other := *r
	other.Status, other.Err = task.StatusFailed, &task.Error{Message: "no"}
	if err := e.b.Finish(e.ctx, &other); !errors.Is(err, broker.ErrLeaseLost) {
		t.Errorf("another outcome of the finished attempt = %v, want ErrLeaseLost", err)
	}
	e.m.FastForward(broker.DefaultResultTTL - time.Second)
	if _, err := e.b.GetResult(e.ctx, msg.ID); err != nil {
		t.Errorf("result gone before its TTL: %v", err)
	}
	e.m.FastForward(2 * time.Second)
	if _, err := e.b.GetResult(e.ctx, msg.ID); !errors.Is(err, task.ErrResultNotFound) {
		t.Errorf("after ResultTTL: err = %v, want ErrResultNotFound", err)
	}
}

func TestCustomResultTTL(t *testing.T) {
	e := setup(t, broker.Options{ResultTTL: 90 * time.Second})
	msg := newMsg(t, "brokertest.c", "q", 0, 1)
	e.enqueue(msg)
	// An unfinished task never expires.
	e.m.FastForward(30 * 24 * time.Hour)
	r := e.claim1("q", "w", time.Minute)
	r.Status = task.StatusComplete
	if err := e.b.Finish(e.ctx, r); err != nil {
		t.Fatal(err)
	}
	if ttl := e.m.TTL("{gotasks:q}:r:" + msg.ID); ttl != 90*time.Second {
		t.Errorf("TTL = %v, want 90s", ttl)
	}
	e.m.FastForward(89 * time.Second)
	if got := e.get(msg.ID); got.Status != task.StatusComplete {
		t.Errorf("status = %s", got.Status)
	}
	e.m.FastForward(2 * time.Second)
	if _, err := e.b.GetResult(e.ctx, msg.ID); !errors.Is(err, task.ErrResultNotFound) {
		t.Errorf("after ResultTTL: err = %v, want ErrResultNotFound", err)
	}
}

func TestFinishFailed(t *testing.T) {
	e := setup(t)
	msg := newMsg(t, "brokertest.f", "q", 0, 1)
	e.enqueue(msg)
	r := e.claim1("q", "w", time.Minute)
	r.Status = task.StatusFailed
	r.Err = &task.Error{Type: "*errors.errorString", Message: "boom", Traceback: "line 1\nline 2"}
	if err := e.b.Finish(e.ctx, r); err != nil {
		t.Fatal(err)
	}
	got := e.get(msg.ID)
	if got.Status != task.StatusFailed || got.Err == nil || *got.Err != *r.Err || got.Value != nil || got.FinishedAt.IsZero() {
		t.Errorf("GetResult = %+v, err %+v", got, got.Err)
	}
	var v int
	var te *task.Error
	if err := got.Decode(&v); !errors.As(err, &te) || te.Message != "boom" {
		t.Errorf("Decode of FAILED = %v", err)
	}
	if ttl := e.m.TTL("{gotasks:q}:r:" + msg.ID); ttl != broker.DefaultFailedTTL { // the dead-letter retention
		t.Errorf("TTL = %v", ttl)
	}
}

func TestFinishRefusesUnfinishedStatus(t *testing.T) {
	e := setup(t)
	msg := newMsg(t, "brokertest.f", "q", 0, 1)
	e.enqueue(msg)
	r := e.claim1("q", "w", time.Minute)
	err := e.b.Finish(e.ctx, r) // still RUNNING
	if err == nil || errors.Is(err, broker.ErrLeaseLost) {
		t.Errorf("Finish(RUNNING) = %v, want a status error", err)
	}
	if got := e.get(msg.ID); got.Status != task.StatusRunning {
		t.Errorf("status = %s", got.Status)
	}
}

// TestFencing: a worker whose lease expired and whose task another worker
// claimed can neither renew nor overwrite the newer attempt.
func TestFencing(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	msg := newMsg(t, "brokertest.fence", "q", 0, 1)
	e.enqueue(msg)
	r1 := e.claim1("q", "w1", 10*time.Second)

	// The holder renews: the lease score moves.
	e.m.SetTime(base.Add(8 * time.Second))
	lost, err := e.b.Renew(e.ctx, "q", []*task.RawResult{r1}, 10*time.Second)
	if err != nil || len(lost) != 0 {
		t.Fatalf("Renew by the holder = %v, %v", lost, err)
	}
	if s, _ := e.m.ZScore("{gotasks:q}:running", msg.ID); int64(s) != base.Add(18*time.Second).UnixMilli() {
		t.Errorf("lease after renew = %v, want %d", int64(s), base.Add(18*time.Second).UnixMilli())
	}
	e.m.SetTime(base.Add(17 * time.Second))
	if n, _, err := e.b.Reap(e.ctx, "q", 100); err != nil || n != 0 {
		t.Fatalf("Reap of a renewed lease = %d, %v", n, err)
	}

	// w1 stops renewing; the lease expires, the task is requeued and w2
	// claims attempt 2.
	e.m.SetTime(base.Add(19 * time.Second))
	if n, _, err := e.b.Reap(e.ctx, "q", 100); err != nil || n != 1 {
		t.Fatalf("Reap = %d, %v; want 1", n, err)
	}
	if got := e.get(msg.ID); got.Status != task.StatusNew || got.Attempts != 1 {
		t.Errorf("after reap: %s attempts %d, want NEW 1", got.Status, got.Attempts)
	}
	// Not even before anyone claims it again may w1 write.
	r1.Status = task.StatusComplete
	r1.Value, _ = serializer.Default.Marshal("stale")
	if err := e.b.Finish(e.ctx, r1); !errors.Is(err, broker.ErrLeaseLost) {
		t.Errorf("Finish after reap = %v, want ErrLeaseLost", err)
	}
	r2 := e.claim1("q", "w2", 10*time.Second)
	if r2.Attempts != 2 || !slices.Equal(r2.WorkerIDs, []string{"w1", "w2"}) {
		t.Errorf("attempt 2 = attempts %d workers %v", r2.Attempts, r2.WorkerIDs)
	}

	if err := e.b.Finish(e.ctx, r1); !errors.Is(err, broker.ErrLeaseLost) {
		t.Errorf("Finish of attempt 1 = %v, want ErrLeaseLost", err)
	}
	lost, err = e.b.Renew(e.ctx, "q", []*task.RawResult{r1}, 10*time.Second)
	if err != nil || !slices.Equal(rawIDs(lost), []string{msg.ID}) {
		t.Errorf("Renew of attempt 1 = %v, %v; want [%s] lost", lost, err, msg.ID)
	}
	if n, err := e.b.Requeue(e.ctx, "q", []*task.RawResult{r1}); err != nil || n != 0 {
		t.Errorf("Requeue of attempt 1 = %d, %v", n, err)
	}
	got := e.get(msg.ID)
	if got.Status != task.StatusRunning || got.Attempts != 2 || !slices.Equal(got.WorkerIDs, []string{"w1", "w2"}) {
		t.Errorf("attempt 1 disturbed attempt 2: %+v", got)
	}
	if s, _ := e.m.ZScore("{gotasks:q}:running", msg.ID); int64(s) != base.Add(29*time.Second).UnixMilli() {
		t.Errorf("attempt 2's lease = %d, want %d", int64(s), base.Add(29*time.Second).UnixMilli())
	}

	r2.Status = task.StatusComplete
	r2.Value, _ = serializer.Default.Marshal("fresh")
	if err := e.b.Finish(e.ctx, r2); err != nil {
		t.Fatalf("Finish of attempt 2: %v", err)
	}
	if err := e.b.Finish(e.ctx, r1); !errors.Is(err, broker.ErrLeaseLost) {
		t.Errorf("Finish of attempt 1 after completion = %v", err)
	}
	var v string
	if err := e.get(msg.ID).Decode(&v); err != nil || v != "fresh" {
		t.Errorf("value = %q, %v; want fresh", v, err)
	}
}

func TestRenewMixed(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	e.enqueue(newMsg(t, "brokertest.r", "q", 0, 1), newMsg(t, "brokertest.r", "q", 0, 2))
	cs := e.claim([]string{"q"}, 2, time.Second, "w")
	held, other := cs[0].Result, *cs[1].Result
	other.Attempts = 7 // not the attempt that holds the lease
	unknown := &task.RawResult{ID: task.NewID(), Queue: "q", Attempts: 1}
	lost, err := e.b.Renew(e.ctx, "q", []*task.RawResult{held, &other, unknown}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	lostIDs := rawIDs(lost)
	slices.Sort(lostIDs)
	want := []string{other.ID, unknown.ID}
	slices.Sort(want)
	if !slices.Equal(lostIDs, want) {
		t.Errorf("lost = %v, want %v", lostIDs, want)
	}
	if s, _ := e.m.ZScore("{gotasks:q}:running", held.ID); int64(s) != base.Add(time.Minute).UnixMilli() {
		t.Errorf("held lease not extended: %d", int64(s))
	}
	if s, _ := e.m.ZScore("{gotasks:q}:running", other.ID); int64(s) != base.Add(time.Second).UnixMilli() {
		t.Errorf("a wrong attempt extended the lease: %d", int64(s))
	}
	if slices.Contains(e.zmembers("{gotasks:q}:running"), unknown.ID) {
		t.Errorf("Renew added an unknown id to the running set")
	}
	if lost, err := e.b.Renew(e.ctx, "q", nil, time.Minute); err != nil || lost != nil {
		t.Errorf("Renew(nil) = %v, %v", lost, err)
	}
}

func TestRequeue(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	a, b := newMsg(t, "brokertest.rq", "q", 0, "a"), newMsg(t, "brokertest.rq", "q", 0, "b")
	hi := newMsg(t, "brokertest.rq", "q", 1, "hi")
	e.enqueue(a, b)
	ra := e.claim1("q", "w1", time.Minute)
	if ra.ID != a.ID {
		t.Fatalf("claimed %s, want a", ra.ID)
	}
	// Meanwhile a newer task of the same priority, and a higher one.
	e.m.SetTime(base.Add(time.Second))
	c := newMsg(t, "brokertest.rq", "q", 0, "c")
	e.enqueue(c, hi)

	if n, err := e.b.Requeue(e.ctx, "q", []*task.RawResult{ra}); err != nil || n != 1 {
		t.Fatalf("Requeue = %d, %v; want 1", n, err)
	}
	if c := e.count("q"); c != (broker.Counts{Pending: 4}) {
		t.Errorf("Count after requeue = %+v", c)
	}
	got := e.get(a.ID)
	if got.Status != task.StatusNew || got.Attempts != 1 || !slices.Equal(got.WorkerIDs, []string{"w1"}) {
		t.Errorf("requeued = %s attempts %d workers %v; want NEW, 1, [w1]", got.Status, got.Attempts, got.WorkerIDs)
	}
	// Handed back: no longer the caller's, so no second requeue and no finish.
	if n, err := e.b.Requeue(e.ctx, "q", []*task.RawResult{ra}); err != nil || n != 0 {
		t.Errorf("second Requeue = %d, %v", n, err)
	}
	ra.Status = task.StatusComplete
	if err := e.b.Finish(e.ctx, ra); !errors.Is(err, broker.ErrLeaseLost) {
		t.Errorf("Finish after Requeue = %v, want ErrLeaseLost", err)
	}

	order := ids(e.claim([]string{"q"}, 10, time.Minute, "w2"))
	if want := []string{hi.ID, a.ID, b.ID, c.ID}; !slices.Equal(order, want) {
		t.Errorf("order after requeue = %v, want hi a b c %v", order, want)
	}
	// Requeue by a caller that does not hold the lease changes nothing.
	stale := &task.RawResult{ID: a.ID, Queue: "q", Attempts: 1}
	if n, err := e.b.Requeue(e.ctx, "q", []*task.RawResult{stale}); err != nil || n != 0 {
		t.Errorf("Requeue of a stale attempt = %d, %v", n, err)
	}
	if got := e.get(a.ID); got.Status != task.StatusRunning || got.Attempts != 2 {
		t.Errorf("after stale requeue: %s %d", got.Status, got.Attempts)
	}
}

func TestPromote(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	due := base.Add(10 * time.Second)
	d1 := newMsg(t, "brokertest.d", "q", 0, 1)
	d1.RunAfter = due
	d2 := newMsg(t, "brokertest.d", "q", 0, 2)
	d2.RunAfter = due.Add(time.Minute)
	past := newMsg(t, "brokertest.d", "q", 0, 3)
	past.RunAfter = base.Add(-time.Second) // already due: ready at once
	e.enqueue(d1, d2, past)

	if c := e.count("q"); c != (broker.Counts{Pending: 1, Deferred: 2}) {
		t.Errorf("Count = %+v, want 1 pending 2 deferred", c)
	}
	if got := e.get(d1.ID); got.Status != task.StatusNew || !got.RunAfter.Equal(due) {
		t.Errorf("deferred result = %s run_after %v", got.Status, got.RunAfter)
	}
	if got := e.claim([]string{"q"}, 10, time.Minute, "w"); !slices.Equal(ids(got), []string{past.ID}) {
		t.Errorf("claimed %v, want only the task that is already due", ids(got))
	}

	e.m.SetTime(due.Add(-time.Millisecond))
	n, next, err := e.b.Promote(e.ctx, "q", 100)
	if err != nil || n != 0 || !next.Equal(due) {
		t.Errorf("Promote 1ms early = %d, %v, %v; want 0, %v", n, next, err, due)
	}
	if got := e.claim([]string{"q"}, 10, time.Minute, "w"); len(got) != 0 {
		t.Errorf("claimed a deferred task early: %v", ids(got))
	}

	e.m.SetTime(due)
	n, next, err = e.b.Promote(e.ctx, "q", 100)
	if err != nil || n != 1 || !next.Equal(d2.RunAfter) {
		t.Errorf("Promote at run_after = %d, %v, %v; want 1, %v", n, next, err, d2.RunAfter)
	}
	if got := e.claim([]string{"q"}, 10, time.Minute, "w"); !slices.Equal(ids(got), []string{d1.ID}) {
		t.Errorf("claimed %v, want d1", ids(got))
	}
	// Idempotent: nothing more is due.
	if n, _, err := e.b.Promote(e.ctx, "q", 100); err != nil || n != 0 {
		t.Errorf("second Promote = %d, %v", n, err)
	}

	e.m.SetTime(d2.RunAfter.Add(time.Hour))
	n, next, err = e.b.Promote(e.ctx, "q", 100)
	if err != nil || n != 1 || !next.IsZero() {
		t.Errorf("last Promote = %d, %v, %v; want 1, zero", n, next, err)
	}
	if c := e.count("q"); c != (broker.Counts{Pending: 1, Running: 2}) {
		t.Errorf("Count = %+v", c)
	}
}

// TestPromoteKeepsPriority: promoted tasks join the ready ones by priority.
func TestPromoteKeepsPriority(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	d := newMsg(t, "brokertest.d", "q", 9, "deferred")
	d.RunAfter = base.Add(time.Second)
	lo := newMsg(t, "brokertest.d", "q", 0, "low")
	e.enqueue(d, lo)
	e.m.SetTime(base.Add(2 * time.Second))
	if n, _, err := e.b.Promote(e.ctx, "q", 100); err != nil || n != 1 {
		t.Fatalf("Promote = %d, %v", n, err)
	}
	if got := ids(e.claim([]string{"q"}, 2, time.Minute, "w")); !slices.Equal(got, []string{d.ID, lo.ID}) {
		t.Errorf("order = %v, want the promoted high-priority task first", got)
	}
}

func TestReapOnlyExpired(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	short, long := newMsg(t, "brokertest.reap", "q", 0, 1), newMsg(t, "brokertest.reap", "q", 0, 2)
	e.enqueue(short, long)
	e.claim1("q", "w", time.Second)
	e.claim1("q", "w", 5*time.Second)

	n, next, err := e.b.Reap(e.ctx, "q", 100)
	if err != nil || n != 0 || !next.Equal(base.Add(time.Second)) {
		t.Errorf("Reap before expiry = %d, %v, %v", n, next, err)
	}
	e.m.SetTime(base.Add(2 * time.Second))
	n, next, err = e.b.Reap(e.ctx, "q", 100)
	if err != nil || n != 1 || !next.Equal(base.Add(5*time.Second)) {
		t.Errorf("Reap = %d, %v, %v; want 1, %v", n, next, err, base.Add(5*time.Second))
	}
	if got := e.ready("q"); !slices.Equal(got, []string{short.ID}) {
		t.Errorf("ready = %v, want the expired one", got)
	}
	if got := e.zmembers("{gotasks:q}:running"); !slices.Equal(got, []string{long.ID}) {
		t.Errorf("running = %v, want the live one", got)
	}
	e.m.SetTime(base.Add(time.Hour))
	if n, next, err := e.b.Reap(e.ctx, "q", 100); err != nil || n != 1 || !next.IsZero() {
		t.Errorf("last Reap = %d, %v, %v", n, next, err)
	}
}

func TestEnqueueMany(t *testing.T) {
	e := setup(t)
	var msgs []*task.Message
	for i := range 300 {
		q := []string{"x", "y"}[i%2]
		msgs = append(msgs, newMsg(t, "brokertest.many", q, 0, i))
	}
	e.enqueue(msgs...)
	for _, q := range []string{"x", "y"} {
		if c := e.count(q); c.Pending != 150 {
			t.Errorf("%s: %+v, want 150 pending", q, c)
		}
		if n, _ := e.m.HKeys("{gotasks:" + q + "}:tasks"); len(n) != 150 {
			t.Errorf("%s: %d tasks stored", q, len(n))
		}
	}
	if qs, _ := e.b.KnownQueues(e.ctx); !slices.Equal(qs, []string{"x", "y"}) {
		t.Errorf("KnownQueues = %v", qs)
	}
	for _, m := range msgs[:5] {
		if r := e.get(m.ID); r.Queue != m.Queue {
			t.Errorf("%s: queue %s", m.ID, r.Queue)
		}
	}
}

func TestEnqueueManyDuplicateWritesNothing(t *testing.T) {
	e := setup(t)
	first := newMsg(t, "brokertest.dup", "q", 0, 0)
	e.enqueue(first)
	before := e.m.Dump()
	a, c := newMsg(t, "brokertest.dup", "q", 0, 1), newMsg(t, "brokertest.dup", "q", 0, 2)
	c.RunAfter = time.Now().Add(time.Hour)
	dup := *first
	dup.TaskName = "brokertest.other" // the id is taken by another task
	err := e.b.EnqueueMany(e.ctx, []*task.Message{a, &dup, c})
	if !errors.Is(err, task.ErrDuplicateID) || errors.Is(err, task.ErrMaybeEnqueued) {
		t.Fatalf("EnqueueMany with a duplicate id = %v, want ErrDuplicateID alone", err)
	}
	if after := e.m.Dump(); after != before {
		t.Errorf("a failed EnqueueMany wrote something:\nbefore %s\nafter %s", before, after)
	}
	for _, id := range []string{a.ID, c.ID} {
		if _, err := e.b.GetResult(e.ctx, id); !errors.Is(err, task.ErrResultNotFound) {
			t.Errorf("%s was stored: %v", id, err)
		}
	}
}

// TestEnqueueAfterScriptFlush: Redis forgets its scripts on a restart; the
// next Enqueue must load them again rather than fail from then on.
func TestEnqueueAfterScriptFlush(t *testing.T) {
	e := setup(t)
	e.enqueue(newMsg(t, "brokertest.f", "q", 0, 1))
	if err := e.b.Client().ScriptFlush(e.ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Enqueue(e.ctx, newMsg(t, "brokertest.f", "q", 0, 2)); err != nil {
		t.Fatalf("Enqueue after SCRIPT FLUSH: %v", err)
	}
	if err := e.b.EnqueueMany(e.ctx, []*task.Message{newMsg(t, "brokertest.f", "q", 0, 3), newMsg(t, "brokertest.f", "r", 0, 4)}); err != nil {
		t.Fatalf("EnqueueMany after SCRIPT FLUSH: %v", err)
	}
	if c := e.count("q"); c.Pending != 3 {
		t.Errorf("Count = %+v, want 3 pending", c)
	}
	if c := e.count("r"); c.Pending != 1 {
		t.Errorf("Count(r) = %+v, want 1 pending", c)
	}
	if got := e.claim([]string{"q", "r"}, 10, time.Minute, "w"); len(got) != 4 {
		t.Errorf("claimed %d, want 4", len(got))
	}
}

// TestBadPayload: values gotasks did not write (a poison message) are
// claimed like any task, with Bad set, so a worker can fail them; they do
// not break the claim of the good tasks next to them.
func TestBadPayload(t *testing.T) {
	e := setup(t)
	e.m.SetTime(base)
	good := newMsg(t, "brokertest.good", "q", 0, 1)
	e.enqueue(good)
	noHeader, badEnvelope, deferred := task.NewID(), task.NewID(), task.NewID()
	e.m.HSet("{gotasks:q}:tasks", noHeader, "garbage")
	e.m.ZAdd("{gotasks:q}:pending", 0, noHeader) // ahead of everything
	e.m.HSet("{gotasks:q}:tasks", badEnvelope, "0 0 0 0 \n\xc1\xc1 not msgpack")
	e.m.ZAdd("{gotasks:q}:pending", 1, badEnvelope)
	e.m.HSet("{gotasks:q}:tasks", deferred, "junk\nmore junk")
	e.m.ZAdd("{gotasks:q}:delayed", 1, deferred) // long due

	if n, _, err := e.b.Promote(e.ctx, "q", 100); err != nil || n != 1 {
		t.Fatalf("Promote with a bad value = %d, %v", n, err)
	}
	got := e.claim([]string{"q"}, 10, time.Minute, "w")
	if len(got) != 4 {
		t.Fatalf("claimed %d tasks, want 4; %s", len(got), e.m.Dump())
	}
	bad := map[string]bool{noHeader: true, badEnvelope: true, deferred: true}
	for _, c := range got {
		r := c.Result
		if r.Status != task.StatusRunning || r.Queue != "q" || r.Attempts != 1 || !slices.Equal(r.WorkerIDs, []string{"w"}) {
			t.Errorf("%s: claimed as %+v", r.ID, r)
		}
		if bad[r.ID] != (c.Bad != nil) {
			t.Errorf("%s: Bad = %v", r.ID, c.Bad)
		}
	}
	if c := e.count("q"); c != (broker.Counts{Running: 4}) {
		t.Errorf("Count = %+v: a task was lost", c)
	}
	for _, c := range got {
		if c.Bad == nil {
			continue
		}
		r := c.Result
		r.Status = task.StatusFailed
		r.Err = &task.Error{Type: task.ErrorTypeBadPayload, Message: c.Bad.Error()}
		if err := e.b.Finish(e.ctx, r); err != nil {
			t.Fatalf("Finish of a bad payload: %v", err)
		}
		res, err := e.b.GetResult(e.ctx, r.ID)
		if err != nil {
			t.Fatalf("GetResult of a failed bad payload: %v", err)
		}
		if res.Status != task.StatusFailed || res.Err == nil || res.Err.Type != task.ErrorTypeBadPayload {
			t.Errorf("GetResult = %+v", res)
		}
	}
	// Reap copes with them too.
	e.m.HSet("{gotasks:q}:tasks", noHeader, "garbage again")
	e.m.ZAdd("{gotasks:q}:running", 0, noHeader)
	if n, _, err := e.b.Reap(e.ctx, "q", 100); err != nil || n != 1 {
		t.Errorf("Reap with a bad value = %d, %v", n, err)
	}
}

func TestWaitReadyWakesOnEnqueue(t *testing.T) {
	e := setup(t)
	// Nothing there: times out.
	start := time.Now()
	if ok, err := e.b.WaitReady(e.ctx, []string{"q"}, 20*time.Millisecond); ok || err != nil {
		t.Fatalf("WaitReady on an empty queue = %v, %v", ok, err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("WaitReady returned after %v, before its timeout", d)
	}
	woke := make(chan time.Time, 1)
	go func() {
		ok, err := e.b.WaitReady(e.ctx, []string{"other", "q"}, 10*time.Second)
		if !ok || err != nil {
			t.Errorf("WaitReady = %v, %v", ok, err)
		}
		woke <- time.Now()
	}()
	// The enqueue may come before or after the BLPOP starts: the token
	// stays until taken.
	enq := time.Now()
	e.enqueue(newMsg(t, "brokertest.w", "q", 0, 1))
	select {
	case at := <-woke:
		if d := at.Sub(enq); d > time.Second {
			t.Errorf("woke %v after the enqueue", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitReady did not wake up on enqueue")
	}

	// A cancelled wait returns at once.
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() {
		_, err := e.b.WaitReady(ctx, []string{"idle"}, 10*time.Second)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled WaitReady = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled WaitReady did not return")
	}
}

func TestWaitDeferredWakesOnDeferredEnqueue(t *testing.T) {
	e := setup(t)
	woke := make(chan bool, 1)
	go func() {
		ok, err := e.b.WaitDeferred(e.ctx, "q", 10*time.Second)
		if err != nil {
			t.Errorf("WaitDeferred: %v", err)
		}
		woke <- ok
	}()
	m := newMsg(t, "brokertest.w", "q", 0, 1)
	m.RunAfter = time.Now().Add(time.Hour)
	e.enqueue(m)
	select {
	case ok := <-woke:
		if !ok {
			t.Error("WaitDeferred timed out")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitDeferred did not wake up on a deferred enqueue")
	}
}

// TestGetResultAfterScriptFlush: reading a result right after Redis forgot
// its scripts must not fail.
func TestGetResultAfterScriptFlush(t *testing.T) {
	e := setup(t)
	m := newMsg(t, "brokertest.f", "q", 0, 1)
	e.enqueue(m)
	if _, err := e.b.GetResult(e.ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Client().ScriptFlush(e.ctx).Err(); err != nil {
		t.Fatal(err)
	}
	r, err := e.b.GetResult(e.ctx, m.ID)
	if err != nil || r.Status != task.StatusNew {
		t.Fatalf("GetResult after SCRIPT FLUSH = %v, %v", r, err)
	}
}

func rawIDs(rs []*task.RawResult) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

// TestQueueRegisteredAgainAfterDataLoss: a Redis that lost its data (a
// restart without persistence) must learn the queue again from the next
// enqueue, or GetResult(id) and "*" workers would never find its tasks.
func TestQueueRegisteredAgainAfterDataLoss(t *testing.T) {
	e := setup(t)
	e.enqueue(newMsg(t, "brokertest.f", "q", 0, 1))
	e.m.FlushAll()
	m := newMsg(t, "brokertest.f", "q", 0, 2)
	e.enqueue(m)
	if qs, err := e.b.KnownQueues(e.ctx); err != nil || !slices.Contains(qs, "q") {
		t.Fatalf("KnownQueues after a flush and an enqueue = %v, %v", qs, err)
	}
	if _, err := e.b.GetResult(e.ctx, m.ID); err != nil {
		t.Fatalf("GetResult: %v", err)
	}
}

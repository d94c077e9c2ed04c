package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/scheduler"
	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// The network fault suite, deterministic part ("Exactly right under a
// hostile network: every script safe to re-send"). go-redis sends a
// command again when its reply was lost (a reset connection, a read
// timeout), so every script of the broker may run twice. Each test below
// loses exactly one reply (see netDropper): Redis has run the command, the
// client got nothing, go-redis sends it again on a new connection. Some
// tests let another worker act in the gap, through a client that bypasses
// the proxy. Then the outcome the caller sees must be the state in Redis:
// no task lost or stored twice, none run by two holders of one attempt
// number, none left RUNNING held by nobody, no success reported as a
// failure.

// netWorld is one deterministic case: a redis-server, a proxy with a
// dropper, the broker under test (NB, through the proxy, configured as task
// backend "net") and a queue. The embedded env's B and R reach Redis
// directly: setup, other workers, checks.
type netWorld struct {
	*netEnv
	NB  *broker.Redis
	Q   string
	ctx context.Context
}

const netBackend = "net"

func newNetWorld(t *testing.T) *netWorld {
	t.Helper()
	n := newNetEnv(t)
	nb := n.openNet(broker.Options{Name: netBackend}, "")
	task.Configure(map[string]task.Backend{task.DefaultBackendName: n.B, netBackend: nb})
	return &netWorld{netEnv: n, NB: nb, Q: "net", ctx: n.ctx}
}

// viaNet is sleepTask on the world's queue through the proxy.
func (w *netWorld) viaNet(opts ...task.Option) *task.Task[sleepArgs, string] {
	return sleepTask.Using(append([]task.Option{task.Queue(w.Q), task.UseBackend(netBackend)}, opts...)...)
}

// add enqueues k demo.sleep tasks on the queue, directly, and returns their ids.
func (w *netWorld) add(k int, opts ...task.Option) []string {
	w.t.Helper()
	args := make([]sleepArgs, k)
	for i := range args {
		args[i] = sleepArgs{Ms: 1, Tag: fmt.Sprintf("add-%d", i)}
	}
	rs, err := sleepTask.Using(append([]task.Option{task.Queue(w.Q)}, opts...)...).EnqueueMany(w.ctx, args)
	if err != nil {
		w.t.Fatalf("enqueue %d tasks directly: %v", k, err)
	}
	ids := make([]string, k)
	for i, r := range rs {
		ids[i] = r.ID
	}
	return ids
}

// claimDirect claims up to k tasks as worker id through the direct broker:
// another worker, out of the faults' reach. Safe in a gap function.
func (w *netWorld) claimDirect(id string, k int, lease time.Duration) ([]*task.RawResult, error) {
	cs, err := w.B.Claim(context.Background(), []string{w.Q}, k, lease, id)
	out := make([]*task.RawResult, len(cs))
	for i, c := range cs {
		out[i] = c.Result
	}
	return out, err
}

// claimNet claims k tasks as worker id through the proxy, without faults,
// and fails the test unless it gets k.
func (w *netWorld) claimNet(id string, k int) []*task.RawResult {
	w.t.Helper()
	cs, err := w.NB.Claim(w.ctx, []string{w.Q}, k, time.Minute, id)
	if err != nil || len(cs) != k {
		w.t.Fatalf("claim %d as %s: %d tasks, %v", k, id, len(cs), err)
	}
	out := make([]*task.RawResult, k)
	for i, c := range cs {
		out[i] = c.Result
	}
	return out
}

// where is netWhere on the world's queue.
func (w *netWorld) where(id string) netPlace {
	w.t.Helper()
	return netWhere(w.t, w.R, w.Q, id)
}

// wantLost fails the test unless the dropper lost n replies: otherwise the
// case did not test what it says.
func (w *netWorld) wantLost(n int) {
	w.t.Helper()
	if got := w.Drop.lost(); got != n {
		w.t.Errorf("%d replies were lost (%s); want %d: the case did not happen as planned", got, w.Drop.lostReplies(), n)
	}
}

// gapResult carries what another worker did in a gap.
type gapResult struct {
	rs  []*task.RawResult
	err error
}

// claimInGap returns a gap function in which worker id claims up to k
// tasks directly, and the channel its outcome arrives on.
func (w *netWorld) claimInGap(id string, k int) (func(int), <-chan gapResult) {
	ch := make(chan gapResult, 1)
	return func(n int) {
		if n != 1 {
			return
		}
		rs, err := w.claimDirect(id, k, time.Minute)
		ch <- gapResult{rs, err}
	}, ch
}

// gapOutcome waits for a gap's outcome.
func gapOutcome(t *testing.T, ch <-chan gapResult) gapResult {
	t.Helper()
	select {
	case g := <-ch:
		return g
	case <-time.After(10 * time.Second):
		t.Fatal("the gap function never ran: no reply was lost")
		return gapResult{}
	}
}

// finishDirect stores r as COMPLETE through the direct broker.
func (w *netWorld) finishDirect(r *task.RawResult) error {
	w.t.Helper()
	complete(w.t, r)
	return w.B.Finish(w.ctx, r)
}

// complete makes r COMPLETE with a value.
func complete(t *testing.T, r *task.RawResult) {
	t.Helper()
	v, err := serializer.Default.Marshal("done by " + strings.Join(r.WorkerIDs, ","))
	if err != nil {
		t.Fatal(err)
	}
	r.Status, r.Value = task.StatusComplete, v
}

// The request matchers of the broker's scripts, by their KEYS (the
// scripts are the broker's own; the key lists are in broker/scripts.go).

// netEnqueueReq matches the enqueue script on queue (the only one with
// both dwake and unique among its KEYS).
func netEnqueueReq(queue string) func([]byte) bool {
	tag := netTag(queue)
	return netHas(netBulk(tag+":dwake"), netBulk(tag+":unique"))
}

// netClaimReq matches a claim of worker on queue (alone, or after outcomes
// in StoreAndClaim's pipeline): the one script with pending and errors
// among its KEYS and the worker id among its ARGV.
func netClaimReq(queue, worker string) func([]byte) bool {
	tag := netTag(queue)
	return netHas(netBulk(tag+":pending"), netBulk(tag+":errors"), netBulk(worker))
}

// netRetryReq matches the retry of task id on queue: dwake and errors
// among its KEYS, the id among its ARGV.
func netRetryReq(queue, id string) func([]byte) bool {
	tag := netTag(queue)
	return netHas(netBulk(tag+":dwake"), netBulk(tag+":errors"), netBulk(id))
}

// ---------------------------------------------------------------------------
// enqueue

func TestNetworkEnqueueWhoseReplyIsLostSucceedsAndStoresTheTaskOnce(t *testing.T) {
	w := newNetWorld(t)
	tk := w.viaNet()
	var ids []string
	for _, c := range []struct{ name, how string }{
		{"the first enqueue on a queue", "a pipeline that also registers the queue"},
		{"an enqueue on a known queue", "one script call"},
	} {
		w.Drop.arm(1, netEnqueueReq(w.Q), nil)
		r, err := tk.Enqueue(w.ctx, sleepArgs{Ms: 1, Tag: c.name})
		w.Drop.disarm()
		if err != nil {
			t.Fatalf("%s (%s) whose reply was lost: %v; want success (the script sent again finds its own task)", c.name, c.how, err)
		}
		ids = append(ids, r.ID)
		if p := w.where(r.ID); !p.Live || p.Ready != 1 || p.Pending || p.Delayed || p.Running || p.Result != "" || p.Attempts != 0 {
			t.Errorf("%s: task %s is %v; want stored once, ready once, never claimed", c.name, r.ID, p)
		}
		if r.Status != task.StatusNew {
			t.Errorf("%s: the caller sees status %s; want NEW", c.name, r.Status)
		}
	}
	w.wantLost(2)
	c, err := w.B.Count(w.ctx, w.Q)
	if err != nil || c.Pending != 2 {
		t.Errorf("queue after 2 enqueues: %+v, %v; want 2 pending", c, err)
	}
	if ok, err := w.R.SIsMember(w.ctx, broker.DefaultPrefix+":queues", w.Q).Result(); !ok || err != nil {
		t.Errorf("queue %s is not in the queue set (%v): GetResult and '*' workers would miss it", w.Q, err)
	}
	for _, id := range ids {
		if _, err := w.B.GetResult(w.ctx, id); err != nil {
			t.Errorf("GetResult(%s) from a third client: %v", id, err)
		}
	}
	netCheckQueue(t, w.R, w.Q)
}

func TestNetworkEnqueueWhoseEveryReplyIsLostSaysMaybeEnqueuedAndEnqueueingAgainWithItsIDIsSafe(t *testing.T) {
	w := newNetWorld(t)
	tk := w.viaNet()
	args := sleepArgs{Ms: 1, Tag: "every reply lost"}
	w.Drop.arm(-1, netEnqueueReq(w.Q), nil)
	r, err := tk.Enqueue(w.ctx, args)
	w.Drop.disarm()
	if err == nil {
		t.Fatalf("Enqueue whose every reply was lost succeeded (%s); want an error", r.ID)
	}
	t.Logf("Enqueue after %d lost replies: %v", w.Drop.lost(), err)
	if !errors.Is(err, task.ErrMaybeEnqueued) {
		t.Fatalf("Enqueue whose request reached Redis and got no answer: %v; want an error wrapping task.ErrMaybeEnqueued", err)
	}
	var me *task.MaybeEnqueuedError
	if !errors.As(err, &me) || len(me.IDs) != 1 || me.Err == nil {
		t.Fatalf("errors.As(%v, *task.MaybeEnqueuedError) = %v, %+v; want the one id and the cause", err, errors.As(err, &me), me)
	}
	id := me.IDs[0]
	if !strings.Contains(err.Error(), id) {
		t.Errorf("the error does not name the id %s: %v", id, err)
	}
	// The first send ran: the task is stored.
	if p := w.where(id); !p.Live || p.Ready != 1 {
		t.Fatalf("task %s after the lost replies is %v; want stored and ready once (the first send ran)", id, p)
	}

	r, err = tk.Using(task.WithID(id)).Enqueue(w.ctx, args)
	if err != nil || r.ID != id {
		t.Fatalf("enqueue again WithID(%s) with the same task: %v, %v; want success, the same id", id, r, err)
	}
	if p := w.where(id); !p.Live || p.Ready != 1 {
		t.Errorf("task %s after enqueueing it again is %v; want stored and ready once", id, p)
	}
	if _, err := tk.Using(task.WithID(id)).Enqueue(w.ctx, sleepArgs{Ms: 2, Tag: "other args"}); !errors.Is(err, task.ErrDuplicateID) {
		t.Errorf("WithID(%s) with other arguments: %v; want task.ErrDuplicateID", id, err)
	}
	if _, err := addTask.Using(task.Queue(w.Q), task.UseBackend(netBackend), task.WithID(id)).Enqueue(w.ctx, addArgs{1, 2}); !errors.Is(err, task.ErrDuplicateID) {
		t.Errorf("WithID(%s) with another task: %v; want task.ErrDuplicateID", id, err)
	}
	c, err := w.B.Count(w.ctx, w.Q)
	if err != nil || c.Pending != 1 {
		t.Errorf("queue: %+v, %v; want the 1 task", c, err)
	}
	netCheckQueue(t, w.R, w.Q)
}

func TestNetworkEnqueueManyWhoseReplyIsLostSucceedsAndStoresEveryTaskOnce(t *testing.T) {
	w := newNetWorld(t)
	tk := w.viaNet()
	args := make([]sleepArgs, 5)
	for i := range args {
		args[i] = sleepArgs{Ms: 1, Tag: "many-" + strconv.Itoa(i)}
	}

	w.Drop.arm(1, netEnqueueReq(w.Q), nil)
	rs, err := tk.EnqueueMany(w.ctx, args)
	w.Drop.disarm()
	w.wantLost(1)
	if err != nil || len(rs) != len(args) {
		t.Fatalf("EnqueueMany whose reply was lost: %d results, %v; want success", len(rs), err)
	}
	for i, r := range rs {
		if p := w.where(r.ID); !p.Live || p.Ready != 1 {
			t.Errorf("task %d (%s) is %v; want stored and ready once", i, r.ID, p)
		}
	}

	// Every send lost: the error carries the ids, in order; each enqueued
	// again WithID is the stored task.
	w.Drop.arm(-1, netEnqueueReq(w.Q), nil)
	rs2, err := tk.EnqueueMany(w.ctx, args)
	w.Drop.disarm()
	var me *task.MaybeEnqueuedError
	if !errors.Is(err, task.ErrMaybeEnqueued) || !errors.As(err, &me) || len(me.IDs) != len(args) {
		t.Fatalf("EnqueueMany whose every reply was lost: %d results, %v; want an error wrapping task.ErrMaybeEnqueued with %d ids", len(rs2), err, len(args))
	}
	for i, id := range me.IDs {
		if p := w.where(id); !p.Live || p.Ready != 1 {
			t.Errorf("task %d (%s) after the lost replies is %v; want stored once", i, id, p)
		}
		r, err := tk.Using(task.WithID(id)).Enqueue(w.ctx, args[i])
		if err != nil || r.ID != id {
			t.Errorf("enqueue task %d again WithID(%s): %v", i, id, err)
		}
	}
	c, err := w.B.Count(w.ctx, w.Q)
	if err != nil || c.Pending != int64(2*len(args)) {
		t.Errorf("queue: %+v, %v; want %d pending", c, err, 2*len(args))
	}
	netCheckQueue(t, w.R, w.Q)
}

func TestNetworkGroupCommittedEnqueueWhoseReplyIsLostSucceedsForEveryCaller(t *testing.T) {
	w := newNetWorld(t)
	tk := w.viaNet()
	const callers = 24
	// Slow requests, so that the calls that come while two are in flight
	// gather and go together.
	slow := addToxic(t, w.Proxy, toxic{Type: "latency", Stream: "upstream", Attributes: map[string]any{"latency": 100}})
	tag := netTag(w.Q)
	enq := netEnqueueReq(w.Q)
	w.Drop.arm(1, func(req []byte) bool { return enq(req) && bytes.Count(req, []byte(tag+":r:")) > 1 }, nil)
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		ids   [callers]string
		errs  [callers]error
	)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := tk.Enqueue(w.ctx, sleepArgs{Ms: 1, Tag: "caller-" + strconv.Itoa(i)})
			if err == nil {
				ids[i] = r.ID
			}
			errs[i] = err
		}()
	}
	close(start)
	wg.Wait()
	w.Drop.disarm()
	removeToxic(t, w.Proxy, slow)
	if w.Drop.lost() == 0 {
		t.Fatal("no script call carried more than one task: the calls were not merged, the case tested nothing")
	}
	w.wantLost(1)
	seen := map[string]bool{}
	for i := range callers {
		if errs[i] != nil {
			t.Errorf("caller %d: %v; want success", i, errs[i])
			continue
		}
		if seen[ids[i]] {
			t.Errorf("caller %d got id %s, as another caller did", i, ids[i])
		}
		seen[ids[i]] = true
		if p := w.where(ids[i]); !p.Live || p.Ready != 1 {
			t.Errorf("caller %d: task %s is %v; want stored and ready once", i, ids[i], p)
		}
	}
	if n, err := w.R.HLen(w.ctx, tag+":tasks").Result(); err != nil || n != callers {
		t.Errorf("%d tasks stored (%v); want %d", n, err, callers)
	}
	netCheckQueue(t, w.R, w.Q)
}

// ---------------------------------------------------------------------------
// claim

func TestNetworkClaimWhoseReplyIsLostReturnsTheSameTasks(t *testing.T) {
	w := newNetWorld(t)
	ids := w.add(3)
	// In the gap, one more task comes: a claim sent again must not take it
	// instead of those it claimed.
	var late []string
	gapErr := make(chan error, 1)
	w.Drop.arm(1, netClaimReq(w.Q, "w1"), func(int) {
		r, err := sleepTask.Using(task.Queue(w.Q)).Enqueue(context.Background(), sleepArgs{Ms: 1, Tag: "late"})
		if err == nil {
			late = append(late, r.ID)
		}
		gapErr <- err
	})
	cs, err := w.NB.Claim(w.ctx, []string{w.Q}, 3, time.Minute, "w1")
	w.Drop.disarm()
	w.wantLost(1)
	select {
	case err := <-gapErr:
		if err != nil {
			t.Fatalf("enqueue in the gap: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the gap function never ran: no reply was lost")
	}
	if err != nil {
		t.Fatalf("Claim whose reply was lost: %v; want the tasks", err)
	}
	var got []string
	for _, c := range cs {
		got = append(got, c.Result.ID)
		if r := c.Result; r.Attempts != 1 || !slices.Equal(r.WorkerIDs, []string{"w1"}) || r.Status != task.StatusRunning {
			t.Errorf("claimed %s: status %s, attempts %d, workers %v; want RUNNING, 1, [w1]", r.ID, r.Status, r.Attempts, r.WorkerIDs)
		}
	}
	if !sameSet(got, ids) {
		t.Errorf("Claim whose reply was lost returned %v; want the tasks it claimed, %v (the late task is %v)", got, ids, late)
	}
	for _, id := range ids {
		if p := w.where(id); !p.Running || p.Attempts != 1 || !slices.Equal(p.Workers, []string{"w1"}) {
			t.Errorf("task %s is %v; want running, attempt 1, workers [w1]", id, p)
		}
	}
	if p := w.where(late[0]); !p.Live || p.Ready != 1 || p.Attempts != 0 {
		t.Errorf("the task enqueued in the gap is %v; want ready, never claimed", p)
	}
	if running := netCheckQueue(t, w.R, w.Q); !sameSet(running, got) {
		t.Errorf("running: %v; the worker holds %v: the others are RUNNING held by nobody", running, got)
	}
	for _, c := range cs {
		complete(t, c.Result)
		if err := w.NB.Finish(w.ctx, c.Result); err != nil {
			t.Errorf("finish %s: %v", c.Result.ID, err)
		}
	}
}

func TestNetworkClaimWhoseEveryReplyIsLostLeavesNoTaskHeldByNobody(t *testing.T) {
	w := newNetWorld(t)
	ids := w.add(3)
	w.Drop.arm(-1, netClaimReq(w.Q, "w1"), nil)
	cs, err := w.NB.Claim(w.ctx, []string{w.Q}, 3, time.Minute, "w1")
	w.Drop.disarm()
	t.Logf("Claim after %d lost replies: %d tasks, %v", w.Drop.lost(), len(cs), err)
	if err == nil {
		t.Fatalf("Claim whose every reply was lost succeeded with %d tasks", len(cs))
	}
	// The worker claims again (as it does after an error): it must get
	// what its lost claim took, rather than leave it RUNNING until the
	// lease ends.
	cs2, err := w.NB.Claim(w.ctx, []string{w.Q}, 3, time.Minute, "w1")
	if err != nil {
		t.Fatalf("the next claim: %v", err)
	}
	held := map[string]int{}
	for _, c := range append(cs, cs2...) {
		held[c.Result.ID]++
		if r := c.Result; r.Attempts != 1 || !slices.Equal(r.WorkerIDs, []string{"w1"}) {
			t.Errorf("claimed %s: attempts %d, workers %v; want 1, [w1] (one delivery)", r.ID, r.Attempts, r.WorkerIDs)
		}
	}
	for _, id := range ids {
		if held[id] != 1 {
			t.Errorf("task %s was returned %d times by the two claims; want once", id, held[id])
		}
		if p := w.where(id); !p.Running || p.Attempts != 1 {
			t.Errorf("task %s is %v; want running, attempt 1", id, p)
		}
	}
	var got []string
	for id := range held {
		got = append(got, id)
	}
	if running := netCheckQueue(t, w.R, w.Q); !sameSet(running, got) {
		t.Errorf("running: %v; the worker holds %v: the others are RUNNING held by nobody until their lease ends", running, got)
	}
}

func TestNetworkStoreAndClaimWhoseReplyIsLostReportsTheStoredOutcomeAndTheSameTasks(t *testing.T) {
	w := newNetWorld(t)
	ids := w.add(3)
	a := w.claimNet("w1", 1)[0]
	var lateErr atomic.Value
	w.Drop.arm(1, netClaimReq(w.Q, "w1"), func(int) {
		if _, err := sleepTask.Using(task.Queue(w.Q)).Enqueue(context.Background(), sleepArgs{Ms: 1, Tag: "late"}); err != nil {
			lateErr.Store(err)
		}
	})
	complete(t, a)
	errs, cs, err := w.NB.StoreAndClaim(w.ctx, []*task.RawResult{a}, w.Q, 2, time.Minute, "w1")
	w.Drop.disarm()
	w.wantLost(1)
	if e := lateErr.Load(); e != nil {
		t.Fatalf("enqueue in the gap: %v", e)
	}
	if err != nil || len(errs) != 1 {
		t.Fatalf("StoreAndClaim whose reply was lost: %v, %v", errs, err)
	}
	if errs[0] != nil {
		t.Errorf("the outcome whose reply was lost: %v; want success (it is stored, by this call)", errs[0])
	}
	r, err := w.B.GetResult(w.ctx, a.ID)
	if err != nil || r.Status != task.StatusComplete || r.Attempts != 1 {
		t.Fatalf("stored result of %s: %+v, %v; want COMPLETE after 1 attempt", a.ID, r, err)
	}
	if !a.FinishedAt.Equal(r.FinishedAt) {
		t.Errorf("the caller sees finished at %v; Redis holds %v", a.FinishedAt, r.FinishedAt)
	}
	if n := netDone(t, w.R, w.Q, task.StatusComplete); n != 1 {
		t.Errorf("COMPLETE total %d; want 1 (counted once)", n)
	}
	var got []string
	for _, c := range cs {
		got = append(got, c.Result.ID)
		if c.Result.Attempts != 1 || !slices.Equal(c.Result.WorkerIDs, []string{"w1"}) {
			t.Errorf("claimed %s: attempts %d, workers %v; want 1, [w1]", c.Result.ID, c.Result.Attempts, c.Result.WorkerIDs)
		}
	}
	if want := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == a.ID }); !sameSet(got, want) {
		t.Errorf("the claim whose reply was lost returned %v; want the tasks it claimed, %v", got, want)
	}
	if running := netCheckQueue(t, w.R, w.Q); !sameSet(running, got) {
		t.Errorf("running: %v; the worker holds %v", running, got)
	}
}

// ---------------------------------------------------------------------------
// finish, retry

func TestNetworkFinishWhoseReplyIsLostReportsSuccess(t *testing.T) {
	w := newNetWorld(t)
	for i, status := range []task.Status{task.StatusComplete, task.StatusFailed} {
		t.Run(string(status), func(t *testing.T) {
			id := w.add(1)[0]
			r := w.claimNet("w1", 1)[0]
			if status == task.StatusComplete {
				complete(t, r)
			} else {
				r.Status, r.Err = task.StatusFailed, &task.Error{Type: "net.Test", Message: "failed on purpose"}
			}
			w.Drop.arm(1, netHas(netBulk(netTag(w.Q)+":r:"+id)), nil)
			err := w.NB.Finish(w.ctx, r)
			w.Drop.disarm()
			w.wantLost(i + 1)
			if err != nil {
				t.Fatalf("Finish %s whose reply was lost: %v; want success (the result is stored, by this call)", status, err)
			}
			got, err := w.B.GetResult(w.ctx, id)
			if err != nil || got.Status != status || got.Attempts != 1 || !got.FinishedAt.Equal(r.FinishedAt) {
				t.Fatalf("stored: %+v, %v; want %s after 1 attempt, finished at %v as the caller saw", got, err, status, r.FinishedAt)
			}
			if p := w.where(id); p.Live || p.Running || p.Result != status {
				t.Errorf("task %s is %v; want only its %s result", id, p, status)
			}
			if n := netDone(t, w.R, w.Q, status); n != 1 {
				t.Errorf("%s total %d; want 1 (counted once)", status, n)
			}
			if status == task.StatusFailed {
				if _, err := w.R.ZScore(w.ctx, netTag(w.Q)+":failed", id).Result(); err != nil {
					t.Errorf("the failed index does not hold %s: %v", id, err)
				}
			}
			netCheckQueue(t, w.R, w.Q)
		})
	}
}

func TestNetworkRetryWhoseReplyIsLostReportsSuccess(t *testing.T) {
	w := newNetWorld(t)
	failure := &task.Error{Type: "net.Test", Message: "attempt 1 failed"}

	t.Run("ready at once, and claimed by another worker in the gap", func(t *testing.T) {
		id := w.add(1, task.MaxAttempts(3))[0]
		r := w.claimNet("w1", 1)[0]
		r.Status, r.RunAfter, r.Errors = task.StatusNew, time.Time{}, append(r.Errors, failure)
		gap, other := w.claimInGap("w2", 1)
		w.Drop.arm(1, netRetryReq(w.Q, id), gap)
		err := w.NB.Retry(w.ctx, r)
		w.Drop.disarm()
		g := gapOutcome(t, other)
		if err != nil {
			t.Errorf("Retry whose reply was lost: %v; want success (the retry is stored, by this call)", err)
		}
		if g.err != nil || len(g.rs) != 1 || g.rs[0].ID != id {
			t.Fatalf("the other worker's claim in the gap: %d tasks, %v; want task %s", len(g.rs), g.err, id)
		}
		b := g.rs[0]
		if b.Attempts != 2 || len(b.Errors) != 1 || b.Errors[0].Message != failure.Message {
			t.Errorf("the other worker claimed attempt %d with errors %v; want attempt 2 with the retry's error", b.Attempts, b.Errors)
		}
		if p := w.where(id); !p.Running || p.Ready != 0 || p.Attempts != 2 || !slices.Equal(p.Workers, []string{"w1", "w2"}) {
			t.Errorf("task %s is %v; want running attempt 2 of w2 (the resent retry must not touch it)", id, p)
		}
		if err := w.finishDirect(b); err != nil {
			t.Fatalf("the other worker's finish: %v", err)
		}
		res, err := w.B.GetResult(w.ctx, id)
		if err != nil || res.Status != task.StatusComplete || res.Attempts != 2 || len(res.Errors) != 1 {
			t.Errorf("result: %+v, %v; want COMPLETE after 2 attempts with 1 error", res, err)
		}
	})

	t.Run("deferred", func(t *testing.T) {
		id := w.add(1, task.MaxAttempts(3))[0]
		r := w.claimNet("w1", 1)[0]
		r.Status, r.RunAfter, r.Errors = task.StatusNew, time.Now().Add(time.Hour), append(r.Errors, failure)
		w.Drop.arm(1, netRetryReq(w.Q, id), nil)
		err := w.NB.Retry(w.ctx, r)
		w.Drop.disarm()
		if err != nil {
			t.Errorf("Retry whose reply was lost: %v; want success", err)
		}
		if p := w.where(id); !p.Delayed || p.Running || p.Ready != 0 || p.Attempts != 1 {
			t.Errorf("task %s is %v; want deferred, attempt 1", id, p)
		}
		res, err := w.B.GetResult(w.ctx, id)
		if err != nil || res.Status != task.StatusNew || len(res.Errors) != 1 || res.RunAfter.Before(time.Now().Add(50*time.Minute)) {
			t.Errorf("result: %+v, %v; want NEW, run after an hour, 1 error", res, err)
		}
	})
	w.wantLost(2)
	netCheckQueue(t, w.R, w.Q)
}

// ---------------------------------------------------------------------------
// unclaim, requeue: handing tasks back

func TestNetworkUnclaimResentAfterAnotherWorkerClaimedTheTaskDoesNotUndoThatClaim(t *testing.T) {
	w := newNetWorld(t)
	t.Run("another worker claims in the gap", func(t *testing.T) {
		id := w.add(1)[0]
		r := w.claimNet("w1", 1)[0]
		gap, other := w.claimInGap("w2", 1)
		w.Drop.arm(1, netHas(netBulk(netTag(w.Q)+":running"), netBulk(id)), gap)
		n, err := w.NB.Unclaim(w.ctx, w.Q, []*task.RawResult{r})
		w.Drop.disarm()
		g := gapOutcome(t, other)
		t.Logf("Unclaim whose reply was lost: %d, %v", n, err)
		if err != nil {
			t.Errorf("Unclaim whose reply was lost: %v", err)
		}
		if g.err != nil || len(g.rs) != 1 || g.rs[0].ID != id {
			t.Fatalf("the other worker's claim in the gap: %d tasks, %v; want task %s", len(g.rs), g.err, id)
		}
		b := g.rs[0]
		if b.Attempts == r.Attempts {
			t.Errorf("the other worker's claim has attempt number %d, the number of the claim handed back: a fencing token used twice", b.Attempts)
		}
		if p := w.where(id); !p.Running || p.Ready != 0 || p.Attempts != b.Attempts || len(p.Workers) == 0 || p.Workers[len(p.Workers)-1] != "w2" {
			t.Errorf("task %s is %v; want running, held by w2's attempt %d (the resent unclaim undid it?)", id, p, b.Attempts)
		}
		if err := w.finishDirect(b); err != nil {
			t.Errorf("the other worker's finish of attempt %d: %v; its claim must stand", b.Attempts, err)
		}
		if res, err := w.B.GetResult(w.ctx, id); err != nil || res.Status != task.StatusComplete || res.Attempts != b.Attempts {
			t.Errorf("result: %+v, %v; want COMPLETE by attempt %d", res, err, b.Attempts)
		}
	})
	t.Run("nothing happens in the gap", func(t *testing.T) {
		id := w.add(1)[0]
		r := w.claimNet("w1", 1)[0]
		w.Drop.arm(1, netHas(netBulk(netTag(w.Q)+":running"), netBulk(id)), nil)
		n, err := w.NB.Unclaim(w.ctx, w.Q, []*task.RawResult{r})
		w.Drop.disarm()
		t.Logf("Unclaim whose reply was lost: %d, %v", n, err)
		if err != nil {
			t.Errorf("Unclaim whose reply was lost: %v", err)
		}
		if p := w.where(id); !p.Live || p.Ready != 1 || p.Running {
			t.Errorf("task %s is %v; want back in ready, once", id, p)
		}
		rs, err := w.claimDirect("w2", 1, time.Minute)
		if err != nil || len(rs) != 1 || rs[0].ID != id {
			t.Fatalf("claim after the unclaim: %v, %v", rs, err)
		}
		if rs[0].Attempts <= r.Attempts {
			t.Errorf("the claim after the unclaim has attempt number %d; the unclaimed one had %d: attempt numbers must never be used twice", rs[0].Attempts, r.Attempts)
		}
	})
	w.wantLost(2)
	netCheckQueue(t, w.R, w.Q)
}

func TestNetworkRequeueResentAfterAnotherWorkerClaimedTheTaskDoesNotUndoThatClaim(t *testing.T) {
	w := newNetWorld(t)
	id := w.add(1)[0]
	r := w.claimNet("w1", 1)[0]
	gap, other := w.claimInGap("w2", 1)
	w.Drop.arm(1, netHas(netBulk(netTag(w.Q)+":running"), netBulk(id)), gap)
	n, err := w.NB.Requeue(w.ctx, w.Q, []*task.RawResult{r})
	w.Drop.disarm()
	w.wantLost(1)
	g := gapOutcome(t, other)
	t.Logf("Requeue whose reply was lost: %d, %v", n, err)
	if err != nil {
		t.Errorf("Requeue whose reply was lost: %v", err)
	}
	if g.err != nil || len(g.rs) != 1 || g.rs[0].ID != id {
		t.Fatalf("the other worker's claim in the gap: %d tasks, %v; want task %s", len(g.rs), g.err, id)
	}
	b := g.rs[0]
	if b.Attempts <= r.Attempts {
		t.Errorf("the other worker's claim has attempt %d; the requeued one had %d", b.Attempts, r.Attempts)
	}
	if p := w.where(id); !p.Running || p.Ready != 0 || p.Attempts != b.Attempts {
		t.Errorf("task %s is %v; want running, held by w2's attempt %d", id, p, b.Attempts)
	}
	if err := w.finishDirect(b); err != nil {
		t.Errorf("the other worker's finish: %v; its claim must stand", err)
	}
	netCheckQueue(t, w.R, w.Q)
}

// ---------------------------------------------------------------------------
// cancel

func TestNetworkCancelWhoseReplyIsLostReportsTheCancellation(t *testing.T) {
	w := newNetWorld(t)
	for i, c := range []struct {
		name string
		opts []task.Option
	}{
		{"a deferred task", []task.Option{task.RunAfter(time.Hour)}},
		{"a ready task", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := w.add(1, c.opts...)[0]
			w.Drop.arm(1, netHas(netBulk(string(task.StatusCancelled)), netBulk(id)), nil)
			r, err := w.NB.Cancel(w.ctx, id)
			w.Drop.disarm()
			w.wantLost(i + 1)
			if err != nil {
				t.Fatalf("Cancel whose reply was lost: %v; want success (the task is CANCELLED, by this call)", err)
			}
			if r.ID != id || r.Status != task.StatusCancelled {
				t.Errorf("Cancel returned %s %s; want %s CANCELLED", r.ID, r.Status, id)
			}
			if p := w.where(id); p.Live || p.Ready != 0 || p.Pending || p.Delayed || p.Result != task.StatusCancelled {
				t.Errorf("task %s is %v; want only its CANCELLED result", id, p)
			}
			if n := netDone(t, w.R, w.Q, task.StatusCancelled); n != i+1 {
				t.Errorf("CANCELLED total %d; want %d (counted once per task)", n, i+1)
			}
		})
	}
	netCheckQueue(t, w.R, w.Q)
}

// ---------------------------------------------------------------------------
// promote, reap: the scheduler's ticks

func TestNetworkPromoteWhoseReplyIsLostIsSafe(t *testing.T) {
	w := newNetWorld(t)
	id := w.add(1, task.RunAfter(200*time.Millisecond))[0]
	due, err := w.R.ZScore(w.ctx, netTag(w.Q)+":delayed", id).Result()
	if err != nil {
		t.Fatalf("task %s is not deferred: %v", id, err)
	}
	w.eventually(10*time.Second, "the deferred task is due by Redis' clock", func() (bool, string) {
		now := netRedisNow(t, w.R)
		return float64(now.UnixMilli()) >= due, now.String()
	})
	gap, other := w.claimInGap("w2", 1)
	w.Drop.arm(1, netHas(netBulk(netTag(w.Q)+":delayed")), gap)
	n, next, err := w.NB.Promote(w.ctx, w.Q, 100)
	w.Drop.disarm()
	w.wantLost(1)
	g := gapOutcome(t, other)
	t.Logf("Promote whose reply was lost: %d promoted, next %v, %v", n, next, err)
	if err != nil {
		t.Errorf("Promote whose reply was lost: %v", err)
	}
	if g.err != nil || len(g.rs) != 1 || g.rs[0].ID != id || g.rs[0].Attempts != 1 {
		t.Fatalf("the claim in the gap: %v, %v; want task %s, attempt 1", g.rs, g.err, id)
	}
	if p := w.where(id); !p.Running || p.Ready != 0 || p.Pending || p.Delayed || p.Attempts != 1 {
		t.Errorf("task %s is %v; want running once (promoted once)", id, p)
	}
	if err := w.finishDirect(g.rs[0]); err != nil {
		t.Errorf("finish: %v", err)
	}
	netCheckQueue(t, w.R, w.Q)
}

func TestNetworkReapWhoseReplyIsLostIsSafe(t *testing.T) {
	w := newNetWorld(t)
	id := w.add(1)[0]
	if rs, err := w.claimDirect("w-dead", 1, 200*time.Millisecond); err != nil || len(rs) != 1 {
		t.Fatalf("claim by the worker that dies: %v, %v", rs, err)
	}
	expiry, err := w.R.ZScore(w.ctx, netTag(w.Q)+":running", id).Result()
	if err != nil {
		t.Fatal(err)
	}
	w.eventually(10*time.Second, "the lease expired by Redis' clock", func() (bool, string) {
		now := netRedisNow(t, w.R)
		return float64(now.UnixMilli()) > expiry, now.String()
	})
	gap, other := w.claimInGap("w2", 1)
	w.Drop.arm(1, netHas(netBulk(netTag(w.Q)+":running")), gap)
	n, next, err := w.NB.Reap(w.ctx, w.Q, 100)
	w.Drop.disarm()
	w.wantLost(1)
	g := gapOutcome(t, other)
	t.Logf("Reap whose reply was lost: %d requeued, next lease expiry %v, %v", n, next, err)
	if err != nil {
		t.Errorf("Reap whose reply was lost: %v", err)
	}
	if g.err != nil || len(g.rs) != 1 || g.rs[0].ID != id || g.rs[0].Attempts != 2 {
		t.Fatalf("the claim in the gap: %v, %v; want task %s, attempt 2", g.rs, g.err, id)
	}
	if p := w.where(id); !p.Running || p.Ready != 0 || p.Attempts != 2 || !slices.Equal(p.Workers, []string{"w-dead", "w2"}) {
		t.Errorf("task %s is %v; want running attempt 2 of w2 (the resent reap must not requeue it)", id, p)
	}
	if err := w.finishDirect(g.rs[0]); err != nil {
		t.Errorf("finish of attempt 2: %v", err)
	}
	netCheckQueue(t, w.R, w.Q)
}

// ---------------------------------------------------------------------------
// periodic ticks

// TestNetworkPeriodicTicksWhoseRepliesAreLostAreEnqueuedExactlyOnce runs a
// scheduler with one @every 1s entry per case, reaching Redis through a
// proxy that loses the reply to the first tick's SET NX or enqueue, and
// stops it once the second tick has begun. Every tick a scheduler claimed
// (its SET NX key) must have exactly one task: none (the claim's resent SET
// NX answered "not set") or two (an enqueue retried under a new id after
// ErrMaybeEnqueued) breaks the promise.
func TestNetworkPeriodicTicksWhoseRepliesAreLostAreEnqueuedExactlyOnce(t *testing.T) {
	e := newEnv(t)
	x := startToxiproxy(t)
	cases := []struct {
		name  string
		lose  int // replies to lose: 1, or every send of one command (max_retries=3: 4)
		match func(entry, queue string) func([]byte) bool
	}{
		{"no reply is lost", 0, nil},
		{"the reply to the tick's SET NX is lost", 1, func(entry, _ string) func([]byte) bool {
			return netHas(netBulk("set"), "periodic:"+entry+":")
		}},
		{"the reply to the tick's enqueue is lost", 1, func(_, queue string) func([]byte) bool { return netEnqueueReq(queue) }},
		{"every reply to the tick's first enqueue is lost", 4, func(_, queue string) func([]byte) bool { return netEnqueueReq(queue) }},
	}
	var summary []string
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := fmt.Sprintf("net-tick-%d", i)
			queue := fmt.Sprintf("net-ticks-%d", i)
			p := x.proxy(t, name, e.Redis.Addr())
			d := netAttachDropper(t, p)
			nb, err := broker.Open(proxyURL(p)+"?max_retries=3", broker.Options{Name: name})
			if err != nil {
				t.Fatal(err)
			}
			defer nb.Close()
			task.Configure(map[string]task.Backend{task.DefaultBackendName: e.B, name: nb})
			entry, err := scheduler.NewEntry(addTask.Using(task.Queue(queue), task.UseBackend(name)), "@every 1s",
				addArgs{A: i, B: 1}, scheduler.EntryName(name))
			if err != nil {
				t.Fatal(err)
			}
			var logBuf netSyncBuffer
			s := scheduler.New(nb, scheduler.Options{Queues: []string{queue}, Entries: []*scheduler.Entry{entry},
				Logger: slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			if c.match != nil {
				// Before the scheduler starts: its first tick is at once
				// (the latest one, within the grace).
				d.arm(c.lose, c.match(name, queue), nil)
			}
			ctx, cancel := context.WithCancel(e.ctx)
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			stopped := false
			stop := func() {
				if stopped {
					return
				}
				stopped = true
				cancel()
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					t.Errorf("the scheduler did not stop within 30s")
				}
			}
			defer stop()
			keys := func() []string {
				ks, err := e.R.Keys(e.ctx, broker.DefaultPrefix+":periodic:"+name+":*").Result()
				if err != nil {
					t.Fatal(err)
				}
				slices.Sort(ks)
				return ks
			}
			// The first tick is done once the second has begun (a scheduler
			// runs an entry's ticks one after another).
			e.eventually(20*time.Second, "the second tick begins", func() (bool, string) {
				ks := keys()
				return len(ks) >= 2, fmt.Sprintf("keys %v, %d replies lost", ks, d.lost())
			})
			stop()
			d.disarm()
			ks := keys()
			n, err := e.R.HLen(e.ctx, netTag(queue)+":tasks").Result()
			if err != nil {
				t.Fatal(err)
			}
			summary = append(summary, fmt.Sprintf("%s: %d ticks, %d tasks, %d replies lost", c.name, len(ks), n, d.lost()))
			if d.lost() != c.lose {
				t.Errorf("%d replies lost (%s); want %d: the case did not happen as planned", d.lost(), d.lostReplies(), c.lose)
			}
			if int(n) != len(ks) {
				t.Errorf("%d ticks were claimed (%v) and %d tasks enqueued; want exactly one task per tick", len(ks), ks, n)
			}
			if t.Failed() {
				t.Logf("scheduler log:\n%s", tail(logBuf.Bytes(), 6000))
			}
		})
	}
	t.Logf("periodic ticks with lost replies:\n%s", strings.Join(summary, "\n"))
}

// netSyncBuffer is a bytes.Buffer safe for concurrent writers (a logger).
type netSyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *netSyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *netSyncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.b.Bytes())
}

// ---------------------------------------------------------------------------
// deliveries

// netEchoRuns counts the executions of netEchoTask by id.
var netEchoRuns sync.Map // id → *atomic.Int64

// netEchoTask runs in this process (the in-process worker below).
var netEchoTask = task.Define("it.network.echo", func(ctx context.Context, s string) (string, error) {
	info, _ := task.InfoFrom(ctx)
	n, _ := netEchoRuns.LoadOrStore(info.ResultID, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	return s, nil
})

// A worker whose claims lose their replies must not count those claims as
// deliveries that ended without an outcome: with MaxRedeliveries 1, a task
// whose first claims' replies were lost still runs (once) and completes,
// rather than failing as gotasks.TooManyDeliveries. The claims are sent
// again by go-redis, or (max_retries=-1) never answered at all, so that the
// worker claims again itself.
func TestNetworkClaimsWhoseRepliesAreLostDoNotCountAsLostDeliveries(t *testing.T) {
	for _, c := range []struct{ name, query string }{
		{"claims sent again by the client", ""},
		{"claims never answered", "max_retries=-1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newNetWorld(t)
			nb := w.openNet(broker.Options{}, c.query)
			res, err := netEchoTask.Using(task.Queue(w.Q)).Enqueue(w.ctx, "hello")
			if err != nil {
				t.Fatal(err)
			}
			const lose = 3
			// Only replies that deliver the task: claims that find nothing
			// (it is RUNNING, claimed by a claim whose reply was lost) do
			// not count.
			w.Drop.armWhere(lose, netClaimReq(w.Q, "w-deliver"), netHas(netBulk(res.ID)), nil)
			var logBuf netSyncBuffer
			wk := worker.New(nb, worker.Options{
				Queues: []string{w.Q}, Concurrency: 1, WorkerID: "w-deliver",
				MaxRedeliveries: 1, LeaseDuration: time.Second, PollInterval: 100 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(&logBuf, nil)),
			})
			ctx, cancel := context.WithCancel(w.ctx)
			done := make(chan error, 1)
			go func() { done <- wk.Run(ctx) }()
			defer func() {
				cancel()
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					t.Errorf("the worker did not stop")
				}
				if t.Failed() {
					t.Logf("worker log:\n%s", tail(logBuf.Bytes(), 6000))
				}
			}()
			r := w.waitStatus(w.B, res.ID, 30*time.Second, task.StatusComplete, task.StatusFailed)
			w.Drop.disarm()
			runs := int64(0)
			if n, ok := netEchoRuns.Load(res.ID); ok {
				runs = n.(*atomic.Int64).Load()
			}
			t.Logf("after %d lost claim replies: %s, attempts %d, workers %v, error %v; ran %d times", w.Drop.lost(), r.Status, r.Attempts, r.WorkerIDs, r.Err, runs)
			if r.Status != task.StatusComplete {
				t.Errorf("task: %s (%v); want COMPLETE: claims whose replies were lost are not deliveries that reached the worker", r.Status, r.Err)
			}
			if runs != 1 {
				t.Errorf("the task ran %d times; want once", runs)
			}
			w.wantLost(lose)
		})
	}
}

// Claims handed back unstarted (Unclaim, here with its reply lost and sent
// again each time) are not deliveries either: after three of them, a worker
// with MaxRedeliveries 1 runs the task, once, and its attempt number is
// past the three handed back (never used twice).
func TestNetworkClaimsHandedBackUnstartedDoNotCountAsLostDeliveries(t *testing.T) {
	w := newNetWorld(t)
	res, err := netEchoTask.Using(task.Queue(w.Q)).Enqueue(w.ctx, "handed back")
	if err != nil {
		t.Fatal(err)
	}
	const handBacks = 3
	for i := range handBacks {
		r := w.claimNet("w-hand", 1)[0]
		w.Drop.arm(1, netHas(netBulk(netTag(w.Q)+":running"), netBulk(res.ID)), nil)
		if _, err := w.NB.Unclaim(w.ctx, w.Q, []*task.RawResult{r}); err != nil {
			t.Fatalf("Unclaim %d whose reply was lost: %v", i+1, err)
		}
		w.Drop.disarm()
		if p := w.where(res.ID); !p.Live || p.Ready != 1 || p.Running {
			t.Fatalf("after Unclaim %d the task is %v; want ready, once", i+1, p)
		}
	}
	w.wantLost(handBacks)
	var logBuf netSyncBuffer
	wk := worker.New(w.NB, worker.Options{
		Queues: []string{w.Q}, Concurrency: 1, WorkerID: "w-run", MaxRedeliveries: 1,
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil)),
	})
	ctx, cancel := context.WithCancel(w.ctx)
	done := make(chan error, 1)
	go func() { done <- wk.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("the worker did not stop")
		}
		if t.Failed() {
			t.Logf("worker log:\n%s", tail(logBuf.Bytes(), 6000))
		}
	}()
	r := w.waitStatus(w.B, res.ID, 30*time.Second, task.StatusComplete, task.StatusFailed)
	runs := int64(0)
	if n, ok := netEchoRuns.Load(res.ID); ok {
		runs = n.(*atomic.Int64).Load()
	}
	t.Logf("after %d claims handed back: %s, attempts %d, workers %v, error %v; ran %d times", handBacks, r.Status, r.Attempts, r.WorkerIDs, r.Err, runs)
	if r.Status != task.StatusComplete || runs != 1 {
		t.Errorf("task: %s (%v), ran %d times; want COMPLETE, once: claims handed back unstarted are not lost deliveries", r.Status, r.Err, runs)
	}
	if r.Attempts != handBacks+1 {
		t.Errorf("the run's attempt number is %d; want %d, past the %d claims handed back", r.Attempts, handBacks+1, handBacks)
	}
}

// sameSet reports whether a and b hold the same strings, each once.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y) && len(slices.Compact(x)) == len(a)
}

// ---------------------------------------------------------------------------
// a Redis that keeps forgetting its scripts

// TestScriptFlushInALoopFailsNoCallAndLosesNoTask: SCRIPT FLUSH every
// millisecond, from a client of its own, while a producer enqueues batches
// for a few seconds and two worker processes run them, until the queue is
// drained. Every EVALSHA may meet NOSCRIPT: no call may fail with it (the
// producer's, or the workers': their logs would say), nothing may panic,
// and every task completes, once.
func TestScriptFlushInALoopFailsNoCallAndLosesNoTask(t *testing.T) {
	rec := netRecordFile(t)
	e := newEnv(t)
	const queue, batch, produceFor = "flush", 20, 3 * time.Second
	ws := make([]*workerProc, 2)
	for i := range ws {
		id := fmt.Sprintf("flush-w%d", i+1)
		ws[i] = e.startWorker(workerConfig{ID: id, Queues: []string{queue, probeQueue(id)}, Concurrency: 8})
	}
	for _, w := range ws {
		e.waitReady(w)
	}

	flusher := redis.NewClient(&redis.Options{Addr: e.Redis.Addr()})
	defer flusher.Close()
	var flushes atomic.Int64
	var flushErr atomic.Value
	stopFlush := make(chan struct{})
	flushDone := make(chan struct{})
	go func() {
		defer close(flushDone)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopFlush:
				return
			case <-tick.C:
			}
			if err := flusher.ScriptFlush(context.Background()).Err(); err != nil {
				flushErr.Store(err)
				return
			}
			flushes.Add(1)
		}
	}()
	stop := sync.OnceFunc(func() { close(stopFlush); <-flushDone })
	defer stop()

	tk := recordTask.Using(task.Queue(queue))
	var ids []string
	calls, failed := 0, 0
	for start := time.Now(); time.Since(start) < produceFor; calls++ {
		args := make([]sleepArgs, batch)
		for j := range args {
			args[j] = sleepArgs{Ms: j % 3, Tag: fmt.Sprintf("flush-%d-%d", calls, j)}
		}
		rs, err := tk.EnqueueMany(e.ctx, args)
		if err != nil {
			if failed++; failed <= 5 {
				t.Errorf("EnqueueMany %d while scripts are flushed: %v", calls, err)
			}
			continue
		}
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		time.Sleep(10 * time.Millisecond) // the producer's pace
	}
	// Flushing goes on until every task is finished: claims, finishes and
	// renewals meet it too.
	e.eventually(60*time.Second, "queue "+queue+" is drained, the workers alive", func() (bool, string) {
		for _, w := range ws {
			if !w.Running() {
				t.Fatalf("worker %s exited while scripts were flushed: %v\n%s", w.ID, w.state, tail([]byte(w.Log()), 3000))
			}
		}
		c, err := e.B.Count(e.ctx, queue)
		if err != nil {
			return false, err.Error()
		}
		return c.Pending+c.Deferred+c.Running == 0, fmt.Sprintf("%+v", c)
	})
	stop()
	if err, _ := flushErr.Load().(error); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}

	bad := 0
	for _, r := range e.results(e.B, ids) {
		if r.Status != task.StatusComplete || r.Attempts != 1 {
			if bad++; bad <= 10 {
				t.Errorf("task %s: %s (%v), attempts %d; want COMPLETE after 1 attempt", r.ID, r.Status, r.Err, r.Attempts)
			}
		}
	}
	starts := map[string]int{}
	for _, x := range netExecutions(t, rec) {
		if x.Kind == "start" {
			starts[x.ID]++
		}
	}
	for _, id := range ids {
		if starts[id] != 1 {
			if bad++; bad <= 20 {
				t.Errorf("task %s started %d times; want once", id, starts[id])
			}
		}
	}
	for _, w := range ws {
		log := w.Log()
		for _, s := range []string{"NOSCRIPT", "panic"} {
			if strings.Contains(log, s) {
				t.Errorf("worker %s's log mentions %s:\n%s", w.ID, s, tail([]byte(strings.Join(w.LogLines(s), "\n")), 3000))
			}
		}
		if !w.Running() {
			t.Errorf("worker %s is gone", w.ID)
		}
	}
	if flushes.Load() < 500 {
		t.Errorf("only %d SCRIPT FLUSH commands: the scripts were not flushed often enough to test anything", flushes.Load())
	}
	t.Logf("%d SCRIPT FLUSH; %d EnqueueMany calls (%d failed) of %d tasks, all drained; %d problems", flushes.Load(), calls, failed, len(ids), bad)
}

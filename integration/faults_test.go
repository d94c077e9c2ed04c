package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

// The fault suite (issue 4): crashes, a Redis restart, a paused worker,
// poison input and a shutdown under load, injected into real worker
// processes and a real redis-server. Seeds are fixed and every loop is
// bounded; timings are logged, counts asserted.

// TestFaultCrashStorm: three worker processes share 5,000 short tasks while
// every 300ms one of them, picked at random, is SIGKILLed and started again
// under a new id. Afterwards every task is COMPLETE and readable by id, and
// a task ran more than once only if an earlier attempt of it was on a
// worker that was killed.
func TestFaultCrashStorm(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	const (
		nTasks    = 5000
		nWorkers  = 3
		lease     = time.Second
		killEvery = 300 * time.Millisecond
		maxKills  = 100 // bounds the storm if the tasks do not drain
	)
	rng := rand.New(rand.NewPCG(4, 20261124))
	cfg := func(id string, ready bool) workerConfig {
		return workerConfig{ID: id, Concurrency: 8, Lease: lease, ShutdownTimeout: 200 * time.Millisecond, Ready: ready}
	}
	// Each incarnation has an id of its own (storm<slot>.<generation>), so
	// that the results and demo:executions tell which one ran an attempt.
	workers := make([]*workerProc, nWorkers)
	gens := make([]int, nWorkers)
	for i := range workers {
		workers[i] = e.startWorker(cfg(fmt.Sprintf("storm%d.0", i), true))
	}

	args := make([]sleepArgs, nTasks)
	for i := range args {
		args[i] = sleepArgs{Ms: 1 + rng.IntN(20), Tag: strconv.Itoa(i)}
	}
	start := time.Now()
	rs, err := recordTask.EnqueueMany(ctx, args)
	if err != nil {
		t.Fatalf("EnqueueMany(%d): %v", nTasks, err)
	}
	ids := make([]string, nTasks)
	for i, r := range rs {
		ids[i] = r.ID
	}

	killed := map[string]bool{}
	kills := 0
	tick := time.NewTicker(killEvery)
	for kills < maxKills {
		<-tick.C
		c, err := e.B.Count(ctx, task.DefaultQueue)
		if err != nil {
			t.Fatal(err)
		}
		if c.Pending+c.Running+c.Deferred == 0 {
			break
		}
		i := rng.IntN(nWorkers)
		victim := workers[i]
		victim.Kill()
		killed[victim.ID] = true
		kills++
		gens[i]++
		workers[i] = e.startWorker(cfg(fmt.Sprintf("storm%d.%d", i, gens[i]), false))
	}
	tick.Stop()
	storm := time.Since(start)
	// A killed worker's tasks come back once their lease expires (any live
	// worker's scheduler requeues them).
	e.waitDrained(task.DefaultQueue, 60*time.Second)
	drained := time.Since(start)

	results := e.results(e.client(), ids)
	starts, ends := map[string][]execution{}, map[string][]execution{}
	for _, x := range e.executions() {
		switch x.Kind {
		case "start":
			starts[x.ID] = append(starts[x.ID], x)
		case "end":
			ends[x.ID] = append(ends[x.ID], x)
		}
	}

	bad := 0
	report := func(format string, args ...any) {
		t.Helper()
		if bad++; bad <= 20 {
			t.Errorf(format, args...)
		}
	}
	redelivered, reexecuted, extraStarts := 0, 0, 0
	attemptsHist := map[int]int{}
	for i, r := range results {
		if r.Status != task.StatusComplete || r.Err != nil {
			report("task %d (%s): status %s (%v), attempts %d, workers %v; want COMPLETE", i, r.ID, r.Status, r.Err, r.Attempts, r.WorkerIDs)
			continue
		}
		var v int
		if err := r.Decode(&v); err != nil || v <= 0 {
			report("task %d (%s): value %d, %v", i, r.ID, v, err)
		}
		if r.Attempts < 1 || len(r.WorkerIDs) != r.Attempts {
			report("task %d (%s): attempts %d but workers %v", i, r.ID, r.Attempts, r.WorkerIDs)
			continue
		}
		attemptsHist[r.Attempts]++
		if r.Attempts > 1 {
			redelivered++
		}
		// Every attempt but the last was abandoned: its worker must have
		// been killed.
		for a, w := range r.WorkerIDs[:r.Attempts-1] {
			if !killed[w] && w != task.UndeliveredWorker {
				report("task %d (%s): attempt %d on %s was abandoned, but that worker was never killed (workers %v)", i, r.ID, a+1, w, r.WorkerIDs)
			}
		}
		ss := starts[r.ID]
		seen := map[int]bool{}
		for _, x := range ss {
			if x.Attempt < 1 || x.Attempt > r.Attempts || x.Worker != r.WorkerIDs[x.Attempt-1] || seen[x.Attempt] || x.Tag != strconv.Itoa(i) {
				report("task %d (%s): execution %v does not match the result (attempts %d, workers %v) or repeats an attempt", i, r.ID, x, r.Attempts, r.WorkerIDs)
			}
			seen[x.Attempt] = true
		}
		if !seen[r.Attempts] {
			report("task %d (%s): no start record of its final attempt %d (starts %v)", i, r.ID, r.Attempts, ss)
		}
		finalEnds := 0
		for _, x := range ends[r.ID] {
			if x.Attempt == r.Attempts && x.Worker == r.WorkerIDs[r.Attempts-1] {
				finalEnds++
			}
		}
		if finalEnds != 1 {
			report("task %d (%s): %d end records of its final attempt; want 1 (ends %v)", i, r.ID, finalEnds, ends[r.ID])
		}
		if len(ss) > 1 {
			reexecuted++
			extraStarts += len(ss) - 1
		}
	}
	if bad > 20 {
		t.Errorf("... %d problems in all", bad)
	}
	known := map[string]bool{}
	for _, id := range ids {
		known[id] = true
	}
	for id := range starts {
		if !known[id] {
			t.Errorf("demo:executions has a start of %s, which was never enqueued", id)
		}
	}
	if len(starts) != nTasks {
		t.Errorf("%d distinct tasks started; want %d", len(starts), nTasks)
	}
	if kills == 0 {
		t.Errorf("the tasks drained before the first kill: the storm tested nothing")
	}
	lostOnLive := 0
	for _, w := range workers {
		lostOnLive += len(w.LogLines("lost the lease"))
	}
	t.Logf("crash storm: %d tasks, %d kills (%d incarnations), storm %v, all drained after %v; %d tasks redelivered (attempts per task %v), %d tasks executed more than once, %d re-executions; %d lost-lease lines in the surviving workers' logs",
		nTasks, kills, nWorkers+kills, storm.Round(time.Millisecond), drained.Round(time.Millisecond),
		redelivered, attemptsHist, reexecuted, extraStarts, lostOnLive)
}

// TestFaultRedisRestart: Redis with appendonly yes and appendfsync always
// is SIGKILLed mid-run and started again on the same port and directory.
// Producers keep enqueueing (failing while it is down) and the workers
// reconnect by themselves; every enqueue that was acknowledged survives and
// its task completes.
func TestFaultRedisRestart(t *testing.T) {
	srv := startDurableRedis(t)
	e := newEnvOn(t, srv.URL())
	ctx := e.ctx
	const (
		producers = 4
		lease     = 2 * time.Second // a claim whose reply died with Redis comes back soon
		deadline  = 300 * time.Millisecond
		down      = time.Second
	)
	ws := []*workerProc{
		e.startWorker(workerConfig{ID: "w-aof-1", Concurrency: 8, Lease: lease, Ready: true}),
		e.startWorker(workerConfig{ID: "w-aof-2", Concurrency: 8, Lease: lease, Ready: true}),
	}

	type ack struct {
		id string
		at time.Time
	}
	var (
		mu         sync.Mutex
		acked      []ack
		failed     atomic.Int64
		slowest    time.Duration // of a failed Enqueue
		slowestErr string
		lastErr    atomic.Value
		stop       = make(chan struct{})
		wg         sync.WaitGroup
	)
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(p), 2))
			for i := 0; i < 100000; i++ { // bounded; stop ends it long before
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, deadline)
				began := time.Now()
				r, err := sleepTask.Enqueue(cctx, sleepArgs{Ms: rng.IntN(20), Tag: fmt.Sprintf("p%d-%d", p, i)})
				took := time.Since(began)
				cancel()
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if took > slowest {
						slowest, slowestErr = took, err.Error()
					}
					mu.Unlock()
					lastErr.Store(err.Error())
					time.Sleep(20 * time.Millisecond)
					continue
				}
				mu.Lock()
				acked = append(acked, ack{r.ID, time.Now()})
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	stopProducers := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	t.Cleanup(stopProducers) // also when the test fails half-way
	ackCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	e.eventually(10*time.Second, "producers have some tasks acknowledged", func() (bool, string) {
		n := ackCount()
		return n >= 200, strconv.Itoa(n)
	})
	// Let some of them run, so that tasks are running when Redis dies.
	time.Sleep(300 * time.Millisecond)

	// A backlog, and tasks deferred past the outage, acknowledged just
	// before the kill: they exist only in Redis when it dies.
	backlog := make([]sleepArgs, 300)
	for i := range backlog {
		backlog[i] = sleepArgs{Ms: 30, Tag: fmt.Sprintf("backlog-%d", i)}
	}
	brs, err := sleepTask.EnqueueMany(ctx, backlog)
	if err != nil {
		t.Fatal(err)
	}
	deferred := make([]sleepArgs, 20)
	for i := range deferred {
		deferred[i] = sleepArgs{Ms: 1, Tag: fmt.Sprintf("deferred-%d", i)}
	}
	drs, err := sleepTask.Using(task.RunAfter(down+time.Second)).EnqueueMany(ctx, deferred)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	for _, r := range append(brs, drs...) {
		acked = append(acked, ack{r.ID, time.Now()})
	}
	mu.Unlock()
	atKill, err := e.B.Count(ctx, task.DefaultQueue)
	if err != nil {
		t.Fatal(err)
	}
	if atKill.Pending+atKill.Running == 0 || atKill.Deferred == 0 {
		t.Fatalf("nothing pending, running or deferred just before the kill (%+v): the restart would test nothing", atKill)
	}

	killedAt := time.Now()
	beforeKill := ackCount()
	srv.Kill()
	time.Sleep(down)
	failedDuringOutage := failed.Load()
	srv.Start()
	outage := time.Since(killedAt)
	restartedAt := time.Now()

	e.eventually(15*time.Second, "producers have tasks acknowledged after the restart", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, a := range acked {
			if a.at.After(restartedAt) {
				n++
			}
		}
		last, _ := lastErr.Load().(string)
		return n >= 200, fmt.Sprintf("%d acknowledged after the restart; last error %q", n, last)
	})
	stopProducers()
	stopped := time.Since(restartedAt)

	e.waitDrained(task.DefaultQueue, 60*time.Second)
	drained := time.Since(restartedAt)
	mu.Lock()
	ids := make([]string, len(acked))
	afterRestart := 0
	for i, a := range acked {
		ids[i] = a.id
		if a.at.After(restartedAt) {
			afterRestart++
		}
	}
	mu.Unlock()
	results := e.results(e.client(), ids)
	bad, rerun := 0, 0
	for i, r := range results {
		var v string
		if r.Status != task.StatusComplete || r.Decode(&v) != nil || len(r.WorkerIDs) == 0 || v != r.WorkerIDs[len(r.WorkerIDs)-1] {
			if bad++; bad <= 10 {
				t.Errorf("acknowledged task %d (%s): status %s (%v), value %q, attempts %d, workers %v; want COMPLETE, value = its last worker", i, r.ID, r.Status, r.Err, v, r.Attempts, r.WorkerIDs)
			}
			continue
		}
		if r.Attempts > 1 {
			rerun++
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d acknowledged tasks are not COMPLETE", bad, len(ids))
	}
	if failedDuringOutage == 0 {
		t.Errorf("no enqueue failed while Redis was down: the outage tested nothing")
	}
	// Enqueue honours the caller's deadline while Redis is down.
	if slowest > deadline+2*time.Second { // generous: a loaded CI machine
		t.Errorf("a failed Enqueue returned after %v; its deadline was %v (error: %s)", slowest, deadline, slowestErr)
	}
	for _, w := range ws {
		if !w.Running() {
			t.Errorf("worker %s is gone", w.ID)
		}
	}
	t.Logf("redis restart: outage %v; at the kill %d pending, %d running, %d deferred; %d tasks acknowledged (%d before the kill, %d after the restart), %d enqueues failed (deadline %v, slowest failure took %v); producers stopped %v and the queue drained %v after the restart; all %d acknowledged tasks COMPLETE, %d of them ran more than once",
		outage.Round(time.Millisecond), atKill.Pending, atKill.Running, atKill.Deferred, len(ids), beforeKill, afterRestart, failed.Load(), deadline, slowest.Round(time.Millisecond), stopped.Round(time.Millisecond), drained.Round(time.Millisecond), len(ids)-bad, rerun)
}

// TestFaultPausePastLease (fencing): a worker paused (SIGSTOP) past its
// lease loses the task to another worker, which completes attempt 2; when
// continued, the first worker's late finish is refused: the result stays
// attempt 2's, and its log says it lost the lease.
func TestFaultPausePastLease(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	const (
		lease = time.Second
		run   = 2500 * time.Millisecond
	)
	a := e.startWorker(workerConfig{ID: "w-pause-a", Concurrency: 1, Lease: lease, Ready: true})
	res, err := recordTask.Enqueue(ctx, sleepArgs{Ms: int(run / time.Millisecond), Tag: "fenced"})
	if err != nil {
		t.Fatal(err)
	}
	startedBy := func(id string, attempt int, worker string) func() (bool, string) {
		return func() (bool, string) {
			for _, x := range e.executions() {
				if x.Kind == "start" && x.ID == id && x.Attempt == attempt && x.Worker == worker {
					return true, ""
				}
			}
			return false, "no start record"
		}
	}
	e.eventually(30*time.Second, "worker A starts the task", startedBy(res.ID, 1, a.ID))
	a.Pause()
	paused := time.Now()
	t.Cleanup(func() { _ = a.cmd.Process.Signal(syscall.SIGCONT) }) // in case the test fails while A is stopped

	b := e.startWorker(workerConfig{ID: "w-pause-b", Concurrency: 1, Lease: lease, Ready: true})
	r2 := e.waitStatus(e.B, res.ID, 30*time.Second, task.StatusComplete, task.StatusFailed)
	if r2.Status != task.StatusComplete || r2.Attempts != 2 || !slices.Equal(r2.WorkerIDs, []string{a.ID, b.ID}) {
		t.Fatalf("while A is paused: status %s (%v), attempts %d, workers %v; want COMPLETE, 2, [%s %s]", r2.Status, r2.Err, r2.Attempts, r2.WorkerIDs, a.ID, b.ID)
	}
	var v2 int
	if err := r2.Decode(&v2); err != nil {
		t.Fatal(err)
	}
	pausedFor := time.Since(paused)
	if !a.Running() {
		t.Fatalf("worker A exited while paused: %v", a.state)
	}

	a.Resume()
	// A's task was due to end long ago: on SIGCONT it ends at once (or is
	// cancelled by the lease renewal that finds the lease lost), and its
	// finish is refused.
	e.eventually(15*time.Second, "worker A logs that its finish was refused (lost the lease)", func() (bool, string) {
		return len(a.LogLines("outcome discarded")) > 0, tail([]byte(a.Log()), 300)
	})
	lostLines := a.LogLines("lost")
	// One more renewal period, so that a renewal A might still attempt
	// has happened too.
	time.Sleep(lease / 2)

	r3, err := e.client().GetResult(ctx, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	var v3 int
	if err := r3.Decode(&v3); err != nil {
		t.Fatal(err)
	}
	if r3.Status != task.StatusComplete || r3.Attempts != 2 || !slices.Equal(r3.WorkerIDs, r2.WorkerIDs) ||
		v3 != v2 || !bytes.Equal(r3.Value, r2.Value) || !r3.FinishedAt.Equal(r2.FinishedAt) {
		t.Errorf("after A's late finish the result is %s, attempts %d, workers %v, value %d, finished %v; want attempt 2's: COMPLETE, 2, %v, %d, %v",
			r3.Status, r3.Attempts, r3.WorkerIDs, v3, r3.FinishedAt, r2.WorkerIDs, v2, r2.FinishedAt)
	}
	// A did not renew (re-create) a lease it no longer holds.
	running := "{" + broker.DefaultPrefix + ":" + task.DefaultQueue + "}:running"
	if err := e.R.ZScore(ctx, running, res.ID).Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("after A came back the task has a lease again (ZSCORE %s: %v)", running, err)
	}
	if c, err := e.B.Count(ctx, task.DefaultQueue); err != nil || c.Pending+c.Running+c.Deferred != 0 {
		t.Errorf("after A came back the queue has %+v (%v); want nothing", c, err)
	}
	if !a.Running() {
		t.Errorf("worker A exited after SIGCONT: %v", a.state)
	}

	var got []string
	for _, x := range e.executions() {
		if x.ID == res.ID {
			got = append(got, fmt.Sprintf("%s %d %s", x.Kind, x.Attempt, x.Worker))
		}
	}
	want := []string{"start 1 " + a.ID, "start 2 " + b.ID, "end 2 " + b.ID}
	lateEnd := slices.Equal(got, append(slices.Clone(want), "end 1 "+a.ID))
	if !slices.Equal(got, want) && !lateEnd {
		t.Errorf("executions of the task: %q; want %q, possibly followed by A's late end", got, want)
	}
	t.Logf("pause past the lease: A paused %v (lease %v), B completed attempt 2 with value %d; A on SIGCONT: late end recorded %v, finish refused; A's log:\n%s",
		pausedFor.Round(time.Millisecond), lease, v2, lateEnd, strings.Join(lostLines, "\n"))
}

// TestFaultPoisonMessages: payloads written straight into Redis next to
// good tasks: garbage, a good header with a garbage envelope, an unknown
// task, arguments of the wrong shape, deeply nested msgpack, a garbage
// error history. The good tasks complete, the bad ones end FAILED with
// their reason after one attempt, and the worker stays up.
func TestFaultPoisonMessages(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	const queue = "poison"
	const lease = time.Second
	w := e.startWorker(workerConfig{ID: "w-poison", Queues: []string{queue}, Concurrency: 2, Lease: lease, Ready: true})
	pid := w.Pid()
	addQ := addTask.Using(task.Queue(queue))

	goodBefore, err := addQ.EnqueueMany(ctx, []addArgs{{A: 1, B: 1}, {A: 2, B: 2}, {A: 3, B: 3}})
	if err != nil {
		t.Fatal(err)
	}

	rng := rand.New(rand.NewPCG(44, 4))
	garbage := make([]byte, 256)
	for i := range garbage {
		garbage[i] = byte(rng.IntN(256))
	}
	mp := func(v any) []byte {
		b, err := serializer.Default.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// 100,000 nested one-element arrays (0x91) around a nil.
	deep := append(bytes.Repeat([]byte{0x91}, 100000), 0xc0)
	// A map {"a": 1, "b": 2, "deep": <deep>}: valid arguments plus a field
	// demo.add does not have, holding the deep blob.
	deepField := append([]byte{0x83, 0xa1, 'a', 0x01, 0xa1, 'b', 0x02, 0xa4, 'd', 'e', 'e', 'p'}, deep...)
	env := func(name string, args []byte) []byte { return encodeRawEnvelope(t, name, args) }
	hdr := func(b []byte) []byte { return append([]byte(freshHeader(0)), b...) }

	type poison struct {
		what     string
		value    []byte
		errors   []byte // written to the queue's errors hash, if set
		wantType string // "" for a good task
		wantMsg  string // a substring of the error message
		wantSum  int    // for a good task
	}
	cases := []poison{
		{what: "good task written by hand", value: hdr(env("demo.add", mp(addArgs{A: 20, B: 22}))), wantSum: 42},
		{what: "random bytes, no header", value: garbage, wantType: task.ErrorTypeBadPayload, wantMsg: "envelope does not decode"},
		{what: "empty value", value: []byte{}, wantType: task.ErrorTypeBadPayload},
		{what: "header and no envelope", value: hdr(nil), wantType: task.ErrorTypeBadPayload},
		{what: "valid header, garbage envelope", value: hdr([]byte("\xc1\xc1 not msgpack \x00\xff")), wantType: task.ErrorTypeBadPayload, wantMsg: "envelope does not decode"},
		{what: "valid header, random-bytes envelope", value: hdr(garbage), wantType: task.ErrorTypeBadPayload},
		{what: "valid header, deeply nested envelope", value: hdr(deep), wantType: task.ErrorTypeBadPayload},
		{what: "unknown task", value: hdr(env("integration.no-such-task", mp(addArgs{A: 1, B: 2}))), wantType: task.ErrorTypeUnknownTask, wantMsg: "integration.no-such-task"},
		{what: "demo.add with a string for args", value: hdr(env("demo.add", mp("not an AddArgs"))), wantType: task.ErrorTypeDecodeArgs, wantMsg: "demo.add"},
		{what: "demo.add with fields of the wrong types", value: hdr(env("demo.add", mp(map[string]any{"a": "one", "b": []int{2}}))), wantType: task.ErrorTypeDecodeArgs},
		{what: "demo.add with args that are not msgpack", value: hdr(env("demo.add", []byte{0xc1, 0xc1})), wantType: task.ErrorTypeDecodeArgs},
		{what: "demo.add with 100k levels of nested arrays as args", value: hdr(env("demo.add", deep)), wantType: task.ErrorTypeDecodeArgs},
		{what: "demo.add with truncated args", value: hdr(env("demo.add", mp(addArgs{A: 1, B: 2})[:3])), wantType: task.ErrorTypeDecodeArgs},
		{what: "valid task, garbage error history", value: hdr(env("demo.add", mp(addArgs{A: 1, B: 2}))), errors: garbage, wantType: task.ErrorTypeBadPayload},
	}
	ids := make([]string, len(cases))
	for i, c := range cases {
		ids[i] = task.NewID()
		if c.errors != nil {
			tag := "{" + broker.DefaultPrefix + ":" + queue + "}"
			if err := e.R.HSet(ctx, tag+":errors", ids[i], c.errors).Err(); err != nil {
				t.Fatal(err)
			}
		}
		e.injectRaw(queue, ids[i], c.value, int64(i+1))
	}
	// The deep blob in a field demo.add does not know: decoding skips
	// unknown fields, so this one is not poison; it must not crash the
	// worker, whatever its outcome.
	deepFieldID := task.NewID()
	e.injectRaw(queue, deepFieldID, hdr(env("demo.add", deepField)), int64(len(cases)+1))

	goodAfter, err := addQ.EnqueueMany(ctx, []addArgs{{A: 4, B: 4}, {A: 5, B: 5}})
	if err != nil {
		t.Fatal(err)
	}
	final := []task.Status{task.StatusComplete, task.StatusFailed}
	counts := map[string]int{}
	for i, c := range cases {
		r := e.waitStatus(e.B, ids[i], 30*time.Second, final...)
		if c.wantType == "" {
			var v int
			if r.Status != task.StatusComplete || r.Decode(&v) != nil || v != c.wantSum || r.Attempts != 1 {
				t.Errorf("%s: status %s (%v), value %d, attempts %d; want COMPLETE %d after 1 attempt", c.what, r.Status, r.Err, v, r.Attempts, c.wantSum)
			}
			counts["COMPLETE"]++
			continue
		}
		if r.Status != task.StatusFailed || r.Err == nil || r.Err.Type != c.wantType || r.Err.Message == "" {
			t.Errorf("%s: status %s, error %+v; want FAILED with type %s", c.what, r.Status, r.Err, c.wantType)
			continue
		}
		if !strings.Contains(r.Err.Message, c.wantMsg) {
			t.Errorf("%s: error message %q does not contain %q", c.what, r.Err.Message, c.wantMsg)
		}
		if r.Attempts != 1 || len(r.WorkerIDs) != 1 || r.WorkerIDs[0] != w.ID {
			t.Errorf("%s: attempts %d, workers %v; want 1 attempt on %s", c.what, r.Attempts, r.WorkerIDs, w.ID)
		}
		counts[r.Err.Type]++
		t.Logf("%s: FAILED %s: %.160s", c.what, r.Err.Type, r.Err.Message)
	}
	r := e.waitStatus(e.B, deepFieldID, 30*time.Second, final...)
	var dv int
	_ = r.Decode(&dv)
	t.Logf("demo.add with a 100k-deep unknown field: %s, value %d, attempts %d, error %v", r.Status, dv, r.Attempts, r.Err)
	if r.Attempts != 1 || !(r.Status == task.StatusComplete && dv == 3 || r.Status == task.StatusFailed && r.Err != nil && r.Err.Type == task.ErrorTypeDecodeArgs) {
		t.Errorf("demo.add with a deep unknown field: %s (%v), value %d, attempts %d; want COMPLETE 3 or FAILED %s, after 1 attempt", r.Status, r.Err, dv, r.Attempts, task.ErrorTypeDecodeArgs)
	}
	for i, g := range append(goodBefore, goodAfter...) {
		r := e.waitStatus(e.B, g.ID, 30*time.Second, final...)
		var v int
		if want := []int{2, 4, 6, 8, 10}[i]; r.Status != task.StatusComplete || r.Decode(&v) != nil || v != want || r.Attempts != 1 {
			t.Errorf("good task %d: %s (%v), value %d, attempts %d; want COMPLETE %d", i, r.Status, r.Err, v, r.Attempts, want)
		}
		counts["COMPLETE"]++
	}

	// Nothing comes back: after more than a lease, the queue is empty, no
	// lease expired, and the same process is still serving.
	time.Sleep(lease + lease/2)
	if c, err := e.B.Count(ctx, queue); err != nil || c.Pending+c.Running+c.Deferred != 0 {
		t.Errorf("queue %s after the poison: %+v (%v); want empty", queue, c, err)
	}
	for i, c := range cases {
		if r, err := e.B.GetResult(ctx, ids[i]); err != nil || r.Attempts != 1 {
			t.Errorf("%s: later GetResult: %v, attempts %v; want 1", c.what, err, r)
		}
	}
	if l := w.LogLines("lease expired"); len(l) > 0 {
		t.Errorf("leases expired (redelivery):\n%s", strings.Join(l, "\n"))
	}
	for _, bad := range []string{"panic", "fatal error", "goroutine "} {
		if strings.Contains(w.Log(), bad) {
			t.Errorf("worker log contains %q", bad)
		}
	}
	if !w.Running() || w.Pid() != pid {
		t.Errorf("the worker is not the same running process")
	}
	last, err := addQ.Enqueue(ctx, addArgs{A: 50, B: 50})
	if err != nil {
		t.Fatal(err)
	}
	if r := e.waitStatus(e.B, last.ID, 30*time.Second, final...); r.Status != task.StatusComplete {
		t.Errorf("a task after the poison: %s (%v)", r.Status, r.Err)
	}
	t.Logf("poison: %d injected payloads (+1 deep unknown field), %d good tasks; outcomes %v; worker pid %d still serving", len(cases)-1, len(goodBefore)+len(goodAfter)+1, counts, pid)
}

// TestFaultShutdownUnderLoad: SIGTERM to a worker with 100 tasks in
// flight. Those that can finish within --shutdown-timeout complete there;
// the others are back in the queue (NEW, pending) as soon as the worker
// has exited, long before their 60s lease, and complete on another worker.
func TestFaultShutdownUnderLoad(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	const (
		n               = 100
		shutdownTimeout = 2500 * time.Millisecond
		lease           = 60 * time.Second
		shortMin        = 1000 // ms; ends well within the window
		shortSpread     = 800
		longMin         = 4000 // ms; cannot end within the window
		longSpread      = 1000
	)
	a := e.startWorker(workerConfig{ID: "w-load-a", Concurrency: n, ShutdownTimeout: shutdownTimeout, Lease: lease, Ready: true})

	rng := rand.New(rand.NewPCG(5, 100))
	type item struct {
		short, record bool
		ms            int
		id            string
	}
	items := make([]item, n)
	var sleeps, records []sleepArgs
	var sleepIdx, recordIdx []int
	for i := range items {
		it := &items[i]
		it.short, it.record = rng.IntN(2) == 0, rng.IntN(2) == 0
		if it.short {
			it.ms = shortMin + rng.IntN(shortSpread)
		} else {
			it.ms = longMin + rng.IntN(longSpread)
		}
		a := sleepArgs{Ms: it.ms, Tag: strconv.Itoa(i)}
		if it.record {
			records, recordIdx = append(records, a), append(recordIdx, i)
		} else {
			sleeps, sleepIdx = append(sleeps, a), append(sleepIdx, i)
		}
	}
	rs1, err := sleepTask.EnqueueMany(ctx, sleeps)
	if err != nil {
		t.Fatal(err)
	}
	rs2, err := recordTask.EnqueueMany(ctx, records)
	if err != nil {
		t.Fatal(err)
	}
	for k, r := range rs1 {
		items[sleepIdx[k]].id = r.ID
	}
	for k, r := range rs2 {
		items[recordIdx[k]].id = r.ID
	}
	ids := make([]string, n)
	for i, it := range items {
		ids[i] = it.id
	}

	e.eventually(20*time.Second, "all 100 tasks are running", func() (bool, string) {
		c, err := e.B.Count(ctx, task.DefaultQueue)
		if err != nil {
			return false, err.Error()
		}
		return c.Running == n, fmt.Sprintf("%+v", c)
	})
	sent := time.Now()
	a.Signal(syscall.SIGTERM)
	st := a.WaitExit(shutdownTimeout + 10*time.Second)
	if st == nil {
		t.Fatalf("worker did not exit within %v of SIGTERM (--shutdown-timeout %v)", shutdownTimeout+10*time.Second, shutdownTimeout)
	}
	took := time.Since(sent)
	if !st.Success() {
		t.Errorf("worker exit status after SIGTERM: %v; want 0", st)
	}
	if took < shutdownTimeout-100*time.Millisecond || took > shutdownTimeout+2*time.Second {
		t.Errorf("worker exited %v after SIGTERM; want about --shutdown-timeout %v (long tasks were in flight)", took, shutdownTimeout)
	}

	// Straight after the exit, long before any lease could expire.
	third := e.client()
	after := e.results(third, ids)
	windowEnd := sent.Add(shutdownTimeout)
	var short, long int
	for i, r := range after {
		it := items[i]
		// The test is only meaningful if every task was in flight at the
		// SIGTERM and each falls clearly on one side of the window.
		if !r.StartedAt.Before(sent) {
			t.Fatalf("task %d started at %v, after the SIGTERM at %v", i, r.StartedAt, sent)
		}
		due := r.StartedAt.Add(time.Duration(it.ms) * time.Millisecond)
		if it.short && (due.Before(sent) || due.After(windowEnd.Add(-500*time.Millisecond))) ||
			!it.short && due.Before(windowEnd.Add(500*time.Millisecond)) {
			t.Fatalf("task %d (%d ms, started %v before the SIGTERM) is not clearly inside or outside the window: too slow a machine for this test", i, it.ms, sent.Sub(r.StartedAt))
		}
		if it.short {
			short++
			if r.Status != task.StatusComplete || r.Attempts != 1 || !slices.Equal(r.WorkerIDs, []string{a.ID}) ||
				!r.FinishedAt.After(sent) || r.FinishedAt.After(windowEnd) {
				t.Errorf("short task %d: %s (%v), attempts %d, workers %v, finished %v after SIGTERM; want COMPLETE by %s within the %v window",
					i, r.Status, r.Err, r.Attempts, r.WorkerIDs, r.FinishedAt.Sub(sent), a.ID, shutdownTimeout)
			}
			continue
		}
		long++
		if r.Status != task.StatusNew || r.Attempts != 1 || !slices.Equal(r.WorkerIDs, []string{a.ID}) || !r.FinishedAt.IsZero() {
			t.Errorf("long task %d after the shutdown: %s, attempts %d, workers %v; want NEW (handed back), 1, [%s]", i, r.Status, r.Attempts, r.WorkerIDs, a.ID)
		}
	}
	c, err := e.B.Count(ctx, task.DefaultQueue)
	if err != nil {
		t.Fatal(err)
	}
	if c.Pending != int64(long) || c.Running != 0 || c.Deferred != 0 {
		t.Errorf("after the shutdown the queue has %+v; want %d pending, nothing running", c, long)
	}
	if t.Failed() {
		t.FailNow() // the rest would wait for nothing
	}

	b := e.startWorker(workerConfig{ID: "w-load-b", Concurrency: n, Lease: lease})
	e.waitDrained(task.DefaultQueue, 30*time.Second)
	final := e.results(third, ids)
	for i, r := range final {
		it := items[i]
		wantWorkers := []string{a.ID}
		if !it.short {
			wantWorkers = []string{a.ID, b.ID}
		}
		if r.Status != task.StatusComplete || r.Attempts != len(wantWorkers) || !slices.Equal(r.WorkerIDs, wantWorkers) {
			t.Errorf("task %d (short %v): %s (%v), attempts %d, workers %v; want COMPLETE, %d, %v", i, it.short, r.Status, r.Err, r.Attempts, r.WorkerIDs, len(wantWorkers), wantWorkers)
			continue
		}
		if !it.record {
			var v string
			if err := r.Decode(&v); err != nil || v != wantWorkers[len(wantWorkers)-1] {
				t.Errorf("demo.sleep %d: value %q, %v; want %s", i, v, err, wantWorkers[len(wantWorkers)-1])
			}
		}
	}
	// demo.record: a long one started on A and was cancelled (no end), then
	// ran on B; a short one ran once on A.
	byID := map[string][]string{}
	for _, x := range e.executions() {
		byID[x.ID] = append(byID[x.ID], fmt.Sprintf("%s %d %s", x.Kind, x.Attempt, x.Worker))
	}
	for i, it := range items {
		if !it.record {
			continue
		}
		want := []string{"start 1 " + a.ID, "end 1 " + a.ID}
		if !it.short {
			want = []string{"start 1 " + a.ID, "start 2 " + b.ID, "end 2 " + b.ID}
		}
		if got := byID[it.id]; !slices.Equal(got, want) {
			t.Errorf("demo.record %d (short %v): executions %q; want %q", i, it.short, got, want)
		}
	}
	t.Logf("shutdown under load: %d tasks in flight at SIGTERM, worker exited %v after it (--shutdown-timeout %v); %d completed in the window, %d handed back (NEW, pending) and completed on %s",
		n, took.Round(time.Millisecond), shutdownTimeout, short, long, b.ID)
}

// TestFaultPauseSameWorkerReclaims: like TestFaultPausePastLease, but the
// paused worker is the only one, so that after SIGCONT it re-claims the
// task it lost (attempt 2) while its own attempt 1 is still winding down.
// Attempt 1 must be refused and attempt 2 must run once and complete.
//
// This caught a bug: with in-flight tasks keyed by id alone, attempt 1's
// clean-up removed attempt 2's entry (whose lease was then no longer
// renewed), or the renewal that found attempt 1's lease lost cancelled
// attempt 2. The worker now keys them by id and attempt number.
func TestFaultPauseSameWorkerReclaims(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	const lease = time.Second
	w := e.startWorker(workerConfig{ID: "w-solo", Concurrency: 2, Lease: lease, Ready: true})
	res, err := recordTask.Enqueue(ctx, sleepArgs{Ms: 3000, Tag: "solo"})
	if err != nil {
		t.Fatal(err)
	}
	e.eventually(30*time.Second, "the worker starts the task", func() (bool, string) {
		for _, x := range e.executions() {
			if x.Kind == "start" && x.ID == res.ID {
				return true, ""
			}
		}
		return false, "no start record"
	})
	w.Pause()
	t.Cleanup(func() { _ = w.cmd.Process.Signal(syscall.SIGCONT) })
	time.Sleep(lease + lease/2)
	// Any scheduler may requeue an expired lease; here the test's.
	if n, _, err := e.B.Reap(ctx, task.DefaultQueue, 100); err != nil || n != 1 {
		t.Fatalf("Reap while the worker is paused: %d, %v; want 1", n, err)
	}
	w.Resume()

	r := e.waitStatus(e.B, res.ID, 60*time.Second, task.StatusComplete, task.StatusFailed)
	var got []string
	for _, x := range e.executions() {
		got = append(got, fmt.Sprintf("%s#%d", x.Kind, x.Attempt))
	}
	if r.Status != task.StatusComplete || r.Attempts != 2 {
		t.Errorf("after the pause: %s (%v), attempts %d, workers %v, executions %v; want COMPLETE after 2 attempts", r.Status, r.Err, r.Attempts, r.WorkerIDs, got)
	}
	t.Logf("executions: %v; lease lines in the log:\n%s", got, strings.Join(w.LogLines("lease"), "\n"))
}

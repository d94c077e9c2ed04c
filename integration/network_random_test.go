package integration

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/scheduler"
	"github.com/gotasks/gotasks/task"
)

// The network fault suite, randomized part: producers in this process and
// three worker processes reach Redis through a toxiproxy that resets,
// hangs, slows (past the clients' read timeout) and throttles connections
// and loses replies, at random, for 20s (GOTASKS_NETFAULT_DURATION=60s or
// -netfault.long for longer; GOTASKS_NETFAULT_SEED=<n> replays a seed's
// schedule of faults, not its timing). Then every task must be finished,
// exactly once, and every enqueue's error must have said the truth.

var netFaultLong = flag.Bool("netfault.long", false, "run the randomized network fault test for 60s instead of 20s")

func netFaultDuration(t *testing.T) time.Duration {
	t.Helper()
	if v := os.Getenv("GOTASKS_NETFAULT_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("GOTASKS_NETFAULT_DURATION=%q: want a positive duration such as 60s", v)
		}
		return d
	}
	if *netFaultLong {
		return time.Minute
	}
	return 20 * time.Second
}

func netFaultSeed(t *testing.T) uint64 {
	t.Helper()
	if v := os.Getenv("GOTASKS_NETFAULT_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("GOTASKS_NETFAULT_SEED=%q: want an unsigned integer", v)
		}
		return s
	}
	return uint64(time.Now().UnixNano())
}

// netLedger is what the producers know: the tasks acknowledged, and the
// enqueues that failed without ErrMaybeEnqueued (nothing may be stored for
// them).
type netLedger struct {
	mu         sync.Mutex
	acked      map[string]string // id → tag of the acknowledged task
	cleanFail  map[string]string // tag → the error of an enqueue that did not wrap ErrMaybeEnqueued
	maybe      int               // errors wrapping ErrMaybeEnqueued
	resends    int               // enqueues again WithID after them
	unresolved []string          // ids whose enqueue never succeeded
	problems   []string
}

func (l *netLedger) ack(id, tag string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if old, ok := l.acked[id]; ok && old != tag {
		l.problems = append(l.problems, fmt.Sprintf("id %s acknowledged for %s and for %s", id, old, tag))
	}
	l.acked[id] = tag
}

func (l *netLedger) problem(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.problems = append(l.problems, fmt.Sprintf(format, args...))
}

// TestNetworkUnderRandomFaultsNoTaskIsLostRunTwiceOrAGhost: 8 producers
// enqueue one by one, 2 with EnqueueMany, and a scheduler enqueues a
// periodic task every second, while 3 worker processes run them, all
// through one toxiproxy whose faults toggle at random. An enqueue whose
// error wraps ErrMaybeEnqueued is enqueued again WithID (its own id) until
// it succeeds; any other error means nothing was stored (a task stored for
// it is a ghost). demo.record writes its executions to a file, which the
// faults cannot reach. Afterwards every acknowledged task is COMPLETE (lost
// otherwise), ran once (the leases of 30s outlast every fault, so no
// second execution is excused), came back without waiting for its lease
// (stuck otherwise); each claimed tick has one task; the producers'
// enqueued hooks, the workers' completed metrics and Redis' totals agree
// with what Redis holds.
func TestNetworkUnderRandomFaultsNoTaskIsLostRunTwiceOrAGhost(t *testing.T) {
	seed, dur := netFaultSeed(t), netFaultDuration(t)
	t.Logf("seed %d, faults for %v (replay: GOTASKS_NETFAULT_SEED=%d)", seed, dur, seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d: replay with GOTASKS_NETFAULT_SEED=%d GOTASKS_NETFAULT_DURATION=%v", seed, seed, dur)
		}
	})
	rng := rand.New(rand.NewPCG(seed, 0x6e657466))
	recFile := netRecordFile(t)
	n := newNetEnv(t)
	ctx := n.ctx
	const (
		queue     = "net-random"
		tickQueue = "net-random-ticks"
		tickEntry = "net-random-tick"
		lease     = 30 * time.Second
		// Shorter than go-redis' 3s, so that a latency spike makes reads
		// time out (and go-redis send the command again) within a fault.
		query = "read_timeout=1s&write_timeout=1s&dial_timeout=1s"
	)
	nb := n.openNet(broker.Options{Name: netBackend}, query)
	task.Configure(map[string]task.Backend{task.DefaultBackendName: n.B, netBackend: nb})

	// Workers, started together, each then waits for its probe.
	const nWorkers = 3
	ws := make([]*workerProc, nWorkers)
	metricsAddrs := make([]string, nWorkers)
	for i := range ws {
		id := fmt.Sprintf("net-w%d", i+1)
		metricsAddrs[i] = netFreeAddr(t)
		ws[i] = n.startWorker(workerConfig{ID: id, Queues: []string{queue, probeQueue(id)}, Concurrency: 8, Lease: lease,
			Extra: []string{"--redis-url", n.ProxyURL + "?" + query, "--metrics-addr", metricsAddrs[i]}})
	}
	for _, w := range ws {
		n.waitReady(w)
	}

	// The producers' enqueued hook, per id.
	var hookMu sync.Mutex
	hooked := map[string]int{}
	defer task.OnEnqueued(func(_ context.Context, r *task.RawResult) {
		if r.Queue != queue {
			return
		}
		hookMu.Lock()
		hooked[r.ID]++
		hookMu.Unlock()
	})()

	// The periodic entry, through the proxy too.
	tickBroker := n.openNet(broker.Options{Name: netBackend}, query)
	entry, err := scheduler.NewEntry(addTask.Using(task.Queue(tickQueue), task.UseBackend(netBackend)), "@every 1s",
		addArgs{A: 1, B: 1}, scheduler.EntryName(tickEntry))
	if err != nil {
		t.Fatal(err)
	}
	var schedLog netSyncBuffer
	sched := scheduler.New(tickBroker, scheduler.Options{Queues: []string{tickQueue}, Entries: []*scheduler.Entry{entry},
		Logger: slog.New(slog.NewTextHandler(&schedLog, nil))})
	schedCtx, stopSched := context.WithCancel(ctx)
	schedDone := make(chan error, 1)
	schedStart := time.Now()
	go func() { schedDone <- sched.Run(schedCtx) }()
	defer stopSched()

	// Producers.
	l := &netLedger{acked: map[string]string{}, cleanFail: map[string]string{}}
	stop := make(chan struct{})
	var resolveBy atomic.Int64 // unix ns: enqueues again WithID give up after it (set when the faults end)
	resolveBy.Store(time.Now().Add(time.Hour).UnixNano())
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	// resolve enqueues again WithID(id) until it succeeds.
	resolve := func(enqueue func(ctx context.Context, id string) (string, error), id, tag string) {
		for {
			l.mu.Lock()
			l.resends++
			l.mu.Unlock()
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			got, err := enqueue(cctx, id)
			cancel()
			switch {
			case err == nil && got != id:
				l.problem("enqueue again WithID(%s) returned id %s", id, got)
				return
			case err == nil:
				l.ack(id, tag)
				return
			case errors.Is(err, task.ErrDuplicateID):
				l.problem("enqueue again WithID(%s) with the same task: %v", id, err)
				return
			case errors.Is(err, task.ErrMaybeEnqueued):
				l.mu.Lock()
				l.maybe++
				l.mu.Unlock()
			}
			if time.Now().UnixNano() > resolveBy.Load() {
				l.mu.Lock()
				l.unresolved = append(l.unresolved, id)
				l.mu.Unlock()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// outcome files the error of a first enqueue of the tasks tags: ids to
	// enqueue again WithID (ErrMaybeEnqueued), or clean (nothing stored,
	// says the error).
	outcome := func(err error, tags []string) (ids []string, clean bool) {
		if !errors.Is(err, task.ErrMaybeEnqueued) {
			l.mu.Lock()
			for _, tag := range tags {
				l.cleanFail[tag] = err.Error()
			}
			l.mu.Unlock()
			return nil, true
		}
		l.mu.Lock()
		l.maybe++
		l.mu.Unlock()
		var me *task.MaybeEnqueuedError
		if !errors.As(err, &me) || len(me.IDs) != len(tags) {
			l.problem("an error wrapping ErrMaybeEnqueued without the %d ids (errors.As: %v): %v", len(tags), me, err)
			return nil, false
		}
		return me.IDs, false
	}
	recordNet := recordTask.Using(task.Queue(queue), task.UseBackend(netBackend))
	flakyNet := flakyTask.Using(task.Queue(queue), task.UseBackend(netBackend), task.MaxAttempts(3), task.Backoff(20*time.Millisecond, 100*time.Millisecond))
	// again returns a function that enqueues args again under an id.
	again := func(tk *task.Task[sleepArgs, int], args sleepArgs) func(context.Context, string) (string, error) {
		return func(ctx context.Context, id string) (string, error) {
			r, err := tk.Using(task.WithID(id)).Enqueue(ctx, args)
			if err != nil {
				return "", err
			}
			return r.ID, nil
		}
	}
	flakyAgain := func(ctx context.Context, id string) (string, error) {
		r, err := flakyNet.Using(task.WithID(id)).Enqueue(ctx, flakyArgs{FailAttempts: 1})
		if err != nil {
			return "", err
		}
		return r.ID, nil
	}
	const oneByOne, many, batch = 8, 2, 8
	// produce makes one attempt to enqueue the tasks of base; it returns
	// false when they failed with an error that says nothing was stored,
	// so that they get another attempt (with new tags, and new ids).
	produce := func(prng *rand.Rand, p int, base string) bool {
		// Deadlines from 0.3s to 3s: a hang or a slow reply ends some
		// calls on the caller's deadline, sent or not.
		cctx, cancel := context.WithTimeout(ctx, time.Duration(300+prng.IntN(2700))*time.Millisecond)
		defer cancel()
		var (
			tags   []string
			resend []func(context.Context, string) (string, error)
			err    error
		)
		switch {
		case p >= oneByOne: // EnqueueMany
			args := make([]sleepArgs, batch)
			for j := range args {
				args[j] = sleepArgs{Ms: prng.IntN(10), Tag: fmt.Sprintf("%s.%d", base, j)}
				tags = append(tags, args[j].Tag)
				resend = append(resend, again(recordNet, args[j]))
			}
			var rs []*task.Result[int]
			if rs, err = recordNet.EnqueueMany(cctx, args); err == nil {
				for j, r := range rs {
					l.ack(r.ID, tags[j])
				}
			}
		case prng.IntN(10) == 0: // a task that fails once and is retried, under an id of its own
			id := "flaky-" + base
			tags, resend = []string{id}, append(resend, flakyAgain)
			var got string
			if got, err = flakyAgain(cctx, id); err == nil {
				l.ack(got, id)
			}
		default:
			args := sleepArgs{Ms: prng.IntN(10), Tag: base}
			tags, resend = []string{base}, append(resend, again(recordNet, args))
			var r *task.Result[int]
			if r, err = recordNet.Enqueue(cctx, args); err == nil {
				l.ack(r.ID, base)
			}
		}
		if err == nil {
			return true
		}
		ids, clean := outcome(err, tags)
		for j, id := range ids {
			resolve(resend[j], id, tags[j])
		}
		return !clean
	}
	var wg sync.WaitGroup
	for p := range oneByOne + many {
		prng := rand.New(rand.NewPCG(seed, uint64(p)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stopped(); i++ {
				time.Sleep(time.Duration(20+prng.IntN(40)) * time.Millisecond)
				for a := 0; !stopped() && !produce(prng, p, fmt.Sprintf("p%d-%d-a%d", p, i, a)); a++ {
				}
			}
		}()
	}

	// Faults.
	type fault struct {
		kind  string
		apply func() (remove func())
	}
	var toxicN int
	nextName := func(kind string) string { toxicN++; return fmt.Sprintf("rnd_%s_%d", kind, toxicN) }
	stream := func() string {
		if rng.IntN(2) == 0 {
			return "upstream"
		}
		return "downstream"
	}
	withToxic := func(tx toxic) func() {
		name := addToxic(t, n.Proxy, tx)
		return func() { removeToxic(t, n.Proxy, name) }
	}
	faults := []fault{
		{"reset", func() func() {
			return withToxic(toxic{Name: nextName("reset"), Type: "reset_peer", Stream: stream(), Toxicity: 0.3 + 0.7*rng.Float32(),
				Attributes: map[string]any{"timeout": rng.IntN(30)}})
		}},
		{"hang", func() func() {
			up := withToxic(toxic{Name: nextName("hang"), Type: "timeout", Stream: "upstream", Attributes: map[string]any{"timeout": 0}})
			down := withToxic(toxic{Name: nextName("hang"), Type: "timeout", Stream: "downstream", Attributes: map[string]any{"timeout": 0}})
			return func() { up(); down() }
		}},
		{"replies hang", func() func() {
			// Requests reach Redis, replies never come back (until the
			// toxic goes and closes the connections): every call then
			// ends without an answer to a command that ran.
			return withToxic(toxic{Name: nextName("hangdown"), Type: "timeout", Stream: "downstream", Attributes: map[string]any{"timeout": 0}})
		}},
		{"latency", func() func() {
			return withToxic(toxic{Name: nextName("latency"), Type: "latency", Stream: stream(), Toxicity: 0.5 + 0.5*rng.Float32(),
				Attributes: map[string]any{"latency": 900 + rng.IntN(900), "jitter": 200}})
		}},
		{"bandwidth", func() func() {
			return withToxic(toxic{Name: nextName("bandwidth"), Type: "bandwidth", Stream: stream(),
				Attributes: map[string]any{"rate": 1 + rng.IntN(8)}})
		}},
		{"lost reply", func() func() {
			n.Drop.arm(1+rng.IntN(4), netAnyRequest, nil)
			return n.Drop.disarm
		}},
	}
	// Resets, hanging, slow and lost replies (a request that reached
	// Redis, whose reply did not come back) are the faults that resend
	// scripts: twice as likely as the others.
	weights := map[string]int{"reset": 2, "hang": 1, "replies hang": 2, "latency": 2, "bandwidth": 1, "lost reply": 2}
	var deck []fault
	for _, f := range faults {
		for range weights[f.kind] {
			deck = append(deck, f)
		}
	}
	faultCount := map[string]int{}
	faultsStart := time.Now()
	for time.Since(faultsStart) < dur {
		f := deck[rng.IntN(len(deck))]
		hold := time.Duration(100+rng.IntN(1400)) * time.Millisecond
		remove := f.apply()
		faultCount[f.kind]++
		time.Sleep(hold) // the fault's time on; the schedule, not a wait for a condition
		remove()
		time.Sleep(time.Duration(50+rng.IntN(450)) * time.Millisecond)
	}
	faultsEnd := time.Now()
	lostByDropper := n.Drop.lost()

	// Stop: producers finish the enqueues they had begun (again WithID
	// until acknowledged, for at most 30s), the scheduler its tick.
	resolveBy.Store(time.Now().Add(30 * time.Second).UnixNano())
	close(stop)
	producersDone := make(chan struct{})
	go func() { wg.Wait(); close(producersDone) }()
	select {
	case <-producersDone:
	case <-time.After(60 * time.Second):
		t.Fatal("the producers did not stop within 60s of the end of the faults")
	}
	stopSched()
	select {
	case <-schedDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the scheduler did not stop within 30s")
	}
	schedEnd := time.Now()

	// Wait until every task is finished: within 20s, far less than a
	// lease; then, for the stuck ones, up to a lease more.
	unfinished := func() (int64, string) {
		c, err := n.B.Count(ctx, queue)
		if err != nil {
			return -1, err.Error()
		}
		return c.Pending + c.Deferred + c.Running, fmt.Sprintf("%+v", c)
	}
	waitUnfinished := func(d time.Duration) (int64, string) {
		deadline := time.Now().Add(d)
		for {
			u, detail := unfinished()
			if u == 0 || time.Now().After(deadline) {
				return u, detail
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	drainStart := time.Now()
	u, detail := waitUnfinished(20 * time.Second)
	drained := time.Since(drainStart)
	stuckIDs := map[string]netPlace{}
	if u != 0 {
		t.Errorf("%d tasks unfinished 20s after the faults ended (%s); each of them waits for its lease (%v) or for nothing", u, detail, lease)
		tag := netTag(queue)
		live, _ := n.R.HKeys(ctx, tag+":tasks").Result()
		for _, id := range live {
			stuckIDs[id] = netWhere(t, n.R, queue, id)
		}
		u, detail = waitUnfinished(lease + 10*time.Second)
		t.Logf("after a lease more: %d unfinished (%s)", u, detail)
	}

	// What Redis holds: every task of the queue, finished or not.
	tag := netTag(queue)
	stored := map[string]bool{}
	live, err := n.R.HKeys(ctx, tag+":tasks").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range live {
		stored[id] = true
	}
	iter := n.R.Scan(ctx, 0, tag+":r:*", 1000).Iterator()
	for iter.Next(ctx) {
		stored[strings.TrimPrefix(iter.Val(), tag+":r:")] = true
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 0, len(stored))
	for id := range stored {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	results := readResults(t, n.B, ids, false)
	byID := map[string]*task.RawResult{}
	tagOf := map[string]string{}
	for _, r := range results {
		byID[r.ID] = r
		switch r.TaskName {
		case recordTask.Name():
			var a sleepArgs
			if err := r.DecodeArgs(&a); err != nil {
				t.Errorf("task %s: args: %v", r.ID, err)
			}
			tagOf[r.ID] = a.Tag
		case flakyTask.Name():
			tagOf[r.ID] = r.ID
		default:
			t.Errorf("task %s of %s on queue %s: not enqueued by this test", r.ID, r.TaskName, queue)
		}
	}
	execs := netExecutions(t, recFile)
	starts := map[string][]execution{}
	ends := map[string][]execution{}
	for _, x := range execs {
		if x.Kind == "start" {
			starts[x.ID] = append(starts[x.ID], x)
		} else {
			ends[x.ID] = append(ends[x.ID], x)
		}
	}
	logs := ""
	for _, w := range ws {
		logs += w.Log()
	}
	lostLease := map[string]bool{} // ids whose lease a worker lost (a second execution is then allowed)
	idField := regexp.MustCompile(`\bid=(\S+)`)
	attemptField := regexp.MustCompile(`\battempt=(\d+)`)
	workerField := regexp.MustCompile(`\bworker=(\S+)`)
	falseLeaseLost := 0
	for _, line := range strings.Split(logs, "\n") {
		m := idField.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if strings.Contains(line, "lost the lease") {
			lostLease[m[1]] = true
		}
		if strings.Contains(line, "outcome discarded") {
			lostLease[m[1]] = true
			// A finish refused as a lost lease although the result stored
			// is this very attempt's, by this worker: a false ErrLeaseLost.
			a, w := attemptField.FindStringSubmatch(line), workerField.FindStringSubmatch(line)
			if r := byID[m[1]]; r != nil && a != nil && w != nil && r.IsFinished() && strconv.Itoa(r.Attempts) == a[1] &&
				len(r.WorkerIDs) > 0 && r.WorkerIDs[len(r.WorkerIDs)-1] == w[1] {
				falseLeaseLost++
				t.Errorf("worker %s was told its finish of %s attempt %s lost the lease, but the stored result is that attempt's: %s", w[1], m[1], a[1], line)
			}
		}
	}

	// The verdict.
	l.mu.Lock()
	defer l.mu.Unlock()
	report := func(what string, max int) func(format string, args ...any) {
		k := 0
		return func(format string, args ...any) {
			if k++; k <= max {
				t.Errorf(what+": "+format, args...)
			} else if k == max+1 {
				t.Errorf("%s: … more", what)
			}
		}
	}
	var lost, ghosts, runTwice, excused, stuck, tokenTwice, notComplete int
	lostR := report("lost", 10)
	for id, tg := range l.acked {
		r := byID[id]
		if r == nil {
			lost++
			lostR("acknowledged task %s (%s) is not in Redis", id, tg)
			continue
		}
		if tagOf[id] != tg {
			t.Errorf("acknowledged task %s is %q in Redis; the producer enqueued %q", id, tagOf[id], tg)
		}
		if !r.IsFinished() {
			lost++
			lostR("acknowledged task %s (%s) never finished: %s, attempts %d, workers %v", id, tg, r.Status, r.Attempts, r.WorkerIDs)
		}
	}
	for id, p := range stuckIDs {
		stuck++
		now := "missing"
		if r := byID[id]; r != nil {
			now = fmt.Sprintf("%s, attempts %d, workers %v", r.Status, r.Attempts, r.WorkerIDs)
		}
		t.Errorf("stuck: task %s was %v 20s after the faults ended; after a lease more: %s", id, p, now)
	}
	ghostR := report("ghost", 10)
	for _, id := range ids {
		tg := tagOf[id]
		if e, ok := l.cleanFail[tg]; ok {
			ghosts++
			ghostR("task %s (%s) is stored, but its Enqueue returned an error that does not wrap ErrMaybeEnqueued: %s", id, tg, e)
			continue
		}
		if _, ok := l.acked[id]; !ok && !slices.Contains(l.unresolved, id) {
			t.Errorf("task %s (%s) is stored, but no producer's enqueue of it ended (neither acknowledged nor an error)", id, tg)
		}
	}
	twiceR := report("run twice", 10)
	recordR := report("execution record", 10)
	completeR := report("not COMPLETE", 10)
	var records, flakies, complete int
	for _, id := range ids {
		r := byID[id]
		if r.Status == task.StatusComplete {
			complete++
		} else if r.IsFinished() {
			notComplete++
			completeR("task %s (%s): %s (%v), attempts %d, workers %v", id, tagOf[id], r.Status, r.Err, r.Attempts, r.WorkerIDs)
		}
		switch r.TaskName {
		case flakyTask.Name():
			flakies++
			var v int
			if r.Status == task.StatusComplete && (r.Decode(&v) != nil || v != r.Attempts || len(r.Errors) != 1) {
				t.Errorf("flaky task %s: value %d, attempts %d, errors %d; want its attempt number, after exactly 1 failed attempt", id, v, r.Attempts, len(r.Errors))
			}
		case recordTask.Name():
			records++
			ss := starts[id]
			perAttempt := map[int]int{}
			for _, x := range ss {
				perAttempt[x.Attempt]++
			}
			for a, k := range perAttempt {
				if k > 1 {
					tokenTwice++
					t.Errorf("task %s: attempt %d started %d times: two holders of one attempt number", id, a, k)
				}
			}
			if len(ss) > 1 {
				if lostLease[id] {
					excused++
				} else {
					runTwice++
					twiceR("task %s (%s) started %d times (%v) and no worker lost its lease", id, tagOf[id], len(ss), ss)
				}
			}
			if r.Status == task.StatusComplete {
				final := 0
				for _, x := range ends[id] {
					if x.Attempt == r.Attempts && len(r.WorkerIDs) > 0 && x.Worker == r.WorkerIDs[len(r.WorkerIDs)-1] {
						final++
					}
				}
				if final != 1 {
					recordR("task %s: %d end records of its final attempt %d on %v; want 1 (records %v, %v)", id, final, r.Attempts, r.WorkerIDs, ss, ends[id])
				}
			}
		}
	}
	if len(l.unresolved) > 0 {
		t.Errorf("%d enqueues never succeeded again WithID within 30s of the end of the faults: %v", len(l.unresolved), l.unresolved)
	}
	for _, p := range l.problems {
		t.Errorf("producer: %s", p)
	}

	// The enqueued hook fired once per acknowledged task, and for nothing else.
	hookMu.Lock()
	hookTotal, hookBad := 0, 0
	for id, k := range hooked {
		hookTotal += k
		if _, ok := l.acked[id]; !ok || k != 1 {
			if hookBad++; hookBad <= 10 {
				t.Errorf("the enqueued hook fired %d times for %s (acknowledged: %v); want once per acknowledged task", k, id, ok)
			}
		}
	}
	hookMu.Unlock()
	if hookTotal != len(l.acked) {
		t.Errorf("the enqueued hook fired %d times; %d tasks were acknowledged", hookTotal, len(l.acked))
	}
	// Redis' totals and the workers' metrics count each completion once.
	if d := netDone(t, n.R, queue, task.StatusComplete); d != complete {
		t.Errorf("Redis' COMPLETE total of %s is %d; %d tasks are COMPLETE", queue, d, complete)
	}
	var metricSum float64
	for i, addr := range metricsAddrs {
		v, err := netScrape(addr, "gotasks_tasks_completed_total", `queue="`+queue+`"`)
		if err != nil {
			t.Errorf("metrics of worker %s: %v", ws[i].ID, err)
		}
		metricSum += v
	}
	if int(metricSum) != complete {
		t.Errorf("the workers' gotasks_tasks_completed_total{queue=%q} sum to %v; %d tasks are COMPLETE", queue, metricSum, complete)
	}
	netCheckQueue(t, n.R, queue)

	// Periodic ticks: every tick claimed has one task.
	tickKeys, err := n.R.Keys(ctx, broker.DefaultPrefix+":periodic:"+tickEntry+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	tickTasks, err := n.R.HLen(ctx, netTag(tickQueue)+":tasks").Result()
	if err != nil {
		t.Fatal(err)
	}
	seconds := int(schedEnd.Unix() - schedStart.Unix())
	if int(tickTasks) != len(tickKeys) {
		t.Errorf("periodic: %d ticks claimed, %d tasks enqueued; want one per tick (scheduler log:\n%s)", len(tickKeys), tickTasks, tail(schedLog.Bytes(), 4000))
	}
	if len(tickKeys) == 0 {
		t.Errorf("periodic: no tick in %ds", seconds)
	}

	var kinds []string
	total := 0
	for k, v := range faultCount {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, v))
		total += v
	}
	sort.Strings(kinds)
	for _, w := range ws {
		if !w.Running() {
			t.Errorf("worker %s is gone", w.ID)
		}
		if strings.Contains(w.Log(), "panic") {
			t.Errorf("worker %s: a panic in its log", w.ID)
		}
	}
	t.Logf("faults for %v: %d (%s), %d replies lost by the dropper; producers: %d acknowledged (%d demo.record, %d demo.flaky), %d errors wrapping ErrMaybeEnqueued, %d enqueues again WithID, %d errors that stored nothing; %d executions recorded; %d second executions after a lost lease; drained %v after the faults; %d worker log lines",
		faultsEnd.Sub(faultsStart).Round(time.Second), total, strings.Join(kinds, ", "), lostByDropper, len(l.acked), records, flakies,
		l.maybe, l.resends, len(l.cleanFail), len(execs), excused, drained.Round(time.Millisecond), strings.Count(logs, "\n"))
	var samples []string
	for _, e := range l.cleanFail {
		if len(samples) < 5 && !slices.Contains(samples, e) {
			samples = append(samples, e)
		}
	}
	if len(samples) > 0 {
		t.Logf("some of the errors that stored nothing:\n%s", strings.Join(samples, "\n"))
	}
	t.Logf("\n| scenario | faults | tasks | lost | ghosts | run twice | stuck | ticks expected vs enqueued |\n|---|---:|---:|---:|---:|---:|---:|---|\n| random faults, %v, seed %d | %d | %d | %d | %d | %d | %d | %d vs %d |",
		faultsEnd.Sub(faultsStart).Round(time.Second), seed, total, len(l.acked), lost, ghosts, runTwice+tokenTwice, stuck, len(tickKeys), tickTasks)
}

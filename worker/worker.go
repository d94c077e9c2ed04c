// Package worker runs tasks from the Redis backend: a pool of goroutines that
// claim tasks, run them, write their results back and hold a lease on each
// while it runs, so that a crashed worker's tasks come back.
//
// The worker command line (flags, environment variables, the run,
// dashboard, admin and help commands, memory://, the health, metrics and
// dashboard servers) is package cli: a program's main calls
// cli.Main(os.Args). This package is the pool alone.
package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/internal/backoff"
	"github.com/gotasks/gotasks/scheduler"
	"github.com/gotasks/gotasks/task"
)

// Options configures a Worker. The zero value serves every queue with
// runtime.NumCPU() goroutines.
type Options struct {
	// Queues to serve; order is only a tie-break, priority rules. Empty, or
	// containing "*": every queue known to the broker, minus Exclude.
	Queues []string
	// Exclude lists queues not to serve when Queues is "*".
	Exclude []string
	// Concurrency is the number of tasks run at once. Default runtime.NumCPU().
	Concurrency int
	// WorkerID names this worker in results and logs. Default
	// hostname-pid-random. Spaces and commas are replaced by '_'.
	WorkerID string
	// MaxTasks makes Run return after claiming this many tasks (and
	// finishing them); 0 = unlimited.
	MaxTasks int
	// Batch makes Run return once the queues have no ready task and nothing
	// is running (for cron-style runs); deferred tasks not yet due are left.
	Batch bool
	// ShutdownTimeout is how long in-flight tasks may finish after ctx is
	// done; the unfinished ones are then handed back to their queues at
	// once. Default 10s.
	ShutdownTimeout time.Duration
	// LeaseDuration: a claimed task returns to its queue if its worker stops
	// renewing the lease for this long. Default 30s; renewed every third of it.
	LeaseDuration time.Duration
	// PollInterval bounds how long an idle worker blocks waiting for a
	// wake-up before it looks at the queues again (a safety net: wake-ups
	// normally arrive within milliseconds). Default 1s.
	PollInterval time.Duration
	// MaxRedeliveries: a task whose attempts ended this many times without
	// an outcome (its worker crashed, was SIGKILLed, or lost the lease) is
	// failed with gotasks.TooManyDeliveries instead of being run again, so
	// that a task that kills its worker is not redelivered forever.
	// Default 10.
	MaxRedeliveries int
	// NoScheduler turns off the scheduler that runs inside the worker
	// (promoting deferred tasks and requeueing expired leases). Some process
	// must run one.
	NoScheduler bool
	// OnRetry, if set, is called once a failed attempt's retry is stored
	// (r.Status NEW, r.RunAfter the time of the next attempt). It exists
	// because task's finished hook fires only for COMPLETE and FAILED, so
	// observers such as metrics would otherwise never see a retry. It runs
	// in the task's goroutine: it must be quick and must not modify r.
	OnRetry func(ctx context.Context, r *task.RawResult)
	// Logger; default slog.Default().
	Logger *slog.Logger
	// RunMiddleware wraps every attempt this worker runs, inside the
	// process-wide middleware (task.UseRun); the first is the outermost.
	// See task.RunMiddleware. The producers' side is
	// broker.Options.EnqueueMiddleware.
	RunMiddleware []task.RunMiddleware
}

// Defaults of Options.
const (
	DefaultShutdownTimeout = 10 * time.Second
	DefaultLeaseDuration   = 30 * time.Second
	DefaultPollInterval    = time.Second
	DefaultMaxRedeliveries = 10
)

// Worker claims and runs tasks. Create one with New and call Run.
type Worker struct {
	b    *broker.Redis
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	inflight map[jobKey]*job // by id and attempt: a worker may hold a stale and a new attempt of one task

	processed atomic.Int64

	// stores carries outcomes to the storer, which writes those that
	// arrive together in one round trip.
	stores chan storeReq

	// cmu guards the count of claims (MaxTasks), made by the fetch loop
	// and by the storer along with outcomes: claims made, and reserved
	// for claims in flight. claimCtx is Run's ctx: once it is done nothing
	// more is claimed. settled wakes a fetch loop that waits for
	// reservations in flight to settle (MaxTasks reached with them).
	cmu      sync.Mutex
	claims   int
	reserved int
	claimCtx context.Context
	settled  chan struct{}

	// handingBack is set (under mu) when shutdown hands the running tasks
	// back: a task claimed along with an outcome after that is handed
	// back too, never started.
	handingBack bool

	// early holds the cancels told for attempts not tracked yet (under
	// mu; see cancelAttempt).
	early map[jobKey]time.Time

	qmu      sync.Mutex
	queues   []string
	queuesAt time.Time
}

type job struct {
	r      *task.RawResult
	ctx    context.Context
	cancel context.CancelCauseFunc
	// cancelAsked is set once the task's cancel was asked for (see
	// cancel.go); its context is then cancelled with task.ErrCancelled.
	cancelAsked atomic.Bool
	// phase is running, then either storing (the outcome is being
	// written, which ends the lease) or handedBack (shutdown returned the
	// task to its queue): one compare-and-swap decides which, so a task is
	// never both stored and handed back.
	phase atomic.Int32
	// progress throttles what the task reports (see progress.go).
	progress progressState
	// steps caches the task's durable steps (see steps.go).
	steps stepsState
}

// Phases of a job.
const (
	phaseRunning int32 = iota
	phaseStoring
	phaseHandedBack
)

type jobKey struct {
	id      string
	attempt int
}

func (j *job) key() jobKey { return jobKey{j.r.ID, j.r.Attempts} }

// New returns a worker for b.
func New(b *broker.Redis, opts Options) *Worker {
	if opts.Concurrency <= 0 {
		opts.Concurrency = runtime.NumCPU()
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	if opts.LeaseDuration <= 0 {
		opts.LeaseDuration = DefaultLeaseDuration
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.MaxRedeliveries <= 0 {
		opts.MaxRedeliveries = DefaultMaxRedeliveries
	}
	if opts.WorkerID == "" {
		opts.WorkerID = defaultWorkerID()
	}
	// The id is stored in a space- and comma-separated header (see broker).
	opts.WorkerID = strings.Map(func(r rune) rune {
		if r == ' ' || r == ',' || r == '\n' || r == '\t' || r == '\r' {
			return '_'
		}
		return r
	}, opts.WorkerID)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.Queues = slices.Clone(opts.Queues)
	return &Worker{b: b, opts: opts, log: opts.Logger.With("worker", opts.WorkerID), inflight: map[jobKey]*job{},
		stores: make(chan storeReq), settled: make(chan struct{}, 1)}
}

func defaultWorkerID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "worker"
	}
	var r [3]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(r[:]))
}

// ID returns the worker id.
func (w *Worker) ID() string { return w.opts.WorkerID }

// Processed returns how many attempts this worker has run to a stored
// outcome (COMPLETE, FAILED, or a retry scheduled) since it started.
func (w *Worker) Processed() int64 { return w.processed.Load() }

// InFlight returns how many tasks this worker is running now (claimed and
// not yet stored or handed back).
func (w *Worker) InFlight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.inflight)
}

// Run claims and runs tasks until ctx is done (or MaxTasks / Batch say
// stop). Then it stops claiming, lets in-flight tasks finish for
// ShutdownTimeout, hands the rest straight back to their queues, and
// returns nil. Once ctx is done it returns at most ShutdownTimeout plus
// about half a second later, even if Redis does not answer at all (see
// shutdown).
//
// A task that ignores its context may still be running in its goroutine
// when Run returns; its lease is gone by then, so whatever it writes later
// is refused and the task runs again elsewhere.
func (w *Worker) Run(ctx context.Context) error {
	w.log.Info("worker started", "queues", w.describeQueues(), "concurrency", w.opts.Concurrency)
	sd := NewShutdownWindow(ctx, w.opts.ShutdownTimeout)
	defer sd.Release()
	defer func() { w.log.Info("worker stopped", "processed", w.Processed()) }()
	var bg sync.WaitGroup
	// Run's goroutines, but once ctx is done only until the end of the
	// shutdown: one still blocked on a Redis call then is left to end by
	// itself (see ShutdownWindow).
	defer sd.Within(w.log, "worker: Redis does not answer; stopping without waiting for the calls in flight, which end by themselves within the client's read timeout (unfinished tasks run again when their leases expire)", bg.Wait)

	// Tasks, lease renewal and result writes outlive ctx for the shutdown
	// window; they have their own cancellation.
	taskCtx, cancelTasks := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelTasks()
	renewCtx, stopRenew := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRenew()
	// The storer outlives every task that finishes before Run returns; a
	// task abandoned later finds it gone and its taskCtx cancelled.
	storeCtx, stopStore := context.WithCancel(taskCtx)
	defer stopStore()
	bg.Add(1)
	go func() {
		defer bg.Done()
		w.storeLoop(storeCtx, taskCtx, sd)
	}()
	bg.Add(1)
	go func() {
		defer bg.Done()
		w.renewLoop(renewCtx, sd)
	}()
	bg.Add(1)
	go func() {
		defer bg.Done()
		w.watchCancels(renewCtx)
	}()
	schedCtx, stopSched := context.WithCancel(ctx)
	defer stopSched()
	// Batch mode promotes due tasks itself when the queues run dry.
	if !w.opts.NoScheduler && !w.opts.Batch {
		bg.Add(1)
		go func() {
			defer bg.Done()
			scheduler.New(w.b, scheduler.Options{Queues: w.staticQueues(), Exclude: w.opts.Exclude, Logger: w.log}).Run(schedCtx)
		}()
	}

	var running sync.WaitGroup
	finished := make(chan struct{}, 1) // a task finished (batch mode waits on it)
	w.cmu.Lock()
	w.claims, w.reserved, w.claimCtx = 0, 0, ctx
	w.cmu.Unlock()
	w.mu.Lock()
	w.handingBack = false
	w.mu.Unlock()
	// The claiming loop runs beside the shutdown, which must not wait for
	// a Redis call it has in flight (see shutdown). It makes every
	// running.Add, so running is waited on only once it has returned.
	fetched := make(chan struct{})
	bg.Add(1)
	go func() {
		defer bg.Done()
		defer close(fetched)
		w.fetch(ctx, taskCtx, &running, finished)
	}()
	done := make(chan struct{})
	go func() {
		<-fetched
		running.Wait()
		close(done)
	}()
	// Stopping for MaxTasks or Batch lets running tasks finish; a cancelled
	// ctx gives them ShutdownTimeout.
	select {
	case <-done:
	case <-ctx.Done():
		t := time.NewTimer(time.Until(sd.TasksEnd()))
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			w.handBack(sd.End())
			cancelTasks()
		}
	}
	return nil
}

// fetch is the claiming loop. It returns when ctx is done, MaxTasks are
// claimed, or (Batch) the queues are empty.
func (w *Worker) fetch(ctx, taskCtx context.Context, running *sync.WaitGroup, finished chan struct{}) {
	slots := make(chan struct{}, w.opts.Concurrency)
	release := func() { <-slots }
	// A pool of long-lived goroutines rather than one per task: their
	// stacks, once grown by decoding and running a task, stay grown (a
	// fresh goroutine per task spent ~10% of the time growing stacks).
	jobs := make(chan claimedJob)
	defer close(jobs)
	p := &pool{ctx: taskCtx, jobs: jobs, free: func() {
		release()
		select {
		case finished <- struct{}{}:
		default:
		}
		running.Done()
	}}
	for range w.opts.Concurrency {
		go w.serve(p, nil)
	}
	var bo backoff.Backoff
	for ctx.Err() == nil {
		if w.allClaimed() {
			return
		}
		// Take one free slot (waiting for it), then every other free one.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		n := 1
	more:
		for n < w.opts.Concurrency {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		k := w.reserve(n)
		for ; n > k; n-- {
			release()
		}
		if n == 0 {
			// MaxTasks is reached with the storer's claims in flight:
			// wait for them to settle (they may come back empty).
			select {
			case <-w.settled:
			case <-ctx.Done():
			}
			continue
		}
		qs, err := w.currentQueues(ctx)
		var got []broker.Claimed
		if err == nil {
			got, err = w.b.Claim(ctx, qs, n, w.opts.LeaseDuration, w.opts.WorkerID)
		}
		w.settle(n, len(got))
		if len(got) > 0 && ctx.Err() != nil {
			// Shutdown began while the claim was on its way (a slow or
			// hung network): these tasks would start with a cancelled
			// context. They go back unstarted instead.
			for q, cs := range claimedByQueue(got) {
				w.handBackClaimed(context.WithoutCancel(ctx), q, cs)
			}
			got = nil
		}
		for _, c := range got {
			running.Add(1)
			// A goroutine of the pool is free: each task holds a slot.
			jobs <- claimedJob{w.track(taskCtx, c.Result), c.Bad}
		}
		for i := len(got); i < n; i++ {
			release()
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := bo.Next()
			w.log.Warn("worker: cannot claim, backing off", "err", err, "retry_in", d)
			backoff.Sleep(ctx, d)
			continue
		}
		bo.Reset()
		if len(got) > 0 {
			continue
		}
		if w.opts.Batch {
			if w.idle(ctx, qs, finished) {
				return
			}
			continue
		}
		if err := w.wait(ctx, qs); err != nil && ctx.Err() == nil {
			d := bo.Next()
			w.log.Warn("worker: cannot wait for tasks, backing off", "err", err, "retry_in", d)
			backoff.Sleep(ctx, d)
		}
	}
}

// wait blocks until a task may be ready on qs or PollInterval passes.
// Serving every queue, it may also be the one worker woken by a queue used
// for the first time, and then serves it at once rather than at the next
// refresh of the list (the other workers find it then).
func (w *Worker) wait(ctx context.Context, qs []string) error {
	if !w.allQueues() {
		_, err := w.b.WaitReady(ctx, qs, w.opts.PollInterval)
		return err
	}
	newQueue, err := w.b.WaitReadyOrNew(ctx, qs, w.opts.PollInterval)
	if newQueue {
		w.qmu.Lock()
		w.queues = nil
		w.qmu.Unlock()
	}
	return err
}

// idle decides, in batch mode, whether the work is done: nothing running,
// and nothing ready even after promoting due deferred tasks. Otherwise it
// waits for a running task to finish.
func (w *Worker) idle(ctx context.Context, qs []string, finished chan struct{}) bool {
	w.mu.Lock()
	n := len(w.inflight)
	w.mu.Unlock()
	if n > 0 {
		select {
		case <-finished:
		case <-ctx.Done():
		}
		return false
	}
	s := scheduler.New(w.b, scheduler.Options{Logger: w.log})
	for _, q := range qs {
		if _, err := s.Tick(ctx, q); err != nil {
			w.log.Warn("worker: promote deferred tasks", "queue", q, "err", err)
			return false
		}
	}
	for _, q := range qs {
		c, err := w.b.Count(ctx, q)
		// A paused queue's tasks wait for Resume: they are no work
		// for a batch to wait for.
		if err != nil || c.Pending > 0 && !c.Paused {
			return false
		}
	}
	return true
}

// track registers a claimed task as in flight (its lease is renewed from
// now on) and gives it a context of its own, cancelled if the lease is lost.
func (w *Worker) track(ctx context.Context, r *task.RawResult) *job {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.trackLocked(ctx, r)
}

// trackLocked is track with w.mu held.
func (w *Worker) trackLocked(ctx context.Context, r *task.RawResult) *job {
	jctx, cancel := context.WithCancelCause(ctx)
	j := &job{r: r, cancel: cancel}
	j.progress.w = w
	j.ctx = task.WithProgressReporter(jctx, j)
	w.inflight[j.key()] = j
	if w.earlyCancelLocked(j.key()) {
		j.cancelAsked.Store(true)
		cancel(task.ErrCancelled)
	}
	return j
}

// adopt tracks c, a task the storer claimed along with an outcome, as
// soon as it arrives (its lease is renewed from then on), unless shutdown
// is handing the running tasks back: then c goes back to its queue
// unstarted, and adopt returns nil. The check and the tracking are one
// step under mu, which handBack takes to set handingBack, so c is either
// among the tasks handBack returns or returned here.
func (w *Worker) adopt(ctx context.Context, c *broker.Claimed) (*job, error) {
	if c == nil {
		return nil, nil
	}
	w.mu.Lock()
	if !w.handingBack {
		j := w.trackLocked(ctx, c.Result)
		w.mu.Unlock()
		return j, c.Bad
	}
	w.mu.Unlock()
	w.handBackClaimed(context.WithoutCancel(ctx), c.Result.Queue, []broker.Claimed{*c})
	return nil, nil
}

// claimedJob is a claimed task on its way to a goroutine of fetch's pool;
// bad is set when the stored task could not be decoded.
type claimedJob struct {
	j   *job
	bad error
}

// pool is what the goroutines of fetch's pool share.
type pool struct {
	ctx  context.Context   // the tasks' context (Run's taskCtx)
	jobs <-chan claimedJob // a task per slot taken; closed when fetch returns
	free func()            // frees a slot and tells fetch a task finished
}

// serve is the loop of a goroutine of the pool; first, if not nil, runs
// before it (the work of a goroutine that died, see takeOver). Each
// goroutine keeps a task.Apart: with run middleware, its tasks run on that
// one goroutine of its own rather than on a new one per attempt.
func (w *Worker) serve(p *pool, first func(a *task.Apart)) {
	a := new(task.Apart)
	defer a.Close() // also when a task's runtime.Goexit ends this goroutine
	if first != nil {
		first(a)
	}
	for cj := range p.jobs {
		w.runSlot(p, a, cj.j, cj.bad)
	}
}

// runSlot runs j in the slot it holds, then frees the slot. A task may
// come back with the next one, claimed in the round trip that stored it:
// it runs in the same slot.
func (w *Worker) runSlot(p *pool, a *task.Apart, j *job, bad error) {
	for j != nil {
		j, bad = w.execute(p, a, j, bad)
	}
	p.free()
}

// takeOver stands in for a goroutine of the pool that a task ended with
// runtime.Goexit (see execute). It does what that goroutine had left to
// do, as if the task had returned: it finishes the job (task.Execute
// recorded the failure before the goroutine died), runs the tasks chained
// to it and frees the slot. Then it serves as a goroutine of the pool in
// the dead one's place.
func (w *Worker) takeOver(p *pool, j *job, start time.Time) {
	next, nextBad := w.finish(p.ctx, j, start)
	w.serve(p, func(a *task.Apart) { w.runSlot(p, a, next, nextBad) })
}

// execute runs one claimed task and stores its result. bad is set when the
// stored task could not be decoded. It returns the next task to run in
// the same slot (and its bad), if one was claimed in the round trip that
// stored this one's outcome.
//
// A task that calls runtime.Goexit ends the goroutine running execute, so
// execute never returns; a replacement goroutine finishes its work (see
// takeOver).
func (w *Worker) execute(p *pool, a *task.Apart, j *job, bad error) (next *job, nextBad error) {
	ctx, r := p.ctx, j.r
	if j.phase.Load() == phaseHandedBack {
		w.untrack(j)
		return nil, nil // shutdown handed it back before it started
	}
	start := time.Now()
	switch {
	case bad != nil:
		// Nothing can run it; fail it with the reason rather than drop it.
		task.Fail(r, &task.Error{Type: task.ErrorTypeBadPayload, Message: bad.Error()})
	case lostDeliveries(r) > w.opts.MaxRedeliveries:
		// Its earlier attempts ended without an outcome: their workers died
		// (or were stopped) each time. It may be what kills them.
		task.Fail(r, &task.Error{Type: task.ErrorTypeTooManyDeliveries, Message: fmt.Sprintf(
			"attempt %d: %d earlier deliveries ended without a result (worker crashed, was killed or lost its lease); not running it again",
			r.Attempts, lostDeliveries(r))})
	default:
		if w.log.Enabled(ctx, slog.LevelDebug) {
			w.taskLog(r).Debug("task started")
		}
		// Goexit cannot be stopped: if the task calls it, this goroutine
		// dies once the deferred calls have run (one in task.Execute
		// records the failure in r). The pool's goroutines are long-lived
		// on purpose (see fetch), so this one hands the rest of the job
		// and its place in the pool to a replacement.
		exited := true
		defer func() {
			if exited {
				go w.takeOver(p, j, start)
			}
		}()
		task.ExecuteApart(j.ctx, r, a, w.opts.RunMiddleware...)
		exited = false
	}
	return w.finish(ctx, j, start)
}

// taskLog is the logger for lines about r's attempt. Build it only when a
// line is logged: a logger per task cost ~4% of a drain of no-op tasks.
func (w *Worker) taskLog(r *task.RawResult) *slog.Logger {
	return w.log.With("task", r.TaskName, "id", r.ID, "queue", r.Queue, "attempt", r.Attempts)
}

// untrack ends the tracking of j: its lease is no longer renewed and its
// context is cancelled.
func (w *Worker) untrack(j *job) {
	j.cancel(nil)
	w.mu.Lock()
	delete(w.inflight, j.key())
	w.mu.Unlock()
}

// finish ends the attempt j holds, begun at start, once its outcome is in
// j.r (set by task.Execute or task.Fail): it stores the outcome (unless
// shutdown handed the task back), logs it, calls the hooks and untracks j.
// It returns the next task to run in the slot, as execute does.
func (w *Worker) finish(ctx context.Context, j *job, start time.Time) (next *job, nextBad error) {
	r := j.r
	log := func() *slog.Logger { return w.taskLog(r) }
	defer w.untrack(j)
	r.Progress = j.progress.final()
	if j.cancelAsked.Load() && r.Status == task.StatusNew {
		// A cancelled task is not retried (this attempt failed outside
		// task.Execute, which sees to it otherwise).
		r.Status, r.RunAfter = task.StatusFailed, time.Time{}
	}
	if !j.phase.CompareAndSwap(phaseRunning, phaseStoring) {
		log().Info("task given up at shutdown (handed back to its queue, or to its lease if Redis did not answer)", "duration", time.Since(start))
		return nil, nil
	}
	c, err := w.store(ctx, r)
	// Tracked before the hooks below run, so that its lease is renewed.
	next, nextBad = w.adopt(ctx, c)
	if err != nil {
		if errors.Is(err, broker.ErrLeaseLost) {
			log().Warn("task finished after its lease was lost; outcome discarded, another attempt owns it", "status", r.Status, "duration", time.Since(start))
		} else {
			log().Error("task outcome not stored; it will run again when its lease expires", "err", err)
		}
		return next, nextBad
	}
	w.processed.Add(1)
	if j.usedSteps() {
		if err := w.b.EndSteps(ctx, r); err != nil {
			log().Warn("task's steps keep their longer expiry", "err", err)
		}
	}
	switch r.Status {
	case task.StatusFailed:
		log().Warn("task failed", "duration", time.Since(start), "error", r.Err.Error())
	case task.StatusCancelled:
		log().Info("task cancelled while it ran", "duration", time.Since(start))
	case task.StatusNew:
		log().Warn("task attempt failed; will retry", "duration", time.Since(start), "error", r.Err.Error(),
			"retry_at", r.RunAfter.Format(time.RFC3339Nano), "max_attempts", r.MaxAttempts)
		if w.opts.OnRetry != nil {
			w.opts.OnRetry(ctx, r)
		}
		return next, nextBad // not finished: no finished hook
	default:
		if w.log.Enabled(ctx, slog.LevelInfo) {
			log().Info("task complete", "duration", time.Since(start))
		}
	}
	task.Finished(ctx, r)
	return next, nextBad
}

// lostDeliveries counts the earlier deliveries of r that ended without an
// outcome: the attempts that reached a worker (WorkerIDs has one entry per
// attempt, task.UndeliveredWorker for a claim handed back unstarted), less
// the failed attempts (Errors) and this one.
func lostDeliveries(r *task.RawResult) int {
	n := -1 - len(r.Errors)
	for _, w := range r.WorkerIDs {
		if w != task.UndeliveredWorker {
			n++
		}
	}
	return n
}

// store writes the outcome of an attempt (the result, or the retry),
// trying again while Redis is unreachable; it gives up on a lost lease or
// when the worker's task context ends.
func (w *Worker) store(ctx context.Context, r *task.RawResult) (*broker.Claimed, error) {
	var bo backoff.Backoff
	// Only the first write asks for a next task: one that keeps failing
	// must not claim (and hand back) a task on every try.
	var got *broker.Claimed
	for chain := true; ; chain = false {
		next, err := w.storeOnce(ctx, r, chain) // a next task only with a final answer
		if next != nil {
			got = next
		}
		if errors.Is(err, broker.ErrCancelAsked) && r.Status == task.StatusNew {
			// Its cancel was asked for while it ran, and the message did
			// not reach this worker before it failed: not retried.
			r.Status, r.RunAfter = task.StatusFailed, time.Time{}
			continue
		}
		if err == nil || errors.Is(err, broker.ErrLeaseLost) || ctx.Err() != nil {
			return got, err
		}
		d := bo.Next()
		w.log.Warn("worker: cannot store result, retrying", "id", r.ID, "err", err, "retry_in", d)
		if !backoff.Sleep(ctx, d) {
			return nil, err
		}
	}
}

// storeReq asks the storer to write the outcome r, and with chain to
// claim a next task along with it; the storer answers on done (buffered).
type storeReq struct {
	r     *task.RawResult
	chain bool
	done  chan storeResp
}

// storeResp is the storer's answer: the outcome's error, and the next task
// for the slot, if the storer claimed one with it.
type storeResp struct {
	err  error
	next *broker.Claimed
}

// storeOnce has the storer write r, once.
func (w *Worker) storeOnce(ctx context.Context, r *task.RawResult, chain bool) (*broker.Claimed, error) {
	done := make(chan storeResp, 1)
	select {
	case w.stores <- storeReq{r, chain, done}:
	case <-ctx.Done():
		return nil, fmt.Errorf("store %s: %w", r.ID, ctx.Err())
	}
	resp := <-done
	return resp.next, resp.err
}

// claimedByQueue groups claimed tasks by their queue.
func claimedByQueue(cs []broker.Claimed) map[string][]broker.Claimed {
	m := map[string][]broker.Claimed{}
	for _, c := range cs {
		m[c.Result.Queue] = append(m[c.Result.Queue], c)
	}
	return m
}

// handBackClaimed returns tasks claimed with outcomes that will not run
// here (no slot took them, or shutdown is handing tasks back) to their
// queue at once, and undoes their claims: they never started, so the
// attempt is not theirs to lose.
func (w *Worker) handBackClaimed(ctx context.Context, queue string, cs []broker.Claimed) {
	rs := make([]*task.RawResult, len(cs))
	for i, c := range cs {
		rs[i] = c.Result
	}
	w.settle(0, -len(rs))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := w.b.Unclaim(ctx, queue, rs); err != nil {
		w.log.Warn("worker: cannot hand back tasks claimed along with outcomes; they run again when their lease expires", "err", err, "tasks", len(rs))
	}
}

// reserve takes up to n of the claims MaxTasks allows (all n without a
// limit), none once Run's ctx is done. The caller settles it once it knows
// how many it claimed.
func (w *Worker) reserve(n int) int {
	w.cmu.Lock()
	defer w.cmu.Unlock()
	if w.claimCtx == nil || w.claimCtx.Err() != nil {
		return 0
	}
	if w.opts.MaxTasks > 0 {
		n = max(min(n, w.opts.MaxTasks-w.claims-w.reserved), 0)
	}
	w.reserved += n
	return n
}

// settle ends a reservation of n claims of which got were made (got < 0:
// claims made earlier were undone).
func (w *Worker) settle(n, got int) {
	w.cmu.Lock()
	w.reserved -= n
	w.claims += got
	w.cmu.Unlock()
	select {
	case w.settled <- struct{}{}:
	default:
	}
}

// allClaimed reports whether MaxTasks tasks have been claimed.
func (w *Worker) allClaimed() bool {
	w.cmu.Lock()
	defer w.cmu.Unlock()
	return w.opts.MaxTasks > 0 && w.claims >= w.opts.MaxTasks
}

// chainQueue is the queue the storer claims the next tasks from along
// with outcomes: the worker's one queue. A worker of several queues
// leaves claims to the fetch loop, which weighs the queues.
func (w *Worker) chainQueue() string {
	if w.allQueues() || len(w.opts.Queues) != 1 {
		return ""
	}
	return w.opts.Queues[0]
}

// maxStoreBatch bounds the outcomes written in one round trip.
const maxStoreBatch = 128

// storeLoop writes outcomes until stop is done: one at a time when tasks
// finish one at a time, and all that arrived during the previous round trip
// together when many finish at once (each still atomic and fenced on its
// own). It answers every request it takes. Each outcome frees a slot, so
// in the same round trip it claims as many next tasks (for a worker of
// one queue), which run in those slots: a busy worker makes one round
// trip per task instead of two. Once Run's ctx is done, its writes carry
// the end of the shutdown as their deadline (see shutdown).
func (w *Worker) storeLoop(stop, ctx context.Context, sd *ShutdownWindow) {
	batch := make([]storeReq, 0, maxStoreBatch)
	rs := make([]*task.RawResult, 0, maxStoreBatch)
	for {
		select {
		case req := <-w.stores:
			batch = append(batch[:0], req)
		case <-stop.Done():
			return
		}
	more:
		for len(batch) < maxStoreBatch {
			select {
			case req := <-w.stores:
				batch = append(batch, req)
			default:
				break more
			}
		}
		rs = rs[:0]
		for _, req := range batch {
			rs = append(rs, req.r)
		}
		var n int
		q := w.chainQueue()
		if q != "" {
			chain := 0
			for _, req := range batch {
				if req.chain {
					chain++
				}
			}
			n = w.reserve(chain)
		}
		sctx, cancel := sd.Bound(ctx)
		errs, next, err := w.b.StoreAndClaim(sctx, rs, q, n, w.opts.LeaseDuration, w.opts.WorkerID)
		cancel()
		w.settle(n, len(next))
		if err != nil && n > 0 {
			// The fetch loop claims once the slots are free.
			w.log.Debug("worker: claim with stored outcomes failed", "err", err)
		}
		// The next tasks go to outcomes with a final answer; one whose
		// write failed is retried by its goroutine, which holds its slot.
		for i, req := range batch {
			resp := storeResp{err: errs[i]}
			if len(next) > 0 && req.chain && (errs[i] == nil || errors.Is(errs[i], broker.ErrLeaseLost) || errors.Is(errs[i], broker.ErrCancelAsked)) {
				resp.next = &next[0]
				next = next[1:]
			}
			req.done <- resp
			batch[i] = storeReq{}
		}
		if len(next) > 0 {
			hctx, cancel := sd.Bound(context.WithoutCancel(ctx))
			w.handBackClaimed(hctx, q, next)
			cancel()
		}
		clear(rs)
	}
}

// renewLoop extends the leases of in-flight tasks every third of the lease,
// and cancels the tasks whose lease was lost. Once Run's ctx is done (the
// tasks still run for the shutdown window), renewals carry the end of the
// shutdown as their deadline (see shutdown).
func (w *Worker) renewLoop(ctx context.Context, sd *ShutdownWindow) {
	t := time.NewTicker(w.opts.LeaseDuration / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for q, jobs := range w.byQueue() {
			rs := make([]*task.RawResult, len(jobs))
			for i, j := range jobs {
				rs[i] = j.r
			}
			rctx, cancel := sd.Bound(ctx)
			lost, asked, err := w.b.RenewWatch(rctx, q, rs, w.opts.LeaseDuration)
			cancel()
			for _, r := range asked {
				w.stopCancelled(jobs[slices.Index(rs, r)])
			}
			if err != nil {
				if ctx.Err() == nil {
					w.log.Warn("worker: cannot renew leases", "queue", q, "err", err)
				}
				continue
			}
			for _, r := range lost {
				j := jobs[slices.Index(rs, r)]
				if j.phase.Load() == phaseStoring {
					continue // it just released the lease itself
				}
				w.log.Warn("worker: lost the lease of a running task; cancelling it", "id", r.ID, "task", r.TaskName, "attempt", r.Attempts)
				j.cancel(nil)
			}
		}
	}
}

func (w *Worker) byQueue() map[string][]*job {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := map[string][]*job{}
	for _, j := range w.inflight {
		m[j.r.Queue] = append(m[j.r.Queue], j)
	}
	return m
}

// handBack returns every task still running to its queue, so that another
// worker picks it up at once instead of after the lease. It gives up at
// end, the end of the shutdown: the tasks Redis has not taken back by then
// return when their leases expire.
func (w *Worker) handBack(end time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), end)
	defer cancel()
	w.mu.Lock()
	w.handingBack = true // see adopt
	w.mu.Unlock()
	for q, jobs := range w.byQueue() {
		var rs []*task.RawResult
		for _, j := range jobs {
			// A task whose outcome is being written is left to finish.
			if j.phase.CompareAndSwap(phaseRunning, phaseHandedBack) {
				rs = append(rs, j.r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		n, err := w.b.Requeue(ctx, q, rs)
		if err != nil {
			w.log.Error("worker: cannot hand tasks back; they return when their leases expire", "queue", q, "count", len(rs), "err", err)
			continue
		}
		w.log.Info("worker: handed unfinished tasks back to their queue", "queue", q, "count", n)
	}
}

const queueRefresh = 5 * time.Second

func (w *Worker) allQueues() bool {
	return len(w.opts.Queues) == 0 || slices.Contains(w.opts.Queues, "*")
}

// staticQueues returns the configured queues, or nil for "every queue".
func (w *Worker) staticQueues() []string {
	if w.allQueues() {
		return nil
	}
	return w.opts.Queues
}

func (w *Worker) describeQueues() string {
	if w.allQueues() {
		if len(w.opts.Exclude) > 0 {
			return "* except " + strings.Join(w.opts.Exclude, ",")
		}
		return "*"
	}
	return strings.Join(w.opts.Queues, ",")
}

// currentQueues returns the queues to claim from, reloading the list of
// known queues every few seconds when serving "*".
func (w *Worker) currentQueues(ctx context.Context) ([]string, error) {
	if !w.allQueues() {
		return w.opts.Queues, nil
	}
	w.qmu.Lock()
	defer w.qmu.Unlock()
	if w.queues != nil && time.Since(w.queuesAt) < queueRefresh {
		return w.queues, nil
	}
	all, err := w.b.KnownQueues(ctx)
	if err != nil {
		return nil, err
	}
	w.queues = slices.DeleteFunc(all, func(q string) bool { return slices.Contains(w.opts.Exclude, q) })
	w.queuesAt = time.Now()
	return w.queues, nil
}

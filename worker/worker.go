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
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/scheduler"
	"github.com/gotasks/gotasks/task"
)

// Options configures a Worker. The zero value serves every queue with
// runtime.NumCPU() goroutines.
type Options struct {
	// Queues to serve; with the default QueueOrder their order is only a
	// tie-break, priority rules. Empty, or containing "*": every queue
	// known to the broker, minus Exclude.
	Queues []string
	// QueueOrder is how a worker of several queues chooses between them:
	// ByPriority (the default), Weighted (by Weights) or Strict (in the
	// order of Queues).
	QueueOrder QueueOrder
	// Weights are the queues' weights for QueueOrder Weighted; a queue
	// not named weighs 1.
	Weights map[string]int
	// Exclude lists queues not to serve when Queues is "*".
	Exclude []string
	// Concurrency is the number of tasks run at once. Default runtime.NumCPU().
	Concurrency int
	// Prefetch bounds how many claimed tasks the worker holds beyond
	// those it runs, so that a task that ends is followed at once by the
	// next, and claims and outcome writes carry many tasks per round trip.
	// The worker prefetches only as many as keep its runners busy while a
	// claim is on its way (Concurrency × claim time / task time, from
	// moving averages): short tasks get up to Prefetch, tasks that take
	// longer than a claim get none, so that a worker does not sit on tasks
	// the idle workers of a fleet could run. 0: max(4 × Concurrency, 32),
	// at most DefaultMaxPrefetch; negative: none. A prefetched task's
	// lease is renewed while it waits, and shutdown hands it back at
	// once, unstarted. What it means for priority: a prefetched task may
	// start after a task of higher priority enqueued once it was claimed.
	Prefetch int
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
	// on the worker's completer goroutine (see pipeline.go), like the
	// finished hooks: it must be quick and must not modify r.
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
	// DefaultMaxPrefetch caps Options.Prefetch's default,
	// max(4 × Concurrency, 32).
	DefaultMaxPrefetch = 256
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
	// arrive together in one round trip; completions carries them on to
	// the completer (see pipeline.go). Both hold every task the worker
	// may hold: a send never waits.
	stores      chan storeReq
	completions chan completion
	// smu guards storerDone, set once the storer has stopped: no outcome
	// is sent to it after that (see submit).
	smu        sync.Mutex
	storerDone bool
	// free gives a task's credit back, once per claimed task (set by
	// Run's claimer).
	free func()
	// runTime and claimTime are moving averages (ns) of a task's run and
	// of a claim's round trip, which size the prefetch (see prefetch).
	runTime, claimTime atomic.Int64
	// ran wakes the claimer when a task has run (set by Run's claimer).
	ran chan struct{}
	// turns are the queues' turns under QueueOrder Weighted.
	turns turns

	// cmu guards the count of claims (MaxTasks): claims made, and
	// reserved for the claim in flight. claimCtx is Run's ctx: once it is
	// done nothing more is claimed.
	cmu      sync.Mutex
	claims   int
	reserved int
	claimCtx context.Context

	// handingBack is set (under mu) when shutdown hands tasks back: a
	// task claimed after that is handed back too, never started.
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
	// phase is queued (claimed, waiting for a runner), then running,
	// then either storing (the outcome is being written, which ends the
	// lease) or handedBack (shutdown returned the task to its queue,
	// from queued or running): compare-and-swaps decide, so a task is
	// never both stored and handed back, nor started once handed back.
	phase atomic.Int32
	// progress throttles what the task reports (see progress.go).
	progress progressState
	// steps caches the task's durable steps (see steps.go).
	steps stepsState
}

// Phases of a job.
const (
	phaseQueued int32 = iota
	phaseRunning
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
	switch {
	case opts.Prefetch == 0:
		opts.Prefetch = min(max(4*opts.Concurrency, 32), DefaultMaxPrefetch)
	case opts.Prefetch < 0:
		opts.Prefetch = 0
	}
	opts.Queues = slices.Clone(opts.Queues)
	opts.Weights = maps.Clone(opts.Weights)
	return &Worker{b: b, opts: opts, log: opts.Logger.With("worker", opts.WorkerID), inflight: map[jobKey]*job{}}
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
	// Every task the worker may hold fits in either channel: a send never
	// waits.
	held := w.opts.Concurrency + w.opts.Prefetch
	w.stores, w.completions = make(chan storeReq, held), make(chan completion, held)
	w.smu.Lock()
	w.storerDone = false
	w.smu.Unlock()
	bg.Add(1)
	go func() {
		defer bg.Done()
		w.storeLoop(storeCtx, taskCtx, sd)
	}()
	bg.Add(1)
	go func() {
		defer bg.Done()
		w.completeLoop(taskCtx)
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
		// The tasks claimed and not started go back at once; the running
		// ones have until the end of the window.
		w.handBackQueued(sd.End())
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
		w.stopCancelled(j)
	}
	return j
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
}

// allClaimed reports whether MaxTasks tasks have been claimed.
func (w *Worker) allClaimed() bool {
	w.cmu.Lock()
	defer w.cmu.Unlock()
	return w.opts.MaxTasks > 0 && w.claims >= w.opts.MaxTasks
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
	w.handingBack = true // see trackQueued
	w.mu.Unlock()
	for q, jobs := range w.byQueue() {
		var rs []*task.RawResult
		var unstarted []broker.Claimed
		for _, j := range jobs {
			// A task whose outcome is being written is left to finish.
			if j.phase.CompareAndSwap(phaseRunning, phaseHandedBack) {
				rs = append(rs, j.r)
			} else if j.phase.CompareAndSwap(phaseQueued, phaseHandedBack) {
				// Left for a runner at the SIGTERM (see handBackQueued),
				// and none took it since.
				unstarted = append(unstarted, broker.Claimed{Result: j.r})
			}
		}
		if len(unstarted) > 0 {
			w.handBackClaimed(ctx, q, unstarted)
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

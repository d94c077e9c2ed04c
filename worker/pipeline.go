package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/internal/backoff"
	"github.com/gotasks/gotasks/task"
)

// The worker is a pipeline of goroutines, each with one job, connected by
// channels:
//
//	claimer (fetch) ──jobs──► runners (Concurrency) ──stores──► storer ──completions──► completer
//
// A credit is one claimed task held by the worker, from its claim until
// its outcome is stored (or it is handed back): there are Concurrency +
// Prefetch credits. The claimer claims as many tasks as there are free
// credits, in one round trip; the runners run them, Concurrency at once,
// and hand each outcome to the storer without waiting for it to be
// written, then take the next task at once (a prefetched one, if any);
// the storer writes the outcomes that arrived during its previous round
// trip in one round trip, and passes them to the completer, which logs,
// calls the hooks and gives the credit back. So the claimer and the
// storer each keep a round trip in flight (on their own connections), and
// both carry as many tasks as piled up meanwhile: batches grow with the
// load instead of one round trip per task.
//
// Every claimed task is tracked (its lease renewed) from its claim, while
// it waits for a runner too. Shutdown hands the prefetched tasks back at
// once, their claims undone (they never started), and the running ones
// once the shutdown window ends.

// claimedJob is a claimed task on its way to a runner; bad is set when the
// stored task could not be decoded.
type claimedJob struct {
	j   *job
	bad error
}

// pool is what the runners share.
type pool struct {
	ctx  context.Context   // the tasks' context (Run's taskCtx)
	jobs <-chan claimedJob // closed when fetch returns
}

// storeReq is an outcome for the storer: j's attempt, begun at start.
type storeReq struct {
	j     *job
	start time.Time
	bo    *backoff.Backoff // of the writes that failed so far; nil before
	due   time.Time        // when to write it again
}

// completion is a stored outcome (err nil), or one that will not be
// (ErrLeaseLost, or the worker is stopping), for the completer.
type completion struct {
	req storeReq
	err error
}

// fetch is the claimer. It returns when ctx is done, MaxTasks are
// claimed, or (Batch) the queues are empty.
func (w *Worker) fetch(ctx, taskCtx context.Context, running *sync.WaitGroup, finished chan struct{}) {
	most := w.opts.Concurrency + w.opts.Prefetch
	credits := make(chan struct{}, most)
	freed := make(chan struct{}, 1) // a credit came back, or a task ran (the prefetch may grow)
	w.ran = freed
	// Never full: each job in it holds a credit.
	jobs := make(chan claimedJob, most)
	defer close(jobs)
	p := &pool{ctx: taskCtx, jobs: jobs}
	w.free = func() {
		<-credits
		select {
		case freed <- struct{}{}:
		default:
		}
		select {
		case finished <- struct{}{}:
		default:
		}
		running.Done()
	}
	for range w.opts.Concurrency {
		go w.serve(p, nil)
	}
	var bo backoff.Backoff
	var qs []string // the queues of the last claim
	for ctx.Err() == nil {
		if w.allClaimed() {
			return
		}
		// Wait until the worker holds fewer tasks than it may (see
		// prefetch), then claim up to that. A claim that got no reply is
		// sent again with the next (its tasks may be claimed for this
		// worker): that one waits until it can take as many.
		need := min(max(w.b.UnsureClaims(qs, w.opts.WorkerID), 1), most)
		limit := max(w.opts.Concurrency+w.prefetch(), need)
		for limit-len(credits) < need {
			select {
			case <-freed:
			case <-ctx.Done():
				return
			}
			limit = max(w.opts.Concurrency+w.prefetch(), need)
		}
		n := limit - len(credits) // only this loop takes credits: no send waits
		for range n {
			credits <- struct{}{}
		}
		k := w.reserve(n)
		for ; n > k; n-- {
			<-credits
		}
		if n == 0 {
			return // MaxTasks claimed, or ctx done
		}
		var err error
		qs, err = w.currentQueues(ctx)
		var got []broker.Claimed
		if err == nil {
			t0 := time.Now()
			got, err = w.claim(ctx, qs, n)
			if len(got) > 0 {
				ewma(&w.claimTime, time.Since(t0))
			}
		}
		w.settle(n, len(got))
		if len(got) > 0 && ctx.Err() != nil {
			// Shutdown began while the claim was on its way (a slow or
			// hung network): these tasks go back unstarted.
			for q, cs := range claimedByQueue(got) {
				w.handBackClaimed(context.WithoutCancel(ctx), q, cs)
			}
			got = nil
		}
		var back []broker.Claimed
		for _, c := range got {
			j := w.trackQueued(taskCtx, c.Result)
			if j == nil {
				back = append(back, c) // shutdown is handing tasks back
				continue
			}
			running.Add(1)
			jobs <- claimedJob{j, c.Bad}
		}
		for q, cs := range claimedByQueue(back) {
			w.handBackClaimed(context.WithoutCancel(ctx), q, cs)
		}
		for i := len(got) - len(back); i < n; i++ {
			<-credits
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

// prefetch is how many tasks the worker may hold now beyond those it
// runs: as many as keep its runners busy while a claim is on its way
// (Little's law: Concurrency × claim time / task time), at most
// Options.Prefetch. Short tasks get the whole prefetch, so that claims
// and outcome writes carry many tasks per round trip; tasks that take
// longer than a claim get none, so that a worker does not sit on tasks
// that idle workers of the fleet could run. Nothing is prefetched until
// a task has run (nothing is known of their time).
func (w *Worker) prefetch() int {
	run, claim := w.runTime.Load(), w.claimTime.Load()
	if w.opts.Prefetch == 0 || run == 0 || claim == 0 {
		return 0
	}
	n := float64(w.opts.Concurrency) * float64(claim) / float64(run)
	return int(min(n, float64(w.opts.Prefetch)))
}

// ewma moves the average at avg (ns) an eighth of the way to d. Runners
// update the task time at once: an update may be lost, which an average
// can afford.
func ewma(avg *atomic.Int64, d time.Duration) {
	old := avg.Load()
	if old == 0 {
		avg.Store(max(int64(d), 1))
		return
	}
	avg.Store(max(old+(int64(d)-old)/8, 1))
}

// trackQueued tracks a task the claimer took, waiting for a runner,
// unless shutdown is handing the tasks back (then nil: the caller hands it
// back). The check and the tracking are one step under mu, which
// handBackQueued takes to set handingBack, so the task is either among
// those it hands back or handed back by the caller.
func (w *Worker) trackQueued(ctx context.Context, r *task.RawResult) *job {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.handingBack {
		return nil
	}
	return w.trackLocked(ctx, r)
}

// serve is the loop of a runner; first, if not nil, runs before it (the
// work of a runner that died, see takeOver). Each runner keeps a
// task.Apart: with run middleware, its tasks run on that one goroutine of
// its own rather than on a new one per attempt.
func (w *Worker) serve(p *pool, first func()) {
	a := new(task.Apart)
	defer a.Close() // also when a task's runtime.Goexit ends this goroutine
	if first != nil {
		first()
	}
	for cj := range p.jobs {
		w.execute(p, a, cj.j, cj.bad)
	}
}

// takeOver stands in for a runner that a task ended with runtime.Goexit
// (see execute). It does what that runner had left to do, as if the task
// had returned: it hands the outcome to the storer (task.Execute recorded
// the failure before the goroutine died). Then it serves as a runner in
// the dead one's place.
func (w *Worker) takeOver(p *pool, j *job, start time.Time) {
	w.serve(p, func() { w.submit(j, start) })
}

// execute runs one claimed task and hands its outcome to the storer. bad
// is set when the stored task could not be decoded.
//
// A task that calls runtime.Goexit ends the goroutine running execute, so
// execute never returns; a replacement goroutine finishes its work (see
// takeOver).
func (w *Worker) execute(p *pool, a *task.Apart, j *job, bad error) {
	ctx, r := p.ctx, j.r
	if !j.phase.CompareAndSwap(phaseQueued, phaseRunning) {
		// Shutdown handed it back before it started.
		w.untrack(j)
		w.free()
		return
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
	case j.cancelAsked.Load():
		// Cancelled while it waited for a runner: it does not start.
		task.Cancelled(r, task.ErrCancelled)
	default:
		if w.log.Enabled(ctx, slog.LevelDebug) {
			w.taskLog(r).Debug("task started")
		}
		// Goexit cannot be stopped: if the task calls it, this goroutine
		// dies once the deferred calls have run (one in task.Execute
		// records the failure in r). The runners are long-lived on
		// purpose (see fetch), so this one hands the rest of the job and
		// its place to a replacement.
		exited := true
		defer func() {
			if exited {
				go w.takeOver(p, j, start)
			}
		}()
		task.ExecuteApart(j.ctx, r, a, w.opts.RunMiddleware...)
		exited = false
		ewma(&w.runTime, time.Since(start))
		select {
		case w.ran <- struct{}{}:
		default:
		}
	}
	w.submit(j, start)
}

// submit hands j's outcome (in j.r, set by task.Execute or task.Fail) to
// the storer, unless shutdown handed the task back meanwhile.
func (w *Worker) submit(j *job, start time.Time) {
	r := j.r
	r.Progress = j.progress.final()
	if j.cancelAsked.Load() && r.Status == task.StatusNew {
		// A cancelled task is not retried (this attempt failed outside
		// task.Execute, which sees to it otherwise).
		r.Status, r.RunAfter = task.StatusFailed, time.Time{}
	}
	if !j.phase.CompareAndSwap(phaseRunning, phaseStoring) {
		w.taskLog(r).Info("task given up at shutdown (handed back to its queue, or to its lease if Redis did not answer)", "duration", time.Since(start))
		w.untrack(j)
		w.free()
		return
	}
	w.smu.Lock()
	defer w.smu.Unlock()
	if w.storerDone {
		// Run has returned (a task that outlived the shutdown): nothing
		// writes it; its lease settles it.
		w.taskLog(r).Warn("task finished after the worker stopped; outcome not stored, it runs again when its lease expires", "status", r.Status)
		w.untrack(j)
		w.free()
		return
	}
	w.stores <- storeReq{j: j, start: start} // never full: each outcome holds a credit
}

// maxStoreBatch bounds the outcomes written in one round trip.
const maxStoreBatch = 256

// storeLoop is the storer: it writes outcomes until stop is done, all
// those that arrived during the previous round trip together (each still
// atomic and fenced on its own), and passes each to the completer once it
// is written, or will not be. A write that fails (Redis unreachable) is
// tried again after a backoff of its own, while the others go on. Once
// Run's ctx is done, its writes carry the end of the shutdown as their
// deadline (see shutdown).
func (w *Worker) storeLoop(stop, ctx context.Context, sd *ShutdownWindow) {
	batch := make([]storeReq, 0, maxStoreBatch)
	rs := make([]*task.RawResult, 0, maxStoreBatch)
	var later []storeReq // failed writes, to try again at their due time
	defer func() {
		// What is left is not written: the completer ends those tasks
		// (their leases settle them), then stops.
		w.smu.Lock()
		w.storerDone = true
		w.smu.Unlock()
		for {
			select {
			case req := <-w.stores:
				later = append(later, req)
				continue
			default:
			}
			break
		}
		for _, req := range later {
			w.completions <- completion{req, fmt.Errorf("store %s: %w", req.j.r.ID, context.Cause(stop))}
		}
		close(w.completions)
	}()
	for {
		var wake <-chan time.Time
		var timer *time.Timer
		if len(later) > 0 {
			next := later[0].due
			for _, l := range later[1:] {
				if l.due.Before(next) {
					next = l.due
				}
			}
			timer = time.NewTimer(time.Until(next))
			wake = timer.C
		}
		batch = batch[:0]
		select {
		case req := <-w.stores:
			batch = append(batch, req)
		case <-wake:
		case <-stop.Done():
			return
		}
		if timer != nil {
			timer.Stop()
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
		now := time.Now()
		keep := later[:0]
		for _, l := range later {
			if !l.due.After(now) && len(batch) < maxStoreBatch {
				batch = append(batch, l)
			} else {
				keep = append(keep, l)
			}
		}
		later = keep
		rs = rs[:0]
		for _, req := range batch {
			rs = append(rs, req.j.r)
		}
		sctx, cancel := sd.Bound(ctx)
		errs := w.b.Store(sctx, rs...)
		cancel()
		for i, req := range batch {
			err, r := errs[i], req.j.r
			switch {
			case errors.Is(err, broker.ErrCancelAsked) && r.Status == task.StatusNew:
				// Its cancel was asked for while it ran, and the message
				// did not reach this worker before it failed: not retried.
				r.Status, r.RunAfter = task.StatusFailed, time.Time{}
				req.due = now
				later = append(later, req)
			case err == nil, errors.Is(err, broker.ErrLeaseLost), ctx.Err() != nil:
				w.completions <- completion{req, err} // never full, as stores
			default:
				if req.bo == nil {
					req.bo = new(backoff.Backoff)
				}
				d := req.bo.Next()
				w.log.Warn("worker: cannot store result, retrying", "id", r.ID, "err", err, "retry_in", d)
				req.due = now.Add(d)
				later = append(later, req)
			}
			batch[i] = storeReq{}
		}
		clear(rs)
	}
}

// completeLoop is the completer: for each outcome the storer is done
// with, it logs, calls the hooks and gives the task's credit back, until
// the storer has stopped.
func (w *Worker) completeLoop(ctx context.Context) {
	for c := range w.completions {
		w.complete(ctx, c)
	}
}

// complete ends the attempt of c's job once its outcome is stored (or
// will not be): it logs it, calls the hooks, untracks the job and gives
// its credit back.
func (w *Worker) complete(ctx context.Context, c completion) {
	j, r, start, err := c.req.j, c.req.j.r, c.req.start, c.err
	log := func() *slog.Logger { return w.taskLog(r) }
	defer w.free()
	defer w.untrack(j)
	if err != nil {
		if errors.Is(err, broker.ErrLeaseLost) {
			log().Warn("task finished after its lease was lost; outcome discarded, another attempt owns it", "status", r.Status, "duration", time.Since(start))
		} else {
			log().Error("task outcome not stored; it will run again when its lease expires", "err", err)
		}
		return
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
		return // not finished: no finished hook
	default:
		if w.log.Enabled(ctx, slog.LevelInfo) {
			log().Info("task complete", "duration", time.Since(start))
		}
	}
	task.Finished(ctx, r)
}

// handBackQueued returns the prefetched tasks to their queues at once,
// their claims undone, and makes the claimer hand back what it claims from
// now on (see trackQueued): shutdown starts no task that waits for a
// runner. Prefetched are the claimed tasks beyond what the free runners
// take: a task claimed for a runner that was free at the SIGTERM is on its
// way to it (its claim's reply, the channel), and starts as it would have
// a moment before.
func (w *Worker) handBackQueued(end time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), end)
	defer cancel()
	w.mu.Lock()
	w.handingBack = true
	w.mu.Unlock()
	byQueue := w.byQueue()
	busy := 0
	for _, jobs := range byQueue {
		for _, j := range jobs {
			if j.phase.Load() == phaseRunning {
				busy++
			}
		}
	}
	free := max(w.opts.Concurrency-busy, 0)
	for q, jobs := range byQueue {
		var cs []broker.Claimed
		for _, j := range jobs {
			if j.phase.Load() != phaseQueued {
				continue
			}
			if free > 0 {
				free--
				continue
			}
			if j.phase.CompareAndSwap(phaseQueued, phaseHandedBack) {
				cs = append(cs, broker.Claimed{Result: j.r})
			}
		}
		if len(cs) > 0 {
			w.handBackClaimed(ctx, q, cs)
		}
	}
}

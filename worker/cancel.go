package worker

import (
	"context"
	"slices"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
)

// Cancels of running tasks (see broker/cancel.go): Redis tells the
// workers on each queue's cancels channel, and the worker that holds the
// task cancels its context with cause task.ErrCancelled. The task then
// ends as task.Cancelled says: CANCELLED if it returned its context's
// error, otherwise its own outcome, never a retry. A message missed (the
// subscription was cut off) is made up for when the subscription is back
// (CancelsAsked) and at each lease renewal (RenewWatch).

// watchCancels subscribes to the cancels of the queues the worker serves
// until ctx is done, following the list of queues when it serves '*'.
func (w *Worker) watchCancels(ctx context.Context) {
	t := time.NewTicker(queueRefresh)
	defer t.Stop()
	var sub *broker.Subscription
	var subscribed []string
	defer func() {
		if sub != nil {
			_ = sub.Close()
		}
	}()
	for {
		qs, err := w.currentQueues(ctx)
		if err == nil && len(qs) > 0 {
			qs = slices.Compact(slices.Sorted(slices.Values(qs)))
		}
		if err == nil && len(qs) > 0 && !slices.Equal(qs, subscribed) {
			s, err := w.b.SubscribeCancels(ctx, qs)
			switch {
			case err != nil:
				if ctx.Err() == nil {
					w.log.Warn("worker: cannot subscribe to the cancels of running tasks; they are seen at the next lease renewal", "err", err)
				}
			default:
				if sub != nil {
					_ = sub.Close()
				}
				sub, subscribed = s, qs
				w.checkCancels(ctx) // asked for while this worker was not subscribed
			}
		}
		var evs <-chan broker.Event
		if sub != nil {
			evs = sub.Events()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case ev := <-evs:
			switch ev.Kind {
			case broker.EventMissed:
				w.checkCancels(ctx)
			case broker.EventCancelRequested:
				w.cancelAttempt(jobKey{ev.ID, ev.Attempt})
			}
		}
	}
}

// checkCancels asks Redis which of the tasks this worker runs have their
// cancel asked for, and stops those.
func (w *Worker) checkCancels(ctx context.Context) {
	for q, jobs := range w.byQueue() {
		ids := make([]string, len(jobs))
		for i, j := range jobs {
			ids[i] = j.r.ID
		}
		cctx, cancel := context.WithTimeout(ctx, w.opts.LeaseDuration/3)
		asked, err := w.b.CancelsAsked(cctx, q, ids)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("worker: cannot read the cancels of running tasks; they are seen at the next lease renewal", "queue", q, "err", err)
			}
			continue
		}
		for i, a := range asked {
			if a {
				w.stopCancelled(jobs[i])
			}
		}
	}
}

// cancelAttempt stops attempt k if this worker runs it. A cancel may be
// told before the worker tracks its task (the claim's reply still on its
// way while the cancel's message arrives on the other connection): it is
// kept for a lease, and track stops the task as it begins.
func (w *Worker) cancelAttempt(k jobKey) {
	w.mu.Lock()
	j := w.inflight[k]
	if j == nil {
		now := time.Now()
		for e, at := range w.early {
			if now.Sub(at) > w.opts.LeaseDuration {
				delete(w.early, e)
			}
		}
		if len(w.early) < maxEarlyCancels {
			if w.early == nil {
				w.early = map[jobKey]time.Time{}
			}
			w.early[k] = now
		}
	}
	w.mu.Unlock()
	if j != nil {
		w.stopCancelled(j)
	}
}

// maxEarlyCancels bounds the cancels kept for tasks not tracked (yet):
// every worker of a queue hears every cancel of the queue. One missed
// beyond that is seen at the next renewal.
const maxEarlyCancels = 10000

// earlyCancelLocked reports whether attempt k was cancelled before it was
// tracked (see cancelAttempt), and forgets it. w.mu is held.
func (w *Worker) earlyCancelLocked(k jobKey) bool {
	if len(w.early) == 0 {
		return false
	}
	_, ok := w.early[k]
	delete(w.early, k)
	return ok
}

// stopCancelled cancels the context of j, whose cancel was asked for,
// once.
func (w *Worker) stopCancelled(j *job) {
	if !j.cancelAsked.CompareAndSwap(false, true) {
		return
	}
	w.log.Info("worker: cancel asked for a running task; cancelling its context", "id", j.r.ID, "task", j.r.TaskName, "attempt", j.r.Attempts)
	j.cancel(task.ErrCancelled)
}

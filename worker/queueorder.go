package worker

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/gotasks/gotasks/broker"
)

// QueueOrder is how a worker of several queues chooses where its next
// claim takes tasks from (Options.QueueOrder).
type QueueOrder int

// The queue orders.
const (
	// ByPriority, the default, takes the best tasks across all the
	// worker's queues: the highest priority first, then the oldest,
	// whichever queue holds them. A task's priority means the same
	// wherever it waits, and no queue starves another of equal priority.
	ByPriority QueueOrder = iota
	// Weighted gives each queue a share of the claims by its weight in
	// Options.Weights (asynq's {"critical": 6, "default": 3, "low": 1}),
	// when every queue has tasks waiting; a queue with none gives its
	// turn to the next. Within a queue, priority and age rule. The turns
	// are a smooth weighted round-robin, not random: over any 10 claims
	// of 6:3:1, 6, 3 and 1.
	Weighted
	// Strict takes from the first of Options.Queues while it has tasks
	// ready, then from the second, and so on.
	Strict
)

// String names the order as the command line does.
func (o QueueOrder) String() string {
	switch o {
	case ByPriority:
		return "priority"
	case Weighted:
		return "weighted"
	case Strict:
		return "strict"
	}
	return fmt.Sprintf("QueueOrder(%d)", int(o))
}

// turns is the smooth weighted round-robin of Weighted: each claim, every
// queue gains its weight, the one with the most goes first and pays back
// the total.
type turns struct {
	mu      sync.Mutex
	current map[string]int
}

// weightOf is q's weight: Options.Weights', at least 1.
func (w *Worker) weightOf(q string) int {
	return max(w.opts.Weights[q], 1)
}

// order returns qs in the order of this claim's turns: the queue whose
// turn it is first, then the others by how close they are to theirs.
func (t *turns) order(qs []string, weight func(string) int) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.current == nil {
		t.current = map[string]int{}
	}
	total := 0
	for _, q := range qs {
		t.current[q] += weight(q)
		total += weight(q)
	}
	out := slices.Clone(qs)
	slices.SortStableFunc(out, func(a, b string) int { return t.current[b] - t.current[a] })
	t.current[out[0]] -= total
	return out
}

// claim takes up to n tasks of qs in the worker's QueueOrder.
func (w *Worker) claim(ctx context.Context, qs []string, n int) ([]broker.Claimed, error) {
	if len(qs) < 2 {
		return w.b.Claim(ctx, qs, n, w.opts.LeaseDuration, w.opts.WorkerID)
	}
	switch w.opts.QueueOrder {
	case Weighted:
		return w.b.ClaimInOrder(ctx, w.turns.order(qs, w.weightOf), n, w.opts.LeaseDuration, w.opts.WorkerID)
	case Strict:
		return w.b.ClaimInOrder(ctx, qs, n, w.opts.LeaseDuration, w.opts.WorkerID)
	}
	return w.b.Claim(ctx, qs, n, w.opts.LeaseDuration, w.opts.WorkerID)
}

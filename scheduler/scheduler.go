// Package scheduler moves deferred tasks to their queue when their
// run_after comes, returns tasks whose worker stopped renewing their lease,
// and enqueues periodic tasks (Periodic) at their cron ticks. It runs inside
// every worker process (all three jobs are safe to run in any number of
// processes at once) and can also run alone.
package scheduler

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/internal/backoff"
)

// Options configures a Scheduler. The zero value serves every queue.
type Options struct {
	// Queues to serve; empty: every queue known to the broker, rediscovered
	// every RefreshInterval.
	Queues []string
	// Exclude lists queues not to serve when Queues is empty.
	Exclude []string
	// MaxSleep bounds how long a queue's loop sleeps between checks for
	// expired leases (deferred tasks wake it on their own). Default 5s.
	MaxSleep time.Duration
	// RefreshInterval is how often the queue list is reloaded when Queues is
	// empty. Default 5s.
	RefreshInterval time.Duration
	// Entries are the periodic tasks to enqueue; nil: every entry
	// registered with Periodic.
	Entries []*Entry
	// NoPeriodic turns off periodic tasks in this scheduler.
	NoPeriodic bool
	// Logger; default slog.Default().
	Logger *slog.Logger

	// clock is replaced in tests to drive periodic ticks; nil: real time.
	clock clock
}

// clock is the time source of periodic entries.
type clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Scheduler promotes deferred tasks and requeues expired leases.
type Scheduler struct {
	b     *broker.Redis
	opts  Options
	log   *slog.Logger
	clock clock
	id    string // marks the periodic ticks this scheduler claims
}

// batch bounds the work of one script call, so Redis is never blocked long.
const batch = 1000

// New returns a scheduler for b.
func New(b *broker.Redis, opts Options) *Scheduler {
	if opts.MaxSleep <= 0 {
		opts.MaxSleep = 5 * time.Second
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Scheduler{b: b, opts: opts, log: opts.Logger, clock: opts.clock, id: rand.Text()}
	if s.clock == nil {
		s.clock = realClock{}
	}
	return s
}

// Run serves the queues and the periodic entries until ctx is done, and
// returns nil then.
func (s *Scheduler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	if !s.opts.NoPeriodic {
		entries := s.opts.Entries
		if entries == nil {
			entries = Entries()
		}
		for _, e := range entries {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.runEntry(ctx, e)
			}()
		}
	}
	started := map[string]bool{}
	start := func(q string) {
		if started[q] {
			return
		}
		started[q] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serve(ctx, q)
		}()
	}
	if len(s.opts.Queues) > 0 {
		for _, q := range s.opts.Queues {
			start(q)
		}
		<-ctx.Done()
		return nil
	}
	for {
		qs, err := s.b.KnownQueues(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("scheduler: list queues", "err", err)
		}
		for _, q := range qs {
			if !slices.Contains(s.opts.Exclude, q) {
				start(q)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.opts.RefreshInterval):
		}
	}
}

// serve is one queue's loop: promote what is due, requeue expired leases,
// then sleep until the next run_after or lease expiry (or MaxSleep), waking
// early when a new deferred task arrives.
func (s *Scheduler) serve(ctx context.Context, queue string) {
	var bo backoff.Backoff
	for ctx.Err() == nil {
		next, err := s.Tick(ctx, queue)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := bo.Next()
			s.log.Warn("scheduler: redis error, backing off", "queue", queue, "err", err, "retry_in", d)
			backoff.Sleep(ctx, d)
			continue
		}
		bo.Reset()
		wait := s.opts.MaxSleep
		if !next.IsZero() {
			wait = min(wait, time.Until(next))
		}
		if wait <= 0 {
			continue
		}
		if _, err := s.b.WaitDeferred(ctx, queue, wait); err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
			s.log.Warn("scheduler: wait", "queue", queue, "err", err)
			backoff.Sleep(ctx, bo.Next())
		}
	}
}

// Tick does one round on queue: it promotes every due deferred task and
// requeues every expired lease, and returns the earliest time something
// will next be due (zero: nothing pending).
func (s *Scheduler) Tick(ctx context.Context, queue string) (time.Time, error) {
	var nextDue, nextLease time.Time
	for {
		n, next, err := s.b.Promote(ctx, queue, batch)
		if err != nil {
			return time.Time{}, err
		}
		if n > 0 {
			s.log.Debug("scheduler: promoted deferred tasks", "queue", queue, "count", n)
		}
		nextDue = next
		if n < batch {
			break
		}
	}
	for {
		n, next, err := s.b.Reap(ctx, queue, batch)
		if err != nil {
			return time.Time{}, err
		}
		if n > 0 {
			s.log.Warn("scheduler: requeued tasks whose lease expired", "queue", queue, "count", n)
		}
		nextLease = next
		if n < batch {
			break
		}
	}
	switch {
	case nextDue.IsZero():
		return nextLease, nil
	case nextLease.IsZero() || nextDue.Before(nextLease):
		return nextDue, nil
	}
	return nextLease, nil
}

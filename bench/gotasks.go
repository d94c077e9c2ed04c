package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// noop is the benchmark task: it decodes its arguments (gotasks does that
// before calling it) and does nothing else (but in the scale section's
// I/O rows, where it waits taskSleep).
var noop = task.Define("bench.noop", func(ctx context.Context, p Payload) (struct{}, error) {
	taskStarted(p.Seq)
	taskWait(ctx)
	return struct{}{}, nil
})

// quietLogger drops the per-task Info lines, as asynq (which logs nothing
// per task) is run at Warn too: the benchmark measures the queue, not
// stderr.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// eventsEnv carries --events to the worker processes.
const eventsEnv = "GOTASKS_BENCH_EVENTS"

// brokerOptions are the options of every gotasks broker of the bench:
// the defaults, but for the events (--events).
func brokerOptions() broker.Options {
	return broker.Options{Events: broker.EventMode(os.Getenv(eventsEnv))}
}

type gotasksSys struct {
	url string
	b   *broker.Redis // the producer's connection
}

// openGotasks opens a producer and makes it the "default" task backend.
// task.Configure is process-wide, so only one may be open at a time.
func openGotasks(url string) (system, error) {
	b, err := broker.Open(url, brokerOptions())
	if err != nil {
		return nil, fmt.Errorf("gotasks: %w", err)
	}
	task.Configure(map[string]task.Backend{task.DefaultBackendName: b})
	return &gotasksSys{url: url, b: b}, nil
}

func (s *gotasksSys) Name() string { return nameGotasks }

func (s *gotasksSys) Enqueue(ctx context.Context, p Payload) error {
	_, err := noop.Enqueue(ctx, p)
	return err
}

func (s *gotasksSys) EnqueueBatch(ctx context.Context, ps []Payload) error {
	_, err := noop.EnqueueMany(ctx, ps)
	return err
}

// Fill enqueues n tasks with EnqueueMany, 1,000 per call from 4 goroutines:
// large batches keep a million-task fill to seconds.
func (s *gotasksSys) Fill(ctx context.Context, n int) error {
	const batch = 1000
	return parallel(ctx, (n+batch-1)/batch, 4, func(ctx context.Context, j int) error {
		ps := make([]Payload, 0, batch)
		for i := j * batch; i < min((j+1)*batch, n); i++ {
			ps = append(ps, newPayload(int64(i)))
		}
		if _, err := noop.EnqueueMany(ctx, ps); err != nil {
			return fmt.Errorf("fill: %w", err)
		}
		return nil
	})
}

func (s *gotasksSys) Unfinished(ctx context.Context) (int64, error) {
	c, err := s.b.Count(ctx, noop.QueueName())
	if err != nil {
		return 0, err
	}
	return c.Pending + c.Running + c.Deferred, nil
}

func (s *gotasksSys) StartWorker(ctx context.Context, c int) (func() error, error) {
	return s.startWorker(ctx, worker.Options{Concurrency: c})
}

// startWorker runs a worker on a broker of its own, serving the task's
// queue (named, not "*": a FLUSHALL also forgets the set of known queues).
func (s *gotasksSys) startWorker(ctx context.Context, opts worker.Options) (func() error, error) {
	b, err := broker.Open(s.url, brokerOptions())
	if err != nil {
		return nil, fmt.Errorf("gotasks worker: %w", err)
	}
	opts.Queues = []string{noop.QueueName()}
	opts.Logger = quietLogger()
	w := worker.New(b, opts)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var runErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		runErr = w.Run(ctx)
	}()
	return stopOnce(func() error {
		cancel()
		wg.Wait()
		b.Close()
		if runErr != nil {
			return fmt.Errorf("gotasks worker: %w", runErr)
		}
		return nil
	}), nil
}

func (s *gotasksSys) Close() error {
	task.Configure(nil)
	return s.b.Close()
}

// claimCost fills pending+k tasks, then times one worker at concurrency 1
// claiming, running and completing k of them (MaxTasks), so that pending
// stays at or above the given size throughout. It returns µs per task.
func claimCost(ctx context.Context, url string, pending, k int) (float64, error) {
	sys, err := openGotasks(url)
	if err != nil {
		return 0, err
	}
	defer sys.Close()
	s := sys.(*gotasksSys)
	if err := s.Fill(ctx, pending+k); err != nil {
		return 0, err
	}
	b, err := broker.Open(url, brokerOptions())
	if err != nil {
		return 0, fmt.Errorf("gotasks worker: %w", err)
	}
	defer b.Close()
	w := worker.New(b, worker.Options{
		Queues: []string{noop.QueueName()}, Concurrency: 1, MaxTasks: k, Logger: quietLogger(),
	})
	start := time.Now()
	if err := w.Run(ctx); err != nil {
		return 0, fmt.Errorf("gotasks worker: %w", err)
	}
	elapsed := time.Since(start)
	if got := w.Processed(); got != int64(k) {
		return 0, fmt.Errorf("claim cost: worker completed %d tasks, want %d", got, k)
	}
	return float64(elapsed.Microseconds()) / float64(k), nil
}

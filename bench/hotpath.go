package main

import (
	"context"
	"testing"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/worker"
)

// benchHotPath measures gotasks' worker hot path: b.N pending tasks
// claimed, run and completed by one worker at concurrency c, so that
// ns/op, B/op and allocs/op are per task and include everything the worker
// process does for it (claim script, decoding, goroutine, lease tracking,
// the task itself, the finish script, go-redis). Filling the queue is not
// timed. The in-process scheduler is off: it is not per task.
//
// It lives outside the _test files so that the bench command can run it
// too (testing.Benchmark) and put allocs/task in its table.
func benchHotPath(b *testing.B, url string, c int) {
	ctx := context.Background()
	br := filledBroker(b, url)
	w := worker.New(br, worker.Options{
		Queues: []string{noop.QueueName()}, Concurrency: c, MaxTasks: b.N,
		NoScheduler: true, Logger: quietLogger(),
	})
	b.ReportAllocs()
	b.ResetTimer()
	b.StartTimer()
	if err := w.Run(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if got := w.Processed(); got != int64(b.N) {
		b.Fatalf("worker completed %d tasks, want %d", got, b.N)
	}
}

// flushRedis empties the Redis at url (see admin.flush), failing b if it
// cannot.
func flushRedis(b testing.TB, url string) {
	a, err := newAdmin(url)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	if err := a.flush(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// filledBroker empties Redis, enqueues b.N no-op tasks (untimed: the timer
// is stopped) and returns a fresh broker on it, closed when b ends.
func filledBroker(b *testing.B, url string) *broker.Redis {
	ctx := context.Background()
	b.StopTimer()
	flushRedis(b, url)
	sys, err := openGotasks(url)
	if err != nil {
		b.Fatal(err)
	}
	defer sys.Close()
	if err := sys.Fill(ctx, b.N); err != nil {
		b.Fatal(err)
	}
	br, err := broker.Open(url, brokerOptions())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = br.Close() })
	return br
}

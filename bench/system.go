package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Payload is the argument of the benchmark task in both systems: a small
// struct, about 100 bytes in msgpack (gotasks' default serializer; asynq is
// given the very same bytes). Seq identifies a task in the latency probe.
type Payload struct {
	Seq      int64  `msgpack:"seq"`
	UserID   int64  `msgpack:"user_id"`
	Email    string `msgpack:"email"`
	Subject  string `msgpack:"subject"`
	Template string `msgpack:"template"`
	SentAt   int64  `msgpack:"sent_at"`
}

func newPayload(seq int64) Payload {
	return Payload{
		Seq: seq, UserID: 4_200_000 + seq, Email: "a@example.com",
		Subject: "Weekly summary", Template: "weekly",
		SentAt: 1_767_225_600_000_000,
	}
}

// system is one task queue under test. Every method but Close and
// StartWorker's stop must be safe for concurrent use.
type system interface {
	Name() string
	// Enqueue enqueues one task with one call, as an application would.
	Enqueue(ctx context.Context, p Payload) error
	// EnqueueBatch enqueues ps with one call; errNoBatch when the system
	// has no such call.
	EnqueueBatch(ctx context.Context, ps []Payload) error
	// Fill makes n tasks pending as fast as the system allows; it is set-up,
	// not measured.
	Fill(ctx context.Context, n int) error
	// Unfinished counts the tasks that are pending or running.
	Unfinished(ctx context.Context) (int64, error)
	// StartWorker starts a worker in this process that runs the no-op
	// task with concurrency c, on a connection of its own (as a separate
	// worker process would have). stop shuts it down and waits for it.
	StartWorker(ctx context.Context, c int) (stop func() error, err error)
	Close() error
}

// errNoBatch is returned by EnqueueBatch of a system without batch enqueue.
var errNoBatch = errors.New("no batch enqueue")

// opener connects a fresh instance of a system to the Redis at url.
type opener func(url string) (system, error)

var openers = map[string]opener{
	nameGotasks: openGotasks,
	nameAsynq:   openAsynq,
}

const (
	nameGotasks = "gotasks"
	nameAsynq   = "asynq"
)

// startEvent is sent by the task (of either system) as it starts.
type startEvent struct {
	seq int64
	at  time.Time
}

// startHook, when set, receives every task's start; only the latency probe
// sets it, so the drain pays one atomic load per task.
var startHook atomic.Pointer[chan startEvent]

// ran counts the tasks run in this process, so that a drain can check
// that every task did run.
var ran atomic.Int64

// taskStarted is the first thing the no-op task does in both systems.
func taskStarted(seq int64) {
	now := time.Now()
	ran.Add(1)
	if ch := startHook.Load(); ch != nil {
		select {
		case *ch <- startEvent{seq, now}:
		default: // the probe only waits for one task at a time
		}
	}
}

// taskSleep makes the benchmark task of either system wait this long
// after it starts, as a task waiting on a database or an HTTP call would.
// Only worker processes of the scale section set it (--task-sleep, see
// childMain); everywhere else it is 0 and the task does nothing.
var taskSleep time.Duration

// taskWait is the second thing the benchmark task does: nothing, or wait
// taskSleep (or until ctx is done).
func taskWait(ctx context.Context) {
	if taskSleep <= 0 {
		return
	}
	t := time.NewTimer(taskSleep)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// stopOnce makes a worker's stop function safe to call again (a deferred
// stop after an explicit one).
func stopOnce(stop func() error) func() error {
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() { err = stop() })
		return err
	}
}

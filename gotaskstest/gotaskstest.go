// Package gotaskstest runs the Redis backend on an in-process miniredis for
// users' tests: enqueue from the code under test, then run every ready task
// synchronously and inspect the results, without a Redis server.
//
//	func TestSignup(t *testing.T) {
//		env := gotaskstest.New(t)            // "default" backend → miniredis
//		signup(ctx, "ann@example.com")        // enqueues sendWelcome
//		env.RunUntilIdle(ctx)                 // runs it
//	}
package gotaskstest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// Env is a broker on a private miniredis, configured as a task backend.
type Env struct {
	// Redis is the in-process server; use it to inspect keys or to simulate
	// failures (Redis.SetError, Redis.Close).
	Redis *miniredis.Miniredis
	// Broker is the Redis backend on it.
	Broker *broker.Redis

	mu     sync.Mutex
	offset time.Duration // how far Advance moved the clock
}

// New starts a miniredis, opens a broker on it with opts and configures it
// as the backend named opts.Name (default "default"), replacing the
// configured backends for the duration of the test. Everything is undone by
// t.Cleanup. Tests that use New must not run in parallel with each other,
// since the backend registry is process-wide.
func New(t testing.TB, opts ...broker.Options) *Env {
	t.Helper()
	m := miniredis.RunT(t)
	var o broker.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	client := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: m.Addr(), ContextTimeoutEnabled: true})
	b := broker.New(client, o)
	task.Configure(map[string]task.Backend{b.Name(): b})
	t.Cleanup(func() {
		task.Configure(nil)
		_ = client.Close()
	})
	return &Env{Redis: m, Broker: b}
}

// Now returns the test clock: the real time plus everything Advance added.
func (e *Env) Now() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return time.Now().Add(e.offset)
}

// Advance moves the clock forward by d: deferred tasks due within d become
// ready at the next RunUntilIdle, and keys with a TTL (finished results)
// age by d.
func (e *Env) Advance(d time.Duration) {
	e.mu.Lock()
	e.offset += d
	e.mu.Unlock()
	e.Redis.FastForward(d)
	e.syncClock()
}

// syncClock sets miniredis' clock (which the broker's scripts read) to Now.
func (e *Env) syncClock() { e.Redis.SetTime(e.Now()) }

// RunUntilIdle runs every ready task, one at a time in enqueue order of
// priority, including tasks that become ready meanwhile (enqueued by other
// tasks, or deferred and due by the test clock), until no task is ready. It
// returns how many tasks it ran.
func (e *Env) RunUntilIdle(ctx context.Context) (int, error) {
	e.syncClock()
	w := worker.New(e.Broker, worker.Options{
		Concurrency: 1, Batch: true, WorkerID: "gotaskstest",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err := w.Run(ctx); err != nil {
		return int(w.Processed()), fmt.Errorf("run until idle: %w", err)
	}
	return int(w.Processed()), nil
}

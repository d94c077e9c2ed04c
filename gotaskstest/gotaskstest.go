// Package gotaskstest runs the Redis backend on an in-process miniredis for
// users' tests: enqueue from the code under test, then run every ready task
// synchronously and inspect the results, without a Redis server.
//
//	func TestSignup(t *testing.T) {
//		env := gotaskstest.New(t)            // "default" backend → miniredis
//		signup(ctx, "ann@example.com")        // enqueues sendWelcome
//		env.RunUntilIdle(ctx)                 // runs it
//	}
//
// New configures the process-wide task backends (task.Configure), so tests
// that use it cannot run in parallel, and one test holds one Env at a
// time. Misuse fails at once rather than mixing the tests' tasks up:
//   - New in a test that called t.Parallel, or whose parent did, fails
//     the test, saying why;
//   - t.Parallel after New panics with the testing package's message
//     "test using t.Setenv or t.Chdir can not use t.Parallel" (New calls
//     t.Setenv to claim the test as non-parallel);
//   - New while another Env of the process is live (made by another test,
//     or earlier by the same test or its parent, and not yet cleaned up)
//     fails the test and names the holder.
//
// To run such tests side by side, run them in separate processes (go test
// runs each package's tests in a process of their own).
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
// t.Cleanup. Tests that use New cannot run in parallel, since the backend
// registry is process-wide: New fails the test if it is parallel, or if
// another Env is live (see the package doc).
func New(t testing.TB, opts ...broker.Options) *Env {
	t.Helper()
	claimProcess(t)
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

// notParallel starts the message of every misuse New detects.
const notParallel = "gotaskstest.New configures the process-wide task backends: tests using it cannot run in parallel"

// live is the Env in use in this process, if any: the name of the test
// that made it ("" when none).
var live struct {
	sync.Mutex
	test string
}

// claimProcess fails t unless it may configure the process-wide backends:
// t is not parallel (t.Setenv panics in a parallel test and makes a later
// t.Parallel panic) and no other Env is live. The claim is released at
// t's cleanup.
func claimProcess(t testing.TB) {
	t.Helper()
	if p := setenvPanic(t); p != nil {
		t.Fatalf("%s; %s is a parallel test, or a subtest of one (remove its t.Parallel call, or its parent's; t.Setenv refused: %v)", notParallel, t.Name(), p)
	}
	live.Lock()
	holder := live.test
	if holder == "" {
		live.test = t.Name()
	}
	live.Unlock()
	if holder != "" {
		t.Fatalf("%s; %s calls New while the Env of %s is live (a parallel test, or a second Env in one test or in a subtest of a test that has one: one Env per test, made once)", notParallel, t.Name(), holder)
	}
	t.Cleanup(func() {
		live.Lock()
		live.test = ""
		live.Unlock()
	})
}

// setenvPanic calls t.Setenv, which marks t as non-parallel, and returns
// its panic: non-nil when t or a parent of it is parallel.
func setenvPanic(t testing.TB) (p any) {
	defer func() { p = recover() }()
	t.Setenv("GOTASKSTEST_ENV", t.Name())
	return nil
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

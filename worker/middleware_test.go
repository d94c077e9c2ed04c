package worker_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

type tenantKey struct{}

// tenantTask returns the tenant its context carries, as the run
// middleware restores it from the task's metadata.
var tenantTask = task.Define("workertest.tenant", func(ctx context.Context, _ int) (string, error) {
	tenant, _ := ctx.Value(tenantKey{}).(string)
	return tenant, nil
})

// producer configures, on e's miniredis, a broker with enqueue middleware
// as the "default" backend: a producer process's setup.
func (e *env) producer(mws ...task.EnqueueMiddleware) *broker.Redis {
	e.t.Helper()
	c := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: e.m.Addr()})
	b := broker.New(c, broker.Options{EnqueueMiddleware: mws})
	task.Configure(map[string]task.Backend{"default": b})
	e.t.Cleanup(func() { _ = c.Close() })
	return b
}

// runLog records what run middleware saw, per layer.
type runLog struct {
	mu  sync.Mutex
	got []string
}

func (l *runLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, s)
}

func (l *runLog) lines() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.got, " ")
}

func (l *runLog) layer(name string) task.RunMiddleware {
	return func(next task.RunFunc) task.RunFunc {
		return func(ctx context.Context, r *task.RawResult) ([]byte, error) {
			l.add(name + ">")
			v, err := next(ctx, r)
			var te *task.Error
			if errors.As(err, &te) {
				l.add("<" + name + ":" + te.Type)
			} else {
				l.add("<" + name)
			}
			return v, err
		}
	}
}

// Metadata set by a producer's enqueue middleware travels through Redis
// to the worker: its run middleware reads it from the claimed task and
// hands it to the task in the context; the stored result keeps it.
func TestMetadataFromEnqueueMiddlewareReachesTheWorkersRunMiddlewareThroughRedis(t *testing.T) {
	e := setup(t)
	e.producer(func(next task.EnqueueFunc) task.EnqueueFunc {
		return func(ctx context.Context, b task.Backend, msgs []*task.Message) error {
			for _, m := range msgs {
				if m.Metadata == nil {
					m.Metadata = task.Metadata{}
				}
				m.Metadata["tenant"] = ctx.Value(tenantKey{}).(string)
			}
			return next(ctx, b, msgs)
		}
	})
	ctx := context.WithValue(e.ctx, tenantKey{}, "acme")
	one := must[*task.Result[string]](t)(tenantTask.Enqueue(ctx, 1))
	many := must[[]*task.Result[string]](t)(tenantTask.EnqueueMany(ctx, []int{2, 3}))

	var mu sync.Mutex
	seen := map[string]task.Metadata{}
	restore := func(next task.RunFunc) task.RunFunc {
		return func(ctx context.Context, r *task.RawResult) ([]byte, error) {
			mu.Lock()
			seen[r.ID] = maps.Clone(r.Metadata)
			mu.Unlock()
			return next(context.WithValue(ctx, tenantKey{}, r.Metadata["tenant"]), r)
		}
	}
	e.runToEnd(worker.Options{Batch: true, Concurrency: 2, RunMiddleware: []task.RunMiddleware{restore}})

	want := task.Metadata{"tenant": "acme"}
	for _, res := range append(many, one) {
		refresh(t, res)
		if v, err := res.Value(); v != "acme" || err != nil {
			t.Errorf("%s: the task returned %q, %v; want the tenant from its context", res.ID, v, err)
		}
		if !maps.Equal(res.Metadata, want) || !maps.Equal(seen[res.ID], want) {
			t.Errorf("%s: stored metadata %v, the run middleware saw %v; want %v", res.ID, res.Metadata, seen[res.ID], want)
		}
	}
}

// The worker's own middleware wraps each attempt in the order given, and
// sees the outcome: a panic of the task as a gotasks.Panic error.
func TestAWorkerRunsItsRunMiddlewareInOrderAroundEveryAttempt(t *testing.T) {
	e := setup(t)
	l := &runLog{}
	ok := must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{1, 2}))
	e.runToEnd(worker.Options{Batch: true, Concurrency: 1, RunMiddleware: []task.RunMiddleware{l.layer("a"), l.layer("b")}})
	if got, want := l.lines(), "a> b> <b <a"; got != want {
		t.Errorf("a task that returns: %q, want %q", got, want)
	}
	if v, err := refresh(t, ok).Value(); v != 3 || err != nil {
		t.Errorf("result %d, %v", v, err)
	}

	l = &runLog{}
	bad := must[*task.Result[int]](t)(panicTask.Enqueue(e.ctx, "boom"))
	e.runToEnd(worker.Options{Batch: true, Concurrency: 1, RunMiddleware: []task.RunMiddleware{l.layer("a"), l.layer("b")}})
	if got, want := l.lines(), "a> b> <b:gotasks.Panic <a:gotasks.Panic"; got != want {
		t.Errorf("a task that panics: %q, want %q", got, want)
	}
	if r := refresh(t, bad); r.Status != task.StatusFailed || r.Err == nil || r.Err.Type != task.ErrorTypePanic {
		t.Errorf("result %s %+v", r.Status, r.Err)
	}
}

// A task that calls runtime.Goexit under run middleware ends a goroutine
// of its own: the middleware sees gotasks.Goexit, and the worker stores
// the failure and carries on.
func TestAWorkersRunMiddlewareSeesAGoexitAsAnError(t *testing.T) {
	e := setup(t)
	l := &runLog{}
	g := must[*task.Result[int]](t)(goexitTask.Enqueue(e.ctx, 1))
	ok := must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{2, 2}))
	e.runToEnd(worker.Options{Batch: true, Concurrency: 1, RunMiddleware: []task.RunMiddleware{l.layer("m")}})
	if got, want := l.lines(), "m> <m:gotasks.Goexit m> <m"; got != want {
		t.Errorf("middleware saw %q, want %q", got, want)
	}
	wantGoexitFailure(t, e.get(g.ID), task.StatusFailed)
	if v, err := refresh(t, ok).Value(); v != 4 || err != nil {
		t.Errorf("the next task: %d, %v", v, err)
	}
}

// A run middleware that refuses fails the attempt with its error; the
// task does not run.
func TestAWorkersRunMiddlewareCanShortCircuitAnAttempt(t *testing.T) {
	e := setup(t)
	refuse := func(next task.RunFunc) task.RunFunc {
		return func(ctx context.Context, r *task.RawResult) ([]byte, error) {
			return nil, errors.New("tenant suspended")
		}
	}
	res := must[*task.Result[task.Info]](t)(infoTask.Enqueue(e.ctx, 0))
	e.runToEnd(worker.Options{Batch: true, Concurrency: 1, RunMiddleware: []task.RunMiddleware{refuse}})
	if r := refresh(t, res); r.Status != task.StatusFailed || r.Err == nil || r.Err.Message != "tenant suspended" {
		t.Errorf("result %s %+v; want FAILED with the middleware's error", r.Status, r.Err)
	}
}

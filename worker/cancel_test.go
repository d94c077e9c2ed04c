package worker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/internal/redistest"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// cancelSeen is what the cancel tasks saw: their context's cause, by the
// key they were given, and a channel per key told when they started.
var cancelSeen struct {
	sync.Mutex
	started map[string]chan struct{}
	cause   map[string]error
	release map[string]chan struct{}
}

func cancelKey(t *testing.T, key string) (started, release chan struct{}) {
	cancelSeen.Lock()
	defer cancelSeen.Unlock()
	if cancelSeen.started == nil {
		cancelSeen.started, cancelSeen.cause, cancelSeen.release = map[string]chan struct{}{}, map[string]error{}, map[string]chan struct{}{}
	}
	k := t.Name() + "/" + key
	started, release = make(chan struct{}, 1), make(chan struct{})
	cancelSeen.started[k], cancelSeen.release[k] = started, release
	return started, release
}

// waitCancel starts, then waits for its context; how it returns is its
// mode: "ctx" its context's error, "other" an error of its own, "ignore"
// a value once the test releases it.
var waitCancel = task.Define("workertest.cancel", func(ctx context.Context, a [2]string) (string, error) {
	key, mode := a[0], a[1]
	cancelSeen.Lock()
	started, release := cancelSeen.started[key], cancelSeen.release[key]
	cancelSeen.Unlock()
	started <- struct{}{}
	<-ctx.Done()
	cancelSeen.Lock()
	cancelSeen.cause[key] = context.Cause(ctx)
	cancelSeen.Unlock()
	switch mode {
	case "ctx":
		return "", ctx.Err()
	case "other":
		return "", errors.New("cleanup failed")
	}
	<-release
	return "finished anyway", nil
}, task.MaxAttempts(3))

// TestCancelRunningTasks: a worker told of a cancel stops the task within
// a round trip (the lease, a minute, is not renewed meanwhile): a task
// that returns its context's error ends CANCELLED, one that fails
// otherwise ends FAILED without a retry, one that ignores the cancel and
// returns a value ends COMPLETE. Each sees task.ErrCancelled as its
// context's cause.
func TestCancelRunningTasks(t *testing.T) {
	s := redistest.Start(t)
	c := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: s.Addr()})
	b := broker.New(c, broker.Options{})
	task.Configure(map[string]task.Backend{"default": b})
	t.Cleanup(func() {
		task.Configure(nil)
		_ = b.Close() // its Result.Wait subscription
		_ = c.Close()
	})
	e := &env{t: t, b: b, ctx: context.Background()}
	_, stop, _ := e.start(worker.Options{Concurrency: 3, LeaseDuration: time.Minute})
	defer stop()

	type run struct {
		mode    string
		want    task.Status
		started chan struct{}
		release chan struct{}
		res     *task.Result[string]
	}
	runs := []*run{{mode: "ctx", want: task.StatusCancelled}, {mode: "other", want: task.StatusFailed}, {mode: "ignore", want: task.StatusComplete}}
	for _, r := range runs {
		r.started, r.release = cancelKey(t, r.mode)
		r.res = must[*task.Result[string]](t)(waitCancel.Enqueue(e.ctx, [2]string{t.Name() + "/" + r.mode, r.mode}))
	}
	for _, r := range runs {
		recv(t, r.started, r.mode+" task to start")
	}
	for _, r := range runs {
		if err := r.res.Cancel(e.ctx); err != nil || r.res.Status != task.StatusRunning || !r.res.CancelRequested {
			t.Fatalf("Cancel of the running %s task = %v (%s, requested %v)", r.mode, err, r.res.Status, r.res.CancelRequested)
		}
	}
	close(runs[2].release)
	for _, r := range runs {
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		err := r.res.Wait(ctx, 0)
		cancel()
		if err != nil {
			t.Fatalf("%s task: Wait: %v", r.mode, err)
		}
		if r.res.Status != r.want || r.res.Attempts != 1 {
			t.Errorf("%s task ended %s after %d attempts; want %s after 1", r.mode, r.res.Status, r.res.Attempts, r.want)
		}
		cancelSeen.Lock()
		cause := cancelSeen.cause[t.Name()+"/"+r.mode]
		cancelSeen.Unlock()
		if !errors.Is(cause, task.ErrCancelled) {
			t.Errorf("%s task: its context's cause is %v, want task.ErrCancelled", r.mode, cause)
		}
	}
	if _, err := runs[0].res.Value(); !errors.Is(err, task.ErrCancelled) {
		t.Errorf("Value of the cancelled task = %v, want ErrCancelled", err)
	}
	if v, err := runs[2].res.Value(); err != nil || v != "finished anyway" {
		t.Errorf("Value of the task that ignored its cancel = %q, %v", v, err)
	}
	if err := runs[1].res.Err; err == nil || err.Message != "cleanup failed" {
		t.Errorf("error of the task that failed after its cancel = %v", err)
	}
}

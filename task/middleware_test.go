package task_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
)

// trail records what middleware and tasks did, in order; it is shared by
// the layers of one test.
type trail struct {
	mu  sync.Mutex
	got []string
}

func (tr *trail) add(s string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.got = append(tr.got, s)
}

func (tr *trail) want(t *testing.T, what string, want ...string) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if !slices.Equal(tr.got, want) {
		t.Errorf("%s:\n got %v\nwant %v", what, tr.got, want)
	}
	tr.got = nil
}

// enqueueLayer is enqueue middleware that notes its entry and its exit.
func (tr *trail) enqueueLayer(name string) task.EnqueueMiddleware {
	return func(next task.EnqueueFunc) task.EnqueueFunc {
		return func(ctx context.Context, b task.Backend, msgs []*task.Message) error {
			tr.add(fmt.Sprintf("%s>%d", name, len(msgs)))
			err := next(ctx, b, msgs)
			tr.add("<" + name)
			return err
		}
	}
}

// runLayer is run middleware that notes its entry and its exit.
func (tr *trail) runLayer(name string) task.RunMiddleware {
	return func(next task.RunFunc) task.RunFunc {
		return func(ctx context.Context, r *task.RawResult) ([]byte, error) {
			tr.add(name + ">")
			v, err := next(ctx, r)
			tr.add("<" + name)
			return v, err
		}
	}
}

// seen is run middleware that keeps the error of the last attempt it saw.
type seen struct {
	mu  sync.Mutex
	err error
	n   int
}

func (s *seen) layer(next task.RunFunc) task.RunFunc {
	return func(ctx context.Context, r *task.RawResult) ([]byte, error) {
		v, err := next(ctx, r)
		s.mu.Lock()
		s.err, s.n = err, s.n+1
		s.mu.Unlock()
		return v, err
	}
}

func (s *seen) taskError(t *testing.T) *task.Error {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var e *task.Error
	if !errors.As(s.err, &e) {
		t.Fatalf("the middleware saw %v (%T), want a *task.Error", s.err, s.err)
	}
	return e
}

// useImmediate makes an ImmediateBackend with opts the "default" backend
// for the test.
func useImmediate(t *testing.T, opts task.BackendOptions) {
	t.Helper()
	configure(t, map[string]task.Backend{task.DefaultBackendName: task.NewImmediateBackend(task.DefaultBackendName, opts)})
}

func TestEnqueueMiddlewareRunsProcessWideFirstThenTheBackendsOwnEachInTheOrderGiven(t *testing.T) {
	task.IsolateMiddleware(t)
	tr := &trail{}
	d := useDummy(t, task.BackendOptions{EnqueueMiddleware: []task.EnqueueMiddleware{tr.enqueueLayer("b1"), nil, tr.enqueueLayer("b2")}})
	task.UseEnqueue(tr.enqueueLayer("g1"))
	task.UseEnqueue(tr.enqueueLayer("g2"), tr.enqueueLayer("g3"))
	defer task.OnEnqueued(func(ctx context.Context, r *task.RawResult) { tr.add("enqueued hook") })()
	tk := task.Define(taskName(t, "t"), identity[int])

	if _, err := tk.Enqueue(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	tr.want(t, "Enqueue", "g1>1", "g2>1", "g3>1", "b1>1", "b2>1", "<b2", "<b1", "<g3", "<g2", "<g1", "enqueued hook")

	// EnqueueMany goes through the chain once, with every message.
	if _, err := tk.EnqueueMany(context.Background(), []int{2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	tr.want(t, "EnqueueMany", "g1>3", "g2>3", "g3>3", "b1>3", "b2>3", "<b2", "<b1", "<g3", "<g2", "<g1",
		"enqueued hook", "enqueued hook", "enqueued hook")
	if n := len(d.Results()); n != 4 {
		t.Errorf("stored %d tasks, want 4", n)
	}
}

// On a backend with EnqueueMany (Redis), the chain wraps the one batch call.
func TestEnqueueMiddlewareWrapsTheBatchCallOfABatchBackend(t *testing.T) {
	task.IsolateMiddleware(t)
	tr := &trail{}
	task.UseEnqueue(tr.enqueueLayer("g"))
	bb := &batchBackend{fakeBackend: newFakeBackend("default")}
	configure(t, map[string]task.Backend{"default": bb})
	tk := task.Define(taskName(t, "t"), identity[int])
	if _, err := tk.EnqueueMany(context.Background(), []int{1, 2}); err != nil {
		t.Fatal(err)
	}
	tr.want(t, "EnqueueMany", "g>2", "<g")
	if len(bb.batches) != 1 || len(bb.batches[0]) != 2 || bb.enqueueCount() != 0 {
		t.Errorf("%d batches, %d single enqueues; want one batch of 2", len(bb.batches), bb.enqueueCount())
	}
}

func TestRunMiddlewareRunsProcessWideFirstThenTheBackendsOwnAroundTheTaskAfterTheStartedHook(t *testing.T) {
	task.IsolateMiddleware(t)
	tr := &trail{}
	useImmediate(t, task.BackendOptions{RunMiddleware: []task.RunMiddleware{tr.runLayer("b1"), tr.runLayer("b2")}})
	task.UseRun(tr.runLayer("g1"), nil)
	task.UseRun(tr.runLayer("g2"))
	tk := task.Define(taskName(t, "t"), func(ctx context.Context, n int) (int, error) {
		tr.add("task")
		return n, nil
	})
	defer task.OnStarted(func(ctx context.Context, r *task.RawResult) {
		if r.TaskName == tk.Name() {
			tr.add("started hook")
		}
	})()
	defer task.OnFinished(func(ctx context.Context, r *task.RawResult) {
		if r.TaskName == tk.Name() {
			tr.add("finished hook")
		}
	})()

	res, err := tk.Enqueue(context.Background(), 7)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := res.Value(); v != 7 || err != nil {
		t.Errorf("Value() = %d, %v", v, err)
	}
	tr.want(t, "an attempt on the ImmediateBackend",
		"started hook", "g1>", "g2>", "b1>", "b2>", "task", "<b2", "<b1", "<g2", "<g1", "finished hook")
}

// ExecuteWith is what workers call: the caller's middleware runs inside
// the process-wide one.
func TestExecuteWithRunsTheCallersMiddlewareInsideTheProcessWideOne(t *testing.T) {
	task.IsolateMiddleware(t)
	tr := &trail{}
	task.UseRun(tr.runLayer("g"))
	tk := task.Define(taskName(t, "t"), func(ctx context.Context, n int) (int, error) {
		tr.add("task")
		return n, nil
	})
	r := running(t, tk.Name(), 1, task.Limits{}, 1, nil)
	task.ExecuteWith(context.Background(), r, tr.runLayer("w1"), tr.runLayer("w2"))
	if r.Status != task.StatusComplete {
		t.Fatalf("status %s, %v", r.Status, r.Err)
	}
	tr.want(t, "ExecuteWith", "g>", "w1>", "w2>", "task", "<w2", "<w1", "<g")

	r = running(t, tk.Name(), 1, task.Limits{}, 1, nil)
	task.Execute(context.Background(), r)
	tr.want(t, "Execute: the process-wide middleware alone", "g>", "task", "<g")
}

type traceKey struct{}

func TestTheTaskSeesTheContextItsRunMiddlewarePassesOn(t *testing.T) {
	task.IsolateMiddleware(t)
	deadline := time.Now().Add(time.Hour)
	useImmediate(t, task.BackendOptions{RunMiddleware: []task.RunMiddleware{func(next task.RunFunc) task.RunFunc {
		return func(ctx context.Context, r *task.RawResult) ([]byte, error) {
			ctx, cancel := context.WithDeadline(context.WithValue(ctx, traceKey{}, "span-1"), deadline)
			defer cancel()
			return next(ctx, r)
		}
	}}})
	tk := task.Define(taskName(t, "t"), func(ctx context.Context, _ int) (string, error) {
		d, _ := ctx.Deadline()
		info, _ := task.InfoFrom(ctx)
		return fmt.Sprintf("%v %v %d", ctx.Value(traceKey{}), d.Equal(deadline), info.Attempt), nil
	})
	res, err := tk.Enqueue(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := res.Value(); v != "span-1 true 1" || err != nil {
		t.Errorf("the task saw %q, %v; want the value, the deadline and its Info", v, err)
	}
}

// A middleware sees Info and ResultFrom, set before the chain, and the
// attempt's deadline (Timeout), which bounds the chain and the task.
func TestRunMiddlewareSeesTheTasksInfoAndTheAttemptsDeadline(t *testing.T) {
	task.IsolateMiddleware(t)
	var mu sync.Mutex
	var got string
	task.UseRun(func(next task.RunFunc) task.RunFunc {
		return func(ctx context.Context, r *task.RawResult) ([]byte, error) {
			info, _ := task.InfoFrom(ctx)
			view, _ := task.ResultFrom(ctx)
			d, ok := ctx.Deadline()
			mu.Lock()
			got = fmt.Sprintf("%s %d %s %v %v", info.TaskName, info.Attempt, view.Status, ok, time.Until(d) > 50*time.Minute)
			mu.Unlock()
			return next(ctx, r)
		}
	})
	tk := task.Define(taskName(t, "t"), identity[int], task.Timeout(time.Hour))
	if _, err := tk.Enqueue(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := tk.Name() + " 1 RUNNING true true"; got != want {
		t.Errorf("the middleware saw %q, want %q", got, want)
	}
}

// The Timeout covers the middleware too: one that waits for its context
// makes the attempt time out.
func TestTheTimeoutBoundsTheRunMiddlewareAndTheTaskTogether(t *testing.T) {
	task.IsolateMiddleware(t)
	task.UseRun(func(next task.RunFunc) task.RunFunc {
		return func(ctx context.Context, r *task.RawResult) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}
	})
	tk := task.Define(taskName(t, "t"), identity[int], task.Timeout(20*time.Millisecond))
	res, err := tk.Enqueue(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != task.StatusFailed || res.Err == nil || res.Err.Type != task.ErrorTypeTimeout {
		t.Errorf("result %s %v, want FAILED with %s", res.Status, res.Err, task.ErrorTypeTimeout)
	}
}

var errRefused = errors.New("refused by policy")

func TestAnEnqueueMiddlewareThatRefusesStoresNothingAndTheCallerGetsItsError(t *testing.T) {
	task.IsolateMiddleware(t)
	refuse := func(next task.EnqueueFunc) task.EnqueueFunc {
		return func(ctx context.Context, b task.Backend, msgs []*task.Message) error { return errRefused }
	}
	d := useDummy(t, task.BackendOptions{EnqueueMiddleware: []task.EnqueueMiddleware{refuse}})
	tk := task.Define(taskName(t, "t"), identity[int])
	var hooked int
	defer task.OnEnqueued(func(ctx context.Context, r *task.RawResult) {
		if r.TaskName == tk.Name() {
			hooked++
		}
	})()

	res, err := tk.Enqueue(context.Background(), 1)
	if !errors.Is(err, errRefused) || res != nil {
		t.Errorf("Enqueue: %v, %v; want errRefused", res, err)
	}
	rs, err := tk.EnqueueMany(context.Background(), []int{1, 2})
	if !errors.Is(err, errRefused) || rs != nil {
		t.Errorf("EnqueueMany: %v, %v; want errRefused", rs, err)
	}
	if n := len(d.Results()); n != 0 || hooked != 0 {
		t.Errorf("stored %d tasks, enqueued hook fired %d times; want none", n, hooked)
	}
}

// An enqueue middleware sees the outcome of the store: here, the
// backend's error, passed on to the caller.
func TestEnqueueMiddlewareSeesTheBackendsError(t *testing.T) {
	task.IsolateMiddleware(t)
	f := newFakeBackend("default")
	f.enqueueErr = errors.New("redis down")
	configure(t, map[string]task.Backend{"default": f})
	var saw error
	task.UseEnqueue(func(next task.EnqueueFunc) task.EnqueueFunc {
		return func(ctx context.Context, b task.Backend, msgs []*task.Message) error {
			saw = next(ctx, b, msgs)
			return saw
		}
	})
	tk := task.Define(taskName(t, "t"), identity[int])
	_, err := tk.Enqueue(context.Background(), 1)
	if saw == nil || !errors.Is(err, saw) {
		t.Errorf("the middleware saw %v, the caller got %v; want the backend's error in both", saw, err)
	}
}

// stamp is enqueue middleware that sets metadata key to value on every
// message.
func stamp(key, value string) task.EnqueueMiddleware {
	return func(next task.EnqueueFunc) task.EnqueueFunc {
		return func(ctx context.Context, b task.Backend, msgs []*task.Message) error {
			for _, m := range msgs {
				if m.Metadata == nil {
					m.Metadata = task.Metadata{}
				}
				m.Metadata[key] = value
			}
			return next(ctx, b, msgs)
		}
	}
}

func TestMetadataAddedByEnqueueMiddlewareIsStoredAndReachesTheRunMiddlewareAndTheTask(t *testing.T) {
	task.IsolateMiddleware(t)
	var atRun task.Metadata
	useImmediate(t, task.BackendOptions{
		EnqueueMiddleware: []task.EnqueueMiddleware{stamp("traceparent", "00-abc-01")},
		RunMiddleware: []task.RunMiddleware{func(next task.RunFunc) task.RunFunc {
			return func(ctx context.Context, r *task.RawResult) ([]byte, error) {
				atRun = maps.Clone(r.Metadata)
				return next(ctx, r)
			}
		}},
	})
	tk := task.Define(taskName(t, "t"), func(ctx context.Context, _ int) (string, error) {
		r, _ := task.ResultFrom(ctx)
		return r.Metadata["traceparent"] + " " + r.Metadata["team"], nil
	}, task.Meta("team", "billing"))
	res, err := tk.Enqueue(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := task.Metadata{"traceparent": "00-abc-01", "team": "billing"}
	if !maps.Equal(res.Metadata, want) || !maps.Equal(atRun, want) {
		t.Errorf("result metadata %v, the run middleware saw %v; want %v", res.Metadata, atRun, want)
	}
	if v, _ := res.Value(); v != "00-abc-01 billing" {
		t.Errorf("the task saw %q", v)
	}
	// The middleware changed the message's copy, not the task's.
	d := useDummy(t, task.BackendOptions{})
	if _, err := tk.Enqueue(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if got := d.Results()[0].Metadata; !maps.Equal(got, task.Metadata{"team": "billing"}) {
		t.Errorf("on a backend without the middleware: %v, want the task's own metadata", got)
	}
}

func TestMetadataBoundsAreCheckedAgainAfterTheEnqueueMiddleware(t *testing.T) {
	task.IsolateMiddleware(t)
	var saw error
	observe := func(next task.EnqueueFunc) task.EnqueueFunc {
		return func(ctx context.Context, b task.Backend, msgs []*task.Message) error {
			saw = next(ctx, b, msgs)
			return saw
		}
	}
	tooMany := func(next task.EnqueueFunc) task.EnqueueFunc {
		return func(ctx context.Context, b task.Backend, msgs []*task.Message) error {
			m := msgs[len(msgs)-1]
			m.Metadata = task.Metadata{}
			for i := range task.MaxMetadataKeys + 1 {
				m.Metadata[fmt.Sprint("k", i)] = "v"
			}
			return next(ctx, b, msgs)
		}
	}
	d := useDummy(t, task.BackendOptions{EnqueueMiddleware: []task.EnqueueMiddleware{observe}})
	tk := task.Define(taskName(t, "t"), identity[int])
	for name, mw := range map[string]task.EnqueueMiddleware{
		"too many keys": tooMany,
		"long key":      stamp(strings.Repeat("k", task.MaxMetadataKey+1), "v"),
		"too large":     stamp("big", strings.Repeat("v", task.MaxMetadataSize)),
		"not UTF-8":     stamp("bad", "\xff"),
	} {
		task.IsolateMiddleware(t)
		task.UseEnqueue(mw)
		_, err := tk.Enqueue(context.Background(), 1)
		if !errors.Is(err, task.ErrInvalidTask) || !errors.Is(saw, task.ErrInvalidTask) {
			t.Errorf("%s: Enqueue: %v (the middleware saw %v); want ErrInvalidTask", name, err, saw)
		}
		wantContains(t, name, fmt.Sprint(err), "after the enqueue middleware")
		_, err = tk.EnqueueMany(context.Background(), []int{1, 2})
		if !errors.Is(err, task.ErrInvalidTask) {
			t.Errorf("%s: EnqueueMany: %v; want ErrInvalidTask", name, err)
		}
	}
	if n := len(d.Results()); n != 0 {
		t.Errorf("stored %d tasks, want none", n)
	}
}

func TestRunMiddlewareSeesAPanicOfTheTaskAsAnError(t *testing.T) {
	task.IsolateMiddleware(t)
	s := &seen{}
	useImmediate(t, task.BackendOptions{RunMiddleware: []task.RunMiddleware{s.layer}})
	tk := task.Define(taskName(t, "t"), func(ctx context.Context, _ int) (int, error) { panic("boom") })
	res, err := tk.Enqueue(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if e := s.taskError(t); e.Type != task.ErrorTypePanic || !strings.Contains(e.Message, "boom") {
		t.Errorf("the middleware saw %+v", e)
	}
	if res.Status != task.StatusFailed || res.Err == nil || res.Err.Type != task.ErrorTypePanic {
		t.Errorf("result %s %v", res.Status, res.Err)
	}
}

func TestRunMiddlewareSeesAGoexitOfTheTaskAsAnErrorAndExecuteReturns(t *testing.T) {
	task.IsolateMiddleware(t)
	s := &seen{}
	tk := task.Define(taskName(t, "t"), func(ctx context.Context, _ int) (int, error) {
		runtime.Goexit()
		return 0, nil
	})
	for _, timeout := range []time.Duration{0, time.Minute} {
		r := running(t, tk.Name(), 0, task.Limits{MaxAttempts: 1, Timeout: timeout}, 1, nil)
		if !apart(t, "ExecuteWith", func() { task.ExecuteWith(context.Background(), r, s.layer) }) {
			t.Fatalf("timeout %v: ExecuteWith did not return; under middleware the task runs in a goroutine of its own", timeout)
		}
		wantGoexit(t, fmt.Sprintf("timeout %v: the middleware's error", timeout), s.taskError(t))
		wantGoexit(t, fmt.Sprintf("timeout %v: the result", timeout), r.Err)
		if r.Status != task.StatusFailed {
			t.Errorf("timeout %v: status %s", timeout, r.Status)
		}
	}
}

// An outer middleware may recover a panic of an inner one; a panic no
// middleware recovers fails the attempt, and Execute does not panic.
func TestRunMiddlewarePanicsAreRecoverableAndOtherwiseFailTheAttempt(t *testing.T) {
	task.IsolateMiddleware(t)
	tk := task.Define(taskName(t, "t"), identity[int])
	boom := func(next task.RunFunc) task.RunFunc {
		return func(ctx context.Context, r *task.RawResult) ([]byte, error) { panic("middleware boom") }
	}
	recoverer := func(next task.RunFunc) task.RunFunc {
		return func(ctx context.Context, r *task.RawResult) (v []byte, err error) {
			defer func() {
				if p := recover(); p != nil {
					v, err = nil, fmt.Errorf("recovered: %v", p)
				}
			}()
			return next(ctx, r)
		}
	}
	r := running(t, tk.Name(), 1, task.Limits{}, 1, nil)
	task.ExecuteWith(context.Background(), r, recoverer, boom)
	if r.Status != task.StatusFailed || r.Err == nil || r.Err.Message != "recovered: middleware boom" {
		t.Errorf("recovered: %s %+v", r.Status, r.Err)
	}
	r = running(t, tk.Name(), 1, task.Limits{}, 1, nil)
	task.ExecuteWith(context.Background(), r, boom)
	if r.Status != task.StatusFailed || r.Err == nil || r.Err.Type != task.ErrorTypePanic || !strings.Contains(r.Err.Message, "middleware boom") {
		t.Errorf("not recovered: %s %+v", r.Status, r.Err)
	}
}

// A middleware that returns without calling next fails the attempt with
// its error, retried by the usual rules: here the second attempt runs the
// task.
func TestRunMiddlewareCanShortCircuitAnAttemptWhichIsThenRetried(t *testing.T) {
	task.IsolateMiddleware(t)
	gate := func(next task.RunFunc) task.RunFunc {
		return func(ctx context.Context, r *task.RawResult) ([]byte, error) {
			if r.Attempts == 1 {
				return nil, errors.New("rate limited")
			}
			return next(ctx, r)
		}
	}
	useImmediate(t, task.BackendOptions{RunMiddleware: []task.RunMiddleware{gate}})
	calls := 0
	tk := task.Define(taskName(t, "t"), func(ctx context.Context, n int) (int, error) {
		calls++
		return n, nil
	}, task.MaxAttempts(2))
	res, err := tk.Enqueue(context.Background(), 5)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != task.StatusComplete || res.Attempts != 2 || calls != 1 || len(res.Errors) != 1 || res.Errors[0].Message != "rate limited" {
		t.Errorf("result %s after %d attempts, %d calls, errors %v; want COMPLETE on the second, one call", res.Status, res.Attempts, calls, res.Errors)
	}

	// Without attempts left, the attempt's failure is final.
	once := task.Define(taskName(t, "once"), identity[int])
	res, err = once.Enqueue(context.Background(), 5)
	if err != nil || res.Status != task.StatusFailed || res.Err.Message != "rate limited" {
		t.Errorf("single attempt: %v, %s %v", err, res.Status, res.Err)
	}
}

// The ImmediateBackend and workers run the same chain: a test on the
// ImmediateBackend sees what the process-wide middleware does on workers.
func TestTheImmediateBackendRunsTheProcessWideRunMiddleware(t *testing.T) {
	task.IsolateMiddleware(t)
	tr := &trail{}
	task.UseRun(tr.runLayer("g"))
	configure(t, nil) // "default" is the implicit ImmediateBackend
	tk := task.Define(taskName(t, "t"), identity[int])
	if _, err := tk.Enqueue(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	tr.want(t, "an Enqueue on the default ImmediateBackend", "g>", "<g")
}

// The DummyBackend runs nothing: its enqueue middleware runs, its run
// middleware never does.
func TestTheDummyBackendRunsItsEnqueueMiddlewareOnly(t *testing.T) {
	task.IsolateMiddleware(t)
	tr := &trail{}
	d := useDummy(t, task.BackendOptions{
		EnqueueMiddleware: []task.EnqueueMiddleware{tr.enqueueLayer("e"), stamp("k", "v")},
		RunMiddleware:     []task.RunMiddleware{tr.runLayer("r")},
	})
	tk := task.Define(taskName(t, "t"), identity[int])
	if _, err := tk.Enqueue(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	tr.want(t, "Enqueue on the DummyBackend", "e>1", "<e")
	if got := d.Results()[0]; got.Status != task.StatusNew || got.Metadata["k"] != "v" {
		t.Errorf("stored %s with metadata %v", got.Status, got.Metadata)
	}
}

package task_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

// The task registry is process-global and Define panics on a duplicate, so
// every test defines its tasks under names of its own; the sequence number
// keeps them unique under -count=N too.
var nameSeq atomic.Int64

func taskName(t testing.TB, suffix string) string {
	return fmt.Sprintf("%s.%s#%d", t.Name(), suffix, nameSeq.Add(1))
}

// configure installs backends for the duration of the test. Tests that call
// it must not run in parallel.
func configure(t testing.TB, backends map[string]task.Backend) {
	t.Helper()
	task.Configure(backends)
	t.Cleanup(func() { task.Configure(nil) })
}

// useDummy makes a fresh DummyBackend the "default" backend for the test.
func useDummy(t testing.TB, opts task.BackendOptions) *task.DummyBackend {
	t.Helper()
	d := task.NewDummyBackend(task.DefaultBackendName, opts)
	configure(t, map[string]task.Backend{task.DefaultBackendName: d})
	return d
}

// mustPanic calls f and returns the panic value as text; it fails the test
// if f returns normally.
func mustPanic(t testing.TB, f func()) (msg string) {
	t.Helper()
	defer func() {
		p := recover()
		if p == nil {
			t.Fatalf("did not panic")
		}
		msg = fmt.Sprint(p)
	}()
	f()
	return ""
}

func wantContains(t testing.TB, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s %q does not contain %q", what, s, sub)
		}
	}
}

func identity[T any](_ context.Context, v T) (T, error) { return v, nil }

// fakeBackend is a backend with a worker the test drives by hand: claim
// marks a stored task RUNNING as a worker would, complete runs it with
// task.Execute and stores the outcome. It stores copies, like a real
// backend, so a Result only sees changes through Refresh.
type fakeBackend struct {
	name       string
	features   task.Features
	queues     []string
	ser        serializer.Serializer
	enqueueErr error // returned by Enqueue when set

	mu       sync.Mutex
	results  map[string]*task.RawResult
	order    []string
	enqueues int
}

func newFakeBackend(name string) *fakeBackend {
	return &fakeBackend{name: name, features: task.Features{Defer: true, GetResult: true, Priority: true}}
}

func (f *fakeBackend) Name() string            { return f.name }
func (f *fakeBackend) Features() task.Features { return f.features }
func (f *fakeBackend) Queues() []string        { return f.queues }

// Serializer implements task.SerializerProvider (nil: the default).
func (f *fakeBackend) Serializer() serializer.Serializer { return f.ser }

func (f *fakeBackend) Enqueue(ctx context.Context, msg *task.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enqueues++
	if f.enqueueErr != nil {
		return f.enqueueErr
	}
	f.storeLocked(task.NewRawResult(msg, f.ser))
	return nil
}

func (f *fakeBackend) GetResult(ctx context.Context, id string) (*task.RawResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.results[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", task.ErrResultNotFound, id)
	}
	return copyRaw(r), nil
}

func (f *fakeBackend) storeLocked(r *task.RawResult) {
	if f.results == nil {
		f.results = map[string]*task.RawResult{}
	}
	if _, ok := f.results[r.ID]; !ok {
		f.order = append(f.order, r.ID)
	}
	f.results[r.ID] = copyRaw(r)
}

func (f *fakeBackend) store(r *task.RawResult) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.storeLocked(r)
}

func (f *fakeBackend) enqueueCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.enqueues
}

func (f *fakeBackend) stored() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.results)
}

// claim does what a worker does when it picks the task up.
func (f *fakeBackend) claim(t testing.TB, id, workerID string) {
	t.Helper()
	r, err := f.GetResult(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	r.Status, r.StartedAt = task.StatusRunning, time.Now()
	r.Attempts++
	r.WorkerIDs = append(r.WorkerIDs, workerID)
	f.store(r)
}

// complete runs a claimed task and stores its outcome, as a worker does.
func (f *fakeBackend) complete(t testing.TB, ctx context.Context, id string) *task.RawResult {
	t.Helper()
	r, err := f.GetResult(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	task.Execute(ctx, r)
	f.store(r)
	task.Finished(ctx, r)
	return r
}

// batchBackend is a fakeBackend that implements task.BatchEnqueuer.
type batchBackend struct {
	*fakeBackend
	batches [][]*task.Message
}

func (b *batchBackend) EnqueueMany(ctx context.Context, msgs []*task.Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batches = append(b.batches, slices.Clone(msgs))
	for _, m := range msgs {
		b.storeLocked(task.NewRawResult(m, b.ser))
	}
	return nil
}

// checkingBackend is a DummyBackend that fails its health check.
type checkingBackend struct {
	*task.DummyBackend
	err error
}

func (c checkingBackend) Check(ctx context.Context) error { return c.err }

func copyRaw(r *task.RawResult) *task.RawResult {
	c := *r
	c.WorkerIDs = slices.Clone(r.WorkerIDs)
	if r.Err != nil {
		e := *r.Err
		c.Err = &e
	}
	return &c
}

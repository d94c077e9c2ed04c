package task

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gotasks/gotasks/serializer"
)

// memoryStore keeps results in process memory for the in-process backends.
type memoryStore struct {
	name string
	opts BackendOptions
	mu   sync.Mutex
	byID map[string]*RawResult
	ids  []string // enqueue order

	unique  map[string]uniqueEntry // Uniqueness.Key → holder
	running map[string]bool        // Immediate: tasks being run, which hold their unique keys
	now     func() time.Time       // nil: time.Now
}

func (m *memoryStore) Name() string     { return m.name }
func (m *memoryStore) MaxArgsSize() int { return m.opts.MaxArgsSize }
func (m *memoryStore) Queues() []string { return slices.Clone(m.opts.Queues) }
func (m *memoryStore) Serializer() serializer.Serializer {
	if m.opts.Serializer == nil {
		return serializer.Default
	}
	return m.opts.Serializer
}

func (m *memoryStore) put(r *RawResult) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.putLocked(r)
}

func (m *memoryStore) putLocked(r *RawResult) {
	if m.byID == nil {
		m.byID = map[string]*RawResult{}
	}
	if _, ok := m.byID[r.ID]; !ok {
		m.ids = append(m.ids, r.ID)
	}
	m.byID[r.ID] = r.clone()
}

func (m *memoryStore) get(id string) (*RawResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.byID[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q in backend %q", ErrResultNotFound, id, m.name)
	}
	return r.clone(), nil
}

func (m *memoryStore) all() []*RawResult {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*RawResult, 0, len(m.ids))
	for _, id := range m.ids {
		out = append(out, m.byID[id].clone())
	}
	return out
}

// ImmediateWorkerID is the worker id the ImmediateBackend records.
const ImmediateWorkerID = "immediate"

// immediateBackend runs each task at Enqueue while the caller waits.
type immediateBackend struct {
	memoryStore
}

// NewImmediateBackend returns a backend that runs each task as it is
// enqueued, while the caller waits, so Enqueue returns a finished result
// (FAILED with gotasks.Goexit for a task that calls runtime.Goexit). Retries
// (MaxAttempts) run at once, without backoff. It is
// the default when nothing is configured, which makes tasks work in
// development and tests without a worker. Arguments and return values still
// go through the serializer, so what works here also works on Redis.
func NewImmediateBackend(name string, opts BackendOptions) Backend {
	return &immediateBackend{memoryStore{name: name, opts: opts}}
}

// Features: no deferral (there is nothing to wait in) and no results from
// other processes. Unique tasks are supported (SupportsUnique), but since each has finished
// when Enqueue returns, only a UniqueFor window (or an enqueue from inside
// the running task) makes a duplicate.
func (b *immediateBackend) Features() Features {
	return Features{Defer: false, GetResult: false, Priority: true}
}

// SupportsUnique implements UniqueSupporter.
func (b *immediateBackend) SupportsUnique() bool { return true }

// Enqueue runs the task now, unless it is a duplicate of a unique task.
func (b *immediateBackend) Enqueue(ctx context.Context, msg *Message) error {
	if msg.Unique != nil {
		b.mu.Lock()
		b.claimUnique(msg, b.clock(), func(id string) bool { return b.running[id] })
		if msg.DuplicateOf == "" {
			if b.running == nil {
				b.running = map[string]bool{}
			}
			b.running[msg.ID] = true
		}
		b.mu.Unlock()
		if msg.DuplicateOf != "" {
			return nil
		}
		defer func() {
			b.mu.Lock()
			delete(b.running, msg.ID)
			b.mu.Unlock()
		}()
	}
	r := NewRawResult(msg, b.Serializer())
	emit(ctx, hookEnqueued, r.clone())
	// Retries (MaxAttempts) run at once: the caller is waiting.
	for r.Status == StatusNew {
		r.Status, r.StartedAt, r.Attempts = StatusRunning, time.Now(), r.Attempts+1
		r.WorkerIDs = append(r.WorkerIDs, ImmediateWorkerID)
		executeApart(ctx, r)
	}
	// Kept only until Task.Enqueue picks it up with take.
	b.put(r)
	Finished(ctx, r)
	return nil
}

// executeApart runs Execute in a goroutine of its own and waits for it: a
// task that calls runtime.Goexit ends that goroutine, not the caller's,
// and Execute has recorded the failure in r by then. (A goroutine per
// attempt costs little next to the serializing around it.)
func executeApart(ctx context.Context, r *RawResult) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		Execute(ctx, r)
	}()
	<-done
}

// take removes and returns the finished result of msg id; results do not
// pile up in a long-running process.
func (b *immediateBackend) take(id string) *RawResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.byID[id]
	delete(b.byID, id)
	b.ids = slices.DeleteFunc(b.ids, func(x string) bool { return x == id })
	return r
}

// GetResult is not supported: results live only in the Result that Enqueue
// returned.
func (b *immediateBackend) GetResult(ctx context.Context, id string) (*RawResult, error) {
	return nil, fmt.Errorf("backend %q (immediate) keeps no results: %w", b.name, ErrNotSupported)
}

// DummyBackend stores enqueued tasks without running them, for tests of
// code that enqueues: inspect what was enqueued with Results.
type DummyBackend struct {
	memoryStore
}

// NewDummyBackend returns a backend that stores tasks and never runs them.
func NewDummyBackend(name string, opts BackendOptions) *DummyBackend {
	return &DummyBackend{memoryStore{name: name, opts: opts}}
}

// Features: everything, since nothing runs.
func (d *DummyBackend) Features() Features {
	return Features{Defer: true, GetResult: true, Priority: true}
}

// SupportsUnique implements UniqueSupporter.
func (d *DummyBackend) SupportsUnique() bool { return true }

// Enqueue stores msg as a NEW result, unless it is a duplicate of a unique
// task. Nothing runs, so a unique task holds its key until Clear, or until
// its UniqueFor window has passed.
func (d *DummyBackend) Enqueue(ctx context.Context, msg *Message) error {
	// One critical section, so that a concurrent duplicate sees the holder
	// stored, not a key whose task does not exist yet.
	d.mu.Lock()
	defer d.mu.Unlock()
	msg.Existing = false
	if r, ok := d.byID[msg.ID]; ok {
		if r.TaskName != msg.TaskName || !bytes.Equal(r.Args, msg.Args) {
			return fmt.Errorf("%w: %s", ErrDuplicateID, msg.ID)
		}
		msg.Existing = true
		return nil
	}
	d.claimUnique(msg, d.clock(), func(id string) bool {
		r, ok := d.byID[id]
		return ok && !r.IsFinished()
	})
	if msg.DuplicateOf == "" {
		d.putLocked(NewRawResult(msg, d.Serializer()))
	}
	return nil
}

// GetResult returns the stored result with this id.
func (d *DummyBackend) GetResult(ctx context.Context, id string) (*RawResult, error) {
	return d.get(id)
}

// Results returns every stored result, oldest first.
func (d *DummyBackend) Results() []*RawResult { return d.all() }

// Clear forgets every stored result.
func (d *DummyBackend) Clear() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.byID, d.ids, d.unique = nil, nil, nil
}

package task

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
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

// EnqueueMiddleware implements EnqueueMiddlewareProvider.
func (m *memoryStore) EnqueueMiddleware() []EnqueueMiddleware { return m.opts.EnqueueMiddleware }
func (m *memoryStore) Serializer() serializer.Serializer {
	if m.opts.Serializer == nil {
		return serializer.Default
	}
	return m.opts.Serializer
}

// logger is where the backend logs: BackendOptions.Logger, else the
// default logger of the moment.
func (m *memoryStore) logger() *slog.Logger {
	if m.opts.Logger != nil {
		return m.opts.Logger
	}
	return slog.Default()
}

// logTask writes one line about r with the attributes the Redis worker
// uses (task, id, queue, attempt once started) and the backend's name and
// r's status (django-tasks' state=), followed by the key-value pairs of
// extra. Nothing is built when the level is disabled.
func (m *memoryStore) logTask(ctx context.Context, level slog.Level, msg string, r *RawResult, extra ...any) {
	l := m.logger()
	if !l.Enabled(ctx, level) {
		return
	}
	args := []any{"task", r.TaskName, "id", r.ID, "queue", r.Queue}
	if r.Attempts > 0 {
		args = append(args, "attempt", r.Attempts)
	}
	args = append(args, "backend", m.name, "status", string(r.Status))
	l.Log(ctx, level, msg, append(args, extra...)...)
}

// logEnqueued logs a message the backend stored (or, on the
// ImmediateBackend, is about to run), or the one it did not store because
// its id or unique key is taken.
func (m *memoryStore) logEnqueued(ctx context.Context, msg *Message) {
	if !m.logger().Enabled(ctx, slog.LevelDebug) {
		return
	}
	r := &RawResult{ID: msg.ID, TaskName: msg.TaskName, Queue: msg.Queue, Status: StatusNew}
	switch {
	case msg.DuplicateOf != "":
		m.logTask(ctx, slog.LevelDebug, "task not enqueued: duplicate of a unique task", r, "duplicate_of", msg.DuplicateOf)
	case msg.Existing:
		m.logTask(ctx, slog.LevelDebug, "task already enqueued (same id, name and arguments)", r)
	case !msg.RunAfter.IsZero():
		m.logTask(ctx, slog.LevelDebug, "task enqueued", r, "priority", msg.Priority, "run_after", msg.RunAfter.Format(time.RFC3339Nano))
	default:
		m.logTask(ctx, slog.LevelDebug, "task enqueued", r, "priority", msg.Priority)
	}
}

// logOutcome logs the end of r's attempt as the Redis worker does.
func (m *memoryStore) logOutcome(ctx context.Context, r *RawResult) {
	d := r.FinishedAt.Sub(r.LastAttemptedAt)
	switch r.Status {
	case StatusComplete:
		m.logTask(ctx, slog.LevelInfo, "task complete", r, "duration", d)
	case StatusNew:
		m.logTask(ctx, slog.LevelWarn, "task attempt failed; will retry", r, "duration", d, "error", failure(r.Err).Error(), "max_attempts", r.MaxAttempts)
	default:
		m.logTask(ctx, slog.LevelWarn, "task failed", r, "duration", d, "error", failure(r.Err).Error())
	}
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
//
// It logs each task as the Redis worker does (see BackendOptions.Logger):
// enqueued and started at Debug, complete at Info, failed at Warn.
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
			b.logEnqueued(ctx, msg)
			return nil
		}
		defer func() {
			b.mu.Lock()
			delete(b.running, msg.ID)
			b.mu.Unlock()
		}()
	}
	r := NewRawResult(msg, b.Serializer())
	b.logEnqueued(ctx, msg)
	emit(ctx, hookEnqueued, r.clone())
	// Retries (MaxAttempts) run at once: the caller is waiting.
	for r.Status == StatusNew {
		r.Status, r.LastAttemptedAt, r.Attempts = StatusRunning, time.Now(), r.Attempts+1
		if r.StartedAt.IsZero() {
			r.StartedAt = r.LastAttemptedAt
		}
		r.WorkerIDs = append(r.WorkerIDs, ImmediateWorkerID)
		b.logTask(ctx, slog.LevelDebug, "task started", r)
		executeApart(ctx, r, b.opts.RunMiddleware)
		b.logOutcome(ctx, r)
	}
	// Kept only until Task.Enqueue picks it up with take.
	b.put(r)
	Finished(ctx, r)
	return nil
}

// executeApart runs Execute in a goroutine of its own and waits for it: a
// task that calls runtime.Goexit ends that goroutine, not the caller's,
// and Execute has recorded the failure in r by then. (A goroutine per
// attempt costs little next to the serializing around it.) mws is the
// backend's run middleware.
func executeApart(ctx context.Context, r *RawResult, mws []RunMiddleware) {
	done := make(chan struct{})
	rep := &lastProgress{}
	go func() {
		defer close(done)
		ExecuteWith(WithProgressReporter(ctx, rep), r, mws...)
	}()
	<-done
	r.Progress = rep.final()
}

// lastProgress keeps the last progress a task reports, for backends that
// keep it with the result and write nothing meanwhile (the Immediate
// backend).
type lastProgress struct {
	mu  sync.Mutex
	p   *Progress
	end bool
}

func (l *lastProgress) Report(p Progress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.end {
		l.p = &p
	}
}

func (l *lastProgress) final() *Progress {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.end = true
	return l.p
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
// code that enqueues: inspect what was enqueued with Results. It logs each
// enqueue at Debug (see BackendOptions.Logger).
//
// Its results live in the memory of the process that enqueued them, as
// django-tasks' DummyBackend's do: GetResult (and Result.Refresh,
// Task.GetResult) finds them from anywhere in that process, which is all a
// test needs, but another process has its own, empty, DummyBackend.
// Features reports GetResult true all the same: no result is ever fetched
// from another process in a test, and code that checks the flag before
// reading results (Task's own handling of an id enqueued again, users'
// tests of code that reads results) must take the same path on the
// DummyBackend as on Redis.
type DummyBackend struct {
	memoryStore
}

// NewDummyBackend returns a backend that stores tasks and never runs them.
func NewDummyBackend(name string, opts BackendOptions) *DummyBackend {
	return &DummyBackend{memoryStore{name: name, opts: opts}}
}

// Features: everything, since nothing runs. GetResult is true although
// results are kept only in this process (see DummyBackend).
func (d *DummyBackend) Features() Features {
	return Features{Defer: true, GetResult: true, Priority: true}
}

// SupportsUnique implements UniqueSupporter.
func (d *DummyBackend) SupportsUnique() bool { return true }

// Enqueue stores msg as a NEW result, unless it is a duplicate of a unique
// task. Nothing runs, so a unique task holds its key until Clear, or until
// its UniqueFor window has passed.
func (d *DummyBackend) Enqueue(ctx context.Context, msg *Message) error {
	if err := d.store(msg); err != nil {
		return err
	}
	d.logEnqueued(ctx, msg)
	return nil
}

// store is Enqueue's one critical section, so that a concurrent duplicate
// sees the holder stored, not a key whose task does not exist yet.
func (d *DummyBackend) store(msg *Message) error {
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

// Package task defines background tasks, enqueues them on a backend and reads
// their results back: the Go equivalent of django-tasks (Django's DEP 0014).
//
// A task is an ordinary function registered by name with Define. Enqueue
// serializes its arguments and hands them to a backend; a worker process
// (package worker, with the Redis backend in package broker) finds the code
// by the task's name, runs it and stores the result, which any process can
// read back with GetResult.
package task

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// Task is a function registered for background execution. Create one with
// Define; a Task is immutable, Using returns a modified copy.
type Task[A, R any] struct {
	name string
	fn   func(ctx context.Context, args A) (R, error)
	cfg  config
}

// config is the part of a task that Options change.
type config struct {
	priority int
	queue    string
	backend  string
	runAfter time.Duration // relative delay, resolved at Enqueue
	runAt    time.Time     // absolute time; wins over runAfter when set last
	limits   Limits
	// id is the caller's id (WithID); idSet tells an empty id given by
	// mistake from none.
	id    string
	idSet bool
	// meta is the task's metadata (Meta); shared by copies, replaced (not
	// changed) by Meta.
	meta Metadata

	// Unique, UniqueKey and UniqueFor; the *Set flags tell an empty key or
	// a zero window given by mistake from one not given at all.
	unique       bool
	uniqueKey    string
	uniqueKeySet bool
	uniqueFor    time.Duration
	uniqueForSet bool

	// policy is the task's RetryPolicy; policySets counts the RetryPolicy
	// options applied, so that Using can tell one given to it (which the
	// worker would never see) from the definition's.
	policy     RetryPolicyFunc
	policySets int
	// policyInUsing: a RetryPolicy was given to Using; Enqueue refuses.
	policyInUsing bool
}

// Option changes how a task is enqueued; use it with Define or Using.
type Option func(*config)

// Priority sets the priority, -100..100; larger runs first. Default 0.
func Priority(p int) Option { return func(c *config) { c.priority = p } }

// Queue sets the queue name. Default "default".
func Queue(name string) Option { return func(c *config) { c.queue = name } }

// UseBackend sets the name of the backend (as given to Configure). Default "default".
func UseBackend(name string) Option { return func(c *config) { c.backend = name } }

// RunAfter defers the task by d from the moment it is enqueued. It replaces
// an earlier RunAt; a zero or negative d means "as soon as possible".
func RunAfter(d time.Duration) Option {
	return func(c *config) { c.runAfter, c.runAt = d, time.Time{} }
}

// RunAt defers the task until t. It replaces an earlier RunAfter; the zero
// time means "as soon as possible".
func RunAt(t time.Time) Option {
	return func(c *config) { c.runAt, c.runAfter = t, 0 }
}

// MaxAttempts lets a failing task run up to n times in all (n-1 retries),
// with exponential backoff between attempts (see Backoff). Default 1: no
// retry, as in django-tasks. A task can cut retries short by returning
// Permanent(err), or choose the delay by returning Retry(after).
func MaxAttempts(n int) Option { return func(c *config) { c.limits.MaxAttempts = n } }

// Backoff sets the delay before the first retry (base) and its cap (max).
// The delay doubles with each failed attempt and is drawn at random from
// its upper half (jitter), so that tasks that failed together do not retry
// together. Defaults: DefaultBackoffBase and DefaultBackoffMax.
func Backoff(base, max time.Duration) Option {
	return func(c *config) { c.limits.BackoffBase, c.limits.BackoffMax = base, max }
}

// Timeout bounds one attempt: the task's context is cancelled at the
// deadline and the attempt fails with a gotasks.Timeout error (and is
// retried if attempts remain). A task that ignores its context is abandoned
// TimeoutGrace after the deadline: its attempt fails, its worker slot and
// lease are released, and its goroutine is left to finish on its own, its
// result discarded. Default 0: no limit.
func Timeout(d time.Duration) Option { return func(c *config) { c.limits.Timeout = d } }

// Limits and defaults of the options.
const (
	MinPriority     = -100
	MaxPriority     = 100
	DefaultPriority = 0
	DefaultQueue    = "default"

	MaxMaxAttempts     = 1000
	DefaultBackoffBase = time.Second
	DefaultBackoffMax  = 10 * time.Minute
	// TimeoutGrace is how long after its Timeout a task that ignores its
	// context is abandoned.
	TimeoutGrace = time.Second
	// DefaultMaxArgsSize is the largest encoded argument size Enqueue
	// accepts unless the backend says otherwise (ArgsLimiter).
	DefaultMaxArgsSize = 1 << 20
)

// validQueueName keeps queue names usable as Redis keys, hash tags and URL
// segments: 1-100 characters of A-Z a-z 0-9 _ . : -. A loop rather than a
// regexp: it runs for every message enqueued, and a regexp cost ~1 µs.
func validQueueName(q string) bool {
	if len(q) == 0 || len(q) > 100 {
		return false
	}
	for i := 0; i < len(q); i++ {
		c := q[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// ValidQueueName reports whether q can name a queue: 1-100 characters of
// A-Z a-z 0-9 _ . : - (what Enqueue accepts).
func ValidQueueName(q string) bool { return validQueueName(q) }

// Definition is the type-erased side of a Task that workers use to run it.
type Definition interface {
	// Name is the registered task name.
	Name() string
	run(ctx context.Context, r *RawResult) (value []byte, err error)
	// retryPolicy is the definition's RetryPolicy, nil if none.
	retryPolicy() RetryPolicyFunc
}

var tasks struct {
	sync.RWMutex
	byName map[string]Definition
}

// Define registers fn as a task under name and returns it. The name is how
// workers find the code, so it must be unique in the process: defining a
// name twice panics, like http.Handle. Define is meant for package-level
// variables, so that every process that imports the package knows the task.
func Define[A, R any](name string, fn func(ctx context.Context, args A) (R, error), opts ...Option) *Task[A, R] {
	if name == "" {
		panic("gotasks: Define with an empty task name")
	}
	if fn == nil {
		panic(fmt.Sprintf("gotasks: Define(%q) with a nil function", name))
	}
	t := &Task[A, R]{name: name, fn: fn, cfg: config{queue: DefaultQueue, backend: DefaultBackendName}}
	for _, o := range opts {
		o(&t.cfg)
	}
	tasks.Lock()
	defer tasks.Unlock()
	if tasks.byName == nil {
		tasks.byName = map[string]Definition{}
	}
	if _, dup := tasks.byName[name]; dup {
		panic(fmt.Sprintf("gotasks: task %q is already defined; task names must be unique in a process", name))
	}
	tasks.byName[name] = t
	return t
}

// Lookup returns the task registered under name.
func Lookup(name string) (Definition, bool) {
	tasks.RLock()
	defer tasks.RUnlock()
	d, ok := tasks.byName[name]
	return d, ok
}

// Registered returns the names of all defined tasks, sorted.
func Registered() []string {
	tasks.RLock()
	defer tasks.RUnlock()
	names := make([]string, 0, len(tasks.byName))
	for n := range tasks.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Name returns the registered name.
func (t *Task[A, R]) Name() string { return t.name }

// QueueName returns the queue the task is enqueued on.
func (t *Task[A, R]) QueueName() string { return t.cfg.queue }

// PriorityValue returns the task's priority.
func (t *Task[A, R]) PriorityValue() int { return t.cfg.priority }

// BackendName returns the name of the backend the task is enqueued on.
func (t *Task[A, R]) BackendName() string { return t.cfg.backend }

// Using returns a copy of the task with opts applied (django-tasks'
// .using()). The copy shares the name and the code; the original is unchanged.
func (t *Task[A, R]) Using(opts ...Option) *Task[A, R] {
	c := *t
	for _, o := range opts {
		o(&c.cfg)
	}
	if c.cfg.policySets != t.cfg.policySets {
		c.cfg.policyInUsing = true
	}
	return &c
}

func (t *Task[A, R]) retryPolicy() RetryPolicyFunc { return t.cfg.policy }

// Call runs the task's function in the caller's goroutine, without a backend.
func (t *Task[A, R]) Call(ctx context.Context, args A) (R, error) {
	return t.fn(ctx, args)
}

// Enqueue validates the task and its arguments and hands them to the
// backend, through the enqueue middleware (see UseEnqueue). Validation
// failures wrap ErrInvalidTask (or ErrUnknownBackend) and say what is
// wrong; an error of the middleware is returned wrapped. A unique task (see Unique) that another task
// holds the key of is not enqueued: the error is a *DuplicateError.
func (t *Task[A, R]) Enqueue(ctx context.Context, args A) (*Result[R], error) {
	b, msg, err := t.message(args, time.Now())
	if err != nil {
		return nil, err
	}
	if err := enqueueOne(ctx, b, msg); err != nil { // b.Enqueue, through the enqueue middleware
		return nil, fmt.Errorf("enqueue %s: %w", t.name, err)
	}
	if msg.DuplicateOf != "" {
		return nil, fmt.Errorf("enqueue %s: %w", t.name, duplicate(msg))
	}
	return newResult[R](enqueued(ctx, b, msg), b)
}

// EnqueueMany enqueues one task per element of args. On backends that
// support it (Redis) the whole batch is written in one round trip; either
// every task is validated or none is enqueued. The enqueue middleware
// (see UseEnqueue) wraps the whole batch once.
//
// Duplicates of unique tasks (see Unique), of earlier tasks or of an
// earlier element of args, do not stop the others: their results are nil
// and the error joins one *DuplicateError per duplicate, each prefixed
// with its index (errors.Is(err, ErrDuplicate) matches); every other
// result is returned and enqueued.
func (t *Task[A, R]) EnqueueMany(ctx context.Context, args []A) ([]*Result[R], error) {
	if len(args) == 0 {
		return nil, nil
	}
	now := time.Now()
	b, err := t.backend()
	if err != nil {
		return nil, err
	}
	if t.cfg.idSet {
		return nil, fmt.Errorf("enqueue %s: %w", t.name, invalid("WithID names one task: EnqueueMany gives each task an id of its own (enqueue again one by one WithID after ErrMaybeEnqueued)"))
	}
	ids := make([]string, len(args))
	newIDs(ids, now)
	msgs := make([]*Message, len(args))
	for i, a := range args {
		if msgs[i], err = t.build(b, ids[i], a, now); err != nil {
			return nil, fmt.Errorf("args[%d]: %w", i, err)
		}
	}
	// One EnqueueMany where b has it, else one Enqueue per message (an
	// error then says how many were enqueued), through the enqueue
	// middleware.
	if err := enqueueMany(ctx, b, msgs); err != nil {
		return nil, fmt.Errorf("enqueue %d × %s: %w", len(msgs), t.name, err)
	}
	out := make([]*Result[R], len(msgs))
	var dups []error
	for i, m := range msgs {
		if m.DuplicateOf != "" {
			dups = append(dups, fmt.Errorf("args[%d]: %w", i, duplicate(m)))
			continue
		}
		r, err := newResult[R](enqueued(ctx, b, m), b)
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	if len(dups) > 0 {
		return out, fmt.Errorf("enqueue %d × %s: %d of them not enqueued: %w", len(msgs), t.name, len(dups), errors.Join(dups...))
	}
	return out, nil
}

// enqueued returns the result of a message the backend accepted and fires
// the enqueued hook. The ImmediateBackend has already run the task (and fired
// the hook before running it), so its result is the finished one.
func enqueued(ctx context.Context, b Backend, msg *Message) *RawResult {
	if imm, ok := b.(*immediateBackend); ok {
		if r := imm.take(msg.ID); r != nil {
			return r
		}
	}
	raw := NewRawResult(msg, serializerOf(b))
	if msg.Existing && b.Features().GetResult {
		// The task stored under this id before: its own state, if it can
		// be read (best effort: the handle with its id is what matters).
		if r, err := b.GetResult(ctx, msg.ID); err == nil {
			raw = r
		}
	}
	// Also for an existing task: the call that stored it may have ended
	// in an error (ErrMaybeEnqueued), and this is the call that succeeds.
	emit(ctx, hookEnqueued, raw)
	return raw
}

// validate checks the options against the backend b. Errors wrap
// ErrInvalidTask and say what is wrong.
func (c config) validate(b Backend) error {
	f := b.Features()
	if c.priority < MinPriority || c.priority > MaxPriority {
		return invalid("priority %d is out of range [%d, %d]", c.priority, MinPriority, MaxPriority)
	}
	if c.priority != DefaultPriority && !f.Priority {
		return invalid("backend %q does not support priorities", b.Name())
	}
	if !validQueueName(c.queue) {
		return invalid("queue name %q must be 1-100 characters of A-Z a-z 0-9 _ . : -", c.queue)
	}
	if allowed := b.Queues(); len(allowed) > 0 && !slices.Contains(allowed, c.queue) {
		return invalid("queue %q is not allowed by backend %q (allowed: %v)", c.queue, b.Name(), allowed)
	}
	if (!c.runAt.IsZero() || c.runAfter > 0) && !f.Defer {
		return invalid("backend %q does not support RunAfter/RunAt", b.Name())
	}
	l := c.limits
	if l.MaxAttempts < 0 || l.MaxAttempts > MaxMaxAttempts {
		return invalid("MaxAttempts %d is out of range [1, %d]", l.MaxAttempts, MaxMaxAttempts)
	}
	if l.BackoffBase < 0 || l.BackoffMax < 0 || (l.BackoffMax > 0 && l.BackoffBase > l.BackoffMax) {
		return invalid("Backoff(%v, %v) needs 0 <= base <= max", l.BackoffBase, l.BackoffMax)
	}
	if l.Timeout < 0 {
		return invalid("Timeout %v is negative", l.Timeout)
	}
	if err := validateMetadata(c.meta); err != nil {
		return err
	}
	if c.idSet && !ValidID(c.id) {
		return invalid("id %q must be 1-%d characters of A-Z a-z 0-9 _ . : -", c.id, MaxIDLength)
	}
	if c.policyInUsing {
		return invalid("RetryPolicy is an option of Define, not of Using: it runs on the worker, which knows the task by its definition")
	}
	return c.validateUnique(b)
}

// message validates the task against its backend and serializes args.
func (t *Task[A, R]) message(args A, now time.Time) (Backend, *Message, error) {
	b, err := t.backend()
	if err != nil {
		return nil, nil, err
	}
	id := t.cfg.id
	if !t.cfg.idSet {
		id = NewID()
	}
	m, err := t.build(b, id, args, now)
	return b, m, err
}

// backend returns the task's backend, once its options are checked
// against it.
func (t *Task[A, R]) backend() (Backend, error) {
	b, err := BackendFor(t.cfg.backend)
	if err != nil {
		// Both: an unconfigured backend is a configuration problem and an
		// invalid task, as in django-tasks.
		return nil, fmt.Errorf("enqueue %s: %w: %w", t.name, ErrInvalidTask, err)
	}
	if err := t.cfg.validate(b); err != nil {
		return nil, fmt.Errorf("enqueue %s: %w", t.name, err)
	}
	return b, nil
}

// build makes the message with id that enqueues args on b, which backend
// returned.
func (t *Task[A, R]) build(b Backend, id string, args A, now time.Time) (*Message, error) {
	c := t.cfg
	var runAfter time.Time
	switch {
	case !c.runAt.IsZero():
		runAfter = c.runAt
	case c.runAfter > 0:
		runAfter = now.Add(c.runAfter)
	}
	payload, err := serializerOf(b).Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("enqueue %s: %w", t.name, invalid("arguments cannot be serialized: %v", err))
	}
	if limit := maxArgsSize(b); len(payload) > limit {
		return nil, fmt.Errorf("enqueue %s: %w", t.name, invalid("arguments are %d bytes encoded, over the limit of %d", len(payload), limit))
	}
	return &Message{
		ID: id, TaskName: t.name, Queue: c.queue, Priority: c.priority, Backend: b.Name(),
		Args: payload, EnqueuedAt: now, RunAfter: runAfter, Limits: c.limits.withDefaults(),
		Unique: c.uniqueness(t.name, payload), Metadata: c.meta.Clone(),
	}, nil
}

// GetResult fetches the result with this id from the task's backend. It
// returns ErrResultNotFound for an unknown id and ErrResultMismatch for the
// id of another task's result.
func (t *Task[A, R]) GetResult(ctx context.Context, id string) (*Result[R], error) {
	b, err := BackendFor(t.cfg.backend)
	if err != nil {
		return nil, fmt.Errorf("get result %s: %w", id, err)
	}
	raw, err := b.GetResult(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get result %s: %w", id, err)
	}
	if raw.TaskName != t.name {
		return nil, fmt.Errorf("get result %s: %w: it is a result of %q, not %q", id, ErrResultMismatch, raw.TaskName, t.name)
	}
	return newResult[R](raw, b)
}

// run decodes the arguments, calls the function and encodes its return
// value. It returns the task's own error as is, and failures around the
// call as *Error with a gotasks.* Type.
func (t *Task[A, R]) run(ctx context.Context, r *RawResult) ([]byte, error) {
	var args A
	if err := r.DecodeArgs(&args); err != nil {
		return nil, &Error{Type: ErrorTypeDecodeArgs, Message: fmt.Sprintf("arguments of %s do not decode into %T: %v", t.name, args, err)}
	}
	v, err := t.fn(ctx, args)
	if err != nil {
		return nil, err
	}
	out, err := r.serializer().Marshal(v)
	if err != nil {
		return nil, &Error{Type: ErrorTypeEncodeResult, Message: fmt.Sprintf("return value of %s cannot be serialized: %v", t.name, err)}
	}
	return out, nil
}

package task

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/gotasks/gotasks/serializer"
)

// Backend stores enqueued tasks and their results: django-tasks' backends,
// configured by name in the TASKS setting (here: Configure).
//
// A backend may also implement Checker, Closer, BatchEnqueuer,
// SerializerProvider and EnqueueMiddlewareProvider; Task uses them when
// present.
type Backend interface {
	// Name is the name the backend is configured under.
	Name() string
	// Features reports what the backend supports, so callers can degrade
	// gracefully.
	Features() Features
	// Queues returns the queue names tasks may be enqueued on; empty means any.
	Queues() []string
	// Enqueue stores msg. It has already been validated by Task.Enqueue.
	Enqueue(ctx context.Context, msg *Message) error
	// GetResult returns the result with this id, or an error wrapping
	// ErrResultNotFound.
	GetResult(ctx context.Context, id string) (*RawResult, error)
}

// BatchEnqueuer is implemented by backends that store many messages at once
// (the Redis backend does it in one round trip). Task.EnqueueMany falls back
// to one Enqueue per message.
type BatchEnqueuer interface {
	EnqueueMany(ctx context.Context, msgs []*Message) error
}

// Checker is implemented by backends that can report configuration or
// connectivity problems (Check calls it).
type Checker interface {
	Check(ctx context.Context) error
}

// SerializerProvider is implemented by backends that do not use the default
// (msgpack) serializer for arguments and return values.
type SerializerProvider interface {
	Serializer() serializer.Serializer
}

// Features says what a backend supports (django-tasks' supports_* flags).
type Features struct {
	Defer     bool // RunAfter / RunAt are supported
	GetResult bool // results can be fetched after the fact (from any process on Redis; see DummyBackend)
	Priority  bool // priorities other than 0 are honoured
}

// UniqueSupporter is implemented by backends that honour Message.Unique
// and report duplicates in Message.DuplicateOf (Redis, Dummy, Immediate).
// Unique tasks are refused at Enqueue on other backends. (An interface
// rather than a Features flag, so that Features values compared or printed
// by existing code do not change.)
type UniqueSupporter interface {
	SupportsUnique() bool
}

// BackendOptions configures the in-process backends.
type BackendOptions struct {
	// Queues lists the allowed queue names; nil or empty allows any queue.
	Queues []string
	// MaxArgsSize limits the encoded size of a task's arguments; 0 means
	// DefaultMaxArgsSize (1 MiB).
	MaxArgsSize int
	// Serializer encodes arguments and return values; nil means msgpack.
	// Running through a serializer even in-process catches arguments that
	// could not travel to a real worker.
	Serializer serializer.Serializer
	// Logger receives the backend's log lines, with the attributes task,
	// id, queue and backend (and attempt once a task runs), as the Redis
	// worker writes them: "task enqueued" and "task started" at Debug,
	// "task complete" at Info, "task failed" and "task attempt failed;
	// will retry" at Warn (each with the error). The DummyBackend runs
	// nothing and logs only its enqueues. nil means slog.Default() at the
	// time of each line; to silence it, give a Logger whose handler
	// discards, or whose level is above Warn.
	Logger *slog.Logger
	// EnqueueMiddleware wraps every enqueue on this backend, inside the
	// process-wide middleware (UseEnqueue); the first is the outermost.
	EnqueueMiddleware []EnqueueMiddleware
	// RunMiddleware wraps every attempt the ImmediateBackend runs, inside
	// the process-wide middleware (UseRun), as worker.Options.RunMiddleware
	// does on a worker; the first is the outermost. The DummyBackend runs
	// nothing and ignores it.
	RunMiddleware []RunMiddleware
}

// Message is a serialized task on its way to a backend.
type Message struct {
	ID         string
	TaskName   string
	Queue      string
	Priority   int
	Backend    string
	Args       []byte    // arguments, encoded with the backend's serializer
	EnqueuedAt time.Time // set by Task.Enqueue; a backend may replace it with its own clock
	RunAfter   time.Time // zero: run as soon as possible
	Limits
	// Unique is the task's claim to be the only one with its key on its
	// queue (Unique, UniqueKey, UniqueFor); nil: not unique.
	Unique *Uniqueness
	// DuplicateOf is set by the backend, instead of storing the message,
	// to the id of the task that holds Unique's key. A duplicate is not an
	// error of Enqueue or EnqueueMany, so that it does not fail the rest of
	// a batch.
	DuplicateOf string
	// Metadata travels with the task (see Meta); nil when there is none.
	Metadata Metadata
	// Existing is set by the backend, instead of storing the message,
	// when its id is already taken by a task of the same name and
	// arguments: an enqueue sent again (WithID, or a request resent after
	// its reply was lost). It is that task, not an error. A backend
	// refuses an id taken by a different task with ErrDuplicateID.
	Existing bool
}

// Limits are the execution rules that travel with a task to its worker
// (set with the MaxAttempts, Backoff and Timeout options).
type Limits struct {
	MaxAttempts int           // attempts in all for a failing task; 1: no retry
	BackoffBase time.Duration // delay before the first retry
	BackoffMax  time.Duration // cap of the delay
	Timeout     time.Duration // per attempt; 0: none
}

func (l Limits) withDefaults() Limits {
	if l.MaxAttempts <= 0 {
		l.MaxAttempts = 1
	}
	if l.BackoffBase <= 0 {
		l.BackoffBase = DefaultBackoffBase
	}
	if l.BackoffMax <= 0 {
		l.BackoffMax = max(DefaultBackoffMax, l.BackoffBase)
	}
	return l
}

// ArgsLimiter is implemented by backends that set their own limit on the
// encoded size of a task's arguments (default DefaultMaxArgsSize).
type ArgsLimiter interface {
	MaxArgsSize() int
}

func maxArgsSize(b Backend) int {
	if l, ok := b.(ArgsLimiter); ok && l.MaxArgsSize() > 0 {
		return l.MaxArgsSize()
	}
	return DefaultMaxArgsSize
}

// RawResult is the untyped result any backend returns: the fields of Result
// with the arguments and the return value still encoded.
type RawResult struct {
	ID         string
	TaskName   string
	Status     Status
	Priority   int
	Queue      string
	Backend    string
	EnqueuedAt time.Time
	RunAfter   time.Time
	StartedAt  time.Time // when the first attempt started
	// LastAttemptedAt is when the latest attempt started (StartedAt for
	// a task run once; django-tasks' last_attempted_at).
	LastAttemptedAt time.Time
	FinishedAt      time.Time
	Attempts        int
	WorkerIDs       []string
	Err             *Error   // the final error, when FAILED
	Errors          []*Error // every failed attempt's error, oldest first
	Metadata        Metadata // see Meta; nil when there is none
	Args            []byte   // encoded arguments
	Value           []byte   // encoded return value; nil until COMPLETE
	// Serializer decodes Args and Value; nil means msgpack.
	Serializer serializer.Serializer
	// Progress is what the task last reported (SetProgress); nil if
	// nothing.
	Progress *Progress
	// CancelRequested is set on a RUNNING task whose cancel was asked for
	// (see Canceller): its worker stops it, and it ends CANCELLED if it
	// returns its context's error.
	CancelRequested bool
	// ResultTTL is how long the finished result is kept when the producer
	// chose it (its backend's option travels with the task, see
	// broker.Options.ResultTTL); 0: the storing backend's own.
	ResultTTL time.Duration
	Limits
}

// NewRawResult returns the NEW result of an enqueued message.
func NewRawResult(msg *Message, ser serializer.Serializer) *RawResult {
	return &RawResult{
		ID: msg.ID, TaskName: msg.TaskName, Status: StatusNew, Priority: msg.Priority,
		Queue: msg.Queue, Backend: msg.Backend, EnqueuedAt: msg.EnqueuedAt,
		RunAfter: msg.RunAfter, Args: msg.Args, Serializer: ser, Limits: msg.Limits,
		Metadata: msg.Metadata.Clone(),
	}
}

// IsFinished reports whether the status is COMPLETE, FAILED or CANCELLED.
func (r *RawResult) IsFinished() bool { return r.Status.IsFinished() }

// Decode decodes the return value into v (a pointer). It returns
// ErrNotFinished before the task finished and r.Err when it FAILED.
func (r *RawResult) Decode(v any) error {
	switch r.Status {
	case StatusComplete:
		return r.serializer().Unmarshal(r.Value, v)
	case StatusFailed:
		return failure(r.Err)
	case StatusCancelled:
		return fmt.Errorf("result %s: %w", r.ID, ErrCancelled)
	}
	return ErrNotFinished
}

// DecodeArgs decodes the task's arguments into v (a pointer).
func (r *RawResult) DecodeArgs(v any) error {
	return r.serializer().Unmarshal(r.Args, v)
}

func (r *RawResult) serializer() serializer.Serializer {
	if r.Serializer == nil {
		return serializer.Default
	}
	return r.Serializer
}

func (r *RawResult) clone() *RawResult {
	c := *r
	c.WorkerIDs = slices.Clone(r.WorkerIDs)
	if r.Err != nil {
		e := *r.Err
		c.Err = &e
	}
	c.Errors = slices.Clone(r.Errors)
	c.Metadata = r.Metadata.Clone()
	return &c
}

// Status is where a task is in its life: NEW → RUNNING → COMPLETE | FAILED.
type Status string

// The statuses of a result.
const (
	StatusNew      Status = "NEW" // enqueued, not yet started (also: waiting for run_after, or for a retry)
	StatusRunning  Status = "RUNNING"
	StatusComplete Status = "COMPLETE"
	StatusFailed   Status = "FAILED"
)

// IsFinished reports whether s is final: COMPLETE, FAILED or CANCELLED.
func (s Status) IsFinished() bool {
	return s == StatusComplete || s == StatusFailed || s == StatusCancelled
}

// DefaultBackendName is the backend a task uses unless told otherwise.
const DefaultBackendName = "default"

var registry struct {
	sync.RWMutex
	backends map[string]Backend // nil: nothing configured, "default" is Immediate
}

var implicitDefault = NewImmediateBackend(DefaultBackendName, BackendOptions{})

// Configure replaces the registry of backends (the TASKS setting). The map
// keys are the names tasks refer to with UseBackend; a backend's own Name
// should match its key. Without a "default" entry, tasks that do not name a
// backend fail to enqueue with ErrUnknownBackend. Configure(nil) restores the
// initial state: "default" is an ImmediateBackend.
func Configure(backends map[string]Backend) {
	registry.Lock()
	defer registry.Unlock()
	if backends == nil {
		registry.backends = nil
		return
	}
	registry.backends = make(map[string]Backend, len(backends))
	for name, b := range backends {
		registry.backends[name] = b
	}
}

// BackendFor returns the backend configured under name.
func BackendFor(name string) (Backend, error) {
	registry.RLock()
	defer registry.RUnlock()
	if registry.backends == nil {
		if name == DefaultBackendName {
			return implicitDefault, nil
		}
		return nil, fmt.Errorf("%w %q (nothing configured: only %q exists)", ErrUnknownBackend, name, DefaultBackendName)
	}
	b, ok := registry.backends[name]
	if !ok {
		names := make([]string, 0, len(registry.backends))
		for n := range registry.backends {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("%w %q (configured: %v)", ErrUnknownBackend, name, names)
	}
	return b, nil
}

// DefaultBackend returns the "default" backend, or nil if the configuration
// has none.
func DefaultBackend() Backend {
	b, _ := BackendFor(DefaultBackendName)
	return b
}

func configuredBackends() map[string]Backend {
	registry.RLock()
	defer registry.RUnlock()
	if registry.backends == nil {
		return map[string]Backend{DefaultBackendName: implicitDefault}
	}
	out := make(map[string]Backend, len(registry.backends))
	for n, b := range registry.backends {
		out[n] = b
	}
	return out
}

func serializerOf(b Backend) serializer.Serializer {
	if sp, ok := b.(SerializerProvider); ok && sp.Serializer() != nil {
		return sp.Serializer()
	}
	return serializer.Default
}

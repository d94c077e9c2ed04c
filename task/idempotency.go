package task

import (
	"errors"
	"fmt"
	"strings"
)

// Enqueue over a network that can lose replies. A producer whose request
// reached the backend but whose answer did not cannot know whether the
// task is stored. gotasks makes that safe to resolve: enqueueing again
// under the same id is idempotent (the same task name and arguments under
// a taken id are the existing task, not a new one), and an error that
// leaves the outcome open says so (ErrMaybeEnqueued) and carries the ids
// to enqueue again with WithID.

var (
	// ErrDuplicateID is wrapped by the error of an Enqueue whose id
	// (WithID) is taken by a different task: another task name, or other
	// arguments. Nothing is stored.
	ErrDuplicateID = errors.New("gotasks: task id is taken by a different task")

	// ErrMaybeEnqueued is wrapped by an Enqueue or EnqueueMany error when
	// the request may have reached the backend but no answer came back:
	// the tasks may or may not be stored (and will run if they are).
	// Enqueueing again with the same ids is safe: pass WithID(id), with the
	// ids the error carries (see MaybeEnqueuedError). An error that does
	// not wrap it means nothing was stored.
	ErrMaybeEnqueued = errors.New("gotasks: the task may or may not be enqueued")
)

// MaybeEnqueuedError is the error behind ErrMaybeEnqueued: the ids of the
// tasks whose fate is unknown, and what went wrong on the way.
type MaybeEnqueuedError struct {
	IDs []string
	Err error
}

// Error says which ids to enqueue again.
func (e *MaybeEnqueuedError) Error() string {
	ids := strings.Join(e.IDs, ", ")
	if len(e.IDs) > 3 {
		ids = strings.Join(e.IDs[:3], ", ") + fmt.Sprintf(" and %d more", len(e.IDs)-3)
	}
	return fmt.Sprintf("%v (no answer from the backend: %v); enqueueing again WithID(id) is safe, id: %s", ErrMaybeEnqueued, e.Err, ids)
}

// Unwrap makes errors.Is match ErrMaybeEnqueued and the cause.
func (e *MaybeEnqueuedError) Unwrap() []error { return []error{ErrMaybeEnqueued, e.Err} }

// UndeliveredWorker stands in WorkerIDs for an attempt whose claim was
// handed back before it started (a worker that claimed it shut down): the
// attempt number is used up, the task did not run.
const UndeliveredWorker = "-"

// MaxIDLength is the longest id WithID accepts.
const MaxIDLength = 64

// WithID gives the task a caller-chosen id: 1-64 characters of A-Z a-z
// 0-9 _ . : -, other than "." and ".." (for example an idempotency key derived from the caller's
// own data, or the id an ErrMaybeEnqueued error carries). Enqueueing again
// with an id taken by a task of the same name and arguments is not an
// error: it stores nothing and returns that task's result handle. An id
// taken by a different task is ErrDuplicateID. Ids are unique per queue,
// for as long as the task is unfinished or its result is kept (the
// backend's result TTL). WithID names one task: EnqueueMany refuses it.
func WithID(id string) Option {
	return func(c *config) { c.id, c.idSet = id, true }
}

// ValidID reports whether id can name a task: what NewID makes (a ULID)
// or what WithID accepts. Backends use it to refuse junk before it
// reaches storage.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLength || id == "." || id == ".." {
		return false // "." and ".." would be path segments of their own in a URL
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

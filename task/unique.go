package task

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// ErrDuplicate is wrapped by the error of an enqueue refused because a task
// with the same unique key holds it (see Unique). errors.As the error to a
// *DuplicateError for the id of that task.
var ErrDuplicate = errors.New("gotasks: duplicate of a unique task")

// DuplicateError is the error of an enqueue refused because of Unique,
// UniqueKey or UniqueFor: the task with id ID holds the unique key.
type DuplicateError struct {
	ID  string // the task that holds the key
	Key string // Uniqueness.Key
}

// Error says which task holds the key.
func (e *DuplicateError) Error() string {
	return fmt.Sprintf("%v: task %s holds the unique key %q", ErrDuplicate, e.ID, e.Key)
}

// Unwrap lets errors.Is(err, ErrDuplicate) match.
func (e *DuplicateError) Unwrap() error { return ErrDuplicate }

// Uniqueness is a message's claim to be the only task of its kind on its
// queue, set by the Unique, UniqueKey and UniqueFor options.
type Uniqueness struct {
	// Key identifies "the same task": the task name, then the UniqueKey
	// or a hash of the encoded arguments. The task name is part of it so
	// that two tasks choosing the same UniqueKey do not block each other.
	Key string
	// For is the window the key is held for from the enqueue, whether or
	// not the task has finished; 0 holds it until the task finishes.
	For time.Duration
}

// Unique makes a second enqueue of the task with the same arguments fail
// with a *DuplicateError (wrapping ErrDuplicate) while the first has not
// finished (COMPLETE or FAILED; a retry does not finish it). Use
// EnqueueOrGet to get the first task's result instead of the error.
//
// "The same arguments" means the same encoded bytes. The serializers
// encode the same value the same way every time, maps included (msgpack
// and JSON both write map entries in key order); a custom serializer
// must too, or use UniqueKey. Uniqueness is per queue and per backend:
// the same task on another queue is not a duplicate.
func Unique() Option { return func(c *config) { c.unique = true } }

// UniqueKey is Unique with an explicit key instead of the arguments: tasks
// of this task name with the same key are duplicates whatever their
// arguments. An empty key is refused at Enqueue (ErrInvalidTask).
func UniqueKey(key string) Option {
	return func(c *config) { c.unique, c.uniqueKey, c.uniqueKeySet = true, key, true }
}

// UniqueFor is Unique (or, with UniqueKey, that key) held for a window of
// d from the first enqueue instead of until it finishes: a task that
// should run at most once an hour, whether or not the last run is over.
// d must be positive (ErrInvalidTask otherwise).
func UniqueFor(d time.Duration) Option {
	return func(c *config) { c.unique, c.uniqueFor, c.uniqueForSet = true, d, true }
}

// validateUnique checks the uniqueness options against the backend b.
func (c config) validateUnique(b Backend) error {
	if !c.unique {
		return nil
	}
	if u, ok := b.(UniqueSupporter); !ok || !u.SupportsUnique() {
		return invalid("backend %q does not support unique tasks", b.Name())
	}
	if c.uniqueKeySet && c.uniqueKey == "" {
		return invalid("UniqueKey is empty")
	}
	if c.uniqueForSet && c.uniqueFor <= 0 {
		return invalid("UniqueFor %v is not positive", c.uniqueFor)
	}
	return nil
}

// uniqueness returns the claim of a task named name with encoded arguments
// payload, or nil when the task is not unique. Arguments are hashed so that
// the key stays short whatever their size.
func (c config) uniqueness(name string, payload []byte) *Uniqueness {
	if !c.unique {
		return nil
	}
	key := name + "\x00key\x00" + c.uniqueKey
	if !c.uniqueKeySet {
		sum := sha256.Sum256(payload)
		key = name + "\x00args\x00" + hex.EncodeToString(sum[:])
	}
	return &Uniqueness{Key: key, For: c.uniqueFor}
}

// EnqueueOrGet is Enqueue for unique tasks (see Unique) that returns the
// result of the task that holds the unique key, and dup = true, instead of
// a *DuplicateError. Its status is the one stored when it was read, just
// after the enqueue was refused. On a task that is not unique it is
// Enqueue. A backend without GetResult (Immediate) cannot give the first
// result: the error then wraps both ErrDuplicate and ErrNotSupported.
func (t *Task[A, R]) EnqueueOrGet(ctx context.Context, args A) (r *Result[R], dup bool, err error) {
	b, msg, err := t.message(args, time.Now())
	if err != nil {
		return nil, false, err
	}
	if err := b.Enqueue(ctx, msg); err != nil {
		return nil, false, fmt.Errorf("enqueue %s: %w", t.name, err)
	}
	if msg.DuplicateOf == "" {
		r, err := newResult[R](enqueued(ctx, b, msg), b)
		return r, false, err
	}
	derr := duplicate(msg)
	raw, err := b.GetResult(ctx, msg.DuplicateOf)
	if err != nil {
		return nil, true, fmt.Errorf("enqueue %s: %w; reading its result: %w", t.name, derr, err)
	}
	if raw.TaskName != t.name {
		return nil, true, fmt.Errorf("enqueue %s: %w; it is a result of %q: %w", t.name, derr, raw.TaskName, ErrResultMismatch)
	}
	r, err = newResult[R](raw, b)
	return r, true, err
}

// duplicate is the error of a message the backend refused as a duplicate.
func duplicate(msg *Message) *DuplicateError {
	e := &DuplicateError{ID: msg.DuplicateOf}
	if msg.Unique != nil {
		e.Key = msg.Unique.Key
	}
	return e
}

// uniqueEntry is who holds a unique key in the in-process backends.
type uniqueEntry struct {
	id    string
	until time.Time // zero: until id finishes
}

// claimUnique takes msg's unique key for msg, or sets msg.DuplicateOf to
// the task that holds it. unfinished reports whether a task holding a key
// without a window still does. The caller holds m.mu.
func (m *memoryStore) claimUnique(msg *Message, now time.Time, unfinished func(id string) bool) {
	if msg.Unique == nil {
		return
	}
	if e, ok := m.unique[msg.Unique.Key]; ok {
		held := unfinished(e.id)
		if !e.until.IsZero() {
			held = now.Before(e.until)
		}
		if held {
			msg.DuplicateOf = e.id
			return
		}
	}
	if m.unique == nil {
		m.unique = map[string]uniqueEntry{}
	}
	e := uniqueEntry{id: msg.ID}
	if msg.Unique.For > 0 {
		e.until = now.Add(msg.Unique.For)
	}
	m.unique[msg.Unique.Key] = e
}

// clock returns the in-process backends' time; tests replace it to move
// windows on without sleeping.
func (m *memoryStore) clock() time.Time {
	if m.now != nil {
		return m.now()
	}
	return time.Now()
}

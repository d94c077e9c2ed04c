package task

import (
	"context"
	"errors"
	"fmt"

	"github.com/gotasks/gotasks/serializer"
)

// Durable steps: a task made of steps that must not run twice (charge a
// card, then send the receipt) runs each with Step. The first attempt
// that finishes a step stores its result; a later attempt of the same
// task (a retry, or a re-delivery after its worker was killed) gets the
// stored result back instead of running the step again, so the task
// resumes after its last finished step.

// StepStore is what a runner (a worker) provides for the steps of the
// task it runs (see Step): the results stored by earlier attempts, and a
// write of each new one, fenced by the attempt (an attempt that lost its
// lease stores nothing). A runner passes it with WithStepStore, or as the
// ProgressReporter it already puts in the context (a worker's, which
// costs the tasks that use no steps nothing more). LoadSteps may be
// called once per Step: the store keeps what it read.
type StepStore interface {
	// LoadSteps returns the results stored for the task, by step name.
	LoadSteps(ctx context.Context) (map[string][]byte, error)
	// SaveStep stores the result of step name.
	SaveStep(ctx context.Context, name string, value []byte) error
}

// MaxStepName bounds the name of a step, in bytes.
const MaxStepName = 200

// ErrStepName is wrapped by Step's error for a name that is empty or
// longer than MaxStepName.
var ErrStepName = errors.New("gotasks: bad step name")

type stepKey struct{}

// WithStepStore returns ctx carrying s for the steps of the task it runs;
// for runners.
func WithStepStore(ctx context.Context, s StepStore) context.Context {
	return context.WithValue(ctx, stepKey{}, s)
}

// stepStore is the StepStore of ctx, if any.
func stepStore(ctx context.Context) StepStore {
	if s, ok := ctx.Value(stepKey{}).(StepStore); ok {
		return s
	}
	s, _ := ctx.Value(progressKey{}).(StepStore)
	return s
}

// Step runs fn as the durable step name of the running task, once per
// task: if an earlier attempt of this task finished the step, Step
// returns the result it stored (decoded into T) without calling fn. A
// step that fails (fn's error) stores nothing, and runs again in the next
// attempt. Steps are told apart by name only: give each step of a task
// its own name (a step inside a loop: "email-" + the recipient).
//
// Each new result costs one Redis round trip (the first step of an
// attempt one more, to read what earlier attempts stored); the results
// are kept with the task until its result expires. A step's side effect
// still happens twice if the worker dies after fn returned and before its
// result was stored: Step makes a task resume after its last stored
// step, it cannot make fn itself atomic.
//
// Outside a worker (Task.Call, the ImmediateBackend) Step calls fn.
func Step[T any](ctx context.Context, name string, fn func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	if name == "" || len(name) > MaxStepName {
		return zero, fmt.Errorf("step %q: %w (1 to %d bytes)", name, ErrStepName, MaxStepName)
	}
	st := stepStore(ctx)
	if st == nil {
		return fn(ctx)
	}
	ser := serializer.Default
	if r, ok := ctx.Value(resultKey{}).(*RawResult); ok {
		ser = r.serializer()
	}
	stored, err := st.LoadSteps(ctx)
	if err != nil {
		return zero, fmt.Errorf("step %q: read the steps stored: %w", name, err)
	}
	if raw, found := stored[name]; found {
		var v T
		if err := ser.Unmarshal(raw, &v); err != nil {
			return zero, &Error{Type: ErrorTypeBadPayload, Message: fmt.Sprintf("step %q: its stored result does not decode into %T: %v", name, v, err)}
		}
		return v, nil
	}
	v, err := fn(ctx)
	if err != nil {
		return v, err
	}
	raw, err := ser.Marshal(v)
	if err != nil {
		return zero, &Error{Type: ErrorTypeEncodeResult, Message: fmt.Sprintf("step %q: its result cannot be serialized: %v", name, err)}
	}
	if err := st.SaveStep(ctx, name, raw); err != nil {
		return zero, fmt.Errorf("step %q: store its result: %w", name, err)
	}
	return v, nil
}

package task

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// RetryError asks for the task to be retried after a given delay instead
// of the backoff. Return it with Retry. It is honoured while attempts remain
// (MaxAttempts); after the last one the task ends FAILED.
type RetryError struct {
	After time.Duration
	Err   error // why; may be nil
}

// Retry returns an error that asks for another attempt after the delay
// after (for example when an API answered "try again in 30s"). Wrap it to
// add a reason: fmt.Errorf("rate limited: %w", task.Retry(30*time.Second)).
func Retry(after time.Duration) error { return &RetryError{After: after} }

// Error describes the request.
func (e *RetryError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("retry in %v: %v", e.After, e.Err)
	}
	return fmt.Sprintf("retry requested in %v", e.After)
}

// Unwrap returns the reason.
func (e *RetryError) Unwrap() error { return e.Err }

// PermanentError marks a failure that retrying cannot fix. Return it with
// Permanent.
type PermanentError struct{ Err error }

// Permanent wraps err so that the task ends FAILED at once, whatever
// attempts remain (bad input, a refused payment).
func Permanent(err error) error { return &PermanentError{Err: err} }

// Error returns the wrapped error's text.
func (e *PermanentError) Error() string {
	if e.Err == nil {
		return "permanent failure"
	}
	return e.Err.Error()
}

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// RetryPolicyFunc decides what follows a failed attempt: attempt is its
// number (1 for the first), err what the task returned (or the failure
// gotasks recorded: a timeout, a panic). It returns the delay before the
// next attempt and true, or false for no retry (the task ends FAILED).
type RetryPolicyFunc func(attempt int, err error) (delay time.Duration, retry bool)

// RetryPolicy sets the function that decides the delay of the next
// attempt, or no retry, from the attempt number and the error, instead of
// Backoff's exponential delay. MaxAttempts still bounds the attempts, and
// an error from Permanent (no retry) or Retry (its delay) still wins over
// the policy, as do failures that cannot succeed on retry (arguments that
// do not decode, a result that does not encode). The policy runs on the
// worker, which knows the task by its definition: it is an option of
// Define (given to Using, Enqueue refuses it with ErrInvalidTask). A
// panic in it is recovered: the attempt is then not retried.
func RetryPolicy(fn RetryPolicyFunc) Option {
	return func(c *config) { c.policy, c.policySets = fn, c.policySets+1 }
}

// retryDelay decides whether the failed attempt of r (err, already counted
// in r.Errors) is retried, and after how long.
func retryDelay(r *RawResult, err error) (time.Duration, bool) {
	var perm *PermanentError
	if errors.As(err, &perm) {
		return 0, false
	}
	var fe *Error
	if errors.As(err, &fe) {
		switch fe.Type {
		case ErrorTypeDecodeArgs, ErrorTypeEncodeResult, ErrorTypeBadPayload, ErrorTypeTooManyDeliveries:
			return 0, false // poison: the next attempt would fail the same way
		}
	}
	if len(r.Errors) >= max(r.MaxAttempts, 1) {
		return 0, false
	}
	var re *RetryError
	if errors.As(err, &re) {
		return max(re.After, 0), true
	}
	if def, ok := Lookup(r.TaskName); ok {
		if p := def.retryPolicy(); p != nil {
			return askPolicy(p, r.Attempts, err)
		}
	}
	return backoffDelay(r.Limits.withDefaults(), len(r.Errors)), true
}

// askPolicy runs a RetryPolicy; one that panics retries nothing (a
// broken policy must not crash the worker, nor retry for ever).
func askPolicy(p RetryPolicyFunc, attempt int, err error) (d time.Duration, retry bool) {
	defer func() {
		if recover() != nil {
			d, retry = 0, false
		}
	}()
	d, retry = p(attempt, err)
	return max(d, 0), retry
}

// backoffDelay is the delay after the n-th failure (n >= 1): base·2^(n-1),
// capped at max, drawn from its upper half.
func backoffDelay(l Limits, n int) time.Duration {
	d := l.BackoffMax
	if n-1 < 32 && l.BackoffBase<<(n-1) < l.BackoffMax && l.BackoffBase<<(n-1) > 0 {
		d = l.BackoffBase << (n - 1)
	}
	return d/2 + rand.N(d/2+1)
}

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
	return backoffDelay(r.Limits.withDefaults(), len(r.Errors)), true
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

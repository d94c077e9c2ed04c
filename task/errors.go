package task

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// Errors returned by the task API. Match them with errors.Is.
var (
	// ErrNotFinished is returned by Result.Value while the task is NEW or RUNNING.
	ErrNotFinished = errors.New("gotasks: task has not finished")
	// ErrResultNotFound is returned for a result id the backend does not know
	// (never enqueued, or finished longer ago than the backend keeps results).
	ErrResultNotFound = errors.New("gotasks: result not found")
	// ErrResultMismatch is returned by Task.GetResult for the id of another task's result.
	ErrResultMismatch = errors.New("gotasks: result belongs to another task")
	// ErrInvalidTask wraps every validation failure at Enqueue; the message says which.
	ErrInvalidTask = errors.New("gotasks: invalid task")
	// ErrUnknownBackend is returned for a backend name that Configure did not register.
	ErrUnknownBackend = errors.New("gotasks: unknown backend")
	// ErrUnknownTask is the failure of a result whose task name is not
	// registered (with Define) in the process that tried to run it.
	ErrUnknownTask = errors.New("gotasks: unknown task")
	// ErrNotSupported is returned by a backend asked for a feature it does not
	// have, such as GetResult on the ImmediateBackend.
	ErrNotSupported = errors.New("gotasks: not supported by this backend")
)

// Error is what a failed task leaves behind: the error's Go type, its message
// and, as text, the stack of the panic or the chain of wrapped errors.
type Error struct {
	Type      string `msgpack:"type" json:"type"`
	Message   string `msgpack:"message" json:"message"`
	Traceback string `msgpack:"traceback" json:"traceback"`
}

// Error returns "Type: Message".
func (e *Error) Error() string {
	if e.Type == "" {
		return e.Message
	}
	return e.Type + ": " + e.Message
}

// Error types gotasks itself gives failures that are not the task's own
// error, so that they can be told apart in results and dashboards.
const (
	ErrorTypeUnknownTask  = "gotasks.UnknownTask"
	ErrorTypeDecodeArgs   = "gotasks.DecodeArgs"
	ErrorTypeEncodeResult = "gotasks.EncodeResult"
	ErrorTypePanic        = "gotasks.Panic"
	ErrorTypeLeaseLost    = "gotasks.LeaseLost"
	ErrorTypeBadPayload   = "gotasks.BadPayload"
	ErrorTypeTimeout      = "gotasks.Timeout"
	// ErrorTypeGoexit fails an attempt whose task called runtime.Goexit
	// (directly, or through a helper such as testing.T.FailNow) instead of
	// returning: the task neither returned a value nor panicked.
	ErrorTypeGoexit = "gotasks.Goexit"
	// ErrorTypeTooManyDeliveries fails a task whose attempts kept ending
	// without a result (its worker died or was stopped each time), so that a
	// task that crashes its worker is not redelivered forever.
	ErrorTypeTooManyDeliveries = "gotasks.TooManyDeliveries"
)

// NewError describes err as a task failure. Type is the Go type of the most
// specific error under any fmt.Errorf/errors.Join wrapping (so a wrapped
// *fs.PathError is reported as *fs.PathError), Message is err's full text
// and Traceback the chain of wrapped errors with their types, or the stack
// the error carries if it has one.
func NewError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) && e == err {
		return e
	}
	return &Error{Type: errorType(err), Message: err.Error(), Traceback: errorChain(err)}
}

// errorType skips the standard library's anonymous wrappers, which say
// nothing about what went wrong.
func errorType(err error) string {
	for {
		t := reflect.TypeOf(err).String()
		switch t {
		case "*fmt.wrapError", "*fmt.wrapErrors", "*errors.joinError":
		default:
			return t
		}
		next := errors.Unwrap(err)
		if next == nil {
			if u, ok := err.(interface{ Unwrap() []error }); ok && len(u.Unwrap()) > 0 {
				next = u.Unwrap()[0]
			}
		}
		if next == nil {
			return t
		}
		err = next
	}
}

// errorChain renders the wrapped errors one per line, indented by depth.
// Go errors carry no stack; errors that do (StackTrace() or Stack()) add it.
func errorChain(err error) string {
	var b strings.Builder
	var walk func(err error, depth int)
	walk = func(err error, depth int) {
		if err == nil || depth > 32 {
			return
		}
		fmt.Fprintf(&b, "%s%T: %s\n", strings.Repeat("  ", depth), err, err.Error())
		if s, ok := err.(interface{ Stack() []byte }); ok {
			b.Write(s.Stack())
		}
		if s, ok := err.(interface{ StackTrace() string }); ok {
			b.WriteString(s.StackTrace())
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap(), depth+1)
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e, depth+1)
			}
		}
	}
	walk(err, 0)
	return b.String()
}

// failure is the error of a FAILED result; a backend that stored no error
// details still yields a usable, non-nil error.
func failure(e *Error) error {
	if e == nil {
		return &Error{Type: "gotasks.Unknown", Message: "the task failed; the backend recorded no error details"}
	}
	return e
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidTask, fmt.Sprintf(format, args...))
}

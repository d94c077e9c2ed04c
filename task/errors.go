package task

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
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

// Error is what a failed task leaves behind: what kind of error it was, its
// message and, as text, the stack of the panic or the chain of wrapped
// errors.
//
// Type names the kind of error only where the name says something (NewError
// sets it; see there for the rule):
//   - the Go type of a named error type, the user's or a library's, such as
//     *fs.PathError or *net.OpError;
//   - the name of a well-known sentinel error, such as io.EOF,
//     context.Canceled, os.ErrNotExist or task.ErrUnknownTask;
//   - one of the ErrorType constants for failures gotasks itself records,
//     such as gotasks.Panic and gotasks.Timeout;
//   - otherwise the empty string (an errors.New or fmt.Errorf error, whose
//     message says it all), and Error returns the message alone.
//
// It is never the type of an anonymous wrapper of the standard library
// (*errors.errorString, *fmt.wrapError, *fmt.wrapErrors, *errors.joinError)
// or of gotasks (*task.PermanentError, *task.RetryError): those are looked
// through. Traceback still lists every error of the chain with its Go type.
type Error struct {
	Type      string `msgpack:"type" json:"type"`
	Message   string `msgpack:"message" json:"message"`
	Traceback string `msgpack:"traceback" json:"traceback"`
}

// Error returns "Type: Message", or the message alone when Type is the
// empty string.
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

// NewError describes err as a task failure. Message is err's full text and
// Traceback the chain of wrapped errors with their Go types, or the stack
// the error carries if it has one.
//
// Type is found by walking err's chain of wrapped errors (errors.Unwrap,
// and every branch of an errors.Join or a multi-%w fmt.Errorf, in order),
// from the outside in, looking through the anonymous wrappers of the
// standard library (*fmt.wrapError, *fmt.wrapErrors, *errors.joinError)
// and gotasks' own (*PermanentError, *RetryError). The first error met that
// says something sets it:
//   - a well-known sentinel (see the list below) is named: "io.EOF",
//     "context.Canceled", "task.ErrUnknownTask";
//   - a wrapped *Error gives its own Type;
//   - an error of a named type gives its Go type: "*fs.PathError" (even
//     when it wraps a sentinel: the named type says more), "mypkg.MyError".
//
// An *errors.errorString (errors.New, or fmt.Errorf without %w) that is
// not a well-known sentinel says nothing: if nothing else in the chain
// does, Type is the empty string.
//
// The well-known sentinels are context.Canceled, context.DeadlineExceeded,
// errors.ErrUnsupported, io.EOF, io.ErrUnexpectedEOF, io.ErrShortWrite,
// io.ErrShortBuffer, io.ErrNoProgress, io.ErrClosedPipe, os.ErrNotExist,
// os.ErrExist, os.ErrPermission, os.ErrClosed, os.ErrInvalid (the same
// errors as fs.ErrNotExist etc., named by their os names),
// os.ErrDeadlineExceeded and the Err variables of this package
// (task.ErrNotFinished, task.ErrUnknownTask, ...). A sentinel is
// recognised where it is itself in the chain, not through an Is method.
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

// wellKnownSentinels are the sentinel errors Error.Type names (see
// NewError). Each error's dynamic type is comparable, so comparing any
// error with them cannot panic. (database/sql's ErrNoRows is left out:
// naming it would link database/sql into every program that uses tasks.)
var wellKnownSentinels = []struct {
	err  error
	name string
}{
	{context.Canceled, "context.Canceled"},
	{context.DeadlineExceeded, "context.DeadlineExceeded"},
	{errors.ErrUnsupported, "errors.ErrUnsupported"},
	{io.EOF, "io.EOF"},
	{io.ErrUnexpectedEOF, "io.ErrUnexpectedEOF"},
	{io.ErrShortWrite, "io.ErrShortWrite"},
	{io.ErrShortBuffer, "io.ErrShortBuffer"},
	{io.ErrNoProgress, "io.ErrNoProgress"},
	{io.ErrClosedPipe, "io.ErrClosedPipe"},
	{os.ErrNotExist, "os.ErrNotExist"},
	{os.ErrExist, "os.ErrExist"},
	{os.ErrPermission, "os.ErrPermission"},
	{os.ErrClosed, "os.ErrClosed"},
	{os.ErrInvalid, "os.ErrInvalid"},
	{os.ErrDeadlineExceeded, "os.ErrDeadlineExceeded"},
	{ErrNotFinished, "task.ErrNotFinished"},
	{ErrResultNotFound, "task.ErrResultNotFound"},
	{ErrResultMismatch, "task.ErrResultMismatch"},
	{ErrInvalidTask, "task.ErrInvalidTask"},
	{ErrUnknownBackend, "task.ErrUnknownBackend"},
	{ErrUnknownTask, "task.ErrUnknownTask"},
	{ErrNotSupported, "task.ErrNotSupported"},
	{ErrNotCancellable, "task.ErrNotCancellable"},
	{ErrCancelled, "task.ErrCancelled"},
	{ErrDuplicateID, "task.ErrDuplicateID"},
	{ErrMaybeEnqueued, "task.ErrMaybeEnqueued"},
	{ErrDuplicate, "task.ErrDuplicate"},
}

// anonymousErrorTypes are the standard library's error types that carry a
// message or wrap other errors but say nothing about what went wrong.
var anonymousErrorTypes = map[string]bool{
	"*errors.errorString": true,
	"*errors.joinError":   true,
	"*fmt.wrapError":      true,
	"*fmt.wrapErrors":     true,
}

// maxErrorDepth bounds the walks of an error's chain.
const maxErrorDepth = 32

// errorType is Error.Type for err (see NewError): the first error of the
// chain, outside in, that says something; the empty string if none does.
func errorType(err error) string { return meaningfulType(err, 0) }

func meaningfulType(err error, depth int) string {
	if err == nil || depth > maxErrorDepth {
		return ""
	}
	for _, s := range wellKnownSentinels {
		if err == s.err {
			return s.name
		}
	}
	switch e := err.(type) {
	case *Error:
		if e == nil {
			return ""
		}
		return e.Type
	case *PermanentError:
		if e == nil {
			return ""
		}
		return meaningfulType(e.Err, depth+1)
	case *RetryError:
		if e == nil {
			return ""
		}
		return meaningfulType(e.Err, depth+1)
	}
	if t := reflect.TypeOf(err).String(); !anonymousErrorTypes[t] {
		return t
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return meaningfulType(u.Unwrap(), depth+1)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if t := meaningfulType(e, depth+1); t != "" {
				return t
			}
		}
	}
	return ""
}

// layerName is what the chain shows before one layer's message: its type
// if that says something, a well-known sentinel's name, or nothing for
// the standard library's anonymous wrappers and this package's own
// (Permanent, Retry), which say nothing of what went wrong.
func layerName(err error) string {
	for _, s := range wellKnownSentinels {
		if err == s.err {
			return s.name
		}
	}
	switch err.(type) {
	case *PermanentError, *RetryError:
		return ""
	}
	if t := reflect.TypeOf(err).String(); !anonymousErrorTypes[t] {
		return t
	}
	return ""
}

// errorChain renders the wrapped errors one per line, indented by depth,
// each with its type where the type says something (see layerName).
// Go errors carry no stack; errors that do (StackTrace() or Stack()) add it.
func errorChain(err error) string {
	var b strings.Builder
	var walk func(err error, depth int)
	walk = func(err error, depth int) {
		if err == nil || depth > maxErrorDepth {
			return
		}
		b.WriteString(strings.Repeat("  ", depth))
		if name := layerName(err); name != "" {
			b.WriteString(name)
			b.WriteString(": ")
		}
		b.WriteString(err.Error())
		b.WriteByte('\n')
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

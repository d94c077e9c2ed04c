package task_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
)

func TestErrorTypeNamesOnlyWhatSaysSomething(t *testing.T) {
	opErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	cases := []struct {
		what string
		err  error
		want string
	}{
		{"errors.New", errors.New("boom"), ""},
		{"fmt.Errorf without %w", fmt.Errorf("boom %d", 1), ""},
		{"fmt.Errorf around errors.New", fmt.Errorf("a: %w", errors.New("b")), ""},
		{"errors.Join of plain errors", errors.Join(errors.New("a"), errors.New("b")), ""},
		{"Permanent of a plain error", task.Permanent(errors.New("card refused")), ""},
		{"Retry without a reason", task.Retry(time.Second), ""},
		{"a named library type", opErr, "*net.OpError"},
		{"a named type under wrappers", fmt.Errorf("x: %w", fmt.Errorf("y: %w", opErr)), "*net.OpError"},
		{"a named type before its sentinel", &fs.PathError{Op: "open", Path: "p", Err: fs.ErrNotExist}, "*fs.PathError"},
		{"a named type in the second branch of a join", errors.Join(errors.New("a"), opErr), "*net.OpError"},
		{"a named type in the second %w", fmt.Errorf("%w and %w", errors.New("a"), opErr), "*net.OpError"},
		{"a named type under Permanent", task.Permanent(fmt.Errorf("x: %w", opErr)), "*net.OpError"},
		{"a gotasks typed error", &task.DuplicateError{ID: "1", Key: "k"}, "*task.DuplicateError"},
		{"context.Canceled", context.Canceled, "context.Canceled"},
		{"context.DeadlineExceeded wrapped", fmt.Errorf("call: %w", context.DeadlineExceeded), "context.DeadlineExceeded"},
		{"io.EOF under Permanent and fmt", fmt.Errorf("x: %w", task.Permanent(fmt.Errorf("y: %w", io.EOF))), "io.EOF"},
		{"io.ErrUnexpectedEOF", io.ErrUnexpectedEOF, "io.ErrUnexpectedEOF"},
		{"fs.ErrNotExist, by its os name", fmt.Errorf("load: %w", fs.ErrNotExist), "os.ErrNotExist"},
		{"os.ErrPermission", os.ErrPermission, "os.ErrPermission"},
		{"a sentinel under RetryError", &task.RetryError{After: time.Second, Err: context.Canceled}, "context.Canceled"},
		{"a gotasks sentinel", fmt.Errorf("lookup: %w", task.ErrResultNotFound), "task.ErrResultNotFound"},
		{"a sentinel before a later named type", errors.Join(io.EOF, opErr), "io.EOF"},
		{"a wrapped *Error gives its own type", fmt.Errorf("sub-task: %w", &task.Error{Type: task.ErrorTypeTimeout, Message: "slow"}), task.ErrorTypeTimeout},
		{"a user's named type", myErr{"custom"}, "task_test.myErr"},
	}
	for _, c := range cases {
		e := task.NewError(c.err)
		if e.Type != c.want {
			t.Errorf("%s: Type = %q, want %q", c.what, e.Type, c.want)
		}
		if e.Message != c.err.Error() {
			t.Errorf("%s: Message = %q, want %q", c.what, e.Message, c.err.Error())
		}
	}
}

func TestAnErrorWithoutATypePrintsItsMessageAlone(t *testing.T) {
	e := task.NewError(fmt.Errorf("charge: %w", errors.New("card refused")))
	if got := e.Error(); got != "charge: card refused" {
		t.Errorf("Error() = %q, want the message alone", got)
	}
	// The traceback shows every layer's message, without the types of
	// anonymous wrappers: they say nothing of what went wrong.
	if want := "charge: card refused\n  card refused\n"; e.Traceback != want {
		t.Errorf("Traceback = %q, want %q", e.Traceback, want)
	}
	// Permanent is the library's own wrapper: not shown either; a named
	// type and a sentinel are.
	p := task.NewError(task.Permanent(fmt.Errorf("charge: %w", io.ErrUnexpectedEOF)))
	if want := "charge: unexpected EOF\n  charge: unexpected EOF\n    io.ErrUnexpectedEOF: unexpected EOF\n"; p.Traceback != want {
		t.Errorf("Traceback of a Permanent = %q, want %q", p.Traceback, want)
	}
}

func TestAPermanentFailureIsReportedByWhatItWraps(t *testing.T) {
	ctx := context.Background()
	refuse := task.Define(taskName(t, "refuse"), func(ctx context.Context, _ int) (int, error) {
		return 0, task.Permanent(fmt.Errorf("charge: %w", io.ErrUnexpectedEOF))
	}, task.MaxAttempts(3))
	res, err := refuse.Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != task.StatusFailed || res.Attempts != 1 || res.Err == nil {
		t.Fatalf("result: %s after %d attempts, %+v; want FAILED after 1", res.Status, res.Attempts, res.Err)
	}
	if res.Err.Type != "io.ErrUnexpectedEOF" || res.Err.Error() != "io.ErrUnexpectedEOF: charge: unexpected EOF" {
		t.Errorf("Error = {%q, %q}", res.Err.Type, res.Err.Error())
	}
}

func TestAPanicWithAPlainErrorStaysAPanic(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		p    error
		want string
	}{
		{errors.New("bad state"), task.ErrorTypePanic},
		{fmt.Errorf("read: %w", io.EOF), "io.EOF"},
	}
	for _, c := range cases {
		tk := task.Define(taskName(t, "panic"), func(ctx context.Context, _ int) (int, error) { panic(c.p) })
		res, err := tk.Enqueue(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if res.Err == nil || res.Err.Type != c.want || res.Err.Message != "panic: "+c.p.Error() {
			t.Errorf("panic(%v): %+v, want Type %q", c.p, res.Err, c.want)
		}
	}
}

package task

import (
	"context"
	"time"
)

// Progress is what a running task last said of how far it got (see
// SetProgress). It is kept with the result once the task finishes.
type Progress struct {
	Done, Total int64  // Total 0: unknown
	Message     string // short; cut to MaxProgressMessage bytes
	At          time.Time
}

// MaxProgressMessage bounds Progress.Message, in bytes.
const MaxProgressMessage = 200

// ProgressReporter is what a runner (a worker, a backend) puts in a task's
// context to receive its SetProgress calls. Report must be cheap and must
// not block: a task may call SetProgress in a tight loop; the runner
// throttles what it writes.
type ProgressReporter interface {
	Report(p Progress)
}

type progressKey struct{}

// WithProgressReporter returns ctx carrying rep, for runners.
func WithProgressReporter(ctx context.Context, rep ProgressReporter) context.Context {
	return context.WithValue(ctx, progressKey{}, rep)
}

// SetProgress reports how far the running task got: done of total steps
// (total 0: unknown) and a short message. Call it as often as is handy:
// a worker writes at most a few updates a second per task (the latest
// wins), and the last one is kept with the result. Other processes read
// it with Result.Progress, admin show and the dashboard. Outside a worker
// (Task.Call, a context without a runner) it does nothing.
func SetProgress(ctx context.Context, done, total int64, message string) {
	rep, ok := ctx.Value(progressKey{}).(ProgressReporter)
	if !ok {
		return
	}
	if len(message) > MaxProgressMessage {
		message = message[:MaxProgressMessage]
	}
	rep.Report(Progress{Done: done, Total: total, Message: message, At: time.Now()})
}

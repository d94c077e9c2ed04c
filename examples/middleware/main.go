// Command middleware carries a request id from the code that enqueues a
// task to the code that runs it: enqueue middleware copies it into the
// task's metadata, run middleware puts it back into the task's context
// (and logs each attempt with it).
package main

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/gotasks/gotasks/task"
)

type requestIDKey struct{}

// WithRequestID returns ctx carrying a request id, as an HTTP handler's
// middleware would set it.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id ctx carries, or the empty string.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// StampRequestID is enqueue middleware: it copies the caller's request id
// into the metadata of the tasks it enqueues.
func StampRequestID(next task.EnqueueFunc) task.EnqueueFunc {
	return func(ctx context.Context, b task.Backend, msgs []*task.Message) error {
		if id := RequestID(ctx); id != "" {
			for _, m := range msgs { // one for Enqueue, the batch for EnqueueMany
				if m.Metadata == nil {
					m.Metadata = task.Metadata{}
				}
				m.Metadata["request_id"] = id
			}
		}
		return next(ctx, b, msgs) // stores them; an error here is the caller's
	}
}

// RestoreRequestID is run middleware: it puts the request id back into the
// task's context and logs each attempt with it.
func RestoreRequestID(next task.RunFunc) task.RunFunc {
	return func(ctx context.Context, r *task.RawResult) ([]byte, error) {
		ctx = WithRequestID(ctx, r.Metadata["request_id"])
		start := time.Now()
		value, err := next(ctx, r) // a panic in the task comes back as a *task.Error
		slog.InfoContext(ctx, "attempt", "task", r.TaskName, "attempt", r.Attempts,
			"request_id", RequestID(ctx), "took", time.Since(start), "error", err)
		return value, err
	}
}

var greet = task.Define("middleware.greet", func(ctx context.Context, name string) (string, error) {
	return "hello " + name + " from request " + RequestID(ctx), nil
}, task.Meta("team", "growth")) // metadata of the task's own, beside what middleware adds

func main() {
	// The ImmediateBackend (development, tests) runs the same chains as Redis
	// and its workers: the task runs at Enqueue.
	task.Configure(map[string]task.Backend{"default": task.NewImmediateBackend("default", task.BackendOptions{
		EnqueueMiddleware: []task.EnqueueMiddleware{StampRequestID},
		RunMiddleware:     []task.RunMiddleware{RestoreRequestID},
	})})

	ctx := WithRequestID(context.Background(), "req-42")
	res, err := greet.Enqueue(ctx, "ann")
	if err != nil {
		log.Fatal(err)
	}
	v, err := res.Value()
	fmt.Println(v, err, res.Metadata)
}

package gotasksotel

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/gotasks/gotasks/task"
)

// RunMiddleware returns the middleware that makes the consumer span of
// each attempt ("process <queue>"), linked to the producer span whose
// context the task's metadata carries (or its child, in SpanMode Child).
func (i *Instrumentation) RunMiddleware() task.RunMiddleware {
	return func(next task.RunFunc) task.RunFunc {
		return func(ctx context.Context, r *task.RawResult) (value []byte, err error) {
			start := i.metrics.clock(ctx, OperationProcess)
			ctx, span := i.startProcess(ctx, r)
			returned := false
			defer func() {
				if !returned {
					i.abandoned(ctx, span, r, start, recover())
				}
			}()
			value, err = next(ctx, r)
			returned = true
			i.metrics.processed(ctx, r, endSpan(span, err), start)
			return value, err
		}
	}
}

// abandoned ends the span of an attempt whose run middleware did not
// return: a middleware further in panicked with p (the task's own panic
// comes back as an error), which goes on, or the goroutine is ending
// (runtime.Goexit).
func (i *Instrumentation) abandoned(ctx context.Context, span trace.Span, r *task.RawResult, start time.Time, p any) {
	err := &task.Error{Type: task.ErrorTypeGoexit, Message: "the attempt called runtime.Goexit"}
	if p != nil {
		err = &task.Error{Type: task.ErrorTypePanic, Message: fmt.Sprintf("panic: %v", p)}
	}
	i.metrics.processed(ctx, r, endSpan(span, err), start)
	if p != nil {
		panic(p)
	}
}

// startProcess starts the consumer span of the attempt r.
func (i *Instrumentation) startProcess(ctx context.Context, r *task.RawResult) (context.Context, trace.Span) {
	sh := i.shapes.get(OperationProcess, r.Queue)
	opts := sh.opts
	if len(r.Metadata) > 0 {
		outer := trace.SpanContextFromContext(ctx)
		ctx = i.prop.Extract(ctx, MetadataCarrier(r.Metadata))
		sc := trace.SpanContextFromContext(ctx)
		if i.mode == Link && sc.IsValid() && sc.IsRemote() && !sc.Equal(outer) { // the producer's
			opts = append(opts[:len(opts):len(opts)], trace.WithLinks(trace.Link{SpanContext: sc}))
		}
	}
	ctx, span := i.tracer.Start(ctx, sh.name, opts...)
	if span.IsRecording() {
		span.SetAttributes(processAttrs(ctx, r)...)
	}
	return ctx, span
}

// processAttrs are the attributes of a process span beside its shape's.
func processAttrs(ctx context.Context, r *task.RawResult) []attribute.KeyValue {
	info, ok := task.InfoFrom(ctx)
	if !ok { // the same, from the result
		info = task.Info{ResultID: r.ID, TaskName: r.TaskName, Attempt: r.Attempts}
		if n := len(r.WorkerIDs); n > 0 {
			info.WorkerID = r.WorkerIDs[n-1]
		}
	}
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs, semconv.MessagingMessageID(info.ResultID),
		TaskNameKey.String(info.TaskName), TaskAttemptKey.Int(info.Attempt))
	if info.WorkerID != "" {
		attrs = append(attrs, WorkerIDKey.String(info.WorkerID))
	}
	if r.Backend != "" {
		attrs = append(attrs, BackendKey.String(r.Backend))
	}
	return attrs
}

// endSpan records the outcome on span and ends it: for an error, an
// exception event, the status Error and error.type, whose value it
// returns; otherwise the status Ok, and it returns the empty string.
func endSpan(span trace.Span, err error) (errType string) {
	defer span.End()
	if err == nil {
		span.SetStatus(codes.Ok, "")
		return ""
	}
	errType = ErrorType(err)
	if span.IsRecording() {
		var opts []trace.EventOption
		var te *task.Error
		if errors.As(err, &te) && te.Traceback != "" {
			opts = append(opts, trace.WithAttributes(semconv.ExceptionStacktrace(te.Traceback)))
		}
		span.RecordError(err, opts...)
		span.SetAttributes(semconv.ErrorTypeKey.String(errType))
	}
	span.SetStatus(codes.Error, err.Error())
	return errType
}

// ErrorType is the value of error.type for err: the Type gotasks gives
// the failure (see task.Error and task.NewError), such as "gotasks.Panic",
// "context.DeadlineExceeded" or "*fs.PathError", or "_OTHER" when that is
// the empty string (an errors.New error).
func ErrorType(err error) string {
	var te *task.Error
	t := ""
	if errors.As(err, &te) {
		t = te.Type
	}
	if t == "" {
		t = task.NewError(err).Type
	}
	if t == "" {
		return semconv.ErrorTypeOther.Value.AsString()
	}
	return t
}

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
			start := time.Now()
			ctx, span := i.startProcess(ctx, r)
			returned := false
			defer func() {
				if returned {
					return
				}
				// A middleware further in panicked (the task's own panic
				// comes back as an error), or the task called
				// runtime.Goexit: the span ends all the same.
				p := recover()
				ferr := &task.Error{Type: task.ErrorTypeGoexit, Message: "the task called runtime.Goexit"}
				if p != nil {
					ferr = &task.Error{Type: task.ErrorTypePanic, Message: fmt.Sprintf("panic: %v", p)}
				}
				i.metrics.processed(ctx, r, endSpan(span, ferr), time.Since(start))
				if p != nil {
					panic(p)
				}
			}()
			value, err = next(ctx, r)
			returned = true
			i.metrics.processed(ctx, r, endSpan(span, err), time.Since(start))
			return value, err
		}
	}
}

// startProcess starts the consumer span of the attempt r.
func (i *Instrumentation) startProcess(ctx context.Context, r *task.RawResult) (context.Context, trace.Span) {
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(processAttrs(ctx, r)...),
	}
	var producer trace.SpanContext
	if len(r.Metadata) > 0 {
		outer := trace.SpanContextFromContext(ctx)
		ctx = i.prop.Extract(ctx, MetadataCarrier(r.Metadata))
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() && sc.IsRemote() && !sc.Equal(outer) {
			producer = sc
		}
	}
	if i.mode == Link {
		opts = append(opts, trace.WithNewRoot())
		if producer.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: producer}))
		}
	}
	return i.tracer.Start(ctx, spanName(OperationProcess, r.Queue), opts...)
}

func processAttrs(ctx context.Context, r *task.RawResult) []attribute.KeyValue {
	info, ok := task.InfoFrom(ctx)
	if !ok { // the same, from the result
		info = task.Info{ResultID: r.ID, TaskName: r.TaskName, Attempt: r.Attempts}
		if n := len(r.WorkerIDs); n > 0 {
			info.WorkerID = r.WorkerIDs[n-1]
		}
	}
	attrs := make([]attribute.KeyValue, 0, 9)
	attrs = append(attrs, systemAttr, semconv.MessagingOperationTypeProcess, processOpAttr,
		semconv.MessagingDestinationName(r.Queue), semconv.MessagingMessageID(info.ResultID),
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

package gotasksotel

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/gotasks/gotasks/task"
)

// Attribute keys of gotasks' own, beside the messaging conventions.
const (
	TaskNameKey    = attribute.Key("gotasks.task.name")
	TaskAttemptKey = attribute.Key("gotasks.task.attempt")
	WorkerIDKey    = attribute.Key("gotasks.worker.id")
	BackendKey     = attribute.Key("gotasks.backend")
)

// Operation names (messaging.operation.name).
const (
	OperationPublish = "publish"
	OperationProcess = "process"
)

var (
	systemAttr    = semconv.MessagingSystemKey.String(SystemName)
	publishOpAttr = semconv.MessagingOperationName(OperationPublish)
	processOpAttr = semconv.MessagingOperationName(OperationProcess)
)

// EnqueueMiddleware returns the middleware that makes the producer span of
// each enqueue call ("publish <queue>", one for a whole EnqueueMany) and
// writes its context into the metadata of every message.
func (i *Instrumentation) EnqueueMiddleware() task.EnqueueMiddleware {
	return func(next task.EnqueueFunc) task.EnqueueFunc {
		return func(ctx context.Context, b task.Backend, msgs []*task.Message) error {
			if len(msgs) == 0 {
				return next(ctx, b, msgs)
			}
			return i.publish(ctx, b, msgs, next)
		}
	}
}

func (i *Instrumentation) publish(ctx context.Context, b task.Backend, msgs []*task.Message, next task.EnqueueFunc) error {
	start := time.Now()
	queue, taskName := common(msgs)
	ctx, span := i.tracer.Start(ctx, spanName(OperationPublish, queue),
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(publishAttrs(b, queue, taskName, len(msgs))...))
	for _, m := range msgs {
		i.inject(ctx, m)
	}
	err := next(ctx, b, msgs)
	if len(msgs) == 1 && msgs[0].ID != "" { // the backend may set it
		span.SetAttributes(semconv.MessagingMessageID(msgs[0].ID))
	}
	errType := endSpan(span, err)
	i.metrics.published(ctx, msgs, queue, errType, time.Since(start))
	return err
}

// common returns the queue and task name the messages share, or the empty
// string for one they do not.
func common(msgs []*task.Message) (queue, taskName string) {
	queue, taskName = msgs[0].Queue, msgs[0].TaskName
	for _, m := range msgs[1:] {
		if m.Queue != queue {
			queue = ""
		}
		if m.TaskName != taskName {
			taskName = ""
		}
	}
	return queue, taskName
}

// spanName is "<operation> <queue>", or the operation alone without a
// queue.
func spanName(op, queue string) string {
	if queue == "" {
		return op
	}
	return op + " " + queue
}

func publishAttrs(b task.Backend, queue, taskName string, n int) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 7)
	attrs = append(attrs, systemAttr, semconv.MessagingOperationTypeSend, publishOpAttr)
	if queue != "" {
		attrs = append(attrs, semconv.MessagingDestinationName(queue))
	}
	if n > 1 {
		attrs = append(attrs, semconv.MessagingBatchMessageCount(n))
	}
	if taskName != "" {
		attrs = append(attrs, TaskNameKey.String(taskName))
	}
	if b != nil {
		attrs = append(attrs, BackendKey.String(b.Name()))
	}
	return attrs
}

// inject writes the context of ctx's span into m's metadata (which the
// message owns: see task.EnqueueMiddleware).
func (i *Instrumentation) inject(ctx context.Context, m *task.Message) {
	if len(i.prop.Fields()) == 0 { // the global propagator, never set
		return
	}
	if m.Metadata == nil {
		m.Metadata = make(task.Metadata, 2)
	}
	i.prop.Inject(ctx, MetadataCarrier(m.Metadata))
	if len(m.Metadata) == 0 {
		m.Metadata = nil // nil when there is none
	}
}

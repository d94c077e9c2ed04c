package gotasksotel

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"

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

var systemAttr = semconv.MessagingSystemKey.String(SystemName)

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
	start := i.metrics.clock(ctx, OperationPublish)
	queue, taskName := common(msgs)
	sh := i.shapes.get(OperationPublish, queue)
	ctx, span := i.tracer.Start(ctx, sh.name, sh.opts...)
	for _, m := range msgs {
		i.prop.Inject(ctx, (*messageCarrier)(m))
	}
	err := next(ctx, b, msgs)
	if span.IsRecording() {
		span.SetAttributes(publishAttrs(b, msgs, taskName)...)
	}
	errType := endSpan(span, err)
	i.metrics.published(ctx, msgs, queue, errType, start)
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

// publishAttrs are the attributes of a publish span beside its shape's.
func publishAttrs(b task.Backend, msgs []*task.Message, taskName string) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 3)
	if len(msgs) > 1 {
		attrs = append(attrs, semconv.MessagingBatchMessageCount(len(msgs)))
	} else if msgs[0].ID != "" {
		attrs = append(attrs, semconv.MessagingMessageID(msgs[0].ID))
	}
	if taskName != "" {
		attrs = append(attrs, TaskNameKey.String(taskName))
	}
	if b != nil {
		attrs = append(attrs, BackendKey.String(b.Name()))
	}
	return attrs
}

package gotasksotel

import (
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// shape is what every span of one operation on one queue starts with: its
// name and start options, with the attributes a sampler may look at
// (messaging.system, messaging.operation.type and .name,
// messaging.destination.name). The other attributes are set only on spans
// that record, so that spans that do not (a no-op tracer, sampling off)
// cost no more than they must.
type shape struct {
	name string
	opts []trace.SpanStartOption // read-only: append to a copy
}

type shapeKey struct{ op, queue string }

// shapes caches the shapes of an Instrumentation.
type shapes struct {
	c    cache[shapeKey, *shape]
	mode SpanMode
}

func (s *shapes) get(op, queue string) *shape { return s.c.get(shapeKey{op, queue}, s.make) }

func (s *shapes) make(k shapeKey) *shape {
	kind, opType := trace.SpanKindProducer, semconv.MessagingOperationTypeSend
	if k.op == OperationProcess {
		kind, opType = trace.SpanKindConsumer, semconv.MessagingOperationTypeProcess
	}
	attrs := []attribute.KeyValue{systemAttr, opType, semconv.MessagingOperationName(k.op)}
	if k.queue != "" {
		attrs = append(attrs, semconv.MessagingDestinationName(k.queue))
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(kind), trace.WithAttributes(attrs...)}
	if k.op == OperationProcess && s.mode == Link {
		opts = append(opts, trace.WithNewRoot())
	}
	name := k.op
	if k.queue != "" {
		name += " " + k.queue
	}
	return &shape{name: name, opts: opts}
}

package gotasksotel

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"

	"github.com/gotasks/gotasks/task"
)

// Metric names, from the messaging semantic conventions.
const (
	MetricSentMessages      = "messaging.client.sent.messages"
	MetricOperationDuration = "messaging.client.operation.duration"
	MetricConsumedMessages  = "messaging.client.consumed.messages"
	MetricProcessDuration   = "messaging.process.duration"
)

// durationBuckets are the conventions' advice for messaging durations, in
// seconds.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

type instruments struct {
	sent       metric.Int64Counter
	sendTime   metric.Float64Histogram
	consumed   metric.Int64Counter
	processing metric.Float64Histogram

	sets cache[setKey, measure]
}

// setKey names the attributes of a measurement.
type setKey struct {
	op, queue, taskName, errType string
}

// newInstruments makes the instruments; an instrument that cannot be made
// (only a misbehaving MeterProvider fails) is a no-op one, as the API's
// contract lets its implementations return.
func newInstruments(m metric.Meter) *instruments {
	ins := &instruments{}
	ins.sent, _ = m.Int64Counter(MetricSentMessages, metric.WithUnit("{message}"),
		metric.WithDescription("Number of tasks enqueued (attempted)."))
	ins.sendTime, _ = m.Float64Histogram(MetricOperationDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of enqueue calls."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	ins.consumed, _ = m.Int64Counter(MetricConsumedMessages, metric.WithUnit("{message}"),
		metric.WithDescription("Number of task attempts started."))
	ins.processing, _ = m.Float64Histogram(MetricProcessDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of task attempts."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	return ins
}

// clock returns the time now if the duration of op is measured, else the
// zero time (and spares reading the clock).
func (ins *instruments) clock(ctx context.Context, op string) time.Time {
	h := ins.processing
	if op == OperationPublish {
		h = ins.sendTime
	}
	if h.Enabled(ctx) {
		return time.Now()
	}
	return time.Time{}
}

// published records an enqueue call of msgs, whose common queue is queue
// (the empty string: several), that started at start (see clock).
func (ins *instruments) published(ctx context.Context, msgs []*task.Message, queue, errType string, start time.Time) {
	if !start.IsZero() {
		ins.sendTime.Record(ctx, time.Since(start).Seconds(), ins.set(setKey{OperationPublish, queue, "", errType}).rec...)
	}
	if !ins.sent.Enabled(ctx) {
		return
	}
	if queue != "" || len(msgs) == 1 {
		ins.sent.Add(ctx, int64(len(msgs)), ins.set(setKey{OperationPublish, msgs[0].Queue, "", errType}).add...)
		return
	}
	for _, m := range msgs { // rare: a batch over several queues
		ins.sent.Add(ctx, 1, ins.set(setKey{OperationPublish, m.Queue, "", errType}).add...)
	}
}

// processed records an attempt of r that started at start (see clock).
func (ins *instruments) processed(ctx context.Context, r *task.RawResult, errType string, start time.Time) {
	if !start.IsZero() {
		ins.processing.Record(ctx, time.Since(start).Seconds(), ins.set(setKey{OperationProcess, r.Queue, r.TaskName, errType}).rec...)
	}
	if ins.consumed.Enabled(ctx) {
		ins.consumed.Add(ctx, 1, ins.set(setKey{OperationProcess, r.Queue, "", errType}).add...)
	}
}

// measure is the options of a measurement with the attributes of a
// setKey, made once (read-only).
type measure struct {
	rec []metric.RecordOption
	add []metric.AddOption
}

// set returns the options of a measurement with the attributes k names.
func (ins *instruments) set(k setKey) measure {
	return ins.sets.get(k, func(k setKey) measure {
		o := metric.WithAttributeSet(k.attributes())
		return measure{rec: []metric.RecordOption{o}, add: []metric.AddOption{o}}
	})
}

func (k setKey) attributes() attribute.Set {
	kvs := make([]attribute.KeyValue, 0, 5)
	kvs = append(kvs, systemAttr, semconv.MessagingOperationName(k.op))
	if k.queue != "" {
		kvs = append(kvs, semconv.MessagingDestinationName(k.queue))
	}
	if k.taskName != "" {
		kvs = append(kvs, TaskNameKey.String(k.taskName))
	}
	if k.errType != "" {
		kvs = append(kvs, semconv.ErrorTypeKey.String(k.errType))
	}
	return attribute.NewSet(kvs...)
}

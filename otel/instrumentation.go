package gotasksotel

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/gotasks/gotasks/task"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/gotasks/gotasks/otel"

// SystemName is the value of messaging.system.
const SystemName = "gotasks"

// SpanMode says how the consumer span of an attempt relates to the
// producer span of the enqueue that stored the task.
type SpanMode int

const (
	// Link starts each attempt's span as the root of a trace of its own,
	// with a link to the producer span: a task that runs much later, or
	// many times, does not stretch the trace of the request that
	// enqueued it. It applies even when the task runs inside the enqueue
	// call (the Immediate backend).
	Link SpanMode = iota
	// Child makes each attempt's span a child of the producer span, in
	// its trace.
	Child
)

// String returns "link" or "child".
func (m SpanMode) String() string {
	if m == Child {
		return "child"
	}
	return "link"
}

// Options configure an Instrumentation; the zero value uses the global
// providers and propagator, and SpanMode Link.
type Options struct {
	// TracerProvider makes the tracer; nil: otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider makes the meter; nil: otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// Propagator writes the producer's context into each task's metadata
	// and reads it back in the worker; nil: otel.GetTextMapPropagator(),
	// which does nothing until the program sets one.
	Propagator propagation.TextMapPropagator
	// SpanMode: Link (the default) or Child.
	SpanMode SpanMode
}

// Instrumentation makes the spans and metrics of gotasks. It is safe for
// concurrent use; make one per configuration and reuse it.
type Instrumentation struct {
	tracer  trace.Tracer
	prop    propagation.TextMapPropagator
	mode    SpanMode
	shapes  *shapes
	metrics *instruments
}

// New returns an Instrumentation configured by opts.
func New(opts Options) *Instrumentation {
	tp := opts.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	mp := opts.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	prop := opts.Propagator
	if prop == nil {
		prop = otel.GetTextMapPropagator()
	}
	return &Instrumentation{
		tracer:  tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL)),
		prop:    prop,
		mode:    opts.SpanMode,
		shapes:  &shapes{mode: opts.SpanMode},
		metrics: newInstruments(mp.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL))),
	}
}

// Install makes an Instrumentation configured by opts and adds its
// middleware to every enqueue and every execution of the process
// (task.UseEnqueue, task.UseRun). Call it once, at start-up, before
// tasks are enqueued or workers start.
func Install(opts Options) *Instrumentation {
	i := New(opts)
	task.UseEnqueue(i.EnqueueMiddleware())
	task.UseRun(i.RunMiddleware())
	return i
}

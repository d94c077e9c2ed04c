// Command example traces gotasks with OpenTelemetry: a span for the
// enqueue, and one for each attempt of the task, linked to it.
package main

import (
	"context"
	"fmt"
	"log"
	"os"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	gotasksotel "github.com/gotasks/gotasks/otel"
	"github.com/gotasks/gotasks/task"
)

var sendEmail = task.Define("emails.send", func(ctx context.Context, to string) (string, error) {
	return "sent to " + to, nil // runs inside the span "process emails"
}, task.Queue("emails"))

// setupTracing is for the start of every program that enqueues or runs
// tasks, producers and workers alike: before it enqueues, before
// cli.Main or worker.Run.
func setupTracing(exp sdktrace.SpanExporter) (shutdown func(context.Context) error) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
	otel.SetTracerProvider(tp)
	// The trace context travels in each task's metadata: set a propagator.
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{}, propagation.Baggage{}))
	// Every enqueue and every attempt in this process; SpanMode Link (the
	// default) starts each attempt's trace linked to the enqueue's,
	// gotasksotel.Child continues the enqueue's trace.
	gotasksotel.Install(gotasksotel.Options{})
	return tp.Shutdown
}

func main() {
	exp, err := stdouttrace.New(stdouttrace.WithWriter(os.Stderr)) // yours: OTLP, ...
	if err != nil {
		log.Fatal(err)
	}
	shutdown := setupTracing(exp)
	defer shutdown(context.Background()) // exports what is left

	ctx, span := otel.Tracer("signup").Start(context.Background(), "signup")
	res, err := sendEmail.Enqueue(ctx, "ann@example.com") // span "publish emails"
	span.End()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Status, res.Metadata["traceparent"] != "")
}

// Command testworker is the worker process of the otel module's
// cross-process test: the gotasks command line (cli.Main) with the task
// "otel.cross.echo" and the instrumentation installed, exporting its spans
// as JSON lines (stdouttrace) to the file $GOTASKS_OTEL_SPANS_FILE.
// $GOTASKS_OTEL_SPAN_MODE is "link" (the default) or "child".
package main

import (
	"context"
	"fmt"
	"os"

	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/gotasks/gotasks/cli"
	gotasksotel "github.com/gotasks/gotasks/otel"
	"github.com/gotasks/gotasks/task"
)

// Environment variables the test sets.
const (
	EnvSpansFile = "GOTASKS_OTEL_SPANS_FILE"
	EnvSpanMode  = "GOTASKS_OTEL_SPAN_MODE"
)

// echo returns the trace and span ids of the span it runs in, as
// "traceid-spanid", so that the test can match them with the spans the
// worker exported. The test defines the same task (name and queue) to
// enqueue it.
var _ = task.Define("otel.cross.echo", func(ctx context.Context, s string) (string, error) {
	sc := trace.SpanContextFromContext(ctx)
	return sc.TraceID().String() + "-" + sc.SpanID().String(), nil
}, task.Queue("cross"))

func main() { os.Exit(run()) }

func run() int {
	f, err := os.Create(os.Getenv(EnvSpansFile))
	if err != nil {
		fmt.Fprintln(os.Stderr, "testworker:", err)
		return 2
	}
	defer f.Close()
	exp, err := stdouttrace.New(stdouttrace.WithWriter(f))
	if err != nil {
		fmt.Fprintln(os.Stderr, "testworker:", err)
		return 2
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	mode := gotasksotel.Link
	if os.Getenv(EnvSpanMode) == "child" {
		mode = gotasksotel.Child
	}
	gotasksotel.Install(gotasksotel.Options{
		TracerProvider: tp, Propagator: propagation.TraceContext{}, SpanMode: mode,
	})
	return cli.Main(os.Args)
}

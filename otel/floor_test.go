package gotasksotel_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	gotasksotel "github.com/gotasks/gotasks/otel"
	"github.com/gotasks/gotasks/task"
)

// BenchmarkSDKFloor is the floor under the sdk-never case of
// BenchmarkOverhead and of the bench's middleware drain: what the
// OpenTelemetry SDK itself costs per attempt, with no gotasks code
// around it: extract the producer's context from the metadata, start a
// consumer span with NeverSample, set its status, end it. From several
// goroutines at once, as a worker's runners call it.
//
//	go test -run '^$' -bench SDKFloor ./
func BenchmarkSDKFloor(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tracer := tp.Tracer("floor")
	prop := propagation.TraceContext{}
	md := task.Metadata{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ctx := prop.Extract(context.Background(), gotasksotel.MetadataCarrier(md))
			_, span := tracer.Start(ctx, "process q", trace.WithSpanKind(trace.SpanKindConsumer))
			span.End()
		}
	})
}

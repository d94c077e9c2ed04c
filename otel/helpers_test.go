package gotasksotel_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	gotasksotel "github.com/gotasks/gotasks/otel"
	"github.com/gotasks/gotasks/task"
)

// The tasks of the in-process tests (a name is defined once per process).
var (
	addOne = task.Define("otel.add", func(ctx context.Context, n int) (int, error) {
		return n + 1, nil
	}, task.Queue("math"))
	failing = task.Define("otel.fail", func(ctx context.Context, _ string) (int, error) {
		return 0, errors.New("boom")
	}, task.Queue("math"))
	panicking = task.Define("otel.panic", func(ctx context.Context, _ string) (int, error) {
		panic("kaboom")
	}, task.Queue("math"))
	// seen is the span context the task "otel.current" ran in.
	seen    = make(chan trace.SpanContext, 1)
	current = task.Define("otel.current", func(ctx context.Context, _ string) (int, error) {
		seen <- trace.SpanContextFromContext(ctx)
		return 0, nil
	}, task.Queue("math"))
)

// quiet discards the backends' log lines.
var quiet = slog.New(slog.DiscardHandler)

// env is an SDK tracer and meter recording in memory, and the
// instrumentation that reports to them.
type env struct {
	spans  *tracetest.InMemoryExporter
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	inst   *gotasksotel.Instrumentation
}

func newEnv(t *testing.T, mode gotasksotel.SpanMode) *env {
	t.Helper()
	e := &env{spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	e.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(e.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.reader))
	t.Cleanup(func() {
		_ = e.tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	e.inst = gotasksotel.New(gotasksotel.Options{
		TracerProvider: e.tp, MeterProvider: mp,
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		SpanMode:   mode,
	})
	return e
}

// immediate configures, as "default", an Immediate backend with e's
// middleware, and returns it.
func (e *env) immediate(t *testing.T) task.Backend {
	t.Helper()
	b := task.NewImmediateBackend("default", task.BackendOptions{
		Logger:            quiet,
		EnqueueMiddleware: []task.EnqueueMiddleware{e.inst.EnqueueMiddleware()},
		RunMiddleware:     []task.RunMiddleware{e.inst.RunMiddleware()},
	})
	configure(t, b)
	return b
}

// dummy configures, as "default", a Dummy backend with e's enqueue
// middleware, and returns it.
func (e *env) dummy(t *testing.T) *task.DummyBackend {
	t.Helper()
	b := task.NewDummyBackend("default", task.BackendOptions{
		EnqueueMiddleware: []task.EnqueueMiddleware{e.inst.EnqueueMiddleware()},
	})
	configure(t, b)
	return b
}

func configure(t testing.TB, b task.Backend) {
	t.Helper()
	task.Configure(map[string]task.Backend{"default": b})
	t.Cleanup(func() { task.Configure(nil) })
}

// span returns the one ended span named name.
func (e *env) span(t *testing.T, name string) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range e.spans.GetSpans() {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans named %q, want 1; spans: %v", len(found), name, names(e.spans.GetSpans()))
	}
	return found[0]
}

func names(spans tracetest.SpanStubs) []string {
	var n []string
	for _, s := range spans {
		n = append(n, s.Name)
	}
	return n
}

// attrs returns the attributes as a map of their values' strings.
func attrs(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

// wantAttrs fails t for each of want that got lacks or has another value
// of ("" in want: must be absent).
func wantAttrs(t *testing.T, what string, m, want map[string]string) {
	t.Helper()
	for k, v := range want {
		g, ok := m[k]
		switch {
		case v == "" && ok:
			t.Errorf("%s: %s = %q, want none", what, k, g)
		case v != "" && g != v:
			t.Errorf("%s: %s = %q, want %q (all: %v)", what, k, g, v, m)
		}
	}
}

// metrics collects e's metrics by name.
func (e *env) metrics(t *testing.T) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := e.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != gotasksotel.ScopeName {
			t.Errorf("scope %q", sm.Scope.Name)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

// sums returns a counter's values by the attributes' "key=value,..."
// encoding.
func sums(t *testing.T, a metricdata.Aggregation) map[string]int64 {
	t.Helper()
	s, ok := a.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%T is not an int64 sum", a)
	}
	out := map[string]int64{}
	for _, dp := range s.DataPoints {
		out[dp.Attributes.Encoded(attribute.DefaultEncoder())] += dp.Value
	}
	return out
}

// counts returns a histogram's counts by the attributes' encoding.
func counts(t *testing.T, a metricdata.Aggregation) map[string]uint64 {
	t.Helper()
	h, ok := a.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%T is not a float64 histogram", a)
	}
	out := map[string]uint64{}
	for _, dp := range h.DataPoints {
		out[dp.Attributes.Encoded(attribute.DefaultEncoder())] += dp.Count
	}
	return out
}

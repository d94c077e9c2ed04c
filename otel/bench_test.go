package gotasksotel_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	gotasksotel "github.com/gotasks/gotasks/otel"
	"github.com/gotasks/gotasks/task"
)

// overheadCase is one way of running the Immediate backend's enqueue and
// execute loop.
type overheadCase struct {
	name string
	// mws returns the backend's middleware; nil: none.
	mws func(b *testing.B) (task.EnqueueMiddleware, task.RunMiddleware)
}

func instrumented(tp trace.TracerProvider, mp metric.MeterProvider) (task.EnqueueMiddleware, task.RunMiddleware) {
	i := gotasksotel.New(gotasksotel.Options{TracerProvider: tp, MeterProvider: mp, Propagator: propagation.TraceContext{}})
	return i.EnqueueMiddleware(), i.RunMiddleware()
}

var overheadCases = []overheadCase{
	{name: "none"},
	{name: "passthrough", mws: func(*testing.B) (task.EnqueueMiddleware, task.RunMiddleware) {
		return func(next task.EnqueueFunc) task.EnqueueFunc { return next },
			func(next task.RunFunc) task.RunFunc { return next }
	}},
	{name: "noop", mws: func(*testing.B) (task.EnqueueMiddleware, task.RunMiddleware) {
		return instrumented(tracenoop.NewTracerProvider(), metricnoop.NewMeterProvider())
	}},
	{name: "sdk-never", mws: func(b *testing.B) (task.EnqueueMiddleware, task.RunMiddleware) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
		b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		return instrumented(tp, metricnoop.NewMeterProvider())
	}},
	{name: "sdk-never+metrics", mws: func(b *testing.B) (task.EnqueueMiddleware, task.RunMiddleware) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() {
			_ = tp.Shutdown(context.Background())
			_ = mp.Shutdown(context.Background())
		})
		return instrumented(tp, mp)
	}},
}

// BenchmarkOverhead runs a loop in each way of overheadCases, interleaved
// (each case first in turn) so that the machine's drift and neighbours
// weigh on each alike, and reports each one's ns/op and its overhead over
// "none" (no middleware) and over "passthrough" (middleware that does
// nothing: what having run middleware at all costs, a goroutine per
// attempt).
//
//   - immediate: Enqueue on the Immediate backend, which runs the task at
//     once (enqueue middleware, execute, run middleware) in a goroutine
//     of its own per attempt; a new goroutine's stack grows as the
//     middleware and the SDK call deeper, which counts here but not on a
//     worker, whose goroutines live on;
//
//   - execute: task.ExecuteWith on the benchmark's goroutine, as a
//     worker's pool runs a claimed task (without Redis), the task
//     carrying a producer's trace context.
//
//     go test -run '^$' -bench Overhead -benchtime 20000x ./
func BenchmarkOverhead(b *testing.B) {
	b.Run("immediate", benchImmediate)
	b.Run("execute", benchExecute)
}

func benchImmediate(b *testing.B) {
	backends := map[string]task.Backend{}
	tasks := make([]*task.Task[int, int], len(overheadCases))
	for i, c := range overheadCases {
		opts := task.BackendOptions{Logger: quiet}
		if c.mws != nil {
			e, r := c.mws(b)
			opts.EnqueueMiddleware, opts.RunMiddleware = []task.EnqueueMiddleware{e}, []task.RunMiddleware{r}
		}
		backends[c.name] = task.NewImmediateBackend(c.name, opts)
		tasks[i] = addOne.Using(task.UseBackend(c.name))
	}
	task.Configure(backends)
	b.Cleanup(func() { task.Configure(nil) })
	ctx := context.Background()
	interleave(b, func(i, n int) {
		if _, err := tasks[i].Enqueue(ctx, n); err != nil {
			b.Fatal(err)
		}
	})
}

func benchExecute(b *testing.B) {
	d := task.NewDummyBackend("default", task.BackendOptions{})
	configure(b, d)
	if _, err := addOne.Enqueue(context.Background(), 1); err != nil {
		b.Fatal(err)
	}
	claimed := d.Results()[0]
	claimed.Status, claimed.StartedAt, claimed.Attempts, claimed.WorkerIDs = task.StatusRunning, time.Now(), 1, []string{"w"}
	claimed.Metadata = task.Metadata{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	mws := make([][]task.RunMiddleware, len(overheadCases))
	for i, c := range overheadCases {
		if c.mws != nil {
			_, r := c.mws(b)
			mws[i] = []task.RunMiddleware{r}
		}
	}
	ctx := context.Background()
	interleave(b, func(i, n int) {
		r := *claimed
		task.ExecuteWith(ctx, &r, mws[i]...)
		if r.Status != task.StatusComplete {
			b.Fatal(r.Status, r.Err)
		}
	})
}

// interleave runs op(i, n) for each case i, b.N times, and reports the
// time each case took.
func interleave(b *testing.B, op func(i, n int)) {
	spent := make([]time.Duration, len(overheadCases))
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for k := range overheadCases {
			i := (n + k) % len(overheadCases)
			start := time.Now()
			op(i, n)
			spent[i] += time.Since(start)
		}
	}
	b.StopTimer()
	perOp := func(i int) float64 { return float64(spent[i].Nanoseconds()) / float64(b.N) }
	for i, c := range overheadCases {
		b.ReportMetric(perOp(i), c.name+"-ns/op")
	}
	for i, c := range overheadCases[2:] {
		b.ReportMetric(100*(perOp(i+2)/perOp(0)-1), c.name+"-%vs-none")
		b.ReportMetric(100*(perOp(i+2)/perOp(1)-1), c.name+"-%vs-passthrough")
	}
	b.ReportMetric(0, "ns/op")        // the loop's own figure sums every case: see the per-case ones
	if testing.Verbose() && b.N > 1 { // not the one-iteration probe
		for i, c := range overheadCases {
			fmt.Printf("%-10s %-18s %8.0f ns/op  %+6.1f%% vs none  %+6.1f%% vs passthrough\n",
				b.Name(), c.name, perOp(i), 100*(perOp(i)/perOp(0)-1), 100*(perOp(i)/perOp(1)-1))
		}
	}
}

// BenchmarkMiddleware is the CPU cost of each middleware alone, per call:
// the enqueue middleware around an enqueue of one message that stores
// nothing, and the run middleware around an attempt that does nothing,
// with the producer's context in the task's metadata. "bare" is the same
// call without the middleware: subtract it.
func BenchmarkMiddleware(b *testing.B) {
	sampled := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = sampled.Shutdown(context.Background()) })
	cases := append(overheadCases[:1:1], overheadCases[2:]...) // "none" becomes "bare"
	cases = append(cases, overheadCase{name: "sdk-sampled", mws: func(*testing.B) (task.EnqueueMiddleware, task.RunMiddleware) {
		return instrumented(sampled, metricnoop.NewMeterProvider())
	}})
	store := func(ctx context.Context, b task.Backend, msgs []*task.Message) error { return nil }
	work := func(ctx context.Context, r *task.RawResult) ([]byte, error) { return nil, nil }
	backend := task.NewDummyBackend("bench", task.BackendOptions{})
	r := &task.RawResult{ID: "01M9172GVR2N1DEBMYSESE7WFH", TaskName: "otel.add", Queue: "math", Status: task.StatusRunning,
		Attempts: 1, WorkerIDs: []string{"w"}, Backend: "default",
		Metadata: task.Metadata{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
	ctx := context.Background()
	for _, c := range cases {
		enqueue, run := task.EnqueueFunc(store), task.RunFunc(work)
		name := "bare"
		if c.mws != nil {
			e, rm := c.mws(b)
			enqueue, run, name = e(store), rm(work), c.name
		}
		b.Run("enqueue/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m := &task.Message{ID: "01M9172GVR2N1DEBMYSESE7WFH", TaskName: "otel.add", Queue: "math"}
				if err := enqueue(ctx, backend, []*task.Message{m}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("run/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := run(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

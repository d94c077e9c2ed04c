package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/gotasks/gotasks/task"
)

// TestMiddlewareRun runs the middleware section alone with tiny sizes and
// checks that every variant has its figures, and the targets their verdict.
func TestMiddlewareRun(t *testing.T) {
	requireRedis(t)
	path := filepath.Join(t.TempDir(), "report.json")
	var stdout, stderr bytes.Buffer
	args := []string{"--only", "middleware", "--tasks", "300", "--middleware-rounds", "2", "--json", path}
	if code := cli(args, &stdout, &stderr); code != 0 {
		t.Fatalf("bench %q exited %d\nstderr:\n%s", args, code, stderr.String())
	}
	t.Logf("\n%s", stdout.String())
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report JSON: %v\n%s", err, b)
	}
	m := rep.Middleware
	if m == nil || m.Tasks != 300 || m.Rounds != 2 || m.Concurrency != 16 || len(m.Variants) != len(mwVariants) {
		t.Fatalf("middleware section %+v", m)
	}
	for i, v := range m.Variants {
		want := mwVariants[i]
		switch {
		case v.ID != want.id:
			t.Errorf("variant %d is %q, want %q", i, v.ID, want.id)
		case v.Rate <= 0 || len(v.Rounds) != 2 || v.VsNone <= 0 || v.WorkerCPU <= 0 || v.RedisCPU <= 0:
			t.Errorf("%s: %+v", v.ID, v)
		case (want.maxCost > 0) != (v.Target != "" && v.Met != nil):
			t.Errorf("%s: target %q, met %v", v.ID, v.Target, v.Met)
		}
		if !strings.Contains(stdout.String(), v.Label) {
			t.Errorf("%s: %q is not in the table", v.ID, v.Label)
		}
	}
	if strings.Contains(stdout.String(), "gotasks/asynq") {
		t.Error("the table of n/a rows is printed with --only middleware")
	}
}

// TestMiddlewareLinks drains tasks as the section does, on a sampling SDK
// provider, and checks that every consumer span links to the producer
// span of the enqueue that stored its task: the enqueue middleware's
// effect does reach the drain.
func TestMiddlewareLinks(t *testing.T) {
	url := sharedRedisURL(t)
	a, err := newAdmin(url)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	e, run, shutdown := instrumentation(tp, nil)
	defer shutdown(context.Background())
	v := &mwBuilt{mwVariant: mwVariant{id: "sampled", wantContext: true}, enqueue: []task.EnqueueMiddleware{e}, run: []task.RunMiddleware{run}}
	const n = 50
	r := &runner{cfg: Config{Tasks: n}, url: url, admin: a, log: io.Discard}
	if _, err := r.middlewareOnce(context.Background(), v); err != nil {
		t.Fatal(err)
	}
	producers := map[[2]string]bool{} // trace and span ID
	var processed int
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindProducer {
			producers[ids(s.SpanContext())] = true
		}
	}
	for _, s := range rec.Ended() {
		if s.SpanKind() != trace.SpanKindConsumer {
			continue
		}
		processed++
		if links := s.Links(); len(links) != 1 || !producers[ids(links[0].SpanContext)] {
			t.Errorf("consumer span %q links to %v, not to one of the %d producer spans", s.Name(), links, len(producers))
		}
	}
	if processed != n || len(producers) == 0 {
		t.Errorf("%d consumer spans, %d producer spans; want %d and at least 1", processed, len(producers), n)
	}
}

func ids(sc trace.SpanContext) [2]string {
	return [2]string{sc.TraceID().String(), sc.SpanID().String()}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

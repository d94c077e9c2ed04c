package gotasksotel_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	gotasksotel "github.com/gotasks/gotasks/otel"
	"github.com/gotasks/gotasks/task"
)

func TestAnImmediateTaskHasAProducerAndALinkedConsumerSpan(t *testing.T) {
	e := newEnv(t, gotasksotel.Link)
	e.immediate(t)
	ctx, parent := e.tp.Tracer("test").Start(context.Background(), "request")
	res, err := addOne.Enqueue(ctx, 1)
	parent.End()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := res.Value(); v != 2 || err != nil {
		t.Fatalf("value %v, %v", v, err)
	}

	pub := e.span(t, "publish math")
	if pub.SpanKind != trace.SpanKindProducer || pub.Parent.SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("publish: kind %v, parent %v, want producer under the request", pub.SpanKind, pub.Parent.SpanID())
	}
	wantAttrs(t, "publish", attrs(pub.Attributes), map[string]string{
		"messaging.system": "gotasks", "messaging.operation.type": "send", "messaging.operation.name": "publish",
		"messaging.destination.name": "math", "messaging.message.id": res.ID, "gotasks.task.name": "otel.add",
		"gotasks.backend": "default", "messaging.batch.message_count": "",
	})
	if pub.Status.Code != codes.Ok {
		t.Errorf("publish status %v", pub.Status)
	}

	proc := e.span(t, "process math")
	if proc.SpanKind != trace.SpanKindConsumer {
		t.Errorf("process: kind %v", proc.SpanKind)
	}
	if proc.Parent.IsValid() || proc.SpanContext.TraceID() == pub.SpanContext.TraceID() {
		t.Errorf("process: parent %v, trace %v: want the root of a trace of its own", proc.Parent, proc.SpanContext.TraceID())
	}
	if len(proc.Links) != 1 || !proc.Links[0].SpanContext.Equal(pub.SpanContext.WithRemote(true)) {
		t.Errorf("process links %+v, want the publish span %v", proc.Links, pub.SpanContext)
	}
	wantAttrs(t, "process", attrs(proc.Attributes), map[string]string{
		"messaging.system": "gotasks", "messaging.operation.type": "process", "messaging.operation.name": "process",
		"messaging.destination.name": "math", "messaging.message.id": res.ID, "gotasks.task.name": "otel.add",
		"gotasks.task.attempt": "1", "gotasks.worker.id": task.ImmediateWorkerID, "gotasks.backend": "default",
		"error.type": "",
	})
	if proc.Status.Code != codes.Ok || len(proc.Events) != 0 {
		t.Errorf("process status %v, events %v", proc.Status, proc.Events)
	}
	if got := res.Metadata["traceparent"]; !strings.Contains(got, pub.SpanContext.SpanID().String()) {
		t.Errorf("the result's traceparent %q does not name the publish span", got)
	}
}

func TestInChildModeTheConsumerSpanIsTheProducersChild(t *testing.T) {
	e := newEnv(t, gotasksotel.Child)
	e.immediate(t)
	if _, err := addOne.Enqueue(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	pub, proc := e.span(t, "publish math"), e.span(t, "process math")
	if proc.Parent.SpanID() != pub.SpanContext.SpanID() || proc.SpanContext.TraceID() != pub.SpanContext.TraceID() {
		t.Errorf("process parent %v in trace %v, want the publish span %v", proc.Parent.SpanID(), proc.SpanContext.TraceID(), pub.SpanContext)
	}
	if len(proc.Links) != 0 {
		t.Errorf("links %v", proc.Links)
	}
}

func TestTheTaskRunsInItsConsumerSpan(t *testing.T) {
	e := newEnv(t, gotasksotel.Link)
	e.immediate(t)
	if _, err := current.Enqueue(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	if got, want := <-seen, e.span(t, "process math").SpanContext; !got.Equal(want) {
		t.Errorf("the task's span %v, want %v", got, want)
	}
}

func TestAFailureIsRecordedOnTheConsumerSpan(t *testing.T) {
	e := newEnv(t, gotasksotel.Link)
	e.immediate(t)
	res, err := failing.Enqueue(context.Background(), "")
	if err != nil || res.Status != task.StatusFailed {
		t.Fatalf("%v, %v", res, err)
	}
	proc := e.span(t, "process math")
	if proc.Status.Code != codes.Error || proc.Status.Description != "boom" {
		t.Errorf("status %+v", proc.Status)
	}
	wantAttrs(t, "process", attrs(proc.Attributes), map[string]string{"error.type": "_OTHER"})
	if len(proc.Events) != 1 || proc.Events[0].Name != "exception" {
		t.Fatalf("events %+v", proc.Events)
	}
	wantAttrs(t, "exception", attrs(proc.Events[0].Attributes), map[string]string{"exception.message": "boom"})
	if e.span(t, "publish math").Status.Code != codes.Ok {
		t.Error("the enqueue succeeded: its span should say so")
	}
}

func TestAPanicIsRecordedWithItsStack(t *testing.T) {
	e := newEnv(t, gotasksotel.Link)
	e.immediate(t)
	if _, err := panicking.Enqueue(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	proc := e.span(t, "process math")
	if proc.Status.Code != codes.Error || !strings.Contains(proc.Status.Description, "kaboom") {
		t.Errorf("status %+v", proc.Status)
	}
	wantAttrs(t, "process", attrs(proc.Attributes), map[string]string{"error.type": task.ErrorTypePanic})
	if len(proc.Events) != 1 {
		t.Fatalf("events %+v", proc.Events)
	}
	ev := attrs(proc.Events[0].Attributes)
	if !strings.Contains(ev["exception.message"], "kaboom") || !strings.Contains(ev["exception.stacktrace"], "helpers_test.go") {
		t.Errorf("exception %v", ev)
	}
}

func TestEnqueueManyIsOneSpanWhoseContextEveryTaskCarries(t *testing.T) {
	e := newEnv(t, gotasksotel.Link)
	d := e.dummy(t)
	results, err := addOne.EnqueueMany(context.Background(), []int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	pub := e.span(t, "publish math")
	wantAttrs(t, "publish", attrs(pub.Attributes), map[string]string{
		"messaging.batch.message_count": "3", "messaging.message.id": "", "messaging.destination.name": "math",
	})
	if len(e.spans.GetSpans()) != 1 {
		t.Errorf("spans %v", names(e.spans.GetSpans()))
	}
	stored := d.Results()
	if len(stored) != 3 || len(results) != 3 {
		t.Fatalf("%d stored", len(stored))
	}
	for _, r := range stored {
		want := "00-" + pub.SpanContext.TraceID().String() + "-" + pub.SpanContext.SpanID().String() + "-01"
		if r.Metadata["traceparent"] != want {
			t.Errorf("%s: traceparent %q, want %q", r.ID, r.Metadata["traceparent"], want)
		}
	}
}

// run runs r as a worker would, with e's run middleware.
func run(e *env, r *task.RawResult, attempt int, worker string) {
	r.Status, r.StartedAt, r.LastAttemptedAt, r.Attempts = task.StatusRunning, time.Now(), time.Now(), attempt
	r.WorkerIDs = append(r.WorkerIDs, worker)
	task.ExecuteWith(context.Background(), r, e.inst.RunMiddleware())
}

func TestATaskStoredOnTheDummyBackendLinksEachAttemptToItsEnqueue(t *testing.T) {
	e := newEnv(t, gotasksotel.Link)
	d := e.dummy(t)
	res, err := addOne.Using(task.Meta("tenant", "acme")).Enqueue(context.Background(), 41)
	if err != nil {
		t.Fatal(err)
	}
	pub := e.span(t, "publish math")
	r := d.Results()[0]
	if r.Metadata["tenant"] != "acme" {
		t.Errorf("the task's own metadata is lost: %v", r.Metadata)
	}
	run(e, r, 1, "w-1")
	run(e, r, 2, "w-2")
	var procs []sdktrace.ReadOnlySpan
	for _, s := range e.spans.GetSpans().Snapshots() {
		if s.Name() == "process math" {
			procs = append(procs, s)
		}
	}
	if len(procs) != 2 {
		t.Fatalf("spans %v", names(e.spans.GetSpans()))
	}
	for i, p := range procs {
		if len(p.Links()) != 1 || p.Links()[0].SpanContext.SpanID() != pub.SpanContext.SpanID() {
			t.Errorf("attempt %d: links %v", i+1, p.Links())
		}
		wantAttrs(t, "process", attrs(p.Attributes()), map[string]string{
			"messaging.message.id": res.ID, "gotasks.task.attempt": strconv.Itoa(i + 1), "gotasks.worker.id": "w-" + strconv.Itoa(i+1),
		})
	}
	if procs[0].SpanContext().TraceID() == procs[1].SpanContext().TraceID() {
		t.Error("two attempts share a trace in Link mode")
	}
}

func TestAFailedEnqueueIsAnErrorSpanAndCountsAsSuch(t *testing.T) {
	e := newEnv(t, gotasksotel.Link)
	refuse := func(next task.EnqueueFunc) task.EnqueueFunc {
		return func(ctx context.Context, b task.Backend, msgs []*task.Message) error {
			return context.DeadlineExceeded
		}
	}
	configure(t, task.NewDummyBackend("default", task.BackendOptions{
		EnqueueMiddleware: []task.EnqueueMiddleware{e.inst.EnqueueMiddleware(), refuse},
	}))
	if _, err := addOne.Enqueue(context.Background(), 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	pub := e.span(t, "publish math")
	if pub.Status.Code != codes.Error || len(pub.Events) != 1 {
		t.Errorf("status %+v, events %v", pub.Status, pub.Events)
	}
	wantAttrs(t, "publish", attrs(pub.Attributes), map[string]string{"error.type": "context.DeadlineExceeded"})
	sent := sums(t, e.metrics(t)["messaging.client.sent.messages"])
	if want := "error.type=context.DeadlineExceeded,messaging.destination.name=math,messaging.operation.name=publish,messaging.system=gotasks"; sent[want] != 1 {
		t.Errorf("sent %v, want 1 for %s", sent, want)
	}
}

func TestMetricsCountAndTimeEnqueuesAndAttempts(t *testing.T) {
	e := newEnv(t, gotasksotel.Link)
	e.immediate(t)
	ctx := context.Background()
	for range 2 {
		if _, err := addOne.Enqueue(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := failing.Enqueue(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := addOne.Using(task.Queue("other")).EnqueueMany(ctx, []int{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	m := e.metrics(t)
	pub := func(q string) string {
		return "messaging.destination.name=" + q + ",messaging.operation.name=publish,messaging.system=gotasks"
	}
	proc := func(prefix, q string) string {
		return prefix + "messaging.destination.name=" + q + ",messaging.operation.name=process,messaging.system=gotasks"
	}
	if got, want := sums(t, m["messaging.client.sent.messages"]), map[string]int64{pub("math"): 3, pub("other"): 3}; !maps.Equal(got, want) {
		t.Errorf("sent %v, want %v", got, want)
	}
	if got, want := counts(t, m["messaging.client.operation.duration"]), map[string]uint64{pub("math"): 3, pub("other"): 1}; !maps.Equal(got, want) {
		t.Errorf("enqueue durations %v, want %v", got, want)
	}
	if got, want := sums(t, m["messaging.client.consumed.messages"]), map[string]int64{
		proc("", "math"): 2, proc("error.type=_OTHER,", "math"): 1, proc("", "other"): 3,
	}; !maps.Equal(got, want) {
		t.Errorf("consumed %v, want %v", got, want)
	}
	if got, want := counts(t, m["messaging.process.duration"]), map[string]uint64{
		"gotasks.task.name=otel.add," + proc("", "math"):                    2,
		"error.type=_OTHER,gotasks.task.name=otel.fail," + proc("", "math"): 1,
		"gotasks.task.name=otel.add," + proc("", "other"):                   3,
	}; !maps.Equal(got, want) {
		t.Errorf("process durations %v, want %v", got, want)
	}
}

func TestWithoutAPropagatorNothingIsWrittenAndNoLinkIsMade(t *testing.T) {
	e := newEnv(t, gotasksotel.Link)
	noProp := gotasksotel.New(gotasksotel.Options{TracerProvider: e.tp, Propagator: propagation.NewCompositeTextMapPropagator()})
	d := task.NewDummyBackend("default", task.BackendOptions{EnqueueMiddleware: []task.EnqueueMiddleware{noProp.EnqueueMiddleware()}})
	configure(t, d)
	if _, err := addOne.Enqueue(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	r := d.Results()[0]
	if r.Metadata != nil {
		t.Errorf("metadata %v", r.Metadata)
	}
	e.inst = noProp
	run(e, r, 1, "w")
	if p := e.span(t, "process math"); len(p.Links) != 0 || p.Parent.IsValid() {
		t.Errorf("links %v, parent %v", p.Links, p.Parent)
	}
}

func TestTheMetadataCarrierReadsAndWritesTheMap(t *testing.T) {
	md := task.Metadata{"b": "2"}
	c := gotasksotel.MetadataCarrier(md)
	c.Set("a", "1")
	if md["a"] != "1" || c.Get("b") != "2" || c.Get("x") != "" || !slices.Equal(c.Keys(), []string{"a", "b"}) {
		t.Errorf("%v, keys %v", md, c.Keys())
	}
	if gotasksotel.MetadataCarrier(nil).Get("a") != "" {
		t.Error("a nil carrier has a value")
	}
}

func TestNeverSampledSpansStillCarryTheirContext(t *testing.T) {
	e := newEnv(t, gotasksotel.Child)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithSyncer(e.spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	inst := gotasksotel.New(gotasksotel.Options{TracerProvider: tp, Propagator: propagation.TraceContext{}})
	d := task.NewDummyBackend("default", task.BackendOptions{EnqueueMiddleware: []task.EnqueueMiddleware{inst.EnqueueMiddleware()}})
	configure(t, d)
	if _, err := addOne.Enqueue(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if tp := d.Results()[0].Metadata["traceparent"]; !strings.HasSuffix(tp, "-00") {
		t.Errorf("traceparent %q, want an unsampled one", tp)
	}
	if n := len(e.spans.GetSpans()); n != 0 {
		t.Errorf("%d spans exported", n)
	}
}

func TestSpanModeNames(t *testing.T) {
	if gotasksotel.Link.String() != "link" || gotasksotel.Child.String() != "child" {
		t.Error(gotasksotel.Link, gotasksotel.Child)
	}
}

func TestAPanicInAMiddlewareFurtherInEndsTheSpanAndGoesOn(t *testing.T) {
	e := newEnv(t, gotasksotel.Link)
	boom := func(next task.RunFunc) task.RunFunc {
		return func(ctx context.Context, r *task.RawResult) ([]byte, error) { panic("middleware boom") }
	}
	configure(t, task.NewImmediateBackend("default", task.BackendOptions{
		Logger:        quiet,
		RunMiddleware: []task.RunMiddleware{e.inst.RunMiddleware(), boom},
	}))
	res, err := addOne.Enqueue(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != task.StatusFailed || res.Err == nil || res.Err.Type != task.ErrorTypePanic {
		t.Fatalf("status %s, err %v: the panic should fail the attempt", res.Status, res.Err)
	}
	proc := e.span(t, "process math")
	if proc.Status.Code != codes.Error || !strings.Contains(proc.Status.Description, "middleware boom") {
		t.Errorf("status %+v", proc.Status)
	}
	wantAttrs(t, "process", attrs(proc.Attributes), map[string]string{"error.type": task.ErrorTypePanic})
}

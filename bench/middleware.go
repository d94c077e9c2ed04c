package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/gotasks/gotasks/broker"
	gotasksotel "github.com/gotasks/gotasks/otel"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// The middleware section: what enqueue and run middleware cost the
// in-process drain at concurrency 16 (the "drain c16" row), with no
// middleware, with middleware that only calls next, and with the
// OpenTelemetry instrumentation (package gotasksotel) on no-op and on
// never-sampling SDK providers. The tasks are enqueued through the
// variant's enqueue middleware, so that the run middleware sees what it
// would in production (for the SDK, a producer context to link to).

// mwConcurrency is the worker's, as in the drain row the targets
// are about.
const mwConcurrency = 16

// mwVariant is one way of running the drain.
type mwVariant struct {
	id, label string
	maxCost   float64 // the target: at most this fraction of "none"'s throughput lost; 0: none
	// wantContext: the variant's enqueue middleware writes a producer's
	// trace context into every task's metadata; checked before each drain.
	wantContext bool
	// build returns the variant's middleware (nil: none) and what to shut
	// down once the section is done. Its providers are made once and live
	// through every round, as a program's do.
	build func() (task.EnqueueMiddleware, task.RunMiddleware, func(context.Context) error)
}

// mwBuilt is a variant with its middleware made.
type mwBuilt struct {
	mwVariant
	enqueue []task.EnqueueMiddleware
	run     []task.RunMiddleware
}

func noShutdown(context.Context) error { return nil }

// instrumentation is gotasksotel's middleware on the given providers, with
// the W3C propagator a program would set.
func instrumentation(tp *sdktrace.TracerProvider, mp *sdkmetric.MeterProvider) (task.EnqueueMiddleware, task.RunMiddleware, func(context.Context) error) {
	opts := gotasksotel.Options{
		TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider(),
		Propagator: propagation.TraceContext{},
	}
	var shutdown []func(context.Context) error
	if tp != nil {
		opts.TracerProvider = tp
		shutdown = append(shutdown, tp.Shutdown)
	}
	if mp != nil {
		opts.MeterProvider = mp
		shutdown = append(shutdown, mp.Shutdown)
	}
	i := gotasksotel.New(opts)
	return i.EnqueueMiddleware(), i.RunMiddleware(), func(ctx context.Context) error {
		var errs []error
		for _, f := range shutdown {
			errs = append(errs, f(ctx))
		}
		return errors.Join(errs...)
	}
}

func neverSampling() *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
}

// mwVariants are the section's variants, in table order; "none" is first,
// the one the others are compared with.
var mwVariants = []mwVariant{
	{id: "none", label: "no middleware",
		build: func() (task.EnqueueMiddleware, task.RunMiddleware, func(context.Context) error) {
			return nil, nil, noShutdown
		}},
	{id: "passthrough", label: "enqueue + run middleware that call next", maxCost: 0.01,
		build: func() (task.EnqueueMiddleware, task.RunMiddleware, func(context.Context) error) {
			return func(next task.EnqueueFunc) task.EnqueueFunc { return next },
				func(next task.RunFunc) task.RunFunc { return next }, noShutdown
		}},
	// A no-op tracer starts no context of its own, so nothing is written
	// into the tasks: as in a program that never set up OpenTelemetry.
	{id: "otel-noop", label: "gotasksotel, no-op tracer and meter providers", maxCost: 0.03,
		build: func() (task.EnqueueMiddleware, task.RunMiddleware, func(context.Context) error) {
			return instrumentation(nil, nil)
		}},
	{id: "otel-sdk-never", label: "gotasksotel, SDK tracer NeverSample, no-op meter", maxCost: 0.10, wantContext: true,
		build: func() (task.EnqueueMiddleware, task.RunMiddleware, func(context.Context) error) {
			return instrumentation(neverSampling(), nil)
		}},
	{id: "otel-sdk-never+metrics", label: "gotasksotel, SDK tracer NeverSample, SDK meter (ManualReader)", wantContext: true,
		build: func() (task.EnqueueMiddleware, task.RunMiddleware, func(context.Context) error) {
			return instrumentation(neverSampling(), sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())))
		}},
}

// MiddlewareResult is the middleware section, in the JSON report as
// "middleware".
type MiddlewareResult struct {
	Tasks       int                 `json:"tasks"` // per drain
	Concurrency int                 `json:"concurrency"`
	Rounds      int                 `json:"rounds"`
	Variants    []MiddlewareVariant `json:"variants"`
}

// MiddlewareVariant is one variant's drains. Rate and the CPU figures are
// medians over the rounds; the ratios compare them with "none"'s.
type MiddlewareVariant struct {
	ID        string    `json:"id"`
	Label     string    `json:"label"`
	Rate      float64   `json:"tasks_per_s"`
	Rounds    []float64 `json:"rounds_tasks_per_s"` // in round order
	VsNone    float64   `json:"vs_none"`            // Rate / none's Rate
	PairedMin float64   `json:"paired_min"`         // the lowest of round k's rate / none's in round k
	PairedMax float64   `json:"paired_max"`
	WorkerCPU float64   `json:"worker_cpu_us_per_task"` // this process: the worker, the producer connection, the 2 ms polling
	WorkerVs  float64   `json:"worker_cpu_vs_none"`
	RedisCPU  float64   `json:"redis_cpu_us_per_task"`
	Target    string    `json:"target,omitempty"`
	Met       *bool     `json:"met,omitempty"`
}

// middleware runs the section: every variant once per round, the order
// rotated each round (round k starts with variant k), so that the
// machine's drift and a neighbour's burst weigh on every variant alike;
// each drain is on a flushed Redis with a fresh producer.
func (r *runner) middleware(ctx context.Context) error {
	vs := make([]mwBuilt, len(mwVariants))
	var shutdown []func(context.Context) error
	defer func() {
		for _, f := range shutdown {
			_ = f(context.Background()) // nothing was exported: nothing to lose
		}
	}()
	for i, v := range mwVariants {
		e, run, stop := v.build()
		shutdown = append(shutdown, stop)
		vs[i].mwVariant = v
		if e != nil {
			vs[i].enqueue = []task.EnqueueMiddleware{e}
		}
		if run != nil {
			vs[i].run = []task.RunMiddleware{run}
		}
	}
	once := func(v *mwBuilt, round string) (drainResult, error) {
		start := time.Now()
		d, err := r.middlewareOnce(ctx, v)
		if err != nil {
			return d, fmt.Errorf("%s: middleware %s: %w", nameGotasks, v.id, err)
		}
		fmt.Fprintf(r.log, "%-8s %-20s %-22s %s tasks/s · worker %.1f µs/task, redis %.1f (%s, %v)\n", nameGotasks, "middleware",
			v.id, count(int(d.rate)), d.procCPU, d.redisCPU, round, time.Since(start).Round(time.Millisecond))
		return d, nil
	}
	// The first drain of a run is slower (scripts loaded, connections
	// made, the heap grown); without a warm-up it would always be none's.
	if _, err := once(&vs[0], "warm-up, not counted"); err != nil {
		return err
	}
	rounds := max(1, r.cfg.MiddlewareRounds)
	drains := make([][]drainResult, len(vs)) // [variant][round]
	for round := range rounds {
		for k := range vs {
			i := (round + k) % len(vs)
			d, err := once(&vs[i], fmt.Sprintf("round %d", round+1))
			if err != nil {
				return err
			}
			drains[i] = append(drains[i], d)
		}
	}
	r.mw = newMiddlewareResult(r.cfg.Tasks, rounds, vs, drains)
	return nil
}

// middlewareOnce fills the tasks through v's enqueue middleware (untimed),
// checks that they carry what it writes, and drains them with v's run
// middleware.
func (r *runner) middlewareOnce(ctx context.Context, v *mwBuilt) (drainResult, error) {
	if err := r.admin.flush(ctx); err != nil {
		return drainResult{}, err
	}
	s, err := openMiddlewareSys(r.url, v.enqueue, v.run)
	if err != nil {
		return drainResult{}, err
	}
	d, err := func() (drainResult, error) {
		if err := s.Fill(ctx, r.cfg.Tasks); err != nil {
			return drainResult{}, err
		}
		if v.wantContext {
			if err := s.checkContext(ctx); err != nil {
				return drainResult{}, err
			}
		}
		return drainPending(ctx, r.admin, s, r.cfg.Tasks, mwConcurrency)
	}()
	if cerr := s.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return d, err
}

// mwSys is the gotasks system with middleware: its producer's broker
// carries the enqueue middleware (broker.Options.EnqueueMiddleware, not
// task.UseEnqueue, which is process-wide and for good), its workers the
// run middleware.
type mwSys struct {
	*gotasksSys
	run []task.RunMiddleware
}

// openMiddlewareSys is openGotasks with middleware.
func openMiddlewareSys(url string, enqueue []task.EnqueueMiddleware, run []task.RunMiddleware) (*mwSys, error) {
	opts := brokerOptions()
	opts.EnqueueMiddleware = enqueue
	b, err := broker.Open(url, opts)
	if err != nil {
		return nil, fmt.Errorf("gotasks: %w", err)
	}
	task.Configure(map[string]task.Backend{task.DefaultBackendName: b})
	return &mwSys{gotasksSys: &gotasksSys{url: url, b: b}, run: run}, nil
}

func (s *mwSys) StartWorker(ctx context.Context, c int) (func() error, error) {
	return s.startWorker(ctx, worker.Options{Concurrency: c, RunMiddleware: s.run})
}

// checkContext fails unless the next task to run carries a producer's
// trace context, for the consumer span to link to.
func (s *mwSys) checkContext(ctx context.Context) error {
	rs, err := s.b.ListTasks(ctx, noop.QueueName(), broker.StatePending, 0, 1)
	if err != nil {
		return fmt.Errorf("check trace context: %w", err)
	}
	if len(rs) == 0 || rs[0].Metadata["traceparent"] == "" {
		return errors.New("the enqueued tasks carry no traceparent: the run middleware would have no producer to link to")
	}
	return nil
}

// newMiddlewareResult sums up drains[variant][round]; vs[0] is "none".
func newMiddlewareResult(tasks, rounds int, vs []mwBuilt, drains [][]drainResult) *MiddlewareResult {
	res := &MiddlewareResult{Tasks: tasks, Concurrency: mwConcurrency, Rounds: rounds}
	field := func(ds []drainResult, f func(drainResult) float64) []float64 {
		out := make([]float64, len(ds))
		for i, d := range ds {
			out[i] = f(d)
		}
		return out
	}
	rate := func(d drainResult) float64 { return d.rate }
	base := drains[0]
	baseRate, baseCPU := median(field(base, rate)), median(field(base, func(d drainResult) float64 { return d.procCPU }))
	for i, v := range vs {
		ds := drains[i]
		mv := MiddlewareVariant{
			ID: v.id, Label: v.label, Rate: median(field(ds, rate)), Rounds: field(ds, rate),
			WorkerCPU: median(field(ds, func(d drainResult) float64 { return d.procCPU })),
			RedisCPU:  median(field(ds, func(d drainResult) float64 { return d.redisCPU })),
			PairedMin: math.Inf(1), PairedMax: math.Inf(-1),
		}
		for k := range ds {
			p := ds[k].rate / base[k].rate
			mv.PairedMin, mv.PairedMax = min(mv.PairedMin, p), max(mv.PairedMax, p)
		}
		if baseRate > 0 {
			mv.VsNone = mv.Rate / baseRate
		}
		if baseCPU > 0 {
			mv.WorkerVs = mv.WorkerCPU / baseCPU
		}
		if v.maxCost > 0 {
			mv.Target = fmt.Sprintf("< %g%% cost", 100*v.maxCost)
			ok := mv.VsNone > 1-v.maxCost
			mv.Met = &ok
		}
		res.Variants = append(res.Variants, mv)
	}
	return res
}

// median of vs (not changed), the mean of the middle two for an even count.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(vs))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// mwLegend explains the middleware table's columns.
const mwLegend = `vs none: the median rate / none's; a target of "< x% cost" is met above 1 - x/100. per round: the lowest and the
highest of round k's rate / none's in round k, how far the noise reaches. worker CPU: this process (the worker, the producer's
connection, the bench's 2 ms polling), median; steadier than rates on a busy machine.`

// writeMiddleware prints the middleware section as a table of its own:
// its ratios are to "none", not to asynq.
func writeMiddleware(b *strings.Builder, m *MiddlewareResult, markdown bool) {
	fmt.Fprintf(b, "middleware: drain of %s tasks, 1 process, concurrency %d · median of %d interleaved rounds\n\n",
		count(m.Tasks), m.Concurrency, m.Rounds)
	cells := [][]string{{"variant", "tasks/s", "vs none", "per round", "target", "met",
		"worker CPU µs/task", "vs none", "Redis CPU µs/task", "rounds tasks/s", "what"}}
	for _, v := range m.Variants {
		met := ""
		if v.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*v.Met]
		}
		rounds := make([]string, len(v.Rounds))
		for i, x := range v.Rounds {
			rounds[i] = count(int(x))
		}
		cells = append(cells, []string{v.ID, num(&v.Rate), fmt.Sprintf("%.3f×", v.VsNone),
			fmt.Sprintf("%.3f–%.3f", v.PairedMin, v.PairedMax), v.Target, met,
			num(&v.WorkerCPU), fmt.Sprintf("%.3f×", v.WorkerVs), num(&v.RedisCPU), strings.Join(rounds, " "), v.Label})
	}
	writeCells(b, cells, []bool{false, true, true, true, false, false, true, true, true, false, false}, markdown)
	b.WriteString("\n" + mwLegend + "\n")
}

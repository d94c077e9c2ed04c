package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/serializer"
)

// runner runs each measurement on each system, on a flushed Redis.
type runner struct {
	cfg     Config
	url     string
	admin   *admin
	systems []string
	res     results
	notes   map[string]string
	scale   map[string]*ScaleResult
	mw      *MiddlewareResult
	log     io.Writer
}

// run starts Redis if needed, measures everything and returns the report.
// Progress goes to logw.
func run(ctx context.Context, cfg Config, logw io.Writer) (*Report, error) {
	payload, err := serializer.Default.Marshal(newPayload(0))
	if err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	cfg.PayloadBytes = len(payload)
	url := cfg.RedisURL
	if url == "" {
		srv, err := startRedis(ctx)
		if err != nil {
			return nil, err
		}
		defer srv.Stop()
		url = srv.URL()
		fmt.Fprintf(logw, "bench: private redis-server on %s\n", srv.Addr())
	}
	a, err := newAdmin(url)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	if err := a.rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("ping %s: %w", url, err)
	}
	r := &runner{cfg: cfg, url: url, admin: a, systems: []string{nameGotasks}, res: results{}, notes: map[string]string{},
		scale: map[string]*ScaleResult{}, log: logw}
	if !cfg.SkipAsynq {
		r.systems = append(r.systems, nameAsynq)
	}
	load := loadAverage()
	if err := r.measureAll(ctx); err != nil {
		return nil, err
	}
	m := machine(ctx, a)
	m.Load = load + " → " + loadAverage()
	return &Report{Machine: m, Config: cfg, Rows: buildRows(cfg, r.res, r.notes, r.scale), Middleware: r.mw}, nil
}

// groups are the names --only accepts, in run order.
var groups = []string{"enqueue", "memory", "drain", "scale", "latency", "wait", "claim", "hotpath", "middleware"}

func (r *runner) measureAll(ctx context.Context) error {
	c := r.cfg
	type step struct {
		group string
		run   func(context.Context) error
	}
	steps := []step{
		{"enqueue", r.one("enqueue_1", func(ctx context.Context, s system) (float64, error) {
			return enqueueRate(ctx, s, c.Tasks, 1)
		})},
		{"enqueue", r.enqueue16},
		{"enqueue", r.one("enqueue_many_100", func(ctx context.Context, s system) (float64, error) {
			return enqueueBatchRate(ctx, s, c.Tasks, c.Batch)
		})},
		{"memory", r.memory},
	}
	for _, conc := range c.Concurrency {
		steps = append(steps, step{"drain", r.drain(conc)})
	}
	steps = append(steps,
		step{"drain", r.one("drain_2proc", func(ctx context.Context, s system) (float64, error) {
			return drainRateProcs(ctx, r.admin, s, r.url, c.Tasks, c.Procs, c.ProcConcurrency)
		})},
		step{"scale", r.scaleOut},
		step{"latency", r.latency},
		step{"wait", r.waitRows},
		step{"claim", r.claimGrowth},
		step{"hotpath", r.hotPath},
		step{"middleware", r.middleware},
	)
	start := time.Now()
	for _, st := range steps {
		if len(c.Only) > 0 && !slices.Contains(c.Only, st.group) {
			continue
		}
		if err := st.run(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(r.log, "bench: measured in %v\n", time.Since(start).Round(time.Second))
	return nil
}

// each runs fn once per system, each time on a flushed Redis and a freshly
// opened system. fn returns values by metric id.
func (r *runner) each(ctx context.Context, what string, fn func(ctx context.Context, s system) (map[string]float64, error)) error {
	for _, name := range r.systems {
		if err := r.admin.flush(ctx); err != nil {
			return err
		}
		s, err := openers[name](r.url)
		if err != nil {
			return err
		}
		start := time.Now()
		vals, err := fn(ctx, s)
		if cerr := s.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("%s: close: %w", name, cerr)
		}
		if errors.Is(err, errNoBatch) {
			fmt.Fprintf(r.log, "%-8s %-20s n/a\n", name, what)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %s: %w", name, what, err)
		}
		for id, v := range vals {
			r.res.set(id, name, v)
		}
		fmt.Fprintf(r.log, "%-8s %-20s %s (%v)\n", name, what, describe(vals), time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// one is each for a measurement with a single value.
func (r *runner) one(id string, fn func(ctx context.Context, s system) (float64, error)) func(context.Context) error {
	return func(ctx context.Context) error {
		return r.each(ctx, id, func(ctx context.Context, s system) (map[string]float64, error) {
			v, err := fn(ctx, s)
			return map[string]float64{id: v}, err
		})
	}
}

func describe(vals map[string]float64) string {
	var parts []string
	for _, id := range slices.Sorted(maps.Keys(vals)) {
		v := vals[id]
		parts = append(parts, fmt.Sprintf("%s=%s", id, num(&v)))
	}
	return strings.Join(parts, " ")
}

// enqueue16 measures enqueue from 16 goroutines, and the Redis CPU per task
// it costs (the enqueue script's share of the server).
func (r *runner) enqueue16(ctx context.Context) error {
	return r.each(ctx, "enqueue_16", func(ctx context.Context, s system) (map[string]float64, error) {
		cpu0, err := r.admin.cpuSeconds(ctx)
		if err != nil {
			return nil, err
		}
		rate, err := enqueueRate(ctx, s, r.cfg.Tasks, r.cfg.EnqueueGoroutines)
		if err != nil {
			return nil, err
		}
		cpu1, err := r.admin.cpuSeconds(ctx)
		if err != nil {
			return nil, err
		}
		return map[string]float64{"enqueue_16": rate, "redis_cpu_enqueue": (cpu1 - cpu0) * 1e6 / float64(r.cfg.Tasks)}, nil
	})
}

// drain measures the in-process drain at concurrency conc; at 16 it also
// records the CPU per task of Redis and of the worker process, and takes
// the CPU profile if asked.
func (r *runner) drain(conc int) func(context.Context) error {
	id := fmt.Sprintf("drain_c%d", conc)
	return func(ctx context.Context) error {
		return r.each(ctx, id, func(ctx context.Context, s system) (map[string]float64, error) {
			measure := func() (drainResult, error) { return drainRate(ctx, r.admin, s, r.cfg.Tasks, conc) }
			if conc == 16 && s.Name() == nameGotasks && r.cfg.CPUProfile != "" {
				measure = func() (drainResult, error) {
					if err := s.Fill(ctx, r.cfg.Tasks); err != nil { // not profiled
						return drainResult{}, err
					}
					var d drainResult
					err := r.profiled(func() (err error) { d, err = drainPending(ctx, r.admin, s, r.cfg.Tasks, conc); return err })
					return d, err
				}
			}
			d, err := measure()
			if err != nil {
				return nil, err
			}
			vals := map[string]float64{id: d.rate}
			if conc == 16 {
				vals["redis_cpu_c16"] = d.redisCPU
				if d.procCPU > 0 {
					vals["worker_cpu_c16"] = d.procCPU
				}
			}
			return vals, nil
		})
	}
}

func (r *runner) memory(ctx context.Context) error {
	for _, name := range r.systems {
		if err := r.admin.flush(ctx); err != nil {
			return err
		}
		v, err := memoryPerTask(ctx, r.admin, openers[name], r.url, r.cfg.Tasks)
		if err != nil {
			return fmt.Errorf("%s: memory per task: %w", name, err)
		}
		r.res.set("memory_per_task", name, v)
		fmt.Fprintf(r.log, "%-8s %-20s %s bytes\n", name, "memory_per_task", num(&v))
	}
	return nil
}

func (r *runner) latency(ctx context.Context) error {
	c := r.cfg
	return r.each(ctx, "latency", func(ctx context.Context, s system) (map[string]float64, error) {
		lat, err := idleLatency(ctx, s, c.LatencySamples, c.LatencyConcurrency, c.LatencyGap)
		if err != nil {
			return nil, err
		}
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		fmt.Fprintf(r.log, "%-8s %-20s p90=%.2fms slowest=%v\n", s.Name(), "latency", ms(percentile(lat, 90)), roundAll(lat[max(0, len(lat)-5):]))
		return map[string]float64{"latency_p50": ms(percentile(lat, 50)), "latency_p99": ms(percentile(lat, 99))}, nil
	})
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Microsecond)
	}
	return out
}

// claimGrowth is gotasks only: filling a million asynq tasks through its
// client (no batch enqueue) would take about a minute on its own.
func (r *runner) claimGrowth(ctx context.Context) error {
	c := r.cfg
	measure := func(id string, pending int) (float64, error) {
		if err := r.admin.flush(ctx); err != nil {
			return 0, err
		}
		start := time.Now()
		v, err := claimCost(ctx, r.url, pending, c.ClaimTasks)
		if err != nil {
			return 0, fmt.Errorf("gotasks: %s: %w", id, err)
		}
		r.res.set(id, nameGotasks, v)
		fmt.Fprintf(r.log, "%-8s %-20s %s µs/task (%v with the fill)\n", nameGotasks, id, num(&v), time.Since(start).Round(time.Millisecond))
		return v, nil
	}
	small, err := measure("claim_small", c.SmallPending)
	if err != nil {
		return err
	}
	if c.SkipMillion {
		r.notes["claim_large"] = "skipped (--skip-million)"
		r.notes["claim_growth"] = "skipped (--skip-million)"
		return nil
	}
	fmt.Fprintf(r.log, "%-8s filling %s tasks...\n", nameGotasks, count(c.LargePending))
	large, err := measure("claim_large", c.LargePending)
	if err != nil {
		return err
	}
	r.res.set("claim_growth", nameGotasks, large/small)
	return r.admin.flush(ctx) // give the memory back
}

// hotPath runs the hot path benchmark of hotpath_test.go in-process.
func (r *runner) hotPath(ctx context.Context) error {
	res := testing.Benchmark(func(b *testing.B) { benchHotPath(b, r.url, 1) })
	if res.N == 0 {
		return errors.New("gotasks: hot path benchmark failed; run go test -run '^$' -bench HotPath to see why")
	}
	allocs, bytes := float64(res.AllocsPerOp()), float64(res.AllocedBytesPerOp())
	r.res.set("hotpath_allocs", nameGotasks, allocs)
	r.res.set("hotpath_bytes", nameGotasks, bytes)
	fmt.Fprintf(r.log, "%-8s %-20s %s (%s allocs/task, %s B/task)\n", nameGotasks, "hot path", res.String(), num(&allocs), num(&bytes))
	return ctx.Err()
}

// profiled runs fn under the CPU profiler.
func (r *runner) profiled(fn func() error) error {
	f, err := os.Create(r.cfg.CPUProfile)
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	err = fn()
	pprof.StopCPUProfile()
	fmt.Fprintf(r.log, "bench: CPU profile of the gotasks drain at concurrency 16 in %s\n", r.cfg.CPUProfile)
	return err
}

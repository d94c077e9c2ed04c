// Command bench measures gotasks against asynq on the same Redis, in the
// same run, with the same payload and concurrency, and prints both side by
// side with the targets of issue #6:
//
//	cd bench && go run .            # full run, private redis-server
//	go run . --quick                # small sizes, a smoke run
//	go run . --json > report.json   # the same as JSON (the table goes to stderr)
//
// It is a module of its own so that the main module never depends on asynq.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gotasks/gotasks/serializer"
)

// Config is what a run measures; it is part of the JSON report.
type Config struct {
	RedisURL           string        `json:"-"`
	Tasks              int           `json:"tasks"` // per enqueue, drain and memory measurement
	PayloadBytes       int           `json:"payload_bytes"`
	EnqueueGoroutines  int           `json:"enqueue_goroutines"`
	Batch              int           `json:"batch"`
	Concurrency        []int         `json:"concurrency"`
	Procs              int           `json:"procs"`
	ProcConcurrency    int           `json:"proc_concurrency"`
	LatencySamples     int           `json:"latency_samples"`
	LatencyConcurrency int           `json:"latency_concurrency"`
	LatencyGap         time.Duration `json:"latency_max_pause_ns"`
	ClaimTasks         int           `json:"claim_tasks"`
	SmallPending       int           `json:"small_pending"`
	LargePending       int           `json:"large_pending"`
	Quick              bool          `json:"quick"`
	SkipAsynq          bool          `json:"skip_asynq"`
	SkipMillion        bool          `json:"skip_million"`
	Only               []string      `json:"only,omitempty"` // measurement groups to run; empty: all
	CPUProfile         string        `json:"-"`              // of the gotasks drain at concurrency 16
}

// defaultConfig is the full run, or the smoke run with quick.
func defaultConfig(quick bool) Config {
	c := Config{
		Tasks: 20_000, EnqueueGoroutines: 16, Batch: 100,
		Concurrency: []int{1, 16, 64}, Procs: 2, ProcConcurrency: 16,
		LatencySamples: 200, LatencyConcurrency: 16, LatencyGap: time.Second,
		ClaimTasks: 2_000, SmallPending: 1_000, LargePending: 1_000_000,
	}
	if quick {
		c.Quick = true
		c.Tasks = 1_000
		c.LatencySamples, c.LatencyGap = 10, 100*time.Millisecond
		c.ClaimTasks, c.LargePending = 200, 20_000
	}
	return c
}

func main() {
	if name := os.Getenv(childEnv); name != "" {
		os.Exit(childMain(name, os.Args[1:]))
	}
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}

// jsonFlag is --json (stdout) or --json=FILE.
type jsonFlag struct{ dest string }

func (f *jsonFlag) String() string   { return f.dest }
func (f *jsonFlag) IsBoolFlag() bool { return true }
func (f *jsonFlag) Set(v string) error {
	switch v {
	case "true", "-":
		f.dest = "-"
	case "false":
		f.dest = ""
	default:
		f.dest = v
	}
	return nil
}

// options are the flags that are not part of Config.
type options struct {
	json     string // "" none, "-" stdout, else a file
	markdown bool
}

// parseFlags turns the command line into a Config.
func parseFlags(args []string, stderr io.Writer) (Config, options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		url         = fs.String("redis-url", "", "Redis to use (it is FLUSHALLed!); default: start a private redis-server")
		tasks       = fs.Int("tasks", 0, "tasks per enqueue, drain and memory measurement (default 20000, 1000 with --quick)")
		quick       = fs.Bool("quick", false, "small sizes, for a smoke run")
		skipAsynq   = fs.Bool("skip-asynq", false, "measure gotasks only")
		skipMillion = fs.Bool("skip-million", false, "skip the claim cost with a million pending tasks")
		samples     = fs.Int("latency-samples", 0, "tasks in the idle latency probe (default 200, 10 with --quick)")
		markdown    = fs.Bool("markdown", false, "print the table as Markdown")
		cpuprofile  = fs.String("cpuprofile", "", "write a CPU profile of the gotasks drain at concurrency 16 to this file")
		pause       = fs.Duration("latency-pause", 0, "longest random pause before each latency probe task (default 1s, 100ms with --quick)")
		only        = fs.String("only", "", "run only these measurements, comma-separated: "+strings.Join(groups, ","))
		jsonOut     jsonFlag
	)
	fs.Var(&jsonOut, "json", "also write the report as JSON: --json (stdout; the table goes to stderr) or --json FILE")
	if err := fs.Parse(args); err != nil {
		return Config{}, options{}, err
	}
	if jsonOut.dest == "-" && fs.NArg() == 1 {
		jsonOut.dest = fs.Arg(0) // --json FILE
	} else if fs.NArg() > 0 {
		return Config{}, options{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg := defaultConfig(*quick)
	cfg.RedisURL, cfg.SkipAsynq, cfg.SkipMillion, cfg.CPUProfile = *url, *skipAsynq, *skipMillion, *cpuprofile
	if *tasks > 0 {
		cfg.Tasks = *tasks
	}
	if *samples > 0 {
		cfg.LatencySamples = *samples
	}
	if *pause > 0 {
		cfg.LatencyGap = *pause
	}
	if *only != "" {
		for _, g := range strings.Split(*only, ",") {
			if g = strings.TrimSpace(g); !slices.Contains(groups, g) {
				return Config{}, options{}, fmt.Errorf("--only: unknown measurement %q (have %s)", g, strings.Join(groups, ","))
			}
			cfg.Only = append(cfg.Only, g)
		}
	}
	return cfg, options{json: jsonOut.dest, markdown: *markdown}, nil
}

func cli(args []string, stdout, stderr io.Writer) int {
	cfg, opts, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "bench:", err)
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	tableOut := stdout
	if opts.json == "-" {
		tableOut = stderr // stdout is the JSON
	}
	fmt.Fprintln(tableOut)
	if err := writeTable(tableOut, rep, opts.markdown); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	switch opts.json {
	case "":
	case "-":
		err = writeJSON(stdout, rep)
	default:
		err = writeJSONFile(opts.json, rep)
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	return 0
}

func writeJSONFile(path string, rep *Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	if err := writeJSON(f, rep); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// runner runs each measurement on each system, on a flushed Redis.
type runner struct {
	cfg     Config
	url     string
	admin   *admin
	systems []string
	res     results
	notes   map[string]string
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
	r := &runner{cfg: cfg, url: url, admin: a, systems: []string{nameGotasks}, res: results{}, notes: map[string]string{}, log: logw}
	if !cfg.SkipAsynq {
		r.systems = append(r.systems, nameAsynq)
	}
	load := loadAverage()
	if err := r.measureAll(ctx); err != nil {
		return nil, err
	}
	m := machine(ctx, a)
	m.Load = load + " → " + loadAverage()
	return &Report{Machine: m, Config: cfg, Rows: buildRows(cfg, r.res, r.notes)}, nil
}

// groups are the names --only accepts, in run order.
var groups = []string{"enqueue", "memory", "drain", "latency", "claim", "hotpath"}

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
			return drainRateProcs(ctx, s, r.url, c.Tasks, c.Procs, c.ProcConcurrency)
		})},
		step{"latency", r.latency},
		step{"claim", r.claimGrowth},
		step{"hotpath", r.hotPath},
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

// machine describes where the run happened.
func machine(ctx context.Context, a *admin) Machine {
	m := Machine{
		Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), CPUs: runtime.NumCPU(),
		OS: runtime.GOOS + "/" + runtime.GOARCH, GoVersion: runtime.Version(),
		Redis: a.version(ctx), CPU: cpuModel(), Gotasks: gitRevision(), Asynq: "unknown",
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/hibiken/asynq" {
				m.Asynq = d.Version
			}
		}
	}
	return m
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// gitRevision names the gotasks code measured (the bench builds it from
// the parent directory); "dev" outside a git checkout.
func gitRevision() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "dev"
	}
	return strings.TrimSpace(string(out))
}

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
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
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
	ScaleProcs         []int         `json:"scale_procs"`          // worker processes in the scale section
	ScaleIOConcurrency int           `json:"scale_io_concurrency"` // per process, for the tasks that wait
	ScaleIOWait        time.Duration `json:"scale_io_wait_ns"`     // how long those tasks wait
	ScaleRounds        int           `json:"scale_rounds"`         // each scale row is the best of this many
	MiddlewareRounds   int           `json:"middleware_rounds"`    // each variant of the middleware section runs this many times
	ClaimTasks         int           `json:"claim_tasks"`
	SmallPending       int           `json:"small_pending"`
	LargePending       int           `json:"large_pending"`
	Quick              bool          `json:"quick"`
	SkipAsynq          bool          `json:"skip_asynq"`
	SkipMillion        bool          `json:"skip_million"`
	Only               []string      `json:"only,omitempty"`   // measurement groups to run; empty: all
	Events             string        `json:"events,omitempty"` // broker.Options.Events of every gotasks broker; empty: the default
	CPUProfile         string        `json:"-"`                // of the gotasks drain at concurrency 16
}

// defaultConfig is the full run, or the smoke run with quick.
func defaultConfig(quick bool) Config {
	c := Config{
		Tasks: 20_000, EnqueueGoroutines: 16, Batch: 100,
		Concurrency: []int{1, 16, 64}, Procs: 2, ProcConcurrency: 16,
		LatencySamples: 200, LatencyConcurrency: 16, LatencyGap: time.Second,
		ScaleProcs: []int{1, 2, 4}, ScaleIOConcurrency: 8, ScaleIOWait: 2 * time.Millisecond, ScaleRounds: 3,
		MiddlewareRounds: 7, ClaimTasks: 2_000, SmallPending: 1_000, LargePending: 1_000_000,
	}
	if quick {
		c.Quick = true
		c.Tasks = 1_000
		c.LatencySamples, c.LatencyGap = 10, 100*time.Millisecond
		c.ClaimTasks, c.LargePending = 200, 20_000
		c.ScaleRounds, c.MiddlewareRounds = 1, 2
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
		rounds      = fs.Int("scale-rounds", 0, "rounds of the scale section; each row is the best round (default 3, 1 with --quick)")
		mwRounds    = fs.Int("middleware-rounds", 0, "rounds of the middleware section; each variant's figures are the median (default 7, 2 with --quick)")
		events      = fs.String("events", "", "broker.Options.Events of gotasks: auto (the default), publish, sharded or off (to measure what events cost)")
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
	if *rounds > 0 {
		cfg.ScaleRounds = *rounds
	}
	if *mwRounds > 0 {
		cfg.MiddlewareRounds = *mwRounds
	}
	switch *events {
	case "", "auto":
	case "publish", "sharded", "off":
		cfg.Events = *events
	default:
		return Config{}, options{}, fmt.Errorf("--events: %q is not auto, publish, sharded or off", *events)
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
	// Worker processes (workerproc.go) inherit the setting.
	if err := os.Setenv(eventsEnv, cfg.Events); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
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

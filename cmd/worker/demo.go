package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/cli"
	"github.com/gotasks/gotasks/dashboard"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// demoCommand is `worker demo`.
var demoCommand = cli.Command{
	Name:    "demo",
	Summary: "run demo tasks on an embedded in-memory Redis and print their results",
	Help: `
Starts an embedded in-memory Redis, enqueues demo tasks with different
priorities, a deferred one and a failing one, runs them on a worker in this
process and prints their results. Nothing else is needed: no Redis server.

Examples:
  PROG demo
  PROG demo --dashboard-addr :8080   # then its dashboard, until Ctrl-C
`,
	Flags: []string{"log-format", "log-level", "dashboard-addr", "dashboard-token"},
	Run: func(ctx context.Context, cfg cli.Config, _ *slog.Logger) error {
		return demo(ctx, cfg, os.Stdout)
	},
}

// demo runs an embedded in-memory Redis, enqueues demo tasks with
// different priorities, a deferred one and a failing one, runs them on a
// worker in this process and prints their results to out.
func demo(ctx context.Context, cfg cli.Config, out io.Writer) error {
	demoStart = time.Now()
	if cfg.LogLevel == "info" { // the demo prints its own progress and results
		cfg.LogLevel = "error"
	}
	log := cfg.NewLogger(os.Stderr)
	// The settings of the environment (prefix, serializer, ...), on an
	// embedded Redis.
	bc := cfg.Broker
	bc.URL, bc.Conn = "memory://", broker.ConnOptions{PoolSize: 32}
	b, closeRedis, err := cli.OpenRedis(bc, log)
	if err != nil {
		return err
	}
	defer closeRedis()
	recorder = b.Client()
	task.Configure(map[string]task.Backend{task.DefaultBackendName: b})
	fmt.Fprintln(out, "gotasks demo: an in-memory Redis, one worker with concurrency 1, six tasks")

	// Enqueued before the worker starts, so it picks them by priority.
	type row struct {
		what string
		get  func(context.Context) (string, string, error) // status, value
	}
	var rows []row
	add := func(what string, prio int, a, bb int) error {
		r, err := addTask.Using(task.Priority(prio)).Enqueue(ctx, AddArgs{A: a, B: bb})
		if err != nil {
			return err
		}
		rows = append(rows, row{what, func(ctx context.Context) (string, string, error) {
			if err := r.Refresh(ctx); err != nil {
				return "", "", err
			}
			v, err := r.Value()
			return describe(r.Status, r.StartedAt, v, err)
		}})
		return nil
	}
	if err := add("demo.add 1+1, priority -10", -10, 1, 1); err != nil {
		return err
	}
	if err := add("demo.add 2+2, priority 0", 0, 2, 2); err != nil {
		return err
	}
	if err := add("demo.add 3+3, priority 50", 50, 3, 3); err != nil {
		return err
	}
	sleepR, err := sleepTask.Using(task.Priority(10)).Enqueue(ctx, SleepArgs{Ms: 200})
	if err != nil {
		return err
	}
	rows = append(rows, row{"demo.sleep 200ms, priority 10", func(ctx context.Context) (string, string, error) {
		if err := sleepR.Refresh(ctx); err != nil {
			return "", "", err
		}
		v, err := sleepR.Value()
		return describe(sleepR.Status, sleepR.StartedAt, "ran on "+v, err)
	}})
	deferred, err := addTask.Using(task.RunAfter(time.Second), task.Priority(100)).Enqueue(ctx, AddArgs{A: 20, B: 22})
	if err != nil {
		return err
	}
	rows = append(rows, row{"demo.add 20+22, priority 100, RunAfter 1s", func(ctx context.Context) (string, string, error) {
		if err := deferred.Refresh(ctx); err != nil {
			return "", "", err
		}
		v, err := deferred.Value()
		return describe(deferred.Status, deferred.StartedAt, v, err)
	}})
	failR, err := failTask.Enqueue(ctx, "the disk is full")
	if err != nil {
		return err
	}
	rows = append(rows, row{"demo.fail", func(ctx context.Context) (string, string, error) {
		if err := failR.Refresh(ctx); err != nil {
			return "", "", err
		}
		_, err := failR.Value()
		return describe(failR.Status, failR.StartedAt, nil, err)
	}})
	// Bad input: a priority out of range is refused at Enqueue.
	_, badErr := addTask.Using(task.Priority(500)).Enqueue(ctx, AddArgs{})

	var finished atomic.Int64
	removeHook := task.OnFinished(func(context.Context, *task.RawResult) { finished.Add(1) })
	defer removeHook()
	start := time.Now()
	wctx, stopWorker := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- worker.New(b, worker.Options{Concurrency: 1, WorkerID: "demo-worker", Logger: log, ShutdownTimeout: time.Second}).Run(wctx)
	}()
	total, shown := int64(len(rows)), int64(-1)
	for ctx.Err() == nil {
		if n := finished.Load(); n != shown {
			shown = n
			fmt.Fprintf(out, "progress: %d/%d finished after %.1fs\n", n, total, time.Since(start).Seconds())
		}
		if shown == total {
			break
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	fmt.Fprintln(out)
	stopWorker()
	if err := <-done; err != nil {
		return err
	}

	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tSTATUS\tSTARTED\tRESULT")
	for _, r := range rows {
		status, value, err := r.get(context.WithoutCancel(ctx))
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.what, status, value)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nrefused at Enqueue: %v\n", badErr)
	fmt.Fprintln(out, "\nThe worker took the ready tasks by priority (50, 10, 0, 0, -10; the failing task")
	fmt.Fprintln(out, "has priority 0 and was enqueued after demo.add 2+2), and the deferred task when its second was up.")
	if cfg.DashboardAddr != "" {
		// The in-memory Redis lives as long as this process: keep it, and
		// the dashboard over it, until Ctrl-C.
		addr, _, _ := dashboard.ListenAddr(cfg.DashboardAddr) // checked with the flags
		fmt.Fprintf(out, "\nThe dashboard of this in-memory Redis: http://%s/ (Ctrl-C to stop)\n", addr)
		return cli.ServeDashboard(ctx, cfg, b, log)
	}
	return nil
}

// demoStart is when the demo began; start times are shown relative to it.
var demoStart time.Time

func describe(status task.Status, started time.Time, v any, err error) (string, string, error) {
	at := "-"
	if !started.IsZero() {
		at = fmt.Sprintf("+%dms", started.Sub(demoStart).Milliseconds())
	}
	if err != nil {
		return string(status), at + "\t" + err.Error(), nil
	}
	return string(status), fmt.Sprintf("%s\t%v", at, v), nil
}

// Command producer enqueues demo.add tasks for the worker command
// (cmd/worker) to run, waits for their results and prints a one-line
// summary. It is the other half of the docker compose and Kubernetes
// examples:
//
//	producer -n 1000
//
// Redis comes from --redis-url, default $GOTASKS_REDIS_URL or
// redis://127.0.0.1:6379/0; the rest of the backend's settings from the
// same environment variables as the worker's (broker.ConfigFromEnv:
// $GOTASKS_REDIS_PASSWORD, $GOTASKS_PREFIX, $GOTASKS_RESULT_TTL,
// $GOTASKS_SERIALIZER, ...), so that the two agree.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
)

// AddArgs are the arguments of demo.add. They must encode as the worker's
// (cmd/worker/tasks.go) do: same fields, same tags.
type AddArgs struct {
	A int `json:"a"`
	B int `json:"b"`
}

// addTask only names demo.add and its types for Enqueue and GetResult: the
// worker runs its own definition. This body runs only when a worker in this
// process claims the task, as in the test.
var addTask = task.Define("demo.add", func(ctx context.Context, a AddArgs) (int, error) {
	return a.A + a.B, nil
})

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[0], os.Args[1:], os.Stdout, os.Stderr))
}

// summary counts the outcomes of the enqueued tasks.
type summary struct {
	completed, failed, wrong int
	elapsed                  time.Duration
}

func (s summary) String() string {
	n := s.completed + s.failed
	line := fmt.Sprintf("%d demo.add tasks: %d completed, %d failed in %v (%.0f tasks/s)",
		n, s.completed, s.failed, s.elapsed.Round(time.Millisecond), float64(n)/s.elapsed.Seconds())
	if s.wrong > 0 {
		line += fmt.Sprintf("; %d completed with a wrong sum", s.wrong)
	}
	return line
}

func run(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	defURL := os.Getenv("GOTASKS_REDIS_URL")
	if defURL == "" {
		defURL = "redis://127.0.0.1:6379/0"
	}
	url := fs.String("redis-url", defURL, "Redis the worker serves (default from $GOTASKS_REDIS_URL)")
	fs.Lookup("redis-url").DefValue = broker.RedactURL(defURL)
	n := fs.Int("n", 100, "how many demo.add tasks to enqueue")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up waiting for results after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *n < 1 {
		fmt.Fprintf(stderr, "%s: -n must be at least 1, not %d\n", name, *n)
		return 2
	}
	s, err := produce(ctx, *url, *n, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	fmt.Fprintln(stdout, s)
	if s.failed > 0 || s.wrong > 0 {
		return 1
	}
	return 0
}

// produce enqueues n demo.add tasks on the Redis at url and waits for them.
func produce(ctx context.Context, url string, n int, timeout time.Duration) (summary, error) {
	c, err := broker.ConfigFromEnv() // what the worker command reads too
	if err != nil {
		return summary{}, err // it names the variable
	}
	c.URL = url
	b, err := c.Open()
	if err != nil {
		return summary{}, err // it names the redacted URL
	}
	defer func() { _ = b.Close() }()
	task.Configure(map[string]task.Backend{task.DefaultBackendName: b})
	defer task.Configure(nil)

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := b.Check(ctx); err != nil {
		return summary{}, fmt.Errorf("redis %s: %w", broker.RedactURL(url), err)
	}
	args := make([]AddArgs, n)
	for i := range args {
		args[i] = AddArgs{A: i, B: 2 * i}
	}
	start := time.Now()
	// One round trip for the whole batch.
	results, err := addTask.EnqueueMany(ctx, args)
	if err != nil {
		return summary{}, err
	}
	var s summary
	for i, r := range results {
		// Waiting in enqueue order costs nothing: by the time the first
		// result is in, most of the others are too.
		if err := r.Wait(ctx, 20*time.Millisecond); err != nil {
			return summary{}, fmt.Errorf("%d of %d results in after %v: %w", i, n, time.Since(start).Round(time.Millisecond), err)
		}
		v, err := r.Value()
		switch {
		case err != nil:
			s.failed++
		case v != 3*i:
			s.completed++
			s.wrong++
		default:
			s.completed++
		}
	}
	s.elapsed = time.Since(start)
	return s, nil
}

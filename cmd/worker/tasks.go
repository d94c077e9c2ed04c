package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/task"
)

// The demo tasks. A real worker defines its own tasks in its own packages;
// these exist for the demo and for the integration tests, which enqueue
// them from another process by name.

// AddArgs are the arguments of demo.add.
type AddArgs struct {
	A int `json:"a"`
	B int `json:"b"`
}

// FlakyArgs are the arguments of demo.flaky.
type FlakyArgs struct {
	FailAttempts int `json:"fail_attempts"`
}

// SleepArgs are the arguments of demo.sleep and demo.record.
// ProgressArgs are demo.progress's arguments.
type ProgressArgs struct {
	Steps int `json:"steps"`
	Ms    int `json:"ms"`
}

type SleepArgs struct {
	Ms  int    `json:"ms"`
	Tag string `json:"tag,omitempty"`
}

var (
	addTask = task.Define("demo.add", func(ctx context.Context, a AddArgs) (int, error) {
		return a.A + a.B, nil
	})

	// demo.sleep waits (honouring cancellation) and reports which worker ran it.
	sleepTask = task.Define("demo.sleep", func(ctx context.Context, a SleepArgs) (string, error) {
		select {
		case <-time.After(time.Duration(a.Ms) * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		info, _ := task.InfoFrom(ctx)
		return info.WorkerID, nil
	})

	// demo.flaky fails its first FailAttempts attempts, as a task whose
	// upstream is briefly down, and then returns the attempt number: a
	// retry (automatic, or RetryFailed from the dashboard) completes it.
	flakyTask = task.Define("demo.flaky", func(ctx context.Context, a FlakyArgs) (int, error) {
		info, _ := task.InfoFrom(ctx)
		if info.Attempt <= a.FailAttempts {
			return 0, fmt.Errorf("demo.flaky attempt %d: %w", info.Attempt, errors.New("upstream unavailable"))
		}
		return info.Attempt, nil
	})

	failTask = task.Define("demo.fail", func(ctx context.Context, msg string) (struct{}, error) {
		return struct{}{}, fmt.Errorf("demo.fail: %w", errors.New(msg))
	})

	// demo.goexit ends its goroutine with runtime.Goexit instead of
	// returning, as a task calling testing.T.FailNow would: the worker
	// fails it with gotasks.Goexit and carries on.
	goexitTask = task.Define("demo.goexit", func(ctx context.Context, _ struct{}) (struct{}, error) {
		runtime.Goexit()
		return struct{}{}, nil
	})

	// demo.progress takes Ms milliseconds for each of Steps steps and
	// reports its progress after each (task.SetProgress); it returns
	// Steps.
	progressTask = task.Define("demo.progress", func(ctx context.Context, a ProgressArgs) (int, error) {
		for i := 1; i <= a.Steps; i++ {
			select {
			case <-time.After(time.Duration(a.Ms) * time.Millisecond):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			task.SetProgress(ctx, int64(i), int64(a.Steps), fmt.Sprintf("step %d", i))
		}
		return a.Steps, nil
	})

	// demo.record appends "<id> <attempt> <worker> <tag>" to the Redis list
	// demo:executions when it starts and when it ends, so that tests can
	// count executions and check their order and overlap. With
	// $GOTASKS_DEMO_RECORD_FILE set, it appends those lines ("start ..." and
	// "end ...") to that file instead, so that the record goes through no
	// network (tests that break the worker's connection to Redis count
	// executions that way), and returns 0.
	recordTask = task.Define("demo.record", func(ctx context.Context, a SleepArgs) (int, error) {
		info, _ := task.InfoFrom(ctx)
		line := fmt.Sprintf("%s %d %s %s", info.ResultID, info.Attempt, info.WorkerID, a.Tag)
		if _, err := record(ctx, "start "+line); err != nil {
			return 0, fmt.Errorf("record start: %w", err)
		}
		select {
		case <-time.After(time.Duration(a.Ms) * time.Millisecond):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		n, err := record(context.WithoutCancel(ctx), "end "+line)
		if err != nil {
			return 0, fmt.Errorf("record end: %w", err)
		}
		return n, nil
	})
)

// recordFileEnv names the file demo.record appends its lines to instead of
// Redis (see recordTask).
const recordFileEnv = "GOTASKS_DEMO_RECORD_FILE"

// record appends line to the record of executions: the list
// demo:executions, whose length it returns, or the file named by
// $GOTASKS_DEMO_RECORD_FILE (one write per line, appended, so that
// several worker processes can share the file), and then it returns 0.
func record(ctx context.Context, line string) (int, error) {
	if path := os.Getenv(recordFileEnv); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return 0, err
		}
		_, err = f.WriteString(line + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return 0, err
	}
	n, err := recorder.RPush(ctx, "demo:executions", line).Result()
	return int(n), err
}

// recorder is the Redis demo.record writes to: the worker's own Redis.
var recorder redis.UniversalClient

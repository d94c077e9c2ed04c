package integration

import (
	"context"

	"github.com/gotasks/gotasks/task"
)

// The producer's view of cmd/worker's demo tasks (cmd/worker/tasks.go): the
// same names and argument shapes, so that the test process can enqueue them
// and decode their results. The code runs in the worker processes only; the
// arguments travel as msgpack, which names fields by their json tags.

type addArgs struct {
	A int `json:"a"`
	B int `json:"b"`
}

type flakyArgs struct {
	FailAttempts int `json:"fail_attempts"`
}

type progressArgs struct {
	Steps int `json:"steps"`
	Ms    int `json:"ms"`
}

type stepsArgs struct {
	Steps int `json:"steps"`
	Ms    int `json:"ms"`
}

type sleepArgs struct {
	Ms  int    `json:"ms"`
	Tag string `json:"tag,omitempty"`
}

var (
	addTask = task.Define("demo.add", func(ctx context.Context, a addArgs) (int, error) {
		panic("demo.add runs in the worker")
	})
	// demo.sleep returns the id of the worker that ran it.
	sleepTask = task.Define("demo.sleep", func(ctx context.Context, a sleepArgs) (string, error) {
		panic("demo.sleep runs in the worker")
	})
	// demo.flaky fails its first FailAttempts attempts, then returns the
	// attempt number.
	flakyTask = task.Define("demo.flaky", func(ctx context.Context, a flakyArgs) (int, error) {
		panic("demo.flaky runs in the worker")
	})
	failTask = task.Define("demo.fail", func(ctx context.Context, msg string) (struct{}, error) {
		panic("demo.fail runs in the worker")
	})
	// demo.goexit calls runtime.Goexit instead of returning.
	goexitTask = task.Define("demo.goexit", func(ctx context.Context, _ struct{}) (struct{}, error) {
		panic("demo.goexit runs in the worker")
	})
	// demo.record appends "start|end <id> <attempt> <worker> <tag>" to the
	// list demo:executions and returns the list's length after "end".
	// demo.progress reports its progress after each of its steps.
	progressTask = task.Define("demo.progress", func(ctx context.Context, a progressArgs) (int, error) {
		panic("demo.progress runs in the worker")
	})
	recordTask = task.Define("demo.record", func(ctx context.Context, a sleepArgs) (int, error) {
		panic("demo.record runs in the worker")
	})
	// demo.steps runs Steps durable steps, each an INCR of
	// demo:side:<id>:<step> in $GOTASKS_DEMO_SIDE_REDIS_URL, with a pause
	// of Ms after each.
	stepsTask = task.Define("demo.steps", func(ctx context.Context, a stepsArgs) (int, error) {
		panic("demo.steps runs in the worker")
	})
	// No worker defines this one.
	unknownTask = task.Define("integration.nobody-defines-this", func(ctx context.Context, a addArgs) (int, error) {
		panic("never runs")
	})
)

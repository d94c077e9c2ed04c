package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/task"
)

// StepsArgs are demo.steps's arguments.
type StepsArgs struct {
	Steps int `json:"steps"`
	Ms    int `json:"ms"` // pause after each step
}

// sideEffectsEnv names the Redis demo.steps counts its side effects in
// (INCR demo:side:<id>:<step>), as a payment or an email would happen
// outside the task queue; default: the worker's own Redis.
const sideEffectsEnv = "GOTASKS_DEMO_SIDE_REDIS_URL"

var (
	sideOnce sync.Once
	side     redis.UniversalClient
	sideErr  error
)

func sideEffects() (redis.UniversalClient, error) {
	sideOnce.Do(func() {
		url := os.Getenv(sideEffectsEnv)
		if url == "" {
			side = recorder
			return
		}
		opts, err := redis.ParseURL(url)
		if err != nil {
			sideErr = fmt.Errorf("$%s: %w", sideEffectsEnv, err)
			return
		}
		side = redis.NewClient(opts)
	})
	return side, sideErr
}

// demo.steps runs Steps durable steps (task.Step), each a side effect
// counted in Redis, with a pause of Ms after each: killed during a pause,
// the task resumes after its last finished step, and no side effect
// happens twice. It returns Steps.
var stepsTask = task.Define("demo.steps", func(ctx context.Context, a StepsArgs) (int, error) {
	rdb, err := sideEffects()
	if err != nil {
		return 0, err
	}
	info, _ := task.InfoFrom(ctx)
	for i := 1; i <= a.Steps; i++ {
		if _, err := task.Step(ctx, fmt.Sprintf("step-%d", i), func(ctx context.Context) (int64, error) {
			return rdb.Incr(ctx, fmt.Sprintf("demo:side:%s:%d", info.ResultID, i)).Result()
		}); err != nil {
			return 0, err
		}
		task.SetProgress(ctx, int64(i), int64(a.Steps), fmt.Sprintf("step %d done", i))
		select {
		case <-time.After(time.Duration(a.Ms) * time.Millisecond):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return a.Steps, nil
})

package worker_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// stepRuns counts, per test, how often each step's function ran.
var stepRuns struct {
	sync.Mutex
	n map[string]int
}

func stepRan(key string) {
	stepRuns.Lock()
	defer stepRuns.Unlock()
	if stepRuns.n == nil {
		stepRuns.n = map[string]int{}
	}
	stepRuns.n[key]++
}

func stepCount(key string) int {
	stepRuns.Lock()
	defer stepRuns.Unlock()
	return stepRuns.n[key]
}

// stepsTask charges, then emails; its first attempt fails after the
// charge (the email service is down), and is retried at once.
var stepsTask = task.Define("workertest.steps", func(ctx context.Context, key string) (string, error) {
	charge, err := task.Step(ctx, "charge", func(ctx context.Context) (string, error) {
		stepRan(key + "/charge")
		return "ch_42", nil
	})
	if err != nil {
		return "", err
	}
	info, _ := task.InfoFrom(ctx)
	if _, err := task.Step(ctx, "email", func(ctx context.Context) (int, error) {
		stepRan(key + "/email")
		if info.Attempt == 1 {
			return 0, task.Retry(0)
		}
		return 1, nil
	}); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s emailed on attempt %d", charge, info.Attempt), nil
}, task.MaxAttempts(3))

// TestStepsResumeAfterTheLastStoredStep: the retried task does not charge
// again; it sends the email; the steps expire with the result.
func TestStepsResumeAfterTheLastStoredStep(t *testing.T) {
	e := setup(t)
	stepRuns.Lock()
	clear(stepRuns.n) // -count=N runs this test again under its name
	stepRuns.Unlock()
	res := must[*task.Result[string]](t)(stepsTask.Enqueue(e.ctx, t.Name()))
	w := e.runToEnd(worker.Options{Batch: true, Concurrency: 2})
	if w.Processed() != 2 {
		t.Errorf("processed %d attempts, want 2", w.Processed())
	}
	refresh(t, res)
	if v, err := res.Value(); err != nil || v != "ch_42 emailed on attempt 2" || res.Attempts != 2 {
		t.Fatalf("result %q, %v after %d attempts", v, err, res.Attempts)
	}
	if c, m := stepCount(t.Name()+"/charge"), stepCount(t.Name()+"/email"); c != 1 || m != 2 {
		t.Errorf("charge ran %d times, email %d; want 1 and 2 (it failed once)", c, m)
	}
	var key string
	for _, k := range e.m.Keys() {
		if strings.HasSuffix(k, ":s:"+res.ID) {
			key = k
		}
	}
	if key == "" {
		t.Fatalf("no steps key for %s in %v", res.ID, e.m.Keys())
	}
	if ttl := e.m.TTL(key); ttl <= 23*time.Hour || ttl > 24*time.Hour {
		t.Errorf("the steps' TTL after the task completed = %v, want the result's (24h)", ttl)
	}
}

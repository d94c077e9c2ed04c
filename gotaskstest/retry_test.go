package gotaskstest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gotasks/gotasks/gotaskstest"
	"github.com/gotasks/gotasks/task"
)

var flakyCalls int

var flaky = task.Define("gotaskstest.flaky", func(ctx context.Context, n int) (string, error) {
	flakyCalls++
	info, _ := task.InfoFrom(ctx)
	if flakyCalls < 3 {
		return "", fmt.Errorf("attempt %d: %w", info.Attempt, errors.New("upstream unavailable"))
	}
	return fmt.Sprintf("ok on attempt %d", info.Attempt), nil
}, task.MaxAttempts(3), task.Backoff(time.Minute, time.Hour))

// Through the Redis backend: between attempts the result is NEW with the
// time of its next attempt, every failure is kept, and the last attempt's
// success completes it.
func TestRetriesThroughRedis(t *testing.T) {
	ctx := context.Background()
	env := gotaskstest.New(t)
	flakyCalls = 0
	res, err := flaky.Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := env.RunUntilIdle(ctx); err != nil || n != 1 {
		t.Fatalf("first run: %d, %v", n, err)
	}
	if err := res.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if res.Status != task.StatusNew || res.Attempts != 1 || len(res.Errors) != 1 {
		t.Fatalf("after a failed attempt: %s, attempts %d, errors %v", res.Status, res.Attempts, res.Errors)
	}
	if wait := time.Until(res.RunAfter); wait < 25*time.Second || wait > time.Minute {
		t.Errorf("next attempt in %v, want within the first backoff step [30s, 1m]", wait)
	}
	if n, _ := env.RunUntilIdle(ctx); n != 0 {
		t.Fatalf("the retry ran %d tasks before its time", n)
	}

	env.Advance(time.Minute)
	if n, err := env.RunUntilIdle(ctx); err != nil || n != 1 {
		t.Fatalf("second run: %d, %v", n, err)
	}
	env.Advance(2 * time.Minute)
	if n, err := env.RunUntilIdle(ctx); err != nil || n != 1 {
		t.Fatalf("third run: %d, %v", n, err)
	}
	if err := res.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := res.Value()
	if err != nil || v != "ok on attempt 3" || res.Attempts != 3 || len(res.Errors) != 2 {
		t.Fatalf("final: %q %v, attempts %d, errors %v", v, err, res.Attempts, res.Errors)
	}
	if res.Errors[0].Message != "attempt 1: upstream unavailable" || res.Errors[1].Message != "attempt 2: upstream unavailable" {
		t.Errorf("error history: %+v %+v", res.Errors[0], res.Errors[1])
	}
	if res.Errors[0].Type != "" {
		t.Errorf("error type %q", res.Errors[0].Type)
	}
}

var alwaysFails = task.Define("gotaskstest.alwaysFails", func(ctx context.Context, n int) (int, error) {
	return 0, errors.New("still broken")
}, task.MaxAttempts(2), task.Backoff(time.Second, time.Second))

func TestRetriesExhausted(t *testing.T) {
	ctx := context.Background()
	env := gotaskstest.New(t)
	res, err := alwaysFails.Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	env.RunUntilIdle(ctx)
	env.Advance(time.Second)
	env.RunUntilIdle(ctx)
	if err := res.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	_, verr := res.Value()
	var te *task.Error
	if res.Status != task.StatusFailed || !errors.As(verr, &te) || te.Message != "still broken" || len(res.Errors) != 2 {
		t.Fatalf("after 2 of 2 attempts: %s %v errors %v", res.Status, verr, res.Errors)
	}
}

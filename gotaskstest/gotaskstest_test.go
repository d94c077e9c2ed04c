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

type welcome struct {
	Email string `json:"email"`
}

var sent []string

var sendWelcome = task.Define("gotaskstest.sendWelcome", func(ctx context.Context, a welcome) (string, error) {
	if a.Email == "" {
		return "", errors.New("no email")
	}
	sent = append(sent, a.Email)
	return "sent to " + a.Email, nil
})

func TestRunUntilIdle(t *testing.T) {
	ctx := context.Background()
	env := gotaskstest.New(t)
	sent = nil
	ok, err := sendWelcome.Enqueue(ctx, welcome{Email: "ann@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := sendWelcome.Enqueue(ctx, welcome{})
	if err != nil {
		t.Fatal(err)
	}
	later, err := sendWelcome.Using(task.RunAfter(time.Hour)).Enqueue(ctx, welcome{Email: "later@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := env.RunUntilIdle(ctx)
	if err != nil || n != 2 {
		t.Fatalf("RunUntilIdle = %d, %v; want 2 tasks", n, err)
	}
	if err := ok.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := ok.Value(); err != nil || v != "sent to ann@example.com" {
		t.Fatalf("Value = %q, %v", v, err)
	}
	if err := bad.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if bad.Status != task.StatusFailed || bad.Err.Message != "no email" {
		t.Fatalf("bad = %s %v", bad.Status, bad.Err)
	}
	if err := later.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if later.Status != task.StatusNew {
		t.Fatalf("deferred task ran early: %s", later.Status)
	}
	env.Advance(time.Hour)
	if n, err := env.RunUntilIdle(ctx); err != nil || n != 1 {
		t.Fatalf("after Advance: RunUntilIdle = %d, %v; want 1", n, err)
	}
	if fmt.Sprint(sent) != "[ann@example.com later@example.com]" {
		t.Fatalf("sent = %v", sent)
	}
}

package main

// The README's test example, verbatim, so that it keeps compiling and passing.

import (
	"context"
	"testing"
	"time"

	"github.com/gotasks/gotasks/gotaskstest"
	"github.com/gotasks/gotasks/task"
)

func TestSignupSendsWelcome(t *testing.T) {
	ctx := context.Background()
	env := gotaskstest.New(t) // "default" backend → in-process Redis, undone at cleanup

	res, err := sendEmail.Enqueue(ctx, Email{To: "ann@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	reminder, _ := sendEmail.Using(task.RunAfter(24*time.Hour)).Enqueue(ctx, Email{To: "ann@example.com"})

	if n, err := env.RunUntilIdle(ctx); err != nil || n != 1 { // runs every ready task
		t.Fatalf("ran %d tasks: %v", n, err)
	}
	res.Refresh(ctx)
	if v, err := res.Value(); err != nil || v != "sent to ann@example.com" {
		t.Fatalf("got %q, %v", v, err)
	}

	env.Advance(24 * time.Hour) // the deferred reminder is now due
	env.RunUntilIdle(ctx)
	reminder.Refresh(ctx)
	if reminder.Status != task.StatusComplete {
		t.Fatal(reminder.Status)
	}
}

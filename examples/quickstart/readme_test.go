package main

// The README's test examples, verbatim (examples/readme_test.go checks), so
// that they keep compiling and passing.

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

func TestSignupEnqueuesWelcome(t *testing.T) {
	dummy := task.NewDummyBackend("default", task.BackendOptions{})
	task.Configure(map[string]task.Backend{"default": dummy})
	t.Cleanup(func() { task.Configure(nil) }) // back to the ImmediateBackend

	if _, err := sendEmail.Enqueue(context.Background(), Email{To: "ann@example.com"}); err != nil {
		t.Fatal(err)
	}
	got := dummy.Results() // everything enqueued, oldest first; nothing ran
	if len(got) != 1 || got[0].TaskName != "emails.send" || got[0].Status != task.StatusNew {
		t.Fatalf("enqueued %v", got)
	}
	var e Email
	if err := got[0].DecodeArgs(&e); err != nil || e.To != "ann@example.com" {
		t.Fatalf("arguments %+v, %v", e, err)
	}
}

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/examples/emails"
	"github.com/gotasks/gotasks/examples/internal/exampletest"
	"github.com/gotasks/gotasks/task"
)

func TestMain(m *testing.M) { exampletest.Main(m, main) }

// TestEnqueueAndWait runs the program against miniredis with a worker in
// this process: it enqueues two tasks, waits for the first and prints its
// value; the deferred one is still waiting.
func TestEnqueueAndWait(t *testing.T) {
	url, b := exampletest.Redis(t)
	exampletest.Worker(t, b, "emails")
	p := exampletest.Command(t, nil, "GOTASKS_REDIS_URL="+url)
	p.Start(t)
	if code := p.Wait(t, time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.Output())
	}
	lines := strings.Split(strings.TrimSpace(p.Stdout.String()), "\n")
	if len(lines) != 2 || lines[1] != "COMPLETE sent to ann@example.com <nil>" {
		t.Fatalf("unexpected output\n%s", p.Output())
	}
	f := strings.Fields(lines[0]) // enqueued ID and ID
	if len(f) != 4 || f[0] != "enqueued" {
		t.Fatalf("first line %q", lines[0])
	}
	later, err := emails.Send.GetResult(context.Background(), f[3])
	if err != nil {
		t.Fatal(err)
	}
	if later.Status != task.StatusNew || time.Until(later.RunAfter) < 50*time.Minute {
		t.Errorf("the deferred task is %s, RunAfter %v", later.Status, later.RunAfter)
	}
}

// TestEnqueueWithoutRedis: with nothing listening, the program fails
// (log.Fatal: exit 1) instead of waiting forever.
func TestEnqueueWithoutRedis(t *testing.T) {
	p := exampletest.Command(t, nil, "GOTASKS_REDIS_URL=redis://127.0.0.1:1/0")
	p.Start(t)
	if code := p.Wait(t, time.Minute); code != 1 || p.Stdout.Len() != 0 {
		t.Fatalf("exit %d\n%s", code, p.Output())
	}
}

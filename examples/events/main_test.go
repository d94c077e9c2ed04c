package main

import (
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/examples/internal/exampletest"
)

func TestMain(m *testing.M) { exampletest.Main(m, main) }

// TestEventsOfOneTask runs the program against miniredis with a worker in
// this process (another process, for the program): it prints the events
// of its task's life, which the worker's scripts published.
func TestEventsOfOneTask(t *testing.T) {
	url, b := exampletest.Redis(t)
	exampletest.Worker(t, b, "emails")
	p := exampletest.Command(t, nil, "GOTASKS_REDIS_URL="+url)
	p.Start(t)
	if code := p.Wait(t, time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.Output())
	}
	want := "enqueued emails.send NEW attempt 0\nstarted emails.send RUNNING attempt 1\ncompleted emails.send COMPLETE attempt 1"
	if got := strings.TrimSpace(p.Stdout.String()); got != want {
		t.Fatalf("output:\n%s\nwant:\n%s", p.Output(), want)
	}
}

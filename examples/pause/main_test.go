package main

import (
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/examples/internal/exampletest"
)

func TestMain(m *testing.M) { exampletest.Main(m, main) }

// TestTheTaskWaitsWhilePausedAndRunsOnResume runs the program against
// miniredis with a worker serving emails in this process (another
// process, for the program): the task is still NEW after a second of
// the queue paused (an idle worker runs it within milliseconds otherwise)
// and COMPLETE after Resume.
func TestTheTaskWaitsWhilePausedAndRunsOnResume(t *testing.T) {
	url, b := exampletest.Redis(t)
	exampletest.Worker(t, b, "emails")
	p := exampletest.Command(t, nil, "GOTASKS_REDIS_URL="+url)
	p.Start(t)
	if code := p.Wait(t, time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.Output())
	}
	want := "paused: NEW\nresumed: COMPLETE sent to ann@example.com <nil>"
	if got := strings.TrimSpace(p.Stdout.String()); got != want {
		t.Fatalf("output:\n%s\nwant:\n%s", p.Output(), want)
	}
}

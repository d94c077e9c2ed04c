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

// TestWorkerRunsTasks enqueues tasks and runs the command with --batch: it
// runs them (the emails package registered emails.send) and exits 0.
func TestWorkerRunsTasks(t *testing.T) {
	ctx := context.Background()
	url, _ := exampletest.Redis(t)
	var results []*task.Result[string]
	for _, to := range []string{"ann@example.com", "bob@example.com"} {
		res, err := emails.Send.Enqueue(ctx, emails.Email{To: to})
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
	}
	p := exampletest.Command(t, []string{"--batch", "--no-startup-delay", "--worker-id", "workercmd-test"},
		"GOTASKS_REDIS_URL="+url)
	p.Start(t)
	if code := p.Wait(t, time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.Output())
	}
	for _, res := range results {
		if err := res.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if v, err := res.Value(); err != nil || !strings.HasPrefix(v, "sent to ") || res.WorkerIDs[0] != "workercmd-test" {
			t.Errorf("%s: %q, %v, workers %v", res.ID, v, err, res.WorkerIDs)
		}
	}
}

// TestWorkerHelp: the command line is cli's, with its commands.
func TestWorkerHelp(t *testing.T) {
	p := exampletest.Command(t, []string{"help"})
	p.Start(t)
	if code := p.Wait(t, time.Minute); code != 0 || !strings.Contains(p.Stdout.String(), "admin") {
		t.Fatalf("exit %d\n%s", code, p.Output())
	}
}

package main

import (
	"context"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/gotasks/gotasks/examples/emails"
	"github.com/gotasks/gotasks/examples/internal/exampletest"
)

func TestMain(m *testing.M) { exampletest.Main(m, main) }

// TestEmbeddedWorker starts the program, waits for it to run a task, then
// stops it with SIGTERM: it exits 0.
func TestEmbeddedWorker(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM")
	}
	ctx := context.Background()
	url, _ := exampletest.Redis(t)
	res, err := emails.Send.Enqueue(ctx, emails.Email{To: "ann@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	p := exampletest.Command(t, nil, "GOTASKS_REDIS_URL="+url)
	p.Start(t)
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := res.Wait(wait, 20*time.Millisecond); err != nil {
		t.Fatalf("%v\n%s", err, p.Output())
	}
	if v, err := res.Value(); err != nil || v != "sent to ann@example.com" {
		t.Errorf("got %q, %v", v, err)
	}
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.Wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM\n%s", code, p.Output())
	}
}

package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// echoTask runs in this process (the demo tasks' copies here only enqueue).
var echoTask = task.Define("it.inprocess.echo", func(ctx context.Context, s string) (string, error) { return s, nil })

// An idle worker blocks in BLPOP on real Redis. Stopping it must end that
// command at once (CLIENT UNBLOCK), not leave it blocked on the server, and
// the worker must pick up a newly enqueued task within milliseconds of the
// enqueue, without polling.
func TestIdleWorkerWakesAndStopsPromptly(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(e.ctx)
	w := worker.New(e.B, worker.Options{
		Queues: []string{"idle"}, Concurrency: 2, WorkerID: "in-process",
		PollInterval: time.Minute, // a poll would be far too late for the checks below
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	blocked := func() int {
		list, err := e.R.ClientList(e.ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, line := range strings.Split(list, "\n") {
			for _, f := range strings.Fields(line) {
				// "cmd" is only the last command; the b flag means blocked now.
				if flags, ok := strings.CutPrefix(f, "flags="); ok && strings.Contains(flags, "b") {
					n++
				}
			}
		}
		return n
	}
	e.eventually(5*time.Second, "the worker to block in BLPOP", func() (bool, string) {
		n := blocked()
		return n > 0, fmt.Sprintf("%d blocked clients", n)
	})

	// Wake-up: with a one-minute poll interval, only the wake token can
	// make the task start before the deadline below.
	res, err := echoTask.Using(task.Queue("idle")).Enqueue(e.ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	r := e.waitStatus(e.B, res.ID, 10*time.Second, task.StatusComplete)
	if lat := r.StartedAt.Sub(r.EnqueuedAt); lat > time.Second {
		t.Errorf("an idle worker started the task %v after it was enqueued", lat)
	} else {
		t.Logf("enqueue to start on an idle worker: %v", lat)
	}

	e.eventually(5*time.Second, "the worker to block again", func() (bool, string) { return blocked() > 0, "" })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if n := blocked(); n != 0 {
		t.Errorf("%d BLPOP commands still blocked on the server after Run returned", n)
	}
}

package worker_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// syncBuffer is a log sink safe for the worker's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// While Redis is down the worker logs and backs off; when Redis is back it
// resumes by itself. TestMain's goleak check covers the stop afterwards.
func TestWorkerSurvivesRedisOutage(t *testing.T) {
	e := setup(t)
	var logs syncBuffer
	o := e.opts(worker.Options{PollInterval: 20 * time.Millisecond})
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	before := must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{1, 1}))
	w := worker.New(e.b, o)
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	stop := func() {
		cancel()
		<-done
	}
	defer stop()
	waitFor(t, "the first task", func() bool { return e.get(before.ID).Status == task.StatusComplete })

	e.m.Close()
	waitFor(t, "the worker to notice the outage", func() bool {
		return strings.Contains(logs.String(), "backing off")
	})
	if err := e.m.Restart(); err != nil {
		t.Fatal(err)
	}
	after := must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{2, 2}))
	waitFor(t, "a task enqueued after the outage", func() bool { return e.get(after.ID).Status == task.StatusComplete })
}

package task_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/gotasks/gotasks/task"
)

// logRecorder is a Debug-level slog logger writing JSON lines to a buffer.
type logRecorder struct{ buf bytes.Buffer }

func (l *logRecorder) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(&l.buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lines returns "LEVEL msg" for each line about the task with id, and the
// decoded lines themselves.
func (l *logRecorder) lines(t *testing.T, id string) ([]string, []map[string]any) {
	t.Helper()
	var short []string
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["id"] == id {
			short = append(short, fmt.Sprint(rec["level"], " ", rec["msg"]))
			recs = append(recs, rec)
		}
	}
	return short, recs
}

func wantLines(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("log lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestTheImmediateBackendLogsEnqueueStartAndFinishLikeTheWorker(t *testing.T) {
	ctx := context.Background()
	var logs logRecorder
	configure(t, map[string]task.Backend{"default": task.NewImmediateBackend("default", task.BackendOptions{Logger: logs.logger()})})
	flaky := task.Define(taskName(t, "flaky"), func(ctx context.Context, _ int) (int, error) {
		if info, _ := task.InfoFrom(ctx); info.Attempt == 1 {
			return 0, errors.New("upstream unavailable")
		}
		return 1, nil
	}, task.MaxAttempts(2), task.Queue("logs"))
	res, err := flaky.Enqueue(ctx, 0)
	if err != nil || res.Status != task.StatusComplete {
		t.Fatalf("Enqueue: %v, %v", res, err)
	}
	got, recs := logs.lines(t, res.ID)
	wantLines(t, got,
		"DEBUG task enqueued",
		"DEBUG task started",
		"WARN task attempt failed; will retry",
		"DEBUG task started",
		"INFO task complete")
	if len(recs) != 5 {
		t.FailNow()
	}
	wantStatus := []string{"NEW", "RUNNING", "NEW", "RUNNING", "COMPLETE"}
	for i, rec := range recs {
		if rec["task"] != flaky.Name() || rec["queue"] != "logs" || rec["backend"] != "default" || rec["status"] != wantStatus[i] {
			t.Errorf("line %d: %v, want task, queue, backend and status %s", i, rec, wantStatus[i])
		}
	}
	if recs[1]["attempt"] != 1.0 || recs[3]["attempt"] != 2.0 || recs[2]["error"] != "upstream unavailable" {
		t.Errorf("attempts and error: %v, %v, %v", recs[1], recs[2], recs[3])
	}

	broken := task.Define(taskName(t, "broken"), func(ctx context.Context, _ int) (int, error) {
		return 0, task.Permanent(errors.New("bad input"))
	})
	res, err = broken.Enqueue(ctx, 0)
	if err != nil || res.Status != task.StatusFailed {
		t.Fatalf("Enqueue: %v, %v", res, err)
	}
	got, recs = logs.lines(t, res.ID)
	wantLines(t, got, "DEBUG task enqueued", "DEBUG task started", "WARN task failed")
	if len(recs) == 3 && (recs[2]["error"] != "bad input" || recs[2]["status"] != "FAILED") {
		t.Errorf("failure line: %v", recs[2])
	}
}

func TestTheDummyBackendLogsItsEnqueues(t *testing.T) {
	ctx := context.Background()
	var logs logRecorder
	useDummy(t, task.BackendOptions{Logger: logs.logger()})
	tk := task.Define(taskName(t, "stored"), identity[int], task.Priority(3))
	res, err := tk.Using(task.WithID("order-17")).Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Using(task.WithID("order-17")).Enqueue(ctx, 1); err != nil {
		t.Fatal(err)
	}
	got, recs := logs.lines(t, res.ID)
	wantLines(t, got, "DEBUG task enqueued", "DEBUG task already enqueued (same id, name and arguments)")
	if len(recs) > 0 && (recs[0]["task"] != tk.Name() || recs[0]["priority"] != 3.0 || recs[0]["status"] != "NEW") {
		t.Errorf("enqueue line: %v", recs[0])
	}
}

func TestTheInProcessBackendsLogToTheDefaultLoggerUnlessGivenOne(t *testing.T) {
	ctx := context.Background()
	var logs logRecorder
	old := slog.Default()
	slog.SetDefault(logs.logger())
	t.Cleanup(func() { slog.SetDefault(old) })

	tk := task.Define(taskName(t, "t"), identity[int])
	res, err := tk.Enqueue(ctx, 1) // nothing configured: the implicit ImmediateBackend
	if err != nil {
		t.Fatal(err)
	}
	got, _ := logs.lines(t, res.ID)
	wantLines(t, got, "DEBUG task enqueued", "DEBUG task started", "INFO task complete")
}

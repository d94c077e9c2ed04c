package task_test

import (
	"context"
	"strings"
	"testing"

	"github.com/gotasks/gotasks/task"
)

// On the Immediate backend the last progress a task reports is kept with
// its result; outside a runner SetProgress does nothing; a long message
// is cut.
func TestImmediateBackendKeepsTheLastProgress(t *testing.T) {
	def := task.Define(taskName(t, "progress"), func(ctx context.Context, n int) (int, error) {
		for i := 1; i <= n; i++ {
			task.SetProgress(ctx, int64(i), int64(n), strings.Repeat("x", 300))
		}
		return n, nil
	})
	res, err := def.Enqueue(context.Background(), 7)
	if err != nil {
		t.Fatal(err)
	}
	if p := res.Progress; p == nil || p.Done != 7 || p.Total != 7 || len(p.Message) != task.MaxProgressMessage || p.At.IsZero() {
		t.Errorf("progress %+v; want 7 of 7 with the message cut to %d bytes", p, task.MaxProgressMessage)
	}
	if _, err := def.Call(context.Background(), 3); err != nil { // no runner: nothing to report to
		t.Fatal(err)
	}
}

package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
)

// The dead-letter set in bulk, on 10,000 FAILED tasks (a real
// redis-server): retry those of one task name, delete those of one error
// type, then the rest; each selects exactly what it should, and what is
// retried runs again (ready, its attempts kept).
func TestBulkRetryAndDeleteOfTenThousandFailedTasks(t *testing.T) {
	b, direct := onRealRedis(t, &twice{})
	ctx := context.Background()
	const n = 10_000
	var msgs []*task.Message
	for i := range n {
		name := "brokertest.dlq.a"
		if i%2 == 1 {
			name = "brokertest.dlq.b"
		}
		msgs = append(msgs, newMsg(t, name, "q", 0, i))
	}
	for i := 0; i < n; i += 1000 {
		if err := b.EnqueueMany(ctx, msgs[i:i+1000]); err != nil {
			t.Fatal(err)
		}
	}
	for done := 0; done < n; {
		got, err := b.Claim(ctx, []string{"q"}, 1000, time.Minute, "w")
		if err != nil || len(got) == 0 {
			t.Fatalf("claim: %d, %v", len(got), err)
		}
		rs := make([]*task.RawResult, len(got))
		for i, c := range got {
			r := c.Result
			typ := "io.EOF"
			if done%4 < 2 {
				typ = "*net.OpError"
			}
			r.Status, r.Err = task.StatusFailed, &task.Error{Type: typ, Message: fmt.Sprintf("boom %d", done)}
			r.Errors = []*task.Error{r.Err}
			rs[i] = r
			done++
		}
		for _, err := range b.Store(ctx, rs...) {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	failed := func() int64 {
		s, err := b.StatsOf(ctx, "q")
		if err != nil {
			t.Fatal(err)
		}
		return s.Failed
	}
	if f := failed(); f != n {
		t.Fatalf("%d failed, want %d", f, n)
	}

	start := time.Now()
	retried, err := b.RetryFailedWhere(ctx, "q", broker.FailedFilter{TaskName: "brokertest.dlq.b"})
	retryTook := time.Since(start)
	if err != nil || retried != n/2 {
		t.Fatalf("RetryFailedWhere(b) = %d, %v; want %d", retried, err, n/2)
	}
	if c := direct.LLen(ctx, "{gotasks:q}:ready").Val(); c != n/2 {
		t.Errorf("%d ready after the retry, want %d", c, n/2)
	}
	if f := failed(); f != n/2 {
		t.Errorf("%d failed after retrying b's, want %d", f, n/2)
	}
	// Run again: nothing more matches (resumable, never twice).
	if again, err := b.RetryFailedWhere(ctx, "q", broker.FailedFilter{TaskName: "brokertest.dlq.b"}); err != nil || again != 0 {
		t.Errorf("RetryFailedWhere again = %d, %v; want 0", again, err)
	}
	got, err := b.Claim(ctx, []string{"q"}, 1, time.Minute, "w2")
	if err != nil || len(got) != 1 || got[0].Result.TaskName != "brokertest.dlq.b" || got[0].Result.Attempts != 2 {
		t.Fatalf("a retried task: %+v, %v; want b's, attempt 2", got, err)
	}

	// Of a's 5,000, half failed with each type.
	start = time.Now()
	deleted, err := b.DeleteFailedWhere(ctx, "q", broker.FailedFilter{ErrorType: "io.EOF"})
	deleteTook := time.Since(start)
	if err != nil || deleted != n/4 {
		t.Fatalf("DeleteFailedWhere(io.EOF) = %d, %v; want %d", deleted, err, n/4)
	}
	rest, err := b.DeleteFailedWhere(ctx, "q", broker.FailedFilter{})
	if err != nil || rest != n/4 {
		t.Fatalf("DeleteFailedWhere(all) = %d, %v; want %d", rest, err, n/4)
	}
	if f := failed(); f != 0 {
		t.Errorf("%d failed left, want 0", f)
	}
	if keys := direct.Keys(ctx, "{gotasks:q}:r:*").Val(); len(keys) != 0 {
		t.Errorf("%d results left", len(keys))
	}
	t.Logf("%d FAILED tasks: retried %d of one name in %v, deleted %d of one error type in %v", n, retried, retryTook.Round(time.Millisecond), deleted, deleteTook.Round(time.Millisecond))
}

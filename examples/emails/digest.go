package emails

import (
	"context"
	"time"

	"github.com/gotasks/gotasks/task"
)

// Digest sends the weekly digest to n subscribers, one every 100ms, and
// reports its progress. Cancelled while it runs (examples/cancel), it
// stops between two emails: it returns its context's error, and ends
// CANCELLED.
var Digest = task.Define("emails.digest", func(ctx context.Context, n int) (int, error) {
	for i := range n {
		select {
		case <-time.After(100 * time.Millisecond): // one email
		case <-ctx.Done():
			return i, ctx.Err()
		}
		task.SetProgress(ctx, int64(i+1), int64(n), "digest sent")
	}
	return n, nil
}, task.Queue("emails"))

package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/task"
)

// The dead-letter set: a queue's FAILED results, kept for FailedTTL and
// indexed by {P:q}:failed. ListTasks(StateFailed) lists them; RetryFailed
// retries one. The operations here act on all of a queue's, or those of a
// task name or an error type, in batches. Each task moves in one atomic
// step (the scripts of RetryFailed and Prune), so a task is never left
// half-moved; the whole operation is not atomic, and it is resumable: run
// again, it goes on with what is left.

// FailedFilter selects FAILED tasks for the bulk operations. Its zero
// value selects all of them.
type FailedFilter struct {
	TaskName  string // the task's name; empty: any
	ErrorType string // the final error's Type (task.Error.Type); empty: any
}

func (f FailedFilter) match(r *task.RawResult) bool {
	if f.TaskName != "" && r.TaskName != f.TaskName {
		return false
	}
	if f.ErrorType != "" && (r.Err == nil || r.Err.Type != f.ErrorType) {
		return false
	}
	return true
}

// failedBatch is how many FAILED results a bulk operation reads at once.
const failedBatch = 200

// RetryFailedWhere runs again every FAILED task of queue that f selects,
// as RetryFailed does for one, and returns how many it retried. Tasks
// that fail while it runs (their results are newer than its start) are
// left for the next run.
func (b *Redis) RetryFailedWhere(ctx context.Context, queue string, f FailedFilter) (int, error) {
	n := 0
	err := b.eachFailed(ctx, queue, f, func(page []failedEntry) error {
		for _, e := range page {
			err := b.retryFailedIn(ctx, queue, e.r.ID)
			switch {
			case err == nil:
				n++
			case errors.Is(err, ErrNotRetryable), errors.Is(err, task.ErrResultNotFound):
				// Retried, expired or enqueued again meanwhile: nothing to do.
			default:
				return err
			}
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("retry failed tasks of %s (%d retried): %w", queue, n, err)
	}
	return n, nil
}

// DeleteFailedWhere deletes every FAILED result of queue that f selects
// and returns how many; a result retried and finished again meanwhile is
// newer than what was selected, and is kept.
func (b *Redis) DeleteFailedWhere(ctx context.Context, queue string, f FailedFilter) (int, error) {
	k := b.keys(queue)
	n := 0
	err := b.eachFailed(ctx, queue, f, func(page []failedEntry) error {
		keys := []string{k.failed}
		args := make([]any, 0, 2*len(page))
		for _, e := range page {
			keys = append(keys, k.result(e.r.ID))
			args = append(args, e.r.ID, e.finished)
		}
		d, err := b.run(ctx, pruneScript, keys, args...).Int()
		n += d
		return err
	})
	if err != nil {
		return n, fmt.Errorf("delete failed tasks of %s (%d deleted): %w", queue, n, err)
	}
	return n, nil
}

// failedEntry is a FAILED result read for a bulk operation, with its
// finish time as stored (unix µs), which Prune's script checks.
type failedEntry struct {
	r        *task.RawResult
	finished string
}

// eachFailed calls fn with the FAILED results of queue that f selects, a
// page at a time, oldest expiry first, from those in the index when it
// starts. It walks the index by score, not by rank: fn removes entries,
// and entries expire meanwhile, which would shift ranks.
func (b *Redis) eachFailed(ctx context.Context, queue string, f FailedFilter, fn func([]failedEntry) error) error {
	k := b.keys(queue)
	now, err := b.rdb.Time(ctx).Result()
	if err != nil {
		return fmt.Errorf("read the Redis clock: %w", err)
	}
	// Results that fail from now on expire later than any there now.
	last, err := b.rdb.ZRevRangeWithScores(ctx, k.failed, 0, 0).Result()
	if err != nil || len(last) == 0 {
		return err
	}
	top := last[0].Score
	from := "(" + strconv.FormatInt(now.UnixMilli(), 10)
	seen := map[string]bool{} // ids at the score from starts at, already read
	for {
		zs, err := b.rdb.ZRangeByScoreWithScores(ctx, k.failed, &redis.ZRangeBy{
			Min: from, Max: strconv.FormatFloat(top, 'f', -1, 64), Count: failedBatch + int64(len(seen)),
		}).Result()
		if err != nil {
			return err
		}
		var ids []string
		for _, z := range zs {
			if id, _ := z.Member.(string); !seen[id] {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		// The next page starts at the last score read, inclusive, minus
		// the ids read at it.
		end := zs[len(zs)-1].Score
		if s := strconv.FormatFloat(end, 'f', -1, 64); s != from {
			from, seen = s, map[string]bool{}
		}
		for _, z := range zs {
			if z.Score == end {
				seen[z.Member.(string)] = true
			}
		}
		page, err := b.readFailed(ctx, queue, ids, f)
		if err != nil {
			return err
		}
		if len(page) > 0 {
			if err := fn(page); err != nil {
				return err
			}
		}
	}
}

// readFailed reads the results of ids and returns the FAILED ones that f
// selects.
func (b *Redis) readFailed(ctx context.Context, queue string, ids []string, f FailedFilter) ([]failedEntry, error) {
	k := b.keys(queue)
	pipe := b.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HMGet(ctx, k.result(id), "t", "s", "f", "v", "e", "x")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read %d results: %w", len(ids), err)
	}
	var out []failedEntry
	for i, c := range cmds {
		v := c.Val()
		if len(v) != 6 || v[1] != string(task.StatusFailed) {
			continue // retried, deleted or expired meanwhile
		}
		fin, _ := v[2].(string)
		r, err := b.decodeGet(ids[i], queue, append([]any{"done"}, v...))
		if err != nil {
			if f != (FailedFilter{}) {
				continue // a result that does not decode matches no filter
			}
			r = &task.RawResult{ID: ids[i], Queue: queue, Status: task.StatusFailed}
		}
		if f.match(r) {
			out = append(out, failedEntry{r, fin})
		}
	}
	return out, nil
}

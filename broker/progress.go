package broker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gotasks/gotasks/task"
)

// Progress of running tasks (task.SetProgress). A worker writes what a
// task reports, throttled, to {P:q}:progress (id → "done total ms
// message"), fenced like a finish: only the holder of the attempt writes.
// The finish script keeps the last one in the result (field p) and drops
// the entry; GetResult reads either.

// setProgressScript writes the progress of a running attempt, if its
// worker still holds it. Safe to run twice: the same value again.
//
//	KEYS[1] running  KEYS[2] tasks  KEYS[3] progress
//	ARGV[1] id  ARGV[2] attempt  ARGV[3] the progress
//
// Returns 1, or 0 when the lease was lost (nothing is written).
var setProgressScript = newScript(`
if not holds(KEYS[1], KEYS[2], ARGV[1], ARGV[2]) then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
return 1
`)

// SetProgress stores p as the progress of r's attempt, which the caller
// must hold (ErrLeaseLost otherwise).
func (b *Redis) SetProgress(ctx context.Context, r *task.RawResult, p task.Progress) error {
	k := b.keys(r.Queue)
	n, err := b.run(ctx, setProgressScript, []string{k.running, k.tasks, k.progress}, r.ID, r.Attempts, encodeProgress(&p)).Int()
	if err != nil {
		return fmt.Errorf("progress of %s: %w", r.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("progress of %s attempt %d: %w", r.ID, r.Attempts, ErrLeaseLost)
	}
	return nil
}

// encodeProgress is the stored form of p: "done total unix_ms message";
// the empty string for none.
func encodeProgress(p *task.Progress) string {
	if p == nil {
		return ""
	}
	return strconv.FormatInt(p.Done, 10) + " " + strconv.FormatInt(p.Total, 10) + " " +
		strconv.FormatInt(p.At.UnixMilli(), 10) + " " + p.Message
}

// decodeProgress reads encodeProgress's form; nil for the empty string or
// what does not parse (a progress is no reason to fail a read).
func decodeProgress(s string) *task.Progress {
	if s == "" {
		return nil
	}
	f := strings.SplitN(s, " ", 4)
	if len(f) != 4 {
		return nil
	}
	done, err1 := strconv.ParseInt(f[0], 10, 64)
	total, err2 := strconv.ParseInt(f[1], 10, 64)
	ms, err3 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return nil
	}
	return &task.Progress{Done: done, Total: total, At: time.UnixMilli(ms), Message: f[3]}
}

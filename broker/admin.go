package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/task"
)

// Operations for operators (a CLI, a dashboard) rather than for workers:
// cancelling and retrying single tasks, looking into queues and cleaning
// them. Their state changes are Lua scripts on the key layout described in
// scripts.go, like the workers' own.

// ErrNotRetryable is wrapped by RetryFailed's error for a task that is not
// FAILED (the message says what it is).
var ErrNotRetryable = errors.New("gotasks: only a FAILED task can be retried")

// retryFailedScript makes a FAILED task ready again under the same id, as
// its next attempt: the attempt count and the errors of every attempt so
// far are kept (the worker's count of lost deliveries stays right), its
// result is dropped.
//
// It is safe to run twice: it leaves a short-lived mark of the call's
// token (KEYS[9]), and a call that finds its mark answers 'ok' again
// (without a second event). It publishes a retried event, as a worker's
// retry does: the task is NEW again.
//
//	KEYS[1] result  KEYS[2] tasks  KEYS[3] pending  KEYS[4] seq  KEYS[5] wake  KEYS[6] errors
//	KEYS[7] failed  KEYS[8] ready  KEYS[9] the call's mark, {P:q}:retried:<token>  KEYS[10] first
//	KEYS[11] events (a channel)
//	ARGV[1] id  ARGV[2] the FAILED status
//	ARGV[3] the publish command (PUBLISH, SPUBLISH or the empty string: no events)
//
// Returns {'ok'}, {'status', status} for a result that is not FAILED,
// {'live'} for an unfinished task, or {'missing'}.
var retryFailedScript = newScript(`
if redis.call('EXISTS', KEYS[9]) == 1 then return {'ok'} end
local r = redis.call('HMGET', KEYS[1], 't', 's', 'x', 'a')
local live = redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1
if not r[2] then
  if live then return {'live'} end
  return {'missing'}
end
if r[2] ~= ARGV[2] then return {'status', r[2]} end
-- The id was enqueued again after it failed: that copy owns the id now.
if live then return {'live'} end
local ms = now_ms()
local seq = next_seq(KEYS[4], ms)
redis.call('SET', KEYS[4], num(seq))
local a, p, s, st, w, env = parse(r[1])
redis.call('HSET', KEYS[2], ARGV[1], pack(a, p, seq, st, w, env))
if r[3] and r[3] ~= '' then redis.call('HSET', KEYS[6], ARGV[1], r[3]) end
if r[4] and r[4] ~= '' then redis.call('HSET', KEYS[10], ARGV[1], r[4]) end
ready(KEYS[3], KEYS[8], ARGV[1], p, seq)
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[7], ARGV[1])
wake(KEYS[5])
redis.call('SET', KEYS[9], '1', 'PX', 60000)
local pub = publisher(ARGV[3], KEYS[11])
if pub ~= '' then emit(pub, KEYS[11], num(ms * 1000), {event('r', ARGV[1], a, task_name(env, 1))}) end
return {'ok'}
`)

// purgeScript removes up to ARGV[1] tasks that are waiting to run (ready
// first, then deferred) with everything stored about them. Running tasks
// are in none of these and are not touched.
//
//	KEYS[1] tasks  KEYS[2] pending  KEYS[3] delayed  KEYS[4] errors  KEYS[5] unique  KEYS[6] ready  KEYS[7] first
//	ARGV[1] limit
//
// Returns the number of tasks removed (less than the limit: none are left).
var purgeScript = newScript(`
local n = tonumber(ARGV[1])
local removed = 0
local function drop(ids)
  for _, id in ipairs(ids) do
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[4], id)
    redis.call('HDEL', KEYS[7], id)
    release_unique(KEYS[5], id)
  end
  removed = removed + #ids
end
local l = redis.call('LPOP', KEYS[6], n)
if l then drop(l) end
for _, set in ipairs({KEYS[2], KEYS[3]}) do
  if removed < n then
    local ids = redis.call('ZRANGE', set, 0, n - removed - 1)
    for _, id in ipairs(ids) do redis.call('ZREM', set, id) end
    drop(ids)
  end
end
return removed
`)

// pruneScript deletes finished results of one queue, each only if its
// finish time is still the one the caller read: a result that was retried
// (RetryFailed) and finished again in between is newer than the caller
// decided to prune.
//
//	KEYS[1] failed  KEYS[2...] result keys (all of one queue)
//	ARGV    their ids and finish times in unix µs: id1, f1, id2, f2, ...
//
// Returns the number of results deleted.
var pruneScript = redis.NewScript(`
local n = 0
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'f') == ARGV[2 * i - 2] then
    redis.call('DEL', KEYS[i])
    redis.call('ZREM', KEYS[1], ARGV[2 * i - 3])
    n = n + 1
  end
end
return n
`)

// statsScript reads a queue's counts and the two ready tasks QueueStats
// reports on, in one consistent step. T:ready is in sequence order and the
// pending set in priority bands, each in sequence order, so the task that
// has been ready longest (the smallest sequence number) is the head of
// T:ready or of one of the bands: the script jumps from band head to band
// head, at most one O(log n) lookup per priority in use (201 at most),
// never a scan.
//
//	KEYS[1] pending  KEYS[2] delayed  KEYS[3] running  KEYS[4] tasks  KEYS[5] failed  KEYS[6] done
//	KEYS[7] ready  KEYS[8] paused
//
// Returns {now_us, ready, deferred, running, next id, next value, oldest
// id, oldest value, failed, completed total, failed total, cancelled
// total, paused since (unix ms, ” when not paused)}, the ids and values
// ” when nothing is ready.
var statsScript = newScript(`
local us = now_us()
local out = {us, ready_count(KEYS[1], KEYS[7]), redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]), '', '', '', ''}
out[9] = redis.call('ZCOUNT', KEYS[5], '(' .. num(math.floor(tonumber(us) / 1000)), '+inf')
local d = redis.call('HMGET', KEYS[6], 'COMPLETE', 'FAILED', 'CANCELLED')
out[10], out[11], out[12] = d[1] or '0', d[2] or '0', d[3] or '0'
out[13] = redis.call('GET', KEYS[8]) or ''
local head = ready_page(KEYS[1], KEYS[7], 0, 0)
if #head == 0 then return out end
local oldest, oldseq = nil, nil
local l = redis.call('LINDEX', KEYS[7], 0)
if l then
  local _, _, s = parse(redis.call('HGET', KEYS[4], l) or '')
  oldest, oldseq = l, s
end
local lo = '-inf'
while true do
  local h = redis.call('ZRANGEBYSCORE', KEYS[1], lo, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if #h == 0 then break end
  local sc = tonumber(h[2])
  local b = math.floor(sc / band)
  local seq = sc - b * band
  if not oldseq or seq < oldseq then oldest, oldseq = h[1], seq end
  lo = num((b + 1) * band)
end
out[5] = head[1]
out[6] = redis.call('HGET', KEYS[4], head[1]) or ''
out[7] = oldest
out[8] = redis.call('HGET', KEYS[4], oldest) or ''
return out
`)

// listScript reads a page of one of a queue's sets with the tasks in it,
// in one consistent step. The ready tasks are two keys (see scripts.go),
// listed in claim order.
//
//	KEYS[1] the set (pending, delayed or running)  KEYS[2] tasks  KEYS[3] errors
//	KEYS[4] ready, only with pending
//	ARGV[1] start  ARGV[2] stop (ranks, inclusive)
//
// Returns {id1, value1, errors1, score1, ...}, the score ” for a task in
// T:ready; a task that has no value is left out.
var listScript = newScript(`
local ids, scores = {}, {}
if KEYS[4] then
  ids, scores = ready_page(KEYS[1], KEYS[4], tonumber(ARGV[1]), tonumber(ARGV[2]))
else
  local page = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES')
  for i = 1, #page, 2 do
    ids[#ids + 1] = page[i]
    scores[#scores + 1] = page[i + 1]
  end
end
local out = {}
for i, id in ipairs(ids) do
  local v = redis.call('HGET', KEYS[2], id)
  if v then
    out[#out + 1] = id
    out[#out + 1] = v
    out[#out + 1] = redis.call('HGET', KEYS[3], id) or ''
    out[#out + 1] = scores[i] or ''
  end
end
return out
`)

// findQueue returns the queue that holds a task or result with this id.
func (b *Redis) findQueue(ctx context.Context, id string) (string, error) {
	r, err := b.GetResult(ctx, id)
	if err != nil {
		return "", err
	}
	return r.Queue, nil
}

// RetryFailed runs a FAILED task again. It keeps its id, so that whoever
// holds the id follows the new attempt, and becomes NEW, ready at once
// (behind the tasks already waiting at its priority). Its attempt count
// and the errors of its attempts are kept, and the next attempt continues
// the count: with the attempts of MaxAttempts used up, it gets that one
// attempt and no automatic retries. A task that failed with
// gotasks.TooManyDeliveries fails the same way at once, since its lost
// deliveries still count. Its FAILED result is gone once it is retried.
// A unique task (task.Unique) does not take its key back: its failure
// released it, and another task may hold it now, so while it runs again a
// duplicate of it can be enqueued.
func (b *Redis) RetryFailed(ctx context.Context, id string) error {
	q, err := b.findQueue(ctx, id)
	if err != nil {
		return fmt.Errorf("retry %s: %w", id, err)
	}
	return b.retryFailedIn(ctx, q, id)
}

// retryFailedIn is RetryFailed for a task known to be on queue q.
func (b *Redis) retryFailedIn(ctx context.Context, q, id string) error {
	k := b.keys(q)
	vals, err := b.run(ctx, retryFailedScript, []string{k.result(id), k.tasks, k.pending, k.seq, k.wake, k.errors, k.failed, k.ready, k.tag + ":retried:" + newToken(), k.first, k.events},
		id, string(task.StatusFailed), b.pub).StringSlice()
	if err != nil {
		return fmt.Errorf("retry %s in %s: %w", id, q, err)
	}
	switch {
	case len(vals) == 1 && vals[0] == "ok":
		return nil
	case len(vals) == 2 && vals[0] == "status":
		return fmt.Errorf("retry %s in %s: %w: it is %s", id, q, ErrNotRetryable, vals[1])
	case len(vals) == 1 && vals[0] == "live":
		return fmt.Errorf("retry %s in %s: %w: it has not finished", id, q, ErrNotRetryable)
	case len(vals) == 1 && vals[0] == "missing":
		return fmt.Errorf("retry %s in %s: %w", id, q, task.ErrResultNotFound)
	}
	return fmt.Errorf("retry %s in %s: unexpected reply %v", id, q, vals)
}

// purgeBatch bounds how much one purge script does, so that purging a
// queue of a million tasks does not block Redis for seconds.
const purgeBatch = 1000

// Purge removes every task of queue that waits to run, pending or
// deferred (also those waiting for a retry), and returns how many. They
// leave no result: GetResult no longer finds them. Running tasks are left
// to finish (or fail, or retry: a retry then brings one back). Each batch
// is atomic, the whole purge is not: a task enqueued while it runs may or
// may not be removed.
func (b *Redis) Purge(ctx context.Context, queue string) (int, error) {
	k := b.keys(queue)
	// What waits now, and no more: with producers enqueueing as fast as
	// batches are removed the loop would not end.
	c, err := b.Count(ctx, queue)
	if err != nil {
		return 0, fmt.Errorf("purge %s: %w", queue, err)
	}
	limit := int(c.Pending + c.Deferred)
	total := 0
	for total < limit {
		n, err := b.run(ctx, purgeScript, []string{k.tasks, k.pending, k.delayed, k.errors, k.unique, k.ready, k.first}, min(purgeBatch, limit-total)).Int()
		if err != nil {
			return total, fmt.Errorf("purge %s (%d removed): %w", queue, total, err)
		}
		total += n
		if n == 0 {
			break
		}
	}
	return total, nil
}

// pruneBatch is how many keys one SCAN step asks for and one delete script
// gets.
const pruneBatch = 500

// Prune deletes the finished results (with one of statuses; none: any)
// that finished more than olderThan ago, in queue ("": every known queue),
// and returns how many; with dryRun it only counts them. Results expire
// after ResultTTL anyway: Prune is for a long ResultTTL that turned out
// too long. It walks the queue's result keys with SCAN (all of one queue
// share its hash tag, so on a cluster they are on one node), so it costs
// a pass over the queue's results but never blocks Redis for long. "Ago"
// is by the Redis clock, which wrote the finish times.
func (b *Redis) Prune(ctx context.Context, olderThan time.Duration, statuses []task.Status, queue string, dryRun bool) (int, error) {
	queues := []string{queue}
	if queue == "" {
		var err error
		if queues, err = b.KnownQueues(ctx); err != nil {
			return 0, fmt.Errorf("prune: %w", err)
		}
	}
	now, err := b.rdb.Time(ctx).Result()
	if err != nil {
		return 0, fmt.Errorf("prune: read the Redis clock: %w", err)
	}
	cutoff := now.Add(-olderThan).UnixMicro()
	total := 0
	for _, q := range queues {
		n, err := b.pruneQueue(ctx, q, cutoff, statuses, dryRun)
		total += n
		if err != nil {
			return total, fmt.Errorf("prune %s: %w", q, err)
		}
	}
	return total, nil
}

func (b *Redis) pruneQueue(ctx context.Context, queue string, cutoff int64, statuses []task.Status, dryRun bool) (int, error) {
	k := b.keys(queue)
	scanner, err := b.nodeFor(ctx, k.tag)
	if err != nil {
		return 0, err
	}
	match := globEscape(k.result("")) + "*"
	total := 0
	var cursor uint64
	for {
		var found []string
		found, cursor, err = scanner.Scan(ctx, cursor, match, pruneBatch).Result()
		if err != nil {
			return total, fmt.Errorf("scan results: %w", err)
		}
		n, err := b.pruneKeys(ctx, k, found, cutoff, statuses, dryRun)
		total += n
		if err != nil {
			return total, err
		}
		if cursor == 0 {
			return total, nil
		}
	}
}

// globEscape quotes the characters MATCH patterns give a meaning, so that
// a prefix or queue name with braces (the hash tag has them), stars or
// brackets matches only itself.
func globEscape(s string) string {
	var out strings.Builder
	for _, c := range s {
		switch c {
		case '*', '?', '[', ']', '{', '}', '\\', '^', '-':
			out.WriteByte('\\')
		}
		out.WriteRune(c)
	}
	return out.String()
}

// nodeFor returns the client to SCAN the keys of one hash tag with: on a
// cluster, the master that serves its slot (a cluster client's SCAN goes
// to an arbitrary node).
func (b *Redis) nodeFor(ctx context.Context, key string) (redis.Cmdable, error) {
	if c, ok := b.rdb.(*redis.ClusterClient); ok {
		node, err := c.MasterForKey(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("find the master of %s: %w", key, err)
		}
		return node, nil
	}
	return b.rdb, nil
}

// pruneKeys deletes (or counts) those of keys, results of one queue, that
// match.
func (b *Redis) pruneKeys(ctx context.Context, k keys, found []string, cutoff int64, statuses []task.Status, dryRun bool) (int, error) {
	if len(found) == 0 {
		return 0, nil
	}
	pipe := b.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(found))
	for i, key := range found {
		cmds[i] = pipe.HMGet(ctx, key, "s", "f")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("read %d results: %w", len(found), err)
	}
	del := []string{k.failed}
	var args []any
	for i, c := range cmds {
		v := c.Val()
		if len(v) != 2 {
			continue // expired since the scan
		}
		st, _ := v[0].(string)
		f, _ := v[1].(string)
		us, err := strconv.ParseInt(f, 10, 64)
		if err != nil || us >= cutoff {
			continue
		}
		if len(statuses) > 0 && !slices.Contains(statuses, task.Status(st)) {
			continue
		}
		del = append(del, found[i])
		args = append(args, strings.TrimPrefix(found[i], k.result("")), f)
	}
	if dryRun || len(args) == 0 {
		return len(args) / 2, nil
	}
	n, err := b.run(ctx, pruneScript, del, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("delete %d results: %w", len(args)/2, err)
	}
	return n, nil
}

// QueueStat describes one queue at one moment.
type QueueStat struct {
	Queue                      string
	Pending, Deferred, Running int64
	// Failed counts the FAILED results still stored (see ResultTTL and
	// Prune): the failed tasks ListTasks(StateFailed) lists.
	Failed int64
	// Completed, FailedTotal and Cancelled count the tasks that finished
	// with each status since the queue was first used, by every worker:
	// their growth over time is the queue's throughput.
	Completed, FailedTotal, Cancelled int64
	// NextAge is how long the next task to be claimed (the highest
	// priority, then the first in line) has been due: since its RunAfter,
	// or since it was enqueued if that is later. Zero when nothing is
	// pending.
	NextAge time.Duration
	// OldestAge is the same for the pending task that has been ready the
	// longest whatever its priority (the one a full queue starves first).
	// Ready tasks are ordered by priority, not time, so this is the
	// earliest of the first tasks of each priority in use, found by
	// jumping from one to the next: at most one cheap lookup per priority,
	// never a scan of the queue.
	OldestAge time.Duration
	// PausedSince is when the queue was paused (see Pause): workers
	// claim nothing from it until it is resumed. Zero when it is not.
	PausedSince time.Time
}

// Paused reports whether the queue is paused.
func (s QueueStat) Paused() bool { return !s.PausedSince.IsZero() }

// MarshalJSON is the one JSON form of a QueueStat, for the admin
// command's --json and the dashboard's /api/stats: snake_case names, the
// totals as completed_total, failed_total and cancelled_total, and the
// ages in seconds (to the millisecond).
func (s QueueStat) MarshalJSON() ([]byte, error) {
	seconds := func(d time.Duration) float64 { return d.Round(time.Millisecond).Seconds() }
	var since *string
	if s.Paused() {
		t := s.PausedSince.UTC().Format(time.RFC3339Nano)
		since = &t
	}
	return json.Marshal(struct {
		Queue            string  `json:"queue"`
		Pending          int64   `json:"pending"`
		Deferred         int64   `json:"deferred"`
		Running          int64   `json:"running"`
		Failed           int64   `json:"failed"`
		CompletedTotal   int64   `json:"completed_total"`
		FailedTotal      int64   `json:"failed_total"`
		CancelledTotal   int64   `json:"cancelled_total"`
		OldestAgeSeconds float64 `json:"oldest_pending_age_seconds"`
		NextAgeSeconds   float64 `json:"next_pending_age_seconds"`
		Paused           bool    `json:"paused"`
		PausedSince      *string `json:"paused_since,omitempty"`
	}{s.Queue, s.Pending, s.Deferred, s.Running, s.Failed, s.Completed, s.FailedTotal, s.Cancelled,
		seconds(s.OldestAge), seconds(s.NextAge), s.Paused(), since})
}

// QueueStats describes every known queue, sorted by name. Each queue is
// read in one consistent step; the queues one after another.
func (b *Redis) QueueStats(ctx context.Context) ([]QueueStat, error) {
	queues, err := b.KnownQueues(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue stats: %w", err)
	}
	out := make([]QueueStat, 0, len(queues))
	for _, q := range queues {
		s, err := b.StatsOf(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// StatsOf returns the QueueStat of one queue, in one script call.
func (b *Redis) StatsOf(ctx context.Context, queue string) (QueueStat, error) {
	k := b.keys(queue)
	vals, err := b.run(ctx, statsScript, []string{k.pending, k.delayed, k.running, k.tasks, k.failed, k.done, k.ready, k.paused}).Slice()
	if err != nil {
		return QueueStat{}, fmt.Errorf("stats of %s: %w", queue, err)
	}
	if len(vals) != 13 {
		return QueueStat{}, fmt.Errorf("stats of %s: script returned %d values, want 13", queue, len(vals))
	}
	str := func(i int) string { s, _ := vals[i].(string); return s }
	num := func(i int) int64 { n, _ := vals[i].(int64); return n }
	count := func(i int) int64 { n, _ := strconv.ParseInt(str(i), 10, 64); return n }
	now := parseMicros(str(0))
	s := QueueStat{Queue: queue, Pending: num(1), Deferred: num(2), Running: num(3), Failed: num(8),
		Completed: count(9), FailedTotal: count(10), Cancelled: count(11)}
	if ms, err := strconv.ParseInt(str(12), 10, 64); err == nil {
		s.PausedSince = time.UnixMilli(ms)
	}
	s.NextAge = b.dueAge(queue, str(4), str(5), now)
	s.OldestAge = b.dueAge(queue, str(6), str(7), now)
	return s, nil
}

// dueAge is how long the task stored as value has been due at now. A task
// that does not decode counts as due for no time: a stat is no reason to
// fail, and a worker fails that task when it reaches it.
func (b *Redis) dueAge(queue, id, value string, now time.Time) time.Duration {
	if id == "" || value == "" {
		return 0
	}
	r, err := b.decodeTask(id, queue, value)
	if err != nil {
		return 0
	}
	due := r.EnqueuedAt
	if r.RunAfter.After(due) {
		due = r.RunAfter
	}
	// A retried or promoted task became ready when it got its sequence
	// number (next_seq in scripts.go: at least 16 per ms since 2025), not
	// when it was first enqueued: a task enqueued days ago and retried now
	// has not waited for days.
	header, _, _ := strings.Cut(value, "\n")
	if f := strings.SplitN(header, " ", 4); len(f) == 4 {
		if seq, err := strconv.ParseInt(f[2], 10, 64); err == nil && seq > 0 {
			if ready := time.UnixMilli(seqEpochMillis + seq/seqPerMilli); ready.After(due) {
				due = ready
			}
		}
	}
	return max(now.Sub(due), 0)
}

// The sequence numbers' clock (next_seq in scripts.go).
const (
	seqEpochMillis = 1735689600000 // 2025-01-01T00:00:00Z
	seqPerMilli    = 16
)

// State is one of the sets an unfinished task is in.
type State string

// The states ListTasks lists.
const (
	StatePending  State = "pending"  // ready, in the order workers will claim them
	StateDeferred State = "deferred" // waiting for their run_after or a retry, soonest first
	StateRunning  State = "running"  // claimed, the earliest lease expiry first
	StateFailed   State = "failed"   // FAILED results still stored, the latest first
)

// MaxListLimit bounds the page ListTasks reads in one script call.
const MaxListLimit = 1000

// ListTasks returns up to limit tasks of queue in state, skipping the
// first offset, in the order given for each State. A page is read in one
// consistent step; pages read one after another may overlap or miss tasks
// that moved in between. A task that does not decode is listed with what
// could be read of it (at least its id).
func (b *Redis) ListTasks(ctx context.Context, queue string, state State, offset, limit int) ([]*task.RawResult, error) {
	if offset < 0 || limit < 0 {
		return nil, fmt.Errorf("list %s tasks of %s: negative offset %d or limit %d", state, queue, offset, limit)
	}
	if limit == 0 {
		return nil, nil
	}
	// One script call reads the whole page: keep it short for Redis.
	if limit > MaxListLimit {
		return nil, fmt.Errorf("list %s tasks of %s: limit %d is over %d (page with offset)", state, queue, limit, MaxListLimit)
	}
	k := b.keys(queue)
	var set []string
	switch state {
	case StatePending:
		set = []string{k.pending, k.tasks, k.errors, k.ready}
	case StateDeferred:
		set = []string{k.delayed, k.tasks, k.errors}
	case StateRunning:
		set = []string{k.running, k.tasks, k.errors}
	case StateFailed:
		return b.listFailed(ctx, queue, offset, limit)
	default:
		return nil, fmt.Errorf("list tasks of %s: unknown state %q", queue, state)
	}
	vals, err := b.run(ctx, listScript, set, offset, offset+limit-1).Slice()
	if err != nil {
		return nil, fmt.Errorf("list %s tasks of %s: %w", state, queue, err)
	}
	out := make([]*task.RawResult, 0, len(vals)/4)
	for i := 0; i+3 < len(vals); i += 4 {
		id, _ := vals[i].(string)
		v, _ := vals[i+1].(string)
		errs, _ := vals[i+2].(string)
		sc, _ := vals[i+3].(string)
		r, _ := b.decodeTask(id, queue, v) // see the doc comment
		r.Errors, _ = decodeErrors(errs)
		switch state {
		case StateRunning:
			r.Status = task.StatusRunning
		case StateDeferred:
			if ms, err := strconv.ParseFloat(sc, 64); err == nil {
				r.RunAfter = time.UnixMilli(int64(ms)) // as GetResult reports it
			}
		}
		out = append(out, r)
	}
	if state == StateRunning && len(out) > 0 {
		// Their progress, where they report any: one read for the page.
		ids := make([]string, len(out))
		for i, r := range out {
			ids[i] = r.ID
		}
		ps, err := b.rdb.HMGet(ctx, b.keys(queue).progress, ids...).Result()
		if err != nil {
			return nil, fmt.Errorf("list running tasks of %s: progress: %w", queue, err)
		}
		for i, p := range ps {
			if s, ok := p.(string); ok {
				out[i].Progress = decodeProgress(s)
			}
		}
	}
	return out, nil
}

// listFailed is ListTasks for StateFailed: a page of the queue's failed
// index, newest first, then the results it names. A result that expired,
// was pruned or retried in between is left out, so a page can be short.
func (b *Redis) listFailed(ctx context.Context, queue string, offset, limit int) ([]*task.RawResult, error) {
	k := b.keys(queue)
	now, err := b.rdb.Time(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("list failed tasks of %s: read the Redis clock: %w", queue, err)
	}
	ids, err := b.rdb.ZRevRangeByScore(ctx, k.failed, &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf", Offset: int64(offset), Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("list failed tasks of %s: %w", queue, err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := b.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HMGet(ctx, k.result(id), "t", "s", "f", "v", "e", "x")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("list failed tasks of %s: read %d results: %w", queue, len(ids), err)
	}
	out := make([]*task.RawResult, 0, len(ids))
	for i, c := range cmds {
		v := c.Val()
		if len(v) != 6 || v[1] != string(task.StatusFailed) {
			continue
		}
		r, err := b.decodeGet(ids[i], queue, append([]any{"done"}, v...))
		if err != nil {
			// As ListTasks does for a task that does not decode: list
			// what could be read of it.
			r = &task.RawResult{ID: ids[i], Queue: queue, Backend: b.opts.Name, Status: task.StatusFailed}
		}
		out = append(out, r)
	}
	return out, nil
}

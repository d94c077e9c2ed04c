package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/task"
)

// Pausing a queue. The state is one key per queue, {P:q}:paused, holding
// when it was paused (unix ms). The claim script checks it before it takes
// anything (one EXISTS per claim call), so from the moment Pause returns no
// worker, in any process, claims a task of the queue: the reaction is
// immediate, not a poll. Idle workers learn nothing new: they keep waiting
// on the queue's wake list as before, a wake-up from an enqueue ends in an
// empty claim and they wait again, and Resume leaves a wake token so that
// they start at once. Tasks already claimed (running) finish; enqueues,
// promotions of deferred tasks and the reaping of expired leases go on, so
// a paused queue's backlog waits in its place and nothing is lost.

// pauseScript pauses a queue. Safe to run twice: a queue already paused
// keeps its first pause time.
//
//	KEYS[1] paused
//
// Returns {1 if this call paused it (0 if it was paused already), paused
// since (unix ms)}.
var pauseScript = newScript(`
local since = redis.call('GET', KEYS[1])
if since then return {0, since} end
since = num(now_ms())
redis.call('SET', KEYS[1], since)
return {1, since}
`)

// resumeScript resumes a paused queue and, if tasks are ready, leaves a
// wake token so that an idle worker claims at once (and, as every claim
// does, wakes the next). Safe to run twice: a second run finds the queue
// not paused and changes nothing.
//
//	KEYS[1] paused  KEYS[2] ready  KEYS[3] pending  KEYS[4] wake
//
// Returns 1 if this call resumed it, 0 if it was not paused.
var resumeScript = newScript(`
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
if redis.call('LLEN', KEYS[2]) > 0 or redis.call('ZCARD', KEYS[3]) > 0 then wake(KEYS[4]) end
return 1
`)

// Pause stops every worker from claiming tasks of queue until Resume,
// and returns when the queue was paused and whether this call paused it
// (false: it was paused already, since then). Running tasks finish;
// Enqueue still stores tasks, which wait. The state is kept in Redis, so
// it holds for every worker process and across their restarts.
func (b *Redis) Pause(ctx context.Context, queue string) (since time.Time, changed bool, err error) {
	if !task.ValidQueueName(queue) {
		return time.Time{}, false, fmt.Errorf("pause %q: %w: a queue name is 1-100 characters of A-Z a-z 0-9 _ . : -", queue, task.ErrInvalidTask)
	}
	k := b.keys(queue)
	vals, err := b.run(ctx, pauseScript, []string{k.paused}).Slice()
	if err != nil {
		return time.Time{}, false, fmt.Errorf("pause %s: %w", queue, err)
	}
	if len(vals) != 2 {
		return time.Time{}, false, fmt.Errorf("pause %s: script returned %d values, want 2", queue, len(vals))
	}
	n, _ := vals[0].(int64)
	ms, _ := vals[1].(string)
	var at int64
	if _, err := fmt.Sscan(ms, &at); err != nil {
		return time.Time{}, false, fmt.Errorf("pause %s: paused since %q: %w", queue, ms, err)
	}
	return time.UnixMilli(at), n == 1, nil
}

// Resume lets workers claim from a paused queue again; idle workers are
// woken at once. It reports whether the queue was paused.
func (b *Redis) Resume(ctx context.Context, queue string) (bool, error) {
	if !task.ValidQueueName(queue) {
		return false, fmt.Errorf("resume %q: %w: a queue name is 1-100 characters of A-Z a-z 0-9 _ . : -", queue, task.ErrInvalidTask)
	}
	k := b.keys(queue)
	n, err := b.run(ctx, resumeScript, []string{k.paused, k.ready, k.pending, k.wake}).Int64()
	if err != nil {
		return false, fmt.Errorf("resume %s: %w", queue, err)
	}
	return n == 1, nil
}

// PausedSince returns when queue was paused; the zero time if it is not.
func (b *Redis) PausedSince(ctx context.Context, queue string) (time.Time, error) {
	ms, err := b.rdb.Get(ctx, b.keys(queue).paused).Int64()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("paused state of %s: %w", queue, err)
	}
	return time.UnixMilli(ms), nil
}

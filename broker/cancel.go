package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/task"
)

// Cancelling a task. A task that has not started is made CANCELLED at
// once (cancelScript). A RUNNING task cannot be stopped from here: the
// cancel is asked for instead, and the worker holding it stops it.
//
//	T:cancel   hash    id → token of the call that asked to cancel the running task
//	T:cancels  channel a message per cancel asked for (the events' format, kind 'k'):
//	                   workers subscribe to their queues' channels (SubscribeCancels)
//
// How a cancel asked for reaches its end, whatever happens to the holder:
//   - The worker is told on T:cancels within a round trip, cancels the
//     task's context with cause task.ErrCancelled, and stores the outcome:
//     CANCELLED if the task returned its context's error, otherwise its
//     own outcome, never a retry (task.Cancelled). The finish script
//     drops the T:cancel entry, whatever the outcome.
//   - A worker that missed the message (cut off from Redis meanwhile)
//     learns it at its next lease renewal (renewScript), or when its
//     subscription is back (CancelsAsked).
//   - A failed attempt that would be retried is refused by retryScript
//     (ErrCancelAsked): the worker stores it FAILED instead.
//   - A holder that died, or handed the task back at shutdown, leaves it
//     in T:running: once its lease has expired the reaper makes it
//     CANCELLED (reapScript leaves it for cancelExpiredScript) instead of
//     running it again.
//
// Workers pay nothing for this while no cancel is asked for: the finish
// and renew scripts look at T:cancel only if it exists, the claim never.

// ErrCancelAsked is wrapped by Store's error for a retry of a task whose
// cancel was asked for while it ran: it is not retried. Nothing was
// written; store the attempt as final instead (a worker stores it FAILED,
// or CANCELLED if it returned its context's error).
var ErrCancelAsked = errors.New("gotasks: the task's cancel was asked for; it is not retried")

// EventCancelRequested is the kind of the events a SubscribeCancels
// subscription receives: a cancel was asked for the running task ID, then
// at attempt Attempt. It is not published on the queues' event channels.
const EventCancelRequested EventKind = "cancel_requested"

// cancelScript makes a task that has not started CANCELLED: its result is
// written like a finished one and it leaves the unfinished state, in one
// step, so that a worker either claimed it before or can never claim it.
// A RUNNING task is not changed: its cancel is asked for (T:cancel) and
// its worker told (T:cancels), see above.
//
// It is safe to run twice: the result keeps the call's token (field c),
// and a call that finds its own token on a CANCELLED result (it was sent
// again after its reply was lost) answers as the first time did, and
// publishes no second cancelled event. A cancel asked for is asked once:
// a call that finds the T:cancel entry answers 'requested' and publishes
// nothing; the finish of the task keeps the entry's token in the result,
// so that the first call, sent again once the task ended CANCELLED,
// finds its own cancellation.
//
//	KEYS[1] tasks  KEYS[2] pending  KEYS[3] delayed  KEYS[4] running  KEYS[5] result  KEYS[6] errors
//	KEYS[7] unique  KEYS[8] failed  KEYS[9] done  KEYS[10] ready  KEYS[11] first  KEYS[12] events (a channel)
//	KEYS[13] cancel  KEYS[14] cancels (a channel)  KEYS[15] progress
//	ARGV[1] id  ARGV[2] ttl_ms  ARGV[3] the CANCELLED status  ARGV[4] token (unique per call)
//	ARGV[5] the publish command of events (PUBLISH, SPUBLISH or the empty string: no events)
//	ARGV[6] the publish command of cancels (PUBLISH or SPUBLISH)
//
// Returns {'cancelled', value, finished_us, errors, first_us}, {'done', status} when
// the task has finished, {'requested', value, errors, first_us, progress} for
// a running task, or {'missing'}.
var cancelScript = newScript(`
-- The live task first: an id stored again after its first copy finished
-- (possible with versions before enqueue refused a finished id) has both,
-- and the live copy is the one to cancel (its result replaces the old one).
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then
  local r = redis.call('HMGET', KEYS[5], 's', 'c', 't', 'f', 'x', 'a')
  if r[1] == ARGV[3] and r[2] == ARGV[4] then return {'cancelled', r[3], r[4], r[5] or '', r[6] or ''} end
  if r[1] then return {'done', r[1]} end
  return {'missing'}
end
local us = now_us()
local a = parse(v)
local errs = redis.call('HGET', KEYS[6], ARGV[1]) or ''
local first = redis.call('HGET', KEYS[11], ARGV[1]) or ''
if redis.call('ZSCORE', KEYS[4], ARGV[1]) then
  if redis.call('HSETNX', KEYS[13], ARGV[1], ARGV[4]) == 1 then
    emit(ARGV[6], KEYS[14], us, {event('k', ARGV[1], a, value_name(v))})
  end
  return {'requested', v, errs, first, redis.call('HGET', KEYS[15], ARGV[1]) or ''}
end
redis.call('HSET', KEYS[5], 't', v, 's', ARGV[3], 'f', us, 'v', '', 'e', '', 'x', errs, 'c', ARGV[4], 'a', first)
redis.call('HDEL', KEYS[11], ARGV[1])
redis.call('PEXPIRE', KEYS[5], ARGV[2])
redis.call('HDEL', KEYS[1], ARGV[1])
release_unique(KEYS[7], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
if redis.call('ZREM', KEYS[3], ARGV[1]) == 0 then
  local _, p = parse(v)
  unready(KEYS[2], KEYS[10], ARGV[1], p)
end
-- An earlier FAILED result under this id is replaced.
redis.call('ZREM', KEYS[8], ARGV[1])
redis.call('HINCRBY', KEYS[9], ARGV[3], 1)
local pub = publisher(ARGV[5], KEYS[12])
if pub ~= '' then emit(pub, KEYS[12], us, {event('x', ARGV[1], a, value_name(v))}) end
return {'cancelled', v, us, errs, first}
`)

// cancelExpiredScript makes CANCELLED the running tasks whose cancel was
// asked for and whose lease has expired: their worker died, hung, or
// handed them back at shutdown without stopping them. reapScript leaves
// these in T:running for it.
//
// It is safe to run twice: a task it ended is no longer in T:running.
//
//	KEYS[1] running  KEYS[2] tasks  KEYS[3] cancel  KEYS[4] errors  KEYS[5] first  KEYS[6] unique
//	KEYS[7] done  KEYS[8] progress  KEYS[9] events (a channel)  KEYS[9+i] the result key of task i
//	ARGV[1] ttl_ms  ARGV[2] the CANCELLED status
//	ARGV[3] the publish command (PUBLISH, SPUBLISH or the empty string: no events)
//	ARGV[3+i] the id of task i
//
// Returns {the number of tasks it made CANCELLED, next lease expiry in
// unix ms or -1}, as reapScript does.
var cancelExpiredScript = newScript(`
local ms = now_ms()
local us = now_us()
local pub = publisher(ARGV[3], KEYS[9])
local n, events = 0, {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local lease = redis.call('ZSCORE', KEYS[1], id)
  local tok = redis.call('HGET', KEYS[3], id)
  local v = redis.call('HGET', KEYS[2], id)
  if lease and tonumber(lease) <= ms and not v then
    -- Nothing left to cancel (a stray entry): drop it, or the reaper
    -- would find it again at once.
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[3], id)
  elseif lease and tonumber(lease) <= ms and tok then
    local res = KEYS[6 + i]
    redis.call('HSET', res, 't', v, 's', ARGV[2], 'f', us, 'v', '', 'e', '',
      'x', redis.call('HGET', KEYS[4], id) or '', 'c', tok, 'a', redis.call('HGET', KEYS[5], id) or '')
    local p = redis.call('HGET', KEYS[8], id)
    if p then redis.call('HSET', res, 'p', p) end
    redis.call('PEXPIRE', res, ARGV[1])
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    for _, k in ipairs({KEYS[3], KEYS[4], KEYS[5], KEYS[8]}) do redis.call('HDEL', k, id) end
    release_unique(KEYS[6], id)
    n = n + 1
    if pub ~= '' then events[#events + 1] = event('x', id, parse(v), value_name(v)) end
  end
end
if n > 0 then redis.call('HINCRBY', KEYS[7], ARGV[2], n) end
if #events > 0 then emit(pub, KEYS[9], us, events) end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then return {n, -1} end
return {n, tonumber(nxt[2])}
`)

// cancelsAskedScript reads which of some running tasks have their cancel
// asked for.
//
//	KEYS[1] cancel
//	ARGV the ids
//
// Returns a 0/1 per id.
var cancelsAskedScript = redis.NewScript(`
local out = {}
if redis.call('EXISTS', KEYS[1]) == 0 then
  for i = 1, #ARGV do out[i] = 0 end
  return out
end
local v = redis.call('HMGET', KEYS[1], unpack(ARGV))
for i = 1, #ARGV do
  if v[i] then out[i] = 1 else out[i] = 0 end
end
return out
`)

// Cancel implements task.Canceller. A task that is NEW, deferred or
// waiting for a retry becomes CANCELLED and is kept as a finished result
// (for ResultTTL, like the others); workers never see it again. For a
// RUNNING task the cancel is asked for: the worker that holds it cancels
// its context (with cause task.ErrCancelled) and the task ends CANCELLED
// if it returns its context's error, otherwise with its own outcome, and
// is never retried; a task whose worker died ends CANCELLED when its
// lease expires. Cancel then returns the RUNNING result, with
// CancelRequested set; Result.Wait tells the end. The queue is found like
// GetResult finds it.
func (b *Redis) Cancel(ctx context.Context, id string) (*task.RawResult, error) {
	q, err := b.findQueue(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("cancel %s: %w", id, err)
	}
	return b.CancelIn(ctx, q, id)
}

// CancelIn is Cancel for a task known to be on queue.
func (b *Redis) CancelIn(ctx context.Context, queue, id string) (*task.RawResult, error) {
	k := b.keys(queue)
	vals, err := b.run(ctx, cancelScript, []string{k.tasks, k.pending, k.delayed, k.running, k.result(id), k.errors, k.unique, k.failed, k.done, k.ready, k.first, k.events, k.cancel, k.cancels, k.progress},
		id, b.opts.ResultTTL.Milliseconds(), string(task.StatusCancelled), newToken(), b.pub, b.cancelPub).Slice()
	if err != nil {
		return nil, fmt.Errorf("cancel %s in %s: %w", id, queue, err)
	}
	str := func(i int) string {
		if i < len(vals) {
			s, _ := vals[i].(string)
			return s
		}
		return ""
	}
	switch str(0) {
	case "cancelled":
		// The same shape as a finished result read back by GetResult.
		return b.decodeGet(id, queue, []any{"done", str(1), string(task.StatusCancelled), str(2), "", "", str(3), str(4)})
	case "requested":
		// The shape of a running task read back by GetResult.
		return b.decodeGet(id, queue, []any{"live", str(1), int64(1), str(2), int64(-1), str(3), str(4), int64(1)})
	case "done":
		return nil, &task.NotCancellableError{ID: id, Status: task.Status(str(1))}
	case "missing":
		return nil, fmt.Errorf("cancel %s in %s: %w", id, queue, task.ErrResultNotFound)
	}
	return nil, fmt.Errorf("cancel %s in %s: unexpected reply %v", id, queue, vals)
}

// CancelsAsked reports, for each of the running tasks ids of queue,
// whether its cancel was asked for: a worker asks for those it holds when
// its subscription to the cancels was cut off and is back.
func (b *Redis) CancelsAsked(ctx context.Context, queue string, ids []string) ([]bool, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	v, err := b.run(ctx, cancelsAskedScript, []string{b.keys(queue).cancel}, args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("read the cancels asked for on %s: %w", queue, err)
	}
	if len(v) != len(ids) {
		return nil, fmt.Errorf("read the cancels asked for on %s: %d answers for %d tasks", queue, len(v), len(ids))
	}
	out := make([]bool, len(ids))
	for i, x := range v {
		out[i] = x == 1
	}
	return out, nil
}

// SubscribeCancels starts receiving the cancels asked for the running
// tasks of queues (events of kind EventCancelRequested, and EventMissed
// when the subscription was cut off: read CancelsAsked then). Unlike
// Subscribe it sets no listener key: cancels are always published,
// whatever Options.Events says. It returns once Redis confirmed the
// subscription.
func (b *Redis) SubscribeCancels(ctx context.Context, queues []string) (*Subscription, error) {
	return b.subscribe(ctx, queues, func(k keys) string { return k.cancels }, false, nil)
}

// cancelExpired ends the tasks ids of queue, whose cancel was asked for
// and whose lease expired, CANCELLED (see reapScript). It also returns
// when the next lease expires (zero: nothing is running).
func (b *Redis) cancelExpired(ctx context.Context, queue string, ids []string) (int, time.Time, error) {
	k := b.keys(queue)
	keys := []string{k.running, k.tasks, k.cancel, k.errors, k.first, k.unique, k.done, k.progress, k.events}
	args := []any{b.opts.ResultTTL.Milliseconds(), string(task.StatusCancelled), b.pub}
	for _, id := range ids {
		keys = append(keys, k.result(id))
		args = append(args, id)
	}
	n, next, err := pair(b.run(ctx, cancelExpiredScript, keys, args...))
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("cancel %d tasks of %s whose lease expired: %w", len(ids), queue, err)
	}
	return n, next, nil
}

// cancelPubOf is the command the scripts publish cancels with: that of
// events (see Options.Events), and with events off the one EventsAuto
// would use, since cancels are always published.
func cancelPubOf(c redis.UniversalClient, m EventMode) string {
	if m == EventsOff {
		m = EventsAuto
	}
	return publishCommand(c, m)
}

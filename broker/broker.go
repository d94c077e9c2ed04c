// Package broker is the Redis backend of gotasks: it stores enqueued tasks,
// hands them to workers with a lease, and keeps their results.
//
// See scripts.go for the key layout and the Lua scripts that make every
// state change atomic.
package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

// ErrLeaseLost is returned when a worker acts on a task whose lease it no
// longer holds: the lease expired and the task was requeued, or another
// attempt claimed it.
var ErrLeaseLost = errors.New("gotasks: lease lost")

// ErrNotReplicated is returned (wrapped) by Enqueue and EnqueueMany when
// Options.WaitReplicas is set and fewer replicas than that confirmed the
// new tasks within Options.WaitTimeout. The tasks are stored on the master
// and will run; what is not known is whether they would survive a failover
// that happened before the master replicated them.
//
// Retrying after this error with a new id can make a task run twice: the
// first copy is already queued. Enqueueing again under the same id
// (task.WithID) stores nothing more while the first copy is unfinished or
// its result is kept; or treat the error as "stored, durability unknown".
var ErrNotReplicated = errors.New("gotasks: stored on the Redis master but not confirmed by its replicas")

// Options configures the Redis backend. The zero value is usable.
type Options struct {
	Name      string        // backend name, default "default"
	Queues    []string      // allowed queues; empty: any
	Prefix    string        // key prefix, default "gotasks"
	ResultTTL time.Duration // how long finished results are kept, default 24h
	// FailedTTL is how long FAILED results are kept, apart from the
	// others (a dead-letter set: ListTasks(StateFailed), RetryFailed),
	// default 30 days. It is the storing worker's: a producer's ResultTTL
	// that travels with its tasks applies to their other results.
	FailedTTL  time.Duration
	Serializer serializer.Serializer // arguments and return values; default msgpack
	// MaxArgsSize limits the encoded size of a task's arguments; larger
	// ones are refused at Enqueue with task.ErrInvalidTask. Default 1 MiB.
	MaxArgsSize int

	// WaitReplicas closes the replication window of enqueues. Redis
	// acknowledges a write before its replicas have it, so an enqueue
	// acknowledged just before the master dies can be missing on the
	// replica that Sentinel (or Cluster) promotes: the task is silently
	// lost. With WaitReplicas > 0, Enqueue and EnqueueMany follow the
	// enqueue with WAIT on the same connection and return only once that
	// many replicas have the tasks, or after WaitTimeout with an error
	// wrapping ErrNotReplicated (the tasks are stored on the master).
	//
	// The cost: every enqueue waits for a replica round trip (batch with
	// EnqueueMany to pay it once for many tasks), and when fewer replicas
	// than WaitReplicas are up every enqueue waits WaitTimeout and returns
	// ErrNotReplicated. Keep it below the number of replicas, so that one
	// replica down, or promoted by a failover, does not do that. It is not
	// a guarantee: Sentinel promotes the replica it believes most up to
	// date, which is usually but not always one that confirmed; and only
	// enqueues wait, so a failover can still lose a claim or a result (the
	// task then runs again). Redis Cluster: the wait is per master node,
	// and a slot migrating during the enqueue makes it fail rather than
	// follow the redirection. Against a Redis without replicas (or
	// miniredis, whose WAIT answers 0) every enqueue returns
	// ErrNotReplicated.
	WaitReplicas int
	// WaitTimeout bounds the wait for replicas; default DefaultWaitTimeout.
	// Keep it below the client's read timeout (go-redis: 3s by default)
	// and the callers' context deadlines, or the wait ends in a timeout
	// error instead of ErrNotReplicated.
	WaitTimeout time.Duration

	// Events says how the scripts of this backend publish task events
	// (see Subscribe): EventsAuto (the zero value), EventsPublish,
	// EventsSharded or EventsOff. Every process that changes tasks
	// (producers, workers, admin tools) publishes with its own setting;
	// a subscriber sees the events of those that publish.
	Events EventMode

	// EnqueueMiddleware wraps every Task.Enqueue and EnqueueMany on this
	// backend (in this producer process), inside the process-wide
	// middleware (task.UseEnqueue); the first is the outermost. Package
	// task runs it: see task.EnqueueMiddleware. The workers' side is
	// worker.Options.RunMiddleware.
	EnqueueMiddleware []task.EnqueueMiddleware
}

// Defaults of Options.
const (
	DefaultPrefix      = "gotasks"
	DefaultResultTTL   = 24 * time.Hour
	DefaultFailedTTL   = 30 * 24 * time.Hour
	DefaultWaitTimeout = time.Second
)

// Redis is the Redis backend. It implements task.Backend and the operations
// workers and schedulers need. It is safe for concurrent use.
type Redis struct {
	rdb   redis.UniversalClient
	opts  Options
	owned bool // Close closes rdb

	mu     sync.Mutex
	known  map[string]bool        // queues this process has registered in the queue set
	scache map[string]bool        // script SHAs known to be loaded
	unsure map[string]unsureClaim // by replay record: claims that got no reply
	// claimPrefix and claimSeq make the claims' tokens: "<prefix>.<seq>",
	// in the order of the calls of this backend (see claimScript).
	claimPrefix string
	claimSeq    atomic.Int64

	kmu    sync.RWMutex
	kcache map[string]*queueKeys // see queueKeys

	noUnblock      atomic.Bool // the server has no CLIENT ID / CLIENT UNBLOCK, or the user may not run it
	unblockAllowed atomic.Bool // CLIENT UNBLOCK was tried once and allowed

	// pub is the command the scripts publish events with: PUBLISH,
	// SPUBLISH or "" (none); see Options.Events. cancelPub is the one
	// they publish cancels with (see cancel.go), never "".
	pub, cancelPub string
	// waits shares one subscription per queue among Result.Wait calls
	// (see WaitFinished); made on first use.
	waitsOnce sync.Once
	waits     *waitHub
}

// New returns a backend on client. The caller keeps ownership of client.
// Set ContextTimeoutEnabled on the client's options so that context
// deadlines bound each command.
func New(client redis.UniversalClient, opts Options) *Redis {
	if opts.Name == "" {
		opts.Name = task.DefaultBackendName
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.ResultTTL <= 0 {
		opts.ResultTTL = DefaultResultTTL
	}
	if opts.FailedTTL <= 0 {
		opts.FailedTTL = DefaultFailedTTL
	}
	if opts.Serializer == nil {
		opts.Serializer = serializer.Default
	}
	if opts.WaitTimeout <= 0 {
		opts.WaitTimeout = DefaultWaitTimeout
	}
	// WAIT takes milliseconds, and 0 would wait for ever.
	opts.WaitTimeout = max(opts.WaitTimeout, time.Millisecond)
	opts.Queues = slices.Clone(opts.Queues)
	return &Redis{rdb: client, opts: opts, known: map[string]bool{}, pub: publishCommand(client, opts.Events), cancelPub: cancelPubOf(client, opts.Events)}
}

// Client returns the underlying Redis client.
func (b *Redis) Client() redis.UniversalClient { return b.rdb }

// Options returns the backend's options with defaults filled in.
func (b *Redis) Options() Options { return b.opts }

// Name returns the backend name.
func (b *Redis) Name() string { return b.opts.Name }

// EnqueueMiddleware implements task.EnqueueMiddlewareProvider: it returns
// Options.EnqueueMiddleware, which package task runs around enqueues.
func (b *Redis) EnqueueMiddleware() []task.EnqueueMiddleware { return b.opts.EnqueueMiddleware }

// Queues returns the allowed queue names (empty: any).
func (b *Redis) Queues() []string { return slices.Clone(b.opts.Queues) }

// MaxArgsSize returns the limit on a task's encoded arguments.
func (b *Redis) MaxArgsSize() int {
	if b.opts.MaxArgsSize > 0 {
		return b.opts.MaxArgsSize
	}
	return task.DefaultMaxArgsSize
}

// Serializer returns the serializer for arguments and return values.
func (b *Redis) Serializer() serializer.Serializer { return b.opts.Serializer }

// Features: everything.
func (b *Redis) Features() task.Features {
	return task.Features{Defer: true, GetResult: true, Priority: true}
}

// SupportsUnique implements task.UniqueSupporter: unique tasks are held
// per queue (see scripts.go).
func (b *Redis) SupportsUnique() bool { return true }

// Check pings Redis.
func (b *Redis) Check(ctx context.Context) error {
	if err := b.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

// Close ends the subscriptions of Result.Wait calls (see WaitFinished)
// and closes the connection if Open made it.
func (b *Redis) Close() error {
	b.waitsOnce.Do(func() {}) // no hub from now on
	if b.waits != nil {
		b.waits.close()
	}
	if b.owned {
		return b.rdb.Close()
	}
	return nil
}

// keys of one queue; see scripts.go.
type keys struct {
	tag                                                            string
	tasks, ready, pending, delayed, running, seq, wake, dw, errors string
	// first holds when tasks claimed more than once first started.
	first string
	// unique is the hash of unique tasks held until they finish. Scripts
	// that end an unfinished task may take it in KEYS to free the task's
	// entry with release_unique (see scripts.go).
	unique string
	// failed indexes the FAILED results; done counts finishes by status.
	failed, done string
	// events is the queue's pub/sub channel (see events.go), not a key.
	events string
	// paused exists while the queue is paused (see pause.go): claims
	// take nothing from it.
	paused string
	// progress holds the last progress of running tasks that report it
	// (see progress.go).
	progress string
	// cancel holds the cancels asked for running tasks, and cancels is
	// the channel that tells their workers (see cancel.go).
	cancel, cancels string
}

func (b *Redis) keys(queue string) keys { return b.queueKeys(queue).keys }

// queueKeys are a queue's keys, and the first KEYS of the enqueue script
// boxed once: building ten key strings and boxing seven on every enqueue
// was a third of its allocations.
type queueKeys struct {
	keys
	enqueue []any // KEYS[1..9] of enqueueScript
	claim   []any // KEYS[1..9] of claimScript
	finish  []any // KEYS[1..10] of finishScript
	// co merges concurrent Enqueue calls on the queue; nil for a queue
	// past maxCachedQueues, whose Enqueue calls each run on their own.
	co *coalescer
}

// maxCachedQueues bounds the cache of queueKeys: queue names come from
// callers, and a process that uses more queues builds the rest each time.
const maxCachedQueues = 4096

func (b *Redis) queueKeys(queue string) *queueKeys {
	b.kmu.RLock()
	qk := b.kcache[queue]
	b.kmu.RUnlock()
	if qk != nil {
		return qk
	}
	tag := "{" + b.opts.Prefix + ":" + queue + "}"
	k := keys{
		tag: tag, tasks: tag + ":tasks", ready: tag + ":ready", pending: tag + ":pending", delayed: tag + ":delayed",
		running: tag + ":running", seq: tag + ":seq", wake: tag + ":wake", dw: tag + ":dwake",
		errors: tag + ":errors", unique: tag + ":unique", failed: tag + ":failed", done: tag + ":done",
		first: tag + ":first", events: tag + ":events", paused: tag + ":paused", progress: tag + ":progress",
		cancel: tag + ":cancel", cancels: tag + ":cancels",
	}
	qk = &queueKeys{keys: k, enqueue: []any{k.tasks, k.pending, k.delayed, k.seq, k.wake, k.dw, k.unique, k.ready, k.events},
		claim:  []any{k.pending, k.running, k.tasks, k.wake, k.errors, k.ready, k.first, k.events, k.paused},
		finish: []any{k.running, k.tasks, k.errors, k.unique, k.failed, k.done, k.first, k.events, k.progress, k.cancel}}
	b.kmu.Lock()
	if b.kcache == nil {
		b.kcache = map[string]*queueKeys{}
	}
	if c := b.kcache[queue]; c != nil {
		qk = c // built by another goroutine meanwhile: one coalescer per queue
	} else if len(b.kcache) < maxCachedQueues {
		qk.co = &coalescer{}
		b.kcache[queue] = qk
	}
	b.kmu.Unlock()
	return qk
}

func (k keys) result(id string) string { return k.tag + ":r:" + id }

// uniqueHash is <h> of the key layout: the unique key hashed, so that any
// key makes a short Redis key and hash field.
func uniqueHash(u *task.Uniqueness) string {
	sum := sha256.Sum256([]byte(u.Key))
	return hex.EncodeToString(sum[:])
}

// windowMillis rounds a UniqueFor window up to whole milliseconds, so that
// a window under 1ms is still a window and not "until it finishes".
func windowMillis(d time.Duration) int64 {
	return (d + time.Millisecond - 1).Milliseconds()
}

// window is the UniqueFor key of unique hash h.
func (k keys) window(h string) string { return k.tag + ":u:" + h }

// batch is one queue's part of an EnqueueMany: the enqueue script's ARGV
// (a group of four per task, then one per unique task, see
// enqueueScript), its extra KEYS (the unique tasks' window keys) and the
// messages in script order, to report duplicates back on.
type batch struct {
	queue  string
	keys   *queueKeys
	args   []any // groups of 4: id, priority, run_after_ms, envelope
	uargs  []any // groups of 4: task number, <h>, window_ms, index in KEYS
	unique []any // KEYS[9...]
	msgs   []*task.Message
}

// command is the batch's enqueue script call: EVALSHA, or with eval the
// script's text (after NOSCRIPT: a Redis that keeps losing its scripts
// cannot fail it again). pub is the command that publishes its events.
func (q *batch) command(ctx context.Context, eval bool, pub string) *redis.Cmd {
	nkeys := len(q.keys.enqueue) + len(q.unique) + len(q.msgs)
	args := make([]any, 0, 4+nkeys+len(q.args)+len(q.uargs))
	if eval {
		args = append(args, "eval", sources[enqueueScript], nkeys)
	} else {
		args = append(args, "evalsha", enqueueScript.Hash(), nkeys)
	}
	args = append(args, q.keys.enqueue...)
	args = append(args, q.unique...)
	for _, m := range q.msgs {
		args = append(args, q.keys.result(m.ID))
	}
	args = append(args, len(q.msgs), pub)
	args = append(args, q.args...)
	args = append(args, q.uargs...)
	cmd := redis.NewCmd(ctx, args...)
	cmd.SetFirstKeyPos(3) // as go-redis' EvalSha: Cluster routes by KEYS[1]
	return cmd
}

// queueSet is the set of every queue name ever enqueued to, so that
// GetResult(id) and "all queues" workers can find them.
func (b *Redis) queueSet() string { return b.opts.Prefix + ":queues" }

// newQueueKey is the list that wakes workers serving every queue when a
// queue is used for the first time (at most one token).
func (b *Redis) newQueueKey() string { return b.opts.Prefix + ":newqueue" }

// Enqueue stores one task.
//
// Concurrent Enqueue calls on one queue share round trips (a group
// commit): a call made while maxInFlight others are on their way to Redis
// waits for one of them, and then all the calls that gathered meanwhile
// (up to maxCoalesced) are stored by one script call, each task as if
// enqueued alone (its own id check, its own unique key). A call alone on
// its queue is sent at once, as before. Enqueue returns when its task is
// stored (or refused), as before. With 16 goroutines enqueueing on the
// bench's machine, Redis spends ~8.5 µs per task instead of ~14, and the
// rate is ~30% higher.
func (b *Redis) Enqueue(ctx context.Context, msg *task.Message) error {
	co := b.queueKeys(msg.Queue).co
	if co == nil {
		return b.EnqueueMany(ctx, []*task.Message{msg})
	}
	co.mu.Lock()
	if co.inFlight < maxInFlight {
		co.inFlight++
		co.mu.Unlock()
		err := b.EnqueueMany(ctx, []*task.Message{msg})
		b.handOff(co)
		return err
	}
	w := &waiter{ctx: ctx, msg: *msg, done: make(chan struct{})}
	co.waiting = append(co.waiting, w)
	co.mu.Unlock()
	select {
	case <-w.done:
	case <-ctx.Done():
		co.mu.Lock()
		if i := slices.Index(co.waiting, w); i >= 0 {
			// Not sent: the task is not stored.
			co.waiting = slices.Delete(co.waiting, i, i+1)
			co.mu.Unlock()
			return fmt.Errorf("enqueue 1 tasks: %w", context.Cause(ctx))
		}
		co.mu.Unlock()
		// On its way: like a command whose reply did not come in time,
		// the task may be stored or not.
		select {
		case <-w.done:
		default:
			return &task.MaybeEnqueuedError{IDs: []string{msg.ID}, Err: fmt.Errorf("enqueue 1 tasks: %w", context.Cause(ctx))}
		}
	}
	msg.DuplicateOf, msg.Existing = w.msg.DuplicateOf, w.msg.Existing
	return w.err
}

// maxCoalesced bounds the tasks that concurrent Enqueue calls put in one
// script call.
const maxCoalesced = 500

// maxInFlight is how many script calls of Enqueue may be in flight on one
// queue before further calls wait to be coalesced: with two, Redis runs
// one while the client sends the other (1: 0.74×, 2: 0.81×, 4: 0.81×
// asynq's rate with 16 goroutines on the bench's 2-core machine).
const maxInFlight = 2

// coalescer gathers the Enqueue calls on one queue that come while one
// of them is in flight (see Enqueue).
type coalescer struct {
	mu       sync.Mutex
	inFlight int       // calls and flushes in flight, at most maxInFlight
	waiting  []*waiter // calls that came meanwhile, in order
}

// waiter is an Enqueue call waiting for a flush. msg is a copy of the
// caller's message, so that a caller that gave up (its context ended)
// races with nothing.
type waiter struct {
	ctx  context.Context
	msg  task.Message
	err  error
	done chan struct{} // closed once msg.DuplicateOf and err are set
}

// handOff ends a call or flush on co: the calls that gathered meanwhile
// are flushed (by another goroutine, so that the caller returns now), or
// co is idle again.
func (b *Redis) handOff(co *coalescer) {
	co.mu.Lock()
	if len(co.waiting) == 0 {
		co.inFlight--
		co.mu.Unlock()
		return
	}
	n := min(len(co.waiting), maxCoalesced)
	ws := slices.Clone(co.waiting[:n])
	co.waiting = slices.Delete(co.waiting, 0, n)
	co.mu.Unlock()
	go func() {
		b.flush(ws)
		b.handOff(co)
	}()
}

// flush stores the tasks of ws with one script call and tells each
// waiter its outcome. When the call wrote nothing because of one task (an
// id already stored, or the same id twice), each task is sent on its own
// instead, so that one caller's error is not the others'.
func (b *Redis) flush(ws []*waiter) {
	msgs := make([]*task.Message, len(ws))
	for i, w := range ws {
		msgs[i] = &w.msg
	}
	ctx, cancel := sharedContext(ws)
	err := b.EnqueueMany(ctx, msgs)
	cancel()
	if err != nil && len(ws) > 1 && (errors.Is(err, task.ErrInvalidTask) || errors.Is(err, task.ErrDuplicateID)) {
		for _, w := range ws {
			w.err = b.EnqueueMany(w.ctx, []*task.Message{&w.msg})
			close(w.done)
		}
		return
	}
	var maybe *task.MaybeEnqueuedError
	for _, w := range ws {
		w.err = err
		if errors.As(err, &maybe) {
			// Each caller is told of its own task.
			w.err = &task.MaybeEnqueuedError{IDs: []string{w.msg.ID}, Err: maybe.Err}
		}
		close(w.done)
	}
}

// duplicateIDError starts the enqueue script's error for an id that is
// already stored (it then writes nothing).
const duplicateIDError = "gotasks: duplicate task id "

// sharedContext bounds a flush by the latest deadline of its callers
// (none if one of them has none). It carries none of their values or
// cancellations: a caller that gives up returns at once, and the others'
// tasks are still sent.
func sharedContext(ws []*waiter) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, w := range ws {
		d, ok := w.ctx.Deadline()
		if !ok {
			return context.WithCancel(context.Background())
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(context.Background(), latest)
}

// EnqueueMany stores a batch of tasks in one round trip: one script call per
// queue, pipelined. Each queue's batch is stored atomically.
//
// A unique task whose key is held is not stored: its DuplicateOf is set
// to the holder's id, and the rest of the batch is stored all the same.
func (b *Redis) EnqueueMany(ctx context.Context, msgs []*task.Message) error {
	var (
		seen    map[string]bool
		batches []*batch
		index   map[string]*batch // once there are many queues
	)
	if len(msgs) > 1 {
		seen = make(map[string]bool, len(msgs))
	}
	// Every envelope goes into one buffer, and each argument is a
	// subslice of it: written once, never changed after.
	size := 0
	for _, m := range msgs {
		size += len(m.TaskName) + len(m.Args) + 48
		for k, v := range m.Metadata {
			size += len(k) + len(v) + 4
		}
	}
	buf := make([]byte, 0, size)
	ser := b.opts.Serializer.Name()
	// The producer's result TTL travels with its tasks unless it is the
	// default, so that a worker started without the same option still
	// keeps their results as long as the producer was told to.
	var ttlMs int64
	if b.opts.ResultTTL != DefaultResultTTL {
		ttlMs = b.opts.ResultTTL.Milliseconds()
	}
	for _, m := range msgs {
		// The script checks ids against stored tasks only: the same id
		// twice in one batch would be stored twice over one value.
		if seen != nil {
			if seen[m.ID] {
				return fmt.Errorf("enqueue %d tasks: %w: task id %s twice in one batch", len(msgs), task.ErrInvalidTask, m.ID)
			}
			seen[m.ID] = true
		}
		start := len(buf)
		buf = appendEnvelope(buf, m, ser, ttlMs)
		env := buf[start:len(buf):len(buf)]
		var at int64
		if !m.RunAfter.IsZero() {
			// Round up so that a task never runs before its run_after.
			at = int64(math.Ceil(float64(m.RunAfter.UnixMicro()) / 1000))
		}
		var q *batch
		if index != nil {
			q = index[m.Queue]
		} else {
			for _, c := range batches {
				if c.queue == m.Queue {
					q = c
					break
				}
			}
		}
		if q == nil {
			q = &batch{queue: m.Queue, keys: b.queueKeys(m.Queue)}
			if len(batches) == 0 {
				q.args = make([]any, 0, 4*len(msgs))
			}
			batches = append(batches, q)
			if index != nil {
				index[m.Queue] = q
			} else if len(batches) == 8 {
				index = make(map[string]*batch, 16)
				for _, c := range batches {
					index[c.queue] = c
				}
			}
		}
		m.DuplicateOf, m.Existing = "", false
		q.args = append(q.args, m.ID, m.Priority, at, env)
		if m.Unique != nil {
			h := uniqueHash(m.Unique)
			q.unique = append(q.unique, q.keys.window(h))
			// The first KEYS are the queue's own, see enqueueScript.
			q.uargs = append(q.uargs, len(q.msgs)+1, h, windowMillis(m.Unique.For), len(q.keys.enqueue)+len(q.unique))
		}
		q.msgs = append(q.msgs, m)
	}
	if err := ctx.Err(); err != nil {
		// Nothing sent: certainly not stored.
		return fmt.Errorf("enqueue %d tasks: %w", len(msgs), err)
	}
	var unconfirmed error
	for retried := false; ; retried = true {
		retry, notConfirmed, err := b.enqueue(ctx, batches, len(msgs), retried)
		if unconfirmed == nil {
			unconfirmed = notConfirmed
		}
		if len(retry) == 0 || retried {
			if err == nil {
				err = unconfirmed
			}
			return err
		}
		// Redis lost its script cache (a restart, SCRIPT FLUSH, a failover):
		// those scripts did not run, so run them once more, with their
		// text this time. The others ran, and if their replicas did not
		// confirm them, the batch is not confirmed.
		b.forgetScripts()
		batches = retry
	}
}

// enqueueError is the error of a batch's enqueue script call: a reply from
// Redis means the script ran and wrote nothing (the duplicate-id refusal,
// or an error before its first write); any other error (a connection
// reset, a timeout, a cancelled context) may have come after Redis ran the
// script, so the tasks may be stored: it wraps task.ErrMaybeEnqueued.
func enqueueError(q *batch, err error) error {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		if id, ok := strings.CutPrefix(rerr.Error(), duplicateIDError); ok {
			return fmt.Errorf("enqueue on %s: %w: %s", q.queue, task.ErrDuplicateID, id)
		}
		return fmt.Errorf("enqueue on %s: %w", q.queue, err)
	}
	return &task.MaybeEnqueuedError{IDs: batchIDs(q), Err: fmt.Errorf("enqueue on %s: %w", q.queue, err)}
}

func batchIDs(q *batch) []string {
	ids := make([]string, len(q.msgs))
	for i, m := range q.msgs {
		ids[i] = m.ID
	}
	return ids
}

// enqueue runs the enqueue script for each of the batches in one pipeline
// (or, for one batch with nothing else to send, as one command). It
// returns the batches whose script was unknown to Redis (NOSCRIPT). With
// WaitReplicas, the pipeline ends with WAIT; if the replicas did not
// confirm what was written, unconfirmed wraps ErrNotReplicated.
func (b *Redis) enqueue(ctx context.Context, batches []*batch, total int, eval bool) (noScript []*batch, unconfirmed, err error) {
	if !eval {
		if err := b.loadScripts(ctx, enqueueScript); err != nil {
			return nil, nil, err // nothing sent
		}
	}
	var register []string
	b.mu.Lock()
	for _, q := range batches {
		if !b.known[q.queue] {
			register = append(register, q.queue)
		}
	}
	b.mu.Unlock()
	cmds := make([]*redis.Cmd, len(batches))
	for i, q := range batches {
		cmds[i] = q.command(ctx, eval, b.pub)
	}
	var registered map[string]*redis.IntCmd
	var pipes *pipelines
	var execErr error
	if len(batches) == 1 && len(register) == 0 && b.opts.WaitReplicas == 0 {
		// The usual Enqueue: a pipeline would only add allocations.
		execErr = b.rdb.Process(ctx, cmds[0])
	} else {
		pipes = b.newPipelines()
		if len(register) > 0 {
			registered = make(map[string]*redis.IntCmd, len(register))
			pipe, err := pipes.forKey(ctx, b.queueSet())
			if err != nil {
				return nil, nil, fmt.Errorf("enqueue %d tasks: %w", total, err)
			}
			for _, q := range register {
				registered[q] = pipe.SAdd(ctx, b.queueSet(), q)
			}
		}
		for i, q := range batches {
			pipe, err := pipes.forKey(ctx, q.keys.tasks)
			if err != nil {
				return nil, nil, fmt.Errorf("enqueue %d tasks: %w", total, err)
			}
			_ = pipe.Process(ctx, cmds[i])
		}
		execErr = pipes.exec(ctx)
	}
	// Every script that ran is read, even when another failed: its
	// duplicates must be reported and its queue registered. Only the
	// NOSCRIPT ones (they did not run) go back to the caller to retry.
	var failed []error
	announce := false
	for i, c := range cmds {
		q := batches[i]
		if e := c.Err(); e != nil {
			if strings.HasPrefix(e.Error(), "NOSCRIPT") {
				noScript = append(noScript, q)
			} else {
				failed = append(failed, enqueueError(q, e))
			}
			continue
		}
		res, err := enqueueReply(c, q.msgs)
		if err != nil {
			// It ran, and said something unexpected: it may have stored them.
			failed = append(failed, &task.MaybeEnqueuedError{IDs: batchIDs(q), Err: fmt.Errorf("enqueue on %s: %w", q.queue, err)})
			continue
		}
		sadd := registered[q.queue]
		switch {
		case sadd != nil && sadd.Err() == nil:
			announce = announce || sadd.Val() == 1
			b.markKnown(q.queue)
		case sadd != nil:
			// Stored, but not registered: enqueueing again registers it.
			failed = append(failed, &task.MaybeEnqueuedError{IDs: batchIDs(q), Err: fmt.Errorf("enqueue on %s: register queue: %w", q.queue, sadd.Err())})
		case res[1] == 1:
			// The queue is new to Redis although this process registered
			// it before: Redis lost its data (a restart without
			// persistence, a flush, a failover). Register it again, or
			// GetResult and "*" workers miss it.
			added, err := b.registerAgain(ctx, q.queue)
			if err != nil {
				failed = append(failed, &task.MaybeEnqueuedError{IDs: batchIDs(q), Err: err})
				continue
			}
			announce = announce || added.added
			if added.unconfirmed != nil && unconfirmed == nil {
				unconfirmed = added.unconfirmed
			}
		}
	}
	if announce {
		b.announceQueue(ctx)
	}
	if pipes != nil {
		if r := pipes.replicated(); r != nil && unconfirmed == nil {
			unconfirmed = fmt.Errorf("enqueue %d tasks: %w", total, r)
		}
	}
	switch {
	case len(failed) > 0:
		return nil, unconfirmed, errors.Join(failed...)
	case len(noScript) > 0:
		return noScript, unconfirmed, fmt.Errorf("enqueue %d tasks: %w", total, execErr)
	}
	return nil, unconfirmed, nil
}

// registered is what registerAgain did.
type registered struct {
	added       bool  // the queue was not in the queue set
	unconfirmed error // with WaitReplicas: the replicas did not confirm it
}

// registerAgain adds queue to the queue set, which Redis lost.
func (b *Redis) registerAgain(ctx context.Context, queue string) (registered, error) {
	again := b.newPipelines()
	pipe, err := again.forKey(ctx, b.queueSet())
	if err != nil {
		return registered{}, fmt.Errorf("enqueue on %s: register queue: %w", queue, err)
	}
	sadd := pipe.SAdd(ctx, b.queueSet(), queue)
	if err := again.exec(ctx); err != nil {
		return registered{}, fmt.Errorf("enqueue on %s: register queue: %w", queue, err)
	}
	var r registered
	r.added = sadd.Val() == 1
	if e := again.replicated(); e != nil {
		r.unconfirmed = fmt.Errorf("enqueue on %s: register queue: %w", queue, e)
	}
	return r, nil
}

// markKnown records that this process registered queue in the queue set.
func (b *Redis) markKnown(queue string) {
	b.mu.Lock()
	b.known[queue] = true
	b.mu.Unlock()
}

// enqueueReply reads the enqueue script's reply: it sets DuplicateOf on the
// duplicates of unique tasks among msgs, Existing on those stored before,
// and returns {tasks stored, fresh}.
func enqueueReply(c *redis.Cmd, msgs []*task.Message) ([2]int64, error) {
	var res [2]int64
	vals, err := c.Slice()
	if err != nil {
		return res, err
	}
	if len(vals) < 2 || len(vals)%2 != 0 {
		return res, fmt.Errorf("unexpected enqueue reply %v", vals)
	}
	for i := range res {
		if res[i], err = toInt64(vals[i]); err != nil {
			return res, fmt.Errorf("enqueue reply: %w", err)
		}
	}
	for j := 2; j < len(vals); j += 2 {
		n, err := toInt64(vals[j])
		id, ok := vals[j+1].(string)
		if err != nil || !ok || n < 1 || int(n) > len(msgs) {
			return res, fmt.Errorf("unexpected duplicate in enqueue reply: %v, %v", vals[j], vals[j+1])
		}
		if m := msgs[n-1]; id == m.ID {
			m.Existing = true // stored before: this is the same enqueue again
		} else {
			m.DuplicateOf = id
		}
	}
	return res, nil
}

func toInt64(v any) (int64, error) {
	n, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("%v (%T) is not an integer", v, v)
	}
	return n, nil
}

// announceQueue wakes a worker serving every queue (see WaitReadyOrNew)
// after a queue was registered for the first time. It is only a hint that
// saves such workers their periodic look at the queue set, so it is not
// atomic with the registration and its errors are ignored.
func (b *Redis) announceQueue(ctx context.Context) {
	pipe := b.rdb.Pipeline()
	pipe.LPush(ctx, b.newQueueKey(), 1)
	pipe.LTrim(ctx, b.newQueueKey(), 0, 0)
	_, _ = pipe.Exec(ctx)
}

// pipelines are the pipelines of one write, each ending with WAIT when
// WaitReplicas is set. WAIT counts the replicas that have every write made
// so far on its own connection, so it must share the connection with the
// writes: a go-redis pipeline of a *redis.Client (one Redis, or the master
// behind sentinels) sends all its commands on one connection (a retry after
// a network error sends them all again, on another). A cluster pipeline splits its commands by node and refuses
// WAIT, so with WaitReplicas there is one pipeline per master node instead.
type pipelines struct {
	b     *Redis
	one   redis.Pipeliner                   // without WaitReplicas, or not a cluster
	nodes map[*redis.Client]redis.Pipeliner // cluster with WaitReplicas
	order []redis.Pipeliner                 // in the order they were created
	waits []*redis.IntCmd
}

func (b *Redis) newPipelines() *pipelines {
	return &pipelines{b: b, nodes: map[*redis.Client]redis.Pipeliner{}}
}

// forKey returns the pipeline for commands on key.
func (p *pipelines) forKey(ctx context.Context, key string) (redis.Pipeliner, error) {
	if c, ok := p.b.rdb.(*redis.ClusterClient); ok && p.b.opts.WaitReplicas > 0 {
		node, err := c.MasterForKey(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("find the master of %s: %w", key, err)
		}
		if pipe, ok := p.nodes[node]; ok {
			return pipe, nil
		}
		pipe := node.Pipeline()
		p.nodes[node] = pipe
		p.order = append(p.order, pipe)
		return pipe, nil
	}
	if p.one == nil {
		p.one = p.b.rdb.Pipeline()
		p.order = append(p.order, p.one)
	}
	return p.one, nil
}

// exec appends the WAITs and runs the pipelines; it returns the first error.
func (p *pipelines) exec(ctx context.Context) error {
	var first error
	for _, pipe := range p.order {
		if p.b.opts.WaitReplicas > 0 {
			// Not in go-redis' Pipeliner interface.
			w := redis.NewIntCmd(ctx, "wait", p.b.opts.WaitReplicas, p.b.opts.WaitTimeout.Milliseconds())
			_ = pipe.Process(ctx, w)
			p.waits = append(p.waits, w)
		}
		if _, err := pipe.Exec(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// replicated reports, after exec, whether every WAIT that was answered saw
// enough replicas (a WAIT that failed goes with an error exec returned).
func (p *pipelines) replicated() error {
	for _, w := range p.waits {
		if n, err := w.Result(); err == nil && n < int64(p.b.opts.WaitReplicas) {
			return fmt.Errorf("%w: %d of %d replicas confirmed within %v",
				ErrNotReplicated, n, p.b.opts.WaitReplicas, p.b.opts.WaitTimeout)
		}
	}
	return nil
}

// loadScripts makes sure the scripts are in Redis' script cache, so that
// pipelines can use EVALSHA (a pipeline cannot fall back to EVAL by itself).
// Redis may forget scripts (SCRIPT FLUSH, a restart), so a NOSCRIPT error
// clears the local memory of what is loaded.
//
// forgetScripts may clear the memory at any moment (another goroutine met
// NOSCRIPT), so it is only read and written under mu, and made anew when
// it is gone.
func (b *Redis) loadScripts(ctx context.Context, scripts ...*redis.Script) error {
	b.mu.Lock()
	var missing []*redis.Script
	for _, s := range scripts {
		if !b.scache[s.Hash()] { // a nil map reads as empty
			missing = append(missing, s)
		}
	}
	b.mu.Unlock()
	for _, s := range missing {
		if err := loadEverywhere(ctx, b.rdb, s); err != nil {
			return fmt.Errorf("load script: %w", err)
		}
		b.mu.Lock()
		if b.scache == nil {
			b.scache = map[string]bool{}
		}
		b.scache[s.Hash()] = true
		b.mu.Unlock()
	}
	return nil
}

func loadEverywhere(ctx context.Context, rdb redis.UniversalClient, s *redis.Script) error {
	if c, ok := rdb.(*redis.ClusterClient); ok {
		return c.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error {
			return s.Load(ctx, n).Err()
		})
	}
	return s.Load(ctx, rdb).Err()
}

// run runs a script (EVALSHA, falling back to EVAL when Redis lost it).
func (b *Redis) run(ctx context.Context, s *redis.Script, keys []string, args ...any) *redis.Cmd {
	return s.Run(ctx, b.rdb, keys, args...)
}

// forgetScripts is called on NOSCRIPT from a pipeline.
func (b *Redis) forgetScripts() {
	b.mu.Lock()
	b.scache = nil
	b.mu.Unlock()
}

// KnownQueues returns every queue that tasks were ever enqueued on.
func (b *Redis) KnownQueues(ctx context.Context) ([]string, error) {
	qs, err := b.rdb.SMembers(ctx, b.queueSet()).Result()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	slices.Sort(qs)
	return qs, nil
}

// GetResult finds the result with this id in any queue.
func (b *Redis) GetResult(ctx context.Context, id string) (*task.RawResult, error) {
	if !task.ValidID(id) {
		return nil, fmt.Errorf("%w: %q is not a task id", task.ErrResultNotFound, id)
	}
	queues, err := b.KnownQueues(ctx)
	if err != nil {
		return nil, fmt.Errorf("get result %s: %w", id, err)
	}
	return b.getFrom(ctx, id, queues)
}

// GetResultIn reads the result with this id from one queue, skipping the
// search across queues.
func (b *Redis) GetResultIn(ctx context.Context, queue, id string) (*task.RawResult, error) {
	return b.getFrom(ctx, id, []string{queue})
}

func (b *Redis) getFrom(ctx context.Context, id string, queues []string) (*task.RawResult, error) {
	if len(queues) == 0 {
		return nil, fmt.Errorf("%w: %s", task.ErrResultNotFound, id)
	}
	calls := make([]scriptCall, len(queues))
	for i, q := range queues {
		k := b.keys(q)
		calls[i] = scriptCall{op: "get", script: getScript, keys: []any{k.tasks, k.running, k.result(id), k.delayed, k.errors, k.first, k.progress, k.cancel}, args: []any{id}}
	}
	cmds, err := b.pipelined(ctx, calls)
	if err != nil {
		return nil, err
	}
	for i, c := range cmds {
		vals, err := c.Slice()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get result %s in %s: %w", id, queues[i], err)
		}
		return b.decodeGet(id, queues[i], vals)
	}
	return nil, fmt.Errorf("%w: %s", task.ErrResultNotFound, id)
}

func (b *Redis) decodeGet(id, queue string, vals []any) (*task.RawResult, error) {
	str := func(i int) string {
		if i < len(vals) {
			s, _ := vals[i].(string)
			return s
		}
		return ""
	}
	r, err := b.decodeTask(id, queue, str(1))
	// A task that could not be decoded is still reported once a worker
	// has failed it (as a bad payload), with what could be read.
	if err != nil && (str(0) != "done" || !errors.Is(err, errBadPayload)) {
		return nil, err
	}
	first, progress := str(7), str(8) // of a finished task
	if str(0) == "live" {
		first, progress = str(5), str(6)
	}
	r.Progress = decodeProgress(progress)
	if f := parseMicros(first); !f.IsZero() {
		r.StartedAt = f // the header has the latest attempt's start
	}
	switch str(0) {
	case "done":
		r.Status = task.Status(str(2))
		r.FinishedAt = parseMicros(str(3))
		if r.Status == task.StatusComplete {
			r.Value = []byte(str(4))
		}
		if e := str(5); e != "" {
			r.Err = &task.Error{}
			if err := unmarshal([]byte(e), r.Err); err != nil {
				return nil, fmt.Errorf("result %s: decode error: %w", id, err)
			}
		}
		if r.Errors, err = decodeErrors(str(6)); err != nil {
			return nil, fmt.Errorf("result %s: %w", id, err)
		}
	case "live":
		if n, _ := vals[2].(int64); n == 1 {
			r.Status = task.StatusRunning
		}
		if r.Errors, err = decodeErrors(str(3)); err != nil {
			return nil, fmt.Errorf("result %s: %w", id, err)
		}
		if at, _ := vals[4].(int64); at >= 0 && r.Status == task.StatusNew {
			r.RunAfter = time.UnixMilli(at) // deferred, or waiting for a retry
		}
		if len(vals) > 7 {
			c, _ := vals[7].(int64)
			r.CancelRequested = c == 1 && r.Status == task.StatusRunning
		}
	}
	return r, nil
}

// decodeErrors decodes the errors of failed attempts (” means none).
func decodeErrors(s string) ([]*task.Error, error) {
	if s == "" {
		return nil, nil
	}
	var errs []*task.Error
	if err := unmarshal([]byte(s), &errs); err != nil {
		return nil, fmt.Errorf("decode errors of earlier attempts: %w", err)
	}
	// A nil entry would panic whoever prints it.
	return slices.DeleteFunc(errs, func(e *task.Error) bool { return e == nil }), nil
}

// decodeTask turns a task value (header line and envelope) into a NEW
// result; callers that know it is running set the status. On a malformed
// value it returns what it could read (at least the id) and an error wrapping
// errBadPayload.
func (b *Redis) decodeTask(id, queue, v string) (*task.RawResult, error) {
	r := &task.RawResult{ID: id, Queue: queue, Backend: b.opts.Name, Status: task.StatusNew, Serializer: b.opts.Serializer}
	header, env, ok := strings.Cut(v, "\n")
	if !ok {
		return r, fmt.Errorf("%w: task %s: no header", errBadPayload, id)
	}
	f := strings.SplitN(header, " ", 5)
	if len(f) != 5 {
		return r, fmt.Errorf("%w: task %s: bad header %q", errBadPayload, id, header)
	}
	r.Attempts, _ = strconv.Atoi(f[0])
	r.Priority, _ = strconv.Atoi(f[1])
	if f[3] != "0" {
		// The latest attempt's start; a task claimed more than once
		// keeps its first start apart (T:first), which callers set.
		r.StartedAt = parseMicros(f[3])
		r.LastAttemptedAt = r.StartedAt
	}
	if f[4] != "" {
		r.WorkerIDs = strings.Split(f[4], ",")
	}
	var e envelope
	if err := unmarshal([]byte(env), &e); err != nil {
		return r, fmt.Errorf("%w: task %s: envelope does not decode: %v", errBadPayload, id, err)
	}
	e.withDefaults()
	r.TaskName, r.Args, r.Metadata = e.Task, e.Args, e.Metadata
	r.ResultTTL = time.Duration(e.ResultTTL) * time.Millisecond
	r.MaxAttempts, r.Timeout = e.MaxAttempts, time.Duration(e.Timeout)*time.Millisecond
	r.BackoffBase, r.BackoffMax = time.Duration(e.BackoffBase)*time.Millisecond, time.Duration(e.BackoffMax)*time.Millisecond
	r.EnqueuedAt = time.UnixMicro(e.EnqueuedAt)
	if e.RunAfter != 0 {
		r.RunAfter = time.UnixMicro(e.RunAfter)
	}
	if e.Serializer != "" {
		// The producer's serializer, whatever this reader's is. One
		// this process does not know fails the task with the reason;
		// what could be read (name, times, metadata) is kept for the
		// operator.
		s, err := serializer.ByName(e.Serializer)
		if err != nil {
			return r, fmt.Errorf("%w: task %s: %v (register it in the worker with serializer.Register)", errBadPayload, id, err)
		}
		r.Serializer = s
	}
	return r, nil
}

var errBadPayload = errors.New("malformed task payload")

// unmarshal is msgpack.Unmarshal for bytes read from Redis. It checks them
// first (serializer.CheckMsgpack), so that a corrupt or hostile value is an
// error, not a crash of the worker: msgpack recurses into nested arrays and
// maps (a few MB of them overflow the stack, even while skipping a field a
// struct does not have) and allocates the element count an array claims
// (4 billion from 5 bytes: out of memory).
func unmarshal(data []byte, v any) error {
	if err := serializer.CheckMsgpack(data); err != nil {
		return err
	}
	return msgpack.Unmarshal(data, v)
}

func parseMicros(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.UnixMicro(n)
}

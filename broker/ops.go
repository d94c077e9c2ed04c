package broker

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/gotasks/gotasks/task"
)

// Claimed is a task a worker has claimed: a RUNNING result whose Attempts
// is the fencing token of this attempt. If the stored task could not be
// decoded, Result holds what could be read and Bad says why; the worker must
// Finish it as FAILED.
type Claimed struct {
	Result *task.RawResult
	Bad    error
}

// Claim takes up to n ready tasks from queues for workerID and leases them
// for lease. The highest priority wins across queues, and ties go to the
// oldest task; each claim is atomic within its queue.
func (b *Redis) Claim(ctx context.Context, queues []string, n int, lease time.Duration, workerID string) ([]Claimed, error) {
	if n <= 0 || len(queues) == 0 {
		return nil, nil
	}
	if len(queues) == 1 {
		return b.claimOne(ctx, queues[0], n, lease, workerID)
	}
	early, n, err := b.replayUnsure(ctx, queues, n, lease, workerID)
	if err != nil || n == 0 {
		return early, err
	}
	order, counts, ranks, err := b.plan(ctx, queues, n)
	if err != nil {
		return early, err
	}
	byQueue := make([][]Claimed, len(order))
	for i, q := range order {
		byQueue[i], err = b.claimOne(ctx, q, counts[i], lease, workerID)
		if err != nil {
			break
		}
	}
	// In the order of the plan (priority, then age, across the queues),
	// so that a worker that runs them one at a time keeps it; what a
	// queue gave beyond the plan comes last.
	out := append(make([]Claimed, 0, len(early)+n), early...)
	next := make([]int, len(order))
	for _, qi := range ranks {
		if next[qi] < len(byQueue[qi]) {
			out = append(out, byQueue[qi][next[qi]])
			next[qi]++
		}
	}
	for qi, got := range byQueue {
		out = append(out, got[next[qi]:]...)
	}
	return out, err
}

// replayUnsure claims first, on each of queues, what a claim of an earlier
// call that got no reply may have taken (whatever the plan or the order
// says of its queue now: its tasks were claimed for this worker, and wait
// for nothing else). It returns them and how many of n are left.
func (b *Redis) replayUnsure(ctx context.Context, queues []string, n int, lease time.Duration, workerID string) ([]Claimed, int, error) {
	var early []Claimed
	for i, u := range b.unsureClaims(queues, workerID) {
		if q := queues[i]; u > 0 && u <= n {
			got, err := b.claimOne(ctx, q, u, lease, workerID)
			early = append(early, got...)
			n -= len(got)
			if err != nil || n == 0 {
				return early, n, err
			}
		}
	}
	return early, n, nil
}

// ClaimInOrder is Claim for a worker that chooses the order of its queues
// itself (weighted or strict, see worker.Options.QueueOrder): it takes as
// many of the n tasks as it can from the first queue, then from the next,
// and so on, each queue's in its claim order (priority, then age).
func (b *Redis) ClaimInOrder(ctx context.Context, queues []string, n int, lease time.Duration, workerID string) ([]Claimed, error) {
	if n <= 0 || len(queues) == 0 {
		return nil, nil
	}
	out, n, err := b.replayUnsure(ctx, queues, n, lease, workerID)
	for _, q := range queues {
		if err != nil || n == 0 {
			break
		}
		var got []Claimed
		got, err = b.claimOne(ctx, q, n, lease, workerID)
		out = append(out, got...)
		n -= len(got)
	}
	return out, err
}

// plan decides how many of the n best ready tasks (priority, then age) to
// take from each queue, by peeking at the first n of each; it returns the
// queues in the order of their best task, the count for each, and for
// each of the n best tasks in order the index (in order) of its queue.
// Other workers may claim in between, so this is a best effort: a claim
// may then get fewer.
func (b *Redis) plan(ctx context.Context, queues []string, n int) ([]string, []int, []int, error) {
	calls := make([]scriptCall, len(queues))
	for i, q := range queues {
		k := b.keys(q)
		calls[i] = scriptCall{op: "peek", script: peekScript, keys: []any{k.pending, k.ready, k.tasks, k.paused}, args: []any{n}}
	}
	cmds, err := b.pipelined(ctx, calls)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("peek queues: %w", err)
	}
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			return nil, nil, nil, fmt.Errorf("peek %s: %w", queues[i], err)
		}
	}
	type head struct {
		q     int
		score float64
	}
	var heads []head
	for i, c := range cmds {
		scores, _ := c.StringSlice()
		for _, sc := range scores {
			if f, err := strconv.ParseFloat(sc, 64); err == nil {
				heads = append(heads, head{i, f})
			}
		}
	}
	// Stable: on equal scores the queue listed first wins.
	slices.SortStableFunc(heads, func(a, b head) int {
		switch {
		case a.score < b.score:
			return -1
		case a.score > b.score:
			return 1
		}
		return 0
	})
	var order []string
	var counts, ranks []int
	at := map[int]int{}
	for _, h := range heads[:min(n, len(heads))] {
		i, ok := at[h.q]
		if !ok {
			i = len(order)
			at[h.q] = i
			order = append(order, queues[h.q])
			counts = append(counts, 0)
		}
		counts[i]++
		ranks = append(ranks, i)
	}
	return order, counts, ranks, nil
}

// maxClaimBatch bounds the tasks one claim script call takes: it unpacks
// two values per task onto Lua's stack, which holds a few thousand. More
// are claimed by several calls, each atomic.
const maxClaimBatch = 1000

func (b *Redis) claimOne(ctx context.Context, queue string, n int, lease time.Duration, workerID string) ([]Claimed, error) {
	var out []Claimed
	for n > 0 {
		c := b.claimCall(queue, n, lease, workerID, laneClaim)
		cmd := b.runCall(ctx, c)
		b.claimDone(c, cmd.Err())
		got, err := b.claimed(queue, cmd)
		out = append(out, got...)
		if err != nil || len(got) < min(n, maxClaimBatch) {
			return out, err
		}
		n -= len(got)
	}
	return out, nil
}

// The lanes of a worker's claims: each has its own replay record (see
// claimScript), since a worker claims with Claim and, at the same time,
// along with outcomes (StoreAndClaim). Concurrent claims on one lane (the
// same worker id and queue) share the record: a lost reply of one of them
// may then not be replayed, and its tasks wait for their lease to end.
const (
	laneClaim = "c"
	laneStore = "s"
)

// claimCall is the claim script call that takes up to n tasks of queue.
func (b *Redis) claimCall(queue string, n int, lease time.Duration, workerID, lane string) scriptCall {
	n = min(n, maxClaimBatch)
	qk := b.queueKeys(queue)
	record := claimRecord(qk.tag, workerID, lane)
	keys := make([]any, 0, len(qk.claim)+1)
	keys = append(append(keys, qk.claim...), record)
	return scriptCall{op: "claim", script: claimScript, keys: keys,
		args: []any{n, lease.Milliseconds(), workerID, b.claimToken(record, n), b.pub}}
}

// claimRecord is the key of the replay record of workerID's claims on
// lane of the queue whose hash tag is tag.
func claimRecord(tag, workerID, lane string) string {
	return tag + ":claim:" + workerID + ":" + lane
}

// unsureClaims returns, for each of queues, how many tasks the last claim
// of workerID's claiming lane asked for if it ended without a reply (0 if
// none; nil when no claim of this backend is unsure, nearly always): the
// next claim on that lane replays it if it asks for as many (see
// claimToken).
func (b *Redis) unsureClaims(queues []string, workerID string) []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.unsure) == 0 {
		return nil
	}
	out := make([]int, len(queues))
	for i, q := range queues {
		out[i] = b.unsure[claimRecord(b.keys(q).tag, workerID, laneClaim)].n
	}
	return out
}

// UnsureClaims reports how many tasks the claims on queues of workerID
// that ended without a reply asked for, the most of any queue: a claimer
// that asks for at least as many in its next Claim gets the tasks Redis
// may have claimed for them, instead of leaving them to their lease.
func (b *Redis) UnsureClaims(queues []string, workerID string) int {
	most := 0
	for _, u := range b.unsureClaims(queues, workerID) {
		most = max(most, u)
	}
	return most
}

// unsureClaim is a claim call that ended without a reply: Redis may have
// claimed tasks for it. The next claim on its lane sends its token again,
// so that it gets those tasks (the script replays them).
type unsureClaim struct {
	token string
	n     int
}

// maxUnsureClaims bounds the claims remembered for a replay (one per
// queue, worker id and lane is the most a worker leaves).
const maxUnsureClaims = 1024

// claimToken returns the token of a claim of n tasks on the lane whose
// replay record is record: the token of the lane's last claim if that
// ended without a reply (and asked no more than n), so that the tasks it
// may have claimed are delivered now; otherwise a new one.
func (b *Redis) claimToken(record string, n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if u, ok := b.unsure[record]; ok {
		delete(b.unsure, record)
		if u.n <= n {
			return u.token
		}
	}
	if b.claimPrefix == "" {
		b.claimPrefix = newToken()
	}
	return b.claimPrefix + "." + strconv.FormatInt(b.claimSeq.Add(1), 10)
}

// newToken returns a token that names one script call, so that the
// script knows the call when it is sent again (64 random bits).
func newToken() string {
	var r [8]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}

// claimDone notes how claim call c ended: an error that is not Redis'
// reply (a reset, a timeout) leaves its tasks possibly claimed.
func (b *Redis) claimDone(c scriptCall, err error) {
	var rerr redis.Error
	if err == nil || errors.As(err, &rerr) {
		return
	}
	record, _ := c.keys[len(c.keys)-1].(string)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.unsure == nil {
		b.unsure = map[string]unsureClaim{}
	}
	if len(b.unsure) < maxUnsureClaims {
		b.unsure[record] = unsureClaim{token: c.args[3].(string), n: c.args[0].(int)}
	}
}

// claimed reads the reply of a claim script call.
func (b *Redis) claimed(queue string, cmd *redis.Cmd) ([]Claimed, error) {
	vals, err := cmd.Slice()
	if err != nil {
		return nil, fmt.Errorf("claim from %s: %w", queue, err)
	}
	out := make([]Claimed, 0, (len(vals)-1)/4)
	for i := 1; i+3 < len(vals); i += 4 {
		id, _ := vals[i].(string)
		v, _ := vals[i+1].(string)
		errs, _ := vals[i+2].(string)
		first, _ := vals[i+3].(string)
		r, err := b.decodeTask(id, queue, v)
		if f := parseMicros(first); !f.IsZero() {
			r.StartedAt = f
		}
		r.Status = task.StatusRunning
		if e, derr := decodeErrors(errs); derr == nil {
			r.Errors = e
		} else if err == nil {
			err = fmt.Errorf("%w: task %s: %v", errBadPayload, id, derr)
		}
		out = append(out, Claimed{Result: r, Bad: err})
	}
	return out, nil
}

// Renew extends the leases of running tasks of one queue that the caller
// still holds (each identified by its id and attempt number), and returns
// those whose lease it lost.
func (b *Redis) Renew(ctx context.Context, queue string, running []*task.RawResult, lease time.Duration) (lost []*task.RawResult, err error) {
	lost, _, err = b.RenewWatch(ctx, queue, running, lease)
	return lost, err
}

// RenewWatch is Renew, and also returns the held tasks whose cancel was
// asked for (see Cancel): a worker that missed the message that tells it
// learns it here, at its next renewal.
func (b *Redis) RenewWatch(ctx context.Context, queue string, running []*task.RawResult, lease time.Duration) (lost, cancelAsked []*task.RawResult, err error) {
	if len(running) == 0 {
		return nil, nil, nil
	}
	k := b.keys(queue)
	args := make([]any, 0, 1+2*len(running))
	args = append(args, lease.Milliseconds())
	for _, r := range running {
		args = append(args, r.ID, r.Attempts)
	}
	pos, err := b.run(ctx, renewScript, []string{k.running, k.tasks, k.cancel}, args...).Int64Slice()
	if err != nil {
		return nil, nil, fmt.Errorf("renew %d leases on %s: %w", len(running), queue, err)
	}
	for _, p := range pos {
		switch {
		case p >= 1 && int(p) <= len(running):
			lost = append(lost, running[p-1])
		case p <= -1 && int(-p) <= len(running):
			cancelAsked = append(cancelAsked, running[-p-1])
		}
	}
	return lost, cancelAsked, nil
}

// Finish stores the final state of r (COMPLETE with r.Value, or FAILED with
// r.Err) and releases its lease, if the caller still holds the lease of
// attempt r.Attempts; otherwise it returns ErrLeaseLost and changes nothing.
// It sets r.FinishedAt to the time Redis recorded.
func (b *Redis) Finish(ctx context.Context, r *task.RawResult) error {
	if r.Status != task.StatusComplete && r.Status != task.StatusFailed {
		return fmt.Errorf("finish %s: status %s is not COMPLETE or FAILED", r.ID, r.Status)
	}
	return b.Store(ctx, r)[0]
}

// Retry schedules the next attempt of r, whose attempt failed and may be
// retried (status NEW, r.RunAfter the time of the next attempt, r.Errors
// every failure so far), if the caller still holds the lease of attempt
// r.Attempts; otherwise it returns ErrLeaseLost and changes nothing.
func (b *Redis) Retry(ctx context.Context, r *task.RawResult) error {
	if r.Status != task.StatusNew {
		return fmt.Errorf("retry %s: status %s is not NEW", r.ID, r.Status)
	}
	return b.Store(ctx, r)[0]
}

// Store writes the outcomes of several attempts in one round trip: each
// is a Finish (status COMPLETE or FAILED) or a Retry (status NEW), and each
// is atomic and fenced on its own, exactly as those are. It returns one
// error per result (nil: stored). The finishes of one queue are written by
// one script call (up to maxFinishBatch each), the retries one by one.
func (b *Redis) Store(ctx context.Context, rs ...*task.RawResult) []error {
	errs, _, _ := b.StoreAndClaim(ctx, rs, "", 0, 0, "")
	return errs
}

// StoreAndClaim is Store, and a Claim of up to n tasks (at most 1,000) of
// queue for workerID (when n > 0), in the same round trip: a worker whose tasks
// finished takes the next ones without waiting for a round trip of its
// own. The claim is the same atomic script as Claim's and does not depend
// on the outcomes: it runs even if some are refused. It returns Store's
// errors, and the claimed tasks or the claim's error.
func (b *Redis) StoreAndClaim(ctx context.Context, rs []*task.RawResult, queue string, n int, lease time.Duration, workerID string) ([]error, []Claimed, error) {
	errs := make([]error, len(rs))
	calls := b.storeCalls(rs, errs)
	if n > 0 {
		calls = append(calls, b.claimCall(queue, n, lease, workerID, laneStore))
	}
	cmds, err := b.pipelined(ctx, calls)
	if err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("store %s: %w", rs[i].ID, err)
			}
		}
		return errs, nil, fmt.Errorf("claim from %s: %w", queue, err)
	}
	var got []Claimed
	var claimErr error
	if n > 0 {
		b.claimDone(calls[len(calls)-1], cmds[len(cmds)-1].Err())
		got, claimErr = b.claimed(queue, cmds[len(cmds)-1])
		cmds, calls = cmds[:len(cmds)-1], calls[:len(calls)-1]
	}
	for i, c := range cmds {
		call := calls[i]
		var stamps []int64
		var err error
		if call.script == finishScript {
			stamps, err = c.Int64Slice()
			if err == nil && len(stamps) != len(call.idx) {
				err = fmt.Errorf("script returned %d values for %d tasks", len(stamps), len(call.idx))
			}
		} else {
			var v int64
			v, err = c.Int64()
			stamps = []int64{v}
		}
		for j, ri := range call.idx {
			r := rs[ri]
			switch {
			case err != nil:
				errs[ri] = fmt.Errorf("%s %s: %w", call.op, r.ID, err)
			case stamps[j] == 0:
				errs[ri] = fmt.Errorf("%s %s attempt %d: %w", call.op, r.ID, r.Attempts, ErrLeaseLost)
			case stamps[j] == retryCancelAsked && call.script == retryScript:
				errs[ri] = fmt.Errorf("%s %s attempt %d: %w", call.op, r.ID, r.Attempts, ErrCancelAsked)
			case stamps[j] < 0:
				errs[ri] = fmt.Errorf("%s %s: its result key %s holds a value of another type", call.op, r.ID, call.keys[finishKeys+j])
			case call.script == finishScript:
				r.FinishedAt = time.UnixMicro(stamps[j])
			}
		}
	}
	return errs, got, claimErr
}

// resultTTL is how long the final result of r is kept: the dead-letter
// retention for a FAILED one, else its producer's ResultTTL or this
// backend's.
func (b *Redis) resultTTL(r *task.RawResult) time.Duration {
	if r.Status == task.StatusFailed {
		return b.opts.FailedTTL
	}
	return cmp.Or(r.ResultTTL, b.opts.ResultTTL)
}

// retryCancelAsked is retryScript's answer for a task whose cancel was
// asked for (ErrCancelAsked).
const retryCancelAsked = -2

// finishKeys is the number of KEYS of finishScript before the result keys.
const finishKeys = 10

// maxFinishBatch bounds the tasks one finish script call writes: its
// arguments are unpacked onto Lua's stack, which holds a few thousand.
const maxFinishBatch = 128

// scriptCall is one script to run (for the results rs[idx...] of a
// Store), with what it is for error messages. Its keys are boxed, most of
// them once per queue (queueKeys): go-redis' EvalSha boxes every key of
// every call, which was a sixth of a worker's allocations.
type scriptCall struct {
	op     string
	script *redis.Script
	keys   []any // strings
	args   []any
	idx    []int
}

// shas are the boxed hashes of the scripts that run as scriptCalls.
var shas = map[*redis.Script]any{
	claimScript: claimScript.Hash(), finishScript: finishScript.Hash(), retryScript: retryScript.Hash(),
	peekScript: peekScript.Hash(), getScript: getScript.Hash(),
}

// cmd is c as an EVALSHA command, for a pipeline.
func (c scriptCall) cmd(ctx context.Context) *redis.Cmd {
	sha, ok := shas[c.script]
	if !ok {
		sha = c.script.Hash()
	}
	args := make([]any, 0, 3+len(c.keys)+len(c.args))
	args = append(args, "evalsha", sha, len(c.keys))
	args = append(args, c.keys...)
	args = append(args, c.args...)
	cmd := redis.NewCmd(ctx, args...)
	cmd.SetFirstKeyPos(3) // as go-redis' EvalSha: Cluster routes by KEYS[1]
	return cmd
}

// pipelined runs calls in one round trip and returns their commands, each
// read on its own. A call that met NOSCRIPT (Redis lost its script cache
// in a restart: the script did not run, so running it again is safe) runs
// again on its own, with EVAL if need be. The error is that of loading the
// scripts beforehand, when nothing ran.
func (b *Redis) pipelined(ctx context.Context, calls []scriptCall) ([]*redis.Cmd, error) {
	var scripts []*redis.Script
	for _, c := range calls {
		if !slices.Contains(scripts, c.script) {
			scripts = append(scripts, c.script)
		}
	}
	if err := b.loadScripts(ctx, scripts...); err != nil {
		return nil, err
	}
	cmds := make([]*redis.Cmd, len(calls))
	pipe := b.rdb.Pipeline()
	for i, c := range calls {
		cmds[i] = c.cmd(ctx)
		_ = pipe.Process(ctx, cmds[i])
	}
	_, _ = pipe.Exec(ctx) // errors are read per command
	for i, c := range cmds {
		if c.Err() != nil && strings.HasPrefix(c.Err().Error(), "NOSCRIPT") {
			b.forgetScripts()
			cmds[i] = b.runCall(ctx, calls[i])
		}
	}
	return cmds, nil
}

// runCall runs c on its own (with EVAL if Redis lost the script).
func (b *Redis) runCall(ctx context.Context, c scriptCall) *redis.Cmd {
	keys := make([]string, len(c.keys))
	for i, k := range c.keys {
		keys[i], _ = k.(string)
	}
	return b.run(ctx, c.script, keys, c.args...)
}

// storeCalls prepares the script calls that store rs: a finish call per
// queue (and per maxFinishBatch tasks), a retry call per retry. A result
// that cannot be encoded gets its error in errs and no call.
func (b *Redis) storeCalls(rs []*task.RawResult, errs []error) []scriptCall {
	var calls []scriptCall
	// (queue, result TTL) → index in calls of its finish call being
	// filled: a task whose producer chose its TTL is kept that long.
	type group struct {
		queue string
		ttl   time.Duration
	}
	open := map[group]int{}
	for i, r := range rs {
		qk := b.queueKeys(r.Queue)
		switch {
		case r.Status == task.StatusComplete || r.Status == task.StatusFailed || r.Status == task.StatusCancelled:
			var errBlob []byte
			if r.Err != nil {
				var err error
				if errBlob, err = msgpack.Marshal(r.Err); err != nil {
					errs[i] = fmt.Errorf("finish %s: encode error: %w", r.ID, err)
					continue
				}
			}
			errsBlob, err := encodeErrors(r.Errors)
			if err != nil {
				errs[i] = fmt.Errorf("finish %s: %w", r.ID, err)
				continue
			}
			g := group{r.Queue, b.resultTTL(r)}
			ci, ok := open[g]
			if !ok || len(calls[ci].idx) == maxFinishBatch {
				ci = len(calls)
				open[g] = ci
				keys := make([]any, 0, len(qk.finish)+len(rs)-i)
				calls = append(calls, scriptCall{op: "finish", script: finishScript,
					keys: append(keys, qk.finish...),
					args: []any{g.ttl.Milliseconds(), string(task.StatusFailed), b.pub, string(task.StatusCancelled)}})
			}
			c := &calls[ci]
			c.keys = append(c.keys, qk.result(r.ID))
			c.args = append(c.args, r.ID, r.Attempts, string(r.Status), r.Value, errBlob, errsBlob, encodeProgress(r.Progress))
			c.idx = append(c.idx, i)
		case r.Status == task.StatusNew:
			errsBlob, err := encodeErrors(r.Errors)
			if err != nil {
				errs[i] = fmt.Errorf("retry %s: %w", r.ID, err)
				continue
			}
			var at int64
			if !r.RunAfter.IsZero() {
				at = int64(math.Ceil(float64(r.RunAfter.UnixMicro()) / 1000))
			}
			calls = append(calls, scriptCall{op: "retry", script: retryScript,
				keys: []any{qk.running, qk.tasks, qk.pending, qk.delayed, qk.seq, qk.wake, qk.dw, qk.errors, qk.ready, qk.result(r.ID), qk.events, qk.cancel},
				args: []any{r.ID, r.Attempts, at, errsBlob, b.pub}, idx: []int{i}})
		default:
			errs[i] = fmt.Errorf("store %s: status %s is neither final nor NEW (a retry)", r.ID, r.Status)
		}
	}
	return calls
}

func encodeErrors(errs []*task.Error) ([]byte, error) {
	if len(errs) == 0 {
		return nil, nil
	}
	b, err := msgpack.Marshal(errs)
	if err != nil {
		return nil, fmt.Errorf("encode errors: %w", err)
	}
	return b, nil
}

// Requeue hands running tasks of one queue back to it at once, at their
// original place, if the caller still holds their leases. It returns how
// many were requeued.
func (b *Redis) Requeue(ctx context.Context, queue string, running []*task.RawResult) (int, error) {
	return b.requeue(ctx, queue, running, false)
}

// Unclaim is Requeue for tasks that were claimed and never started: it
// also undoes the claim (the attempt it counted, the worker it recorded),
// so that handing them back costs them nothing.
func (b *Redis) Unclaim(ctx context.Context, queue string, claimed []*task.RawResult) (int, error) {
	return b.requeue(ctx, queue, claimed, true)
}

func (b *Redis) requeue(ctx context.Context, queue string, running []*task.RawResult, undo bool) (int, error) {
	if len(running) == 0 {
		return 0, nil
	}
	k := b.keys(queue)
	args := make([]any, 0, 1+2*len(running))
	args = append(args, 0)
	if undo {
		args[0] = 1
	}
	for _, r := range running {
		args = append(args, r.ID, r.Attempts)
	}
	n, err := b.run(ctx, requeueScript, []string{k.running, k.pending, k.tasks, k.wake, k.ready, k.cancel}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("requeue %d tasks on %s: %w", len(running), queue, err)
	}
	return n, nil
}

// Reap returns up to limit tasks of queue whose lease expired to the queue,
// and ends CANCELLED those among them whose cancel was asked for (see
// Cancel). It returns how many it handled either way, and when the next
// lease expires (zero: nothing is running).
func (b *Redis) Reap(ctx context.Context, queue string, limit int) (int, time.Time, error) {
	k := b.keys(queue)
	vals, err := b.run(ctx, reapScript, []string{k.running, k.pending, k.tasks, k.wake, k.ready, k.cancel}, limit).Slice()
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("reap %s: %w", queue, err)
	}
	if len(vals) < 2 {
		return 0, time.Time{}, fmt.Errorf("reap %s: script returned %d values, want 2 or more", queue, len(vals))
	}
	n, _ := vals[0].(int64)
	nxt, _ := vals[1].(int64)
	var next time.Time
	if nxt >= 0 {
		next = time.UnixMilli(nxt)
	}
	var ids []string
	for _, v := range vals[2:] {
		if id, ok := v.(string); ok {
			ids = append(ids, id)
		}
	}
	if len(ids) > 0 {
		// Its next lease was read before these left T:running.
		c, cnext, err := b.cancelExpired(ctx, queue, ids)
		if err != nil {
			return int(n), time.Time{}, fmt.Errorf("reap %s: %w", queue, err)
		}
		n, next = n+int64(c), cnext
	}
	return int(n), next, nil
}

// Promote makes up to limit deferred tasks of queue whose run_after has come
// ready. It also returns the next run_after (zero: nothing is deferred).
func (b *Redis) Promote(ctx context.Context, queue string, limit int) (int, time.Time, error) {
	k := b.keys(queue)
	n, next, err := pair(b.run(ctx, promoteScript, []string{k.delayed, k.pending, k.tasks, k.seq, k.wake, k.ready}, limit))
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("promote %s: %w", queue, err)
	}
	return n, next, nil
}

func pair(c *redis.Cmd) (int, time.Time, error) {
	v, err := c.Int64Slice()
	if err != nil {
		return 0, time.Time{}, err
	}
	if len(v) != 2 {
		return 0, time.Time{}, fmt.Errorf("script returned %d values, want 2", len(v))
	}
	var next time.Time
	if v[1] >= 0 {
		next = time.UnixMilli(v[1])
	}
	return int(v[0]), next, nil
}

// WaitReady blocks until a task may be ready on one of queues, timeout
// passes or ctx is done. It consumes the queue's wake-up token, so callers
// must try to claim afterwards (and the claim passes the token on if work
// remains). A true result is a hint, not a promise.
func (b *Redis) WaitReady(ctx context.Context, queues []string, timeout time.Duration) (bool, error) {
	ks := make([]string, len(queues))
	for i, q := range queues {
		ks[i] = b.keys(q).wake
	}
	key, err := b.block(ctx, ks, timeout)
	return key != "", err
}

// WaitReadyOrNew is WaitReady for workers that serve every queue: it also
// returns, with newQueue set, when a queue is used for the first time, so
// that they look at the list of queues again at once instead of at their
// next periodic refresh.
func (b *Redis) WaitReadyOrNew(ctx context.Context, queues []string, timeout time.Duration) (newQueue bool, err error) {
	ks := make([]string, len(queues), len(queues)+1)
	for i, q := range queues {
		ks[i] = b.keys(q).wake
	}
	key, err := b.block(ctx, append(ks, b.newQueueKey()), timeout)
	return key == b.newQueueKey(), err
}

// WaitDeferred blocks until a deferred task is enqueued on queue, timeout
// passes or ctx is done; schedulers use it to sleep until the next due time
// without missing an earlier newcomer.
func (b *Redis) WaitDeferred(ctx context.Context, queue string, timeout time.Duration) (bool, error) {
	key, err := b.block(ctx, []string{b.keys(queue).dw}, timeout)
	return key != "", err
}

// block waits until one of the lists ks has an element, pops it and
// returns that list's key; "" when timeout passed first.
func (b *Redis) block(ctx context.Context, ks []string, timeout time.Duration) (string, error) {
	// BLPOP takes the timeout in seconds with millisecond resolution; 0
	// would mean forever.
	timeout = min(max(timeout.Round(time.Millisecond), time.Millisecond), b.maxBlock())
	var p pop
	var err error
	switch c := b.rdb.(type) {
	case *redis.ClusterClient:
		return b.blockCluster(ctx, c, ks, timeout)
	case *redis.Client: // one Redis, or a failover client behind sentinels
		if !b.noUnblock.Load() {
			var supported bool
			if p, err, supported = b.blockInterruptible(ctx, c, ks, timeout); supported {
				return p.key, err
			}
			b.noUnblock.Store(true)
		}
	}
	p, err = blockStepped(ctx, b.rdb, ks, timeout)
	return p.key, err
}

// pop is what BLPOP popped: an element and the list it came from (zero:
// nothing).
type pop struct{ key, val string }

// blockStepped blocks in short steps, for servers without CLIENT UNBLOCK
// (miniredis, some proxies, users not allowed to run it): cancellation is
// noticed soon and no command outlives the caller. Each step runs detached
// (see detach): once ctx is done, the caller waits at most unblockWait for
// the step to end (a token it pops then goes back to its list).
func blockStepped(ctx context.Context, c doer, ks []string, timeout time.Duration) (pop, error) {
	deadline := time.Now().Add(timeout)
	rt := readTimeoutOf(c)
	for {
		if err := ctx.Err(); err != nil {
			return pop{}, err
		}
		step := min(time.Until(deadline), blockStep)
		if step <= 0 {
			return pop{}, nil
		}
		d := detach(ctx, c, step+rt, func(dctx context.Context) waitResult {
			res, err := blpop(dctx, c, ks, step)
			p, err := blpopResult(ks, res, err)
			return waitResult{p: p, err: err}
		})
		select {
		case r := <-d.done:
			if r.p.key != "" || r.err != nil {
				return r.p, r.err
			}
		case <-ctx.Done():
			d.drop(unblockWait)
			return pop{}, ctx.Err()
		}
	}
}

// blockCluster waits on each key with a BLPOP of its own, on the node that
// holds it: a cluster refuses one BLPOP on keys of different slots
// (CROSSSLOT), and the queues of one worker are spread over shards. The
// first key to wake ends the other waits; a token another wait popped in
// the meantime is pushed back, so no wake-up is lost.
func (b *Redis) blockCluster(ctx context.Context, c *redis.ClusterClient, ks []string, timeout time.Duration) (string, error) {
	if len(ks) == 1 {
		key, _, err := b.blockOnNode(ctx, c, ks[0], timeout)
		return key, err
	}
	waitCtx, stop := context.WithCancel(ctx)
	defer stop()
	type reply struct {
		woke string // the key that ended the wait, popped or not
		p    pop
		err  error
	}
	replies := make(chan reply, len(ks))
	for _, k := range ks {
		go func() {
			woke, p, err := b.blockOnNode(waitCtx, c, k, timeout)
			replies <- reply{woke, p, err}
		}()
	}
	var woke string
	var errs []error
	for range ks {
		r := <-replies
		switch {
		case r.woke != "" && woke == "":
			woke = r.woke
			stop()
		case r.p.key != "":
			// Another wait won first: this token is someone else's.
			wait := readTimeoutOf(c)
			if ctx.Err() != nil {
				wait = unblockWait
			}
			pushBack(ctx, c, r.p, wait)
		case r.err != nil && waitCtx.Err() == nil:
			errs = append(errs, r.err)
		}
	}
	if woke != "" {
		return woke, nil
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return "", errors.Join(errs...)
}

// blockOnNode runs an interruptible BLPOP on key on the cluster node that
// serves its slot. It returns the key if the wait should end (p set if it
// popped a token).
func (b *Redis) blockOnNode(ctx context.Context, c *redis.ClusterClient, key string, timeout time.Duration) (woke string, p pop, err error) {
	if !b.noUnblock.Load() {
		node, err := c.MasterForKey(ctx, key)
		if err != nil {
			return "", pop{}, fmt.Errorf("wait on %s: find its node: %w", key, err)
		}
		p, err, supported := b.blockInterruptible(ctx, node, []string{key}, timeout)
		if err != nil && isMovedError(err) {
			// The slot moved (resharding, failover) since the client last
			// looked; wake the caller early rather than fail, and let the
			// client learn the new layout.
			c.ReloadState(context.WithoutCancel(ctx))
			return key, pop{}, nil
		}
		if supported {
			return p.key, p, err
		}
		b.noUnblock.Store(true)
	}
	p, err = blockStepped(ctx, c, []string{key}, timeout)
	return p.key, p, err
}

// isMovedError reports whether err is Redis saying the key's slot is
// served elsewhere (or not at all) now.
func isMovedError(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "MOVED ") || strings.HasPrefix(msg, "ASK ") || strings.HasPrefix(msg, "CLUSTERDOWN")
}

// doer runs any command: every go-redis client and connection.
type doer interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// blockStep bounds one BLPOP when it cannot be interrupted.
const blockStep = 50 * time.Millisecond

// blockInterruptible runs BLPOP on a connection of its own and, if ctx is
// cancelled, ends it at once with CLIENT UNBLOCK, so that callers return
// promptly and leave no command or goroutine behind. supported is false
// when the server does not know CLIENT ID or the user may not run CLIENT
// UNBLOCK (it is in @admin): the caller then blocks in steps instead.
//
// The connection's commands run detached (see detach), and the caller
// returns at most unblockWait after ctx is done even if Redis does not
// answer at all (packets swallowed, the connection still open): it then
// leaves the goroutine behind, which ends by itself within the wait's
// timeout plus the client's read timeout, and pushes back a token it pops
// meanwhile.
func (b *Redis) blockInterruptible(ctx context.Context, c *redis.Client, ks []string, timeout time.Duration) (p pop, err error, supported bool) {
	if err := ctx.Err(); err != nil {
		return pop{}, fmt.Errorf("wait on %v: %w", ks, err), true
	}
	ids := make(chan int64, 1) // the connection's id, once known
	d := detach(ctx, c, timeout+readTimeoutOf(c), func(dctx context.Context) waitResult {
		conn := c.Conn()
		defer conn.Close()
		id, err := conn.ClientID(dctx).Result()
		if err != nil {
			var rerr redis.Error
			if errors.As(err, &rerr) {
				return waitResult{} // the server answered: it has no CLIENT ID
			}
			return waitResult{err: fmt.Errorf("wait on %v: %w", ks, err), supported: true}
		}
		if !b.unblockAllowed.Load() {
			// Once: may this user run CLIENT UNBLOCK (@admin)? Unblocking our
			// own, idle connection is harmless and answers 0 if so. Finding out
			// only when a wait must be ended would cost that wait its whole
			// timeout.
			if err := conn.ClientUnblock(dctx, id).Err(); err != nil {
				var rerr redis.Error
				if errors.As(err, &rerr) {
					return waitResult{} // NOPERM
				}
				return waitResult{err: fmt.Errorf("wait on %v: %w", ks, err), supported: true}
			}
			b.unblockAllowed.Store(true)
		}
		ids <- id
		if err := ctx.Err(); err != nil {
			return waitResult{err: err, supported: true} // cancelled meanwhile: no BLPOP to end
		}
		res, err := blpop(dctx, conn, ks, timeout)
		p, err := blpopResult(ks, res, err)
		return waitResult{p: p, err: err, supported: true}
	})
	var id int64
	haveID := false
wait:
	for {
		select {
		case r := <-d.done:
			return r.p, r.err, r.supported
		case id = <-ids:
			haveID = true
		case <-ctx.Done():
			break wait
		}
	}
	close(d.abandon) // from now on, a token it pops goes back to its list
	// The BLPOP may not have reached Redis yet, and an unblock that comes
	// first does nothing (the command would then wait out its timeout):
	// unblock until it has ended, for at most unblockWait.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unblockWait)
	defer cancel()
	retry := time.NewTicker(5 * time.Millisecond)
	defer retry.Stop()
	supported = true
	for {
		if haveID && supported {
			if err := c.ClientUnblock(uctx, id).Err(); err != nil {
				var rerr redis.Error
				if errors.As(err, &rerr) { // NOPERM: it ends at its timeout
					supported = false
				}
			}
		}
		select {
		case <-d.finished:
			return pop{}, ctx.Err(), supported
		case id = <-ids:
			haveID = true
		case <-retry.C:
		case <-uctx.Done():
			// Redis does not answer: left to end by itself (see detach).
			return pop{}, ctx.Err(), supported
		}
	}
}

// unblockWait bounds how long a wait whose context is done waits for its
// BLPOP to end. CLIENT UNBLOCK takes a round trip, a BLPOP step at most
// blockStep, so only a network that does not answer makes it matter: the
// caller (a worker or scheduler shutting down) must not wait for go-redis'
// read timeout, and its retries, then.
const unblockWait = 500 * time.Millisecond

// waitResult is how the commands of one wait ended: what BLPOP popped (or
// nothing), its error, and (blockInterruptible) whether the server
// supports ending it with CLIENT UNBLOCK.
type waitResult struct {
	p         pop
	err       error
	supported bool
}

// detached is the commands of one wait, running in a goroutine of their own
// (see detach). The caller either takes their result from done, or closes
// abandon and takes none: then the goroutine pushes back a token it popped,
// so that no wake-up is lost. finished is closed when the goroutine ends.
type detached struct {
	done     chan waitResult
	abandon  chan struct{}
	finished chan struct{}
}

// detach runs f, the commands of one wait, in a goroutine of their own,
// with a context that ctx's cancellation does not reach but that ends
// after bound (the wait's timeout plus the client's read timeout).
// go-redis ends a command only at a deadline (its read timeout or the
// context's), never when the context is cancelled: a network that swallows
// packets would hold a caller running them itself until the read timeout,
// and again for each of go-redis' retries. A caller that stops waiting for
// the goroutine leaves it to end by itself, at the latest by bound.
func detach(ctx context.Context, c doer, bound time.Duration, f func(dctx context.Context) waitResult) *detached {
	d := &detached{done: make(chan waitResult), abandon: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(d.finished)
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bound)
		defer cancel()
		r := f(dctx)
		select {
		case d.done <- r:
		case <-d.abandon:
			// The caller left: this token is someone else's.
			pushBack(ctx, c, r.p, bound)
		}
	}()
	return d
}

// drop abandons d (a token it pops goes back to its list) and waits at most
// wait for its goroutine to end; if Redis does not answer, it is left to
// end by itself (see detach).
func (d *detached) drop(wait time.Duration) {
	close(d.abandon)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-d.finished:
	case <-t.C:
	}
}

// pushBack returns p, a token popped for a wait that ended otherwise, to
// its list, within wait.
func pushBack(ctx context.Context, c doer, p pop, wait time.Duration) {
	if p.key == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
	defer cancel()
	c.Do(ctx, "RPUSH", p.key, p.val)
}

// defaultReadTimeout is go-redis' read timeout when its options set none.
const defaultReadTimeout = 5 * time.Second

// readTimeoutOf returns c's read timeout (go-redis' default if c has none
// or is not a client whose options say).
func readTimeoutOf(c doer) time.Duration {
	var rt time.Duration
	switch c := c.(type) {
	case *redis.Client:
		rt = c.Options().ReadTimeout
	case *redis.ClusterClient:
		rt = c.Options().ReadTimeout
	}
	if rt <= 0 {
		return defaultReadTimeout
	}
	return rt
}

// blpop runs BLPOP with a millisecond timeout: go-redis' BLPop rounds it to
// whole seconds, and Redis (6.0+) accepts a decimal.
func blpop(ctx context.Context, c doer, ks []string, timeout time.Duration) ([]string, error) {
	args := make([]any, 0, len(ks)+2)
	args = append(args, "BLPOP")
	for _, k := range ks {
		args = append(args, k)
	}
	// A timeout that rounds to 0 would block forever.
	timeout = max(timeout, time.Millisecond)
	args = append(args, strconv.FormatFloat(timeout.Seconds(), 'f', 3, 64))
	return c.Do(ctx, args...).StringSlice()
}

// blpopResult returns what BLPOP popped (zero if nothing).
func blpopResult(ks []string, res []string, err error) (pop, error) {
	switch {
	case err == nil && len(res) == 2:
		return pop{res[0], res[1]}, nil
	case err == nil || errors.Is(err, redis.Nil):
		return pop{}, nil
	}
	return pop{}, fmt.Errorf("wait on %v: %w", ks, err)
}

// maxBlock bounds one blocking command so that it ends before the client's
// read timeout (go-redis only extends that for its own blocking helpers).
func (b *Redis) maxBlock() time.Duration {
	limit := 2 * time.Second
	var rt time.Duration
	switch c := b.rdb.(type) {
	case *redis.Client:
		rt = c.Options().ReadTimeout
	case *redis.ClusterClient:
		rt = c.Options().ReadTimeout
	}
	if rt > 0 {
		limit = min(limit, rt*3/4)
	}
	return max(limit, 10*time.Millisecond)
}

// Counts are the sizes of one queue's sets.
type Counts struct {
	Pending, Deferred, Running int64
	// Paused: the queue is paused (see Pause); its pending tasks wait.
	Paused bool
}

// Count returns how many tasks of queue are pending, deferred and running.
func (b *Redis) Count(ctx context.Context, queue string) (Counts, error) {
	k := b.keys(queue)
	// One script: a consistent reading (a claim moves tasks between the
	// keys) that also works behind proxies without MULTI.
	c, err := b.run(ctx, countScript, []string{k.ready, k.pending, k.delayed, k.running, k.paused}).Int64Slice()
	if err != nil {
		return Counts{}, fmt.Errorf("count %s: %w", queue, err)
	}
	if len(c) != 4 {
		return Counts{}, fmt.Errorf("count %s: script returned %d values, want 4", queue, len(c))
	}
	return Counts{Pending: c[0], Deferred: c[1], Running: c[2], Paused: c[3] == 1}, nil
}

package broker

import (
	"context"
	"fmt"

	"github.com/gotasks/gotasks/task"
)

// Durable steps (task.Step): the results of a task's finished steps, kept
// across its attempts.
//
//	T:s:<id>   hash    step name → encoded result; written by the attempt that holds the
//	                   lease, kept until the task's result expires
//
// Each write refreshes the key's expiry to the longest retention
// (max(ResultTTL, FailedTTL)): a task waiting for a retry, or running for
// days, keeps its steps. Once the task has a final result, its worker sets
// the expiry to that result's (EndSteps); so RetryFailed of a FAILED task
// within its retention resumes it after its last step.

// saveStepScript stores the result of one step of a running task, if the
// caller holds the lease of that attempt. Safe to run twice: the same
// field gets the same value.
//
//	KEYS[1] running  KEYS[2] tasks  KEYS[3] steps of the task
//	ARGV[1] id  ARGV[2] attempt  ARGV[3] step name  ARGV[4] value  ARGV[5] ttl_ms
//
// Returns 1, or 0 when the lease was lost (nothing written).
var saveStepScript = newScript(`
if not holds(KEYS[1], KEYS[2], ARGV[1], ARGV[2]) then return 0 end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
return 1
`)

func (k keys) steps(id string) string { return k.tag + ":s:" + id }

// LoadSteps returns the results stored for the steps of task id of queue,
// by step name (none: an empty map).
func (b *Redis) LoadSteps(ctx context.Context, queue, id string) (map[string][]byte, error) {
	m, err := b.rdb.HGetAll(ctx, b.keys(queue).steps(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("read the steps of %s: %w", id, err)
	}
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = []byte(v)
	}
	return out, nil
}

// SaveStep stores value as the result of step name of r's attempt, if the
// caller holds its lease (ErrLeaseLost otherwise).
func (b *Redis) SaveStep(ctx context.Context, r *task.RawResult, name string, value []byte) error {
	k := b.keys(r.Queue)
	ttl := max(b.opts.ResultTTL, b.opts.FailedTTL, r.ResultTTL)
	n, err := b.run(ctx, saveStepScript, []string{k.running, k.tasks, k.steps(r.ID)}, r.ID, r.Attempts, name, value, ttl.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("store step %q of %s: %w", name, r.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("store step %q of %s attempt %d: %w", name, r.ID, r.Attempts, ErrLeaseLost)
	}
	return nil
}

// EndSteps gives the steps of r, which has its final result, the expiry
// of that result. A task waiting for a retry keeps them as they are.
func (b *Redis) EndSteps(ctx context.Context, r *task.RawResult) error {
	if !r.IsFinished() {
		return nil
	}
	if err := b.rdb.PExpire(ctx, b.keys(r.Queue).steps(r.ID), b.resultTTL(r)).Err(); err != nil {
		return fmt.Errorf("expire the steps of %s: %w", r.ID, err)
	}
	return nil
}

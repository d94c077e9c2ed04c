package integration

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/task"
)

// TestStepsSurviveASIGKILL: a task of four durable steps (each a side
// effect counted in a Redis of its own, as a payment provider would) runs
// in a worker process that is SIGKILLed after its second step. Another
// worker takes the task over once the lease expires: it resumes after the
// second step, and every side effect happened exactly once.
func TestStepsSurviveASIGKILL(t *testing.T) {
	side := startRedis(t)
	t.Setenv("GOTASKS_DEMO_SIDE_REDIS_URL", side.URL())
	e := newEnv(t)
	const lease = 2 * time.Second
	a := e.startWorker(workerConfig{ID: "w-steps-killed", Lease: lease, Ready: true})
	r, err := stepsTask.Enqueue(e.ctx, stepsArgs{Steps: 4, Ms: 1000})
	if err != nil {
		t.Fatal(err)
	}
	stepsKey := "{gotasks:" + task.DefaultQueue + "}:s:" + r.ID
	// Killed in the pause after step 2 (stored: the hash has it).
	e.eventually(30*time.Second, "two steps stored", func() (bool, string) {
		n, err := e.R.HLen(e.ctx, stepsKey).Result()
		return n == 2 && err == nil, strconv.FormatInt(n, 10)
	})
	a.Kill()
	e.startWorker(workerConfig{ID: "w-steps-next", Lease: lease, Ready: true})
	got := e.waitStatus(e.B, r.ID, 60*time.Second, task.StatusComplete, task.StatusFailed)
	if got.Status != task.StatusComplete || got.Attempts != 2 {
		t.Fatalf("after the kill: %s after %d attempts (%v); want COMPLETE after 2", got.Status, got.Attempts, got.Err)
	}
	sc := redis.NewClient(&redis.Options{Addr: side.Addr()})
	defer sc.Close()
	for i := 1; i <= 4; i++ {
		n, err := sc.Get(e.ctx, fmt.Sprintf("demo:side:%s:%d", r.ID, i)).Int()
		if err != nil || n != 1 {
			t.Errorf("side effect of step %d happened %d times (%v), want once", i, n, err)
		}
	}
	if ttl, err := e.R.PTTL(e.ctx, stepsKey).Result(); err != nil || ttl <= 23*time.Hour || ttl > 24*time.Hour {
		t.Errorf("the steps expire in %v (%v), want with the result (24h)", ttl, err)
	}
}

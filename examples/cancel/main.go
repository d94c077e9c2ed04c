// Command cancel is the README's cancel of a running task: it enqueues
// the weekly digest (a task of 10,000 emails) on the Redis that
// $GOTASKS_REDIS_URL names, waits until a worker (examples/workercmd or
// examples/embedded) runs it, and cancels it: the worker cancels the
// task's context, and the task ends CANCELLED.
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/examples/emails"
	"github.com/gotasks/gotasks/task"
)

func main() {
	ctx := context.Background()
	b, err := broker.OpenFromEnv(broker.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	task.Configure(map[string]task.Backend{"default": b})

	res, err := emails.Digest.Enqueue(ctx, 10_000)
	if err != nil {
		log.Fatal(err)
	}
	waitRunning(ctx, res)

	// The worker that runs it, in whatever process, is told at once: it
	// cancels the task's context (context.Cause: task.ErrCancelled).
	if err := res.Cancel(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("cancel asked:", res.Status, res.CancelRequested)
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := res.Wait(wait, time.Second); err != nil {
		log.Fatal(err)
	}
	_, err = res.Value()
	fmt.Println("ended:", res.Status, err)
}

// waitRunning waits until a worker has started res, for up to 30s.
func waitRunning(ctx context.Context, res *task.Result[int]) {
	for deadline := time.Now().Add(30 * time.Second); res.Status != task.StatusRunning; {
		if res.IsFinished() || time.Now().After(deadline) {
			log.Fatalf("the digest did not start: %s", res.Status)
		}
		time.Sleep(20 * time.Millisecond)
		if err := res.Refresh(ctx); err != nil {
			log.Fatal(err)
		}
	}
}

// Command pause is the README's maintenance window: it pauses the emails
// queue on the Redis that $GOTASKS_REDIS_URL names, enqueues a task (it
// is stored and waits), resumes the queue and waits for a worker
// (examples/workercmd or examples/embedded) to run the task.
package main

import (
	"context"
	"errors"
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

	// From here on no worker, in any process, claims a task of the queue;
	// the tasks running finish. The state lives in Redis until Resume.
	if _, _, err := b.Pause(ctx, "emails"); err != nil {
		log.Fatal(err)
	}
	res, err := emails.Send.Enqueue(ctx, emails.Email{To: "ann@example.com"}) // stored; it waits
	if err != nil {
		log.Fatal(err)
	}
	// ... the maintenance the queue waits for (here: a second) ...
	during, stop := context.WithTimeout(ctx, time.Second)
	err = res.Wait(during, 100*time.Millisecond)
	stop()
	if !errors.Is(err, context.DeadlineExceeded) {
		log.Fatalf("the task of a paused queue finished: %v", err)
	}
	fmt.Println("paused:", res.Status)

	if _, err := b.Resume(ctx, "emails"); err != nil { // idle workers are woken at once
		log.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := res.Wait(wait, time.Second); err != nil {
		log.Fatal(err)
	}
	v, err := res.Value()
	fmt.Println("resumed:", res.Status, v, err)
}

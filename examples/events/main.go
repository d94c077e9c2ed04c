// Command events is the README's watcher: it subscribes to the task events
// of the emails queue on the Redis that $GOTASKS_REDIS_URL names, enqueues
// a task, and prints the events of its life as a worker (examples/workercmd
// or examples/embedded) runs it.
package main

import (
	"context"
	"fmt"
	"log"

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

	// Every process that changes the queue's tasks publishes the changes;
	// name kinds to get only those (broker.EventCompleted, ...).
	sub, err := b.Subscribe(ctx, []string{"emails"})
	if err != nil {
		log.Fatal(err) // a Redis (or proxy) without pub/sub, a user not allowed the channel
	}
	defer sub.Close()

	res, err := emails.Send.Enqueue(ctx, emails.Email{To: "ann@example.com"})
	if err != nil {
		log.Fatal(err)
	}
	for ev := range sub.Events() {
		if ev.Kind == broker.EventMissed {
			continue // the connection was cut and is back: events were lost meanwhile
		}
		if ev.ID != res.ID {
			continue // another task of the queue
		}
		fmt.Println(ev.Kind, ev.Task, ev.Status, "attempt", ev.Attempt)
		if ev.Status.IsFinished() {
			break
		}
	}
}

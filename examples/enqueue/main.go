// Command enqueue is the README's producer: it enqueues to the Redis that
// $GOTASKS_REDIS_URL names (default redis://127.0.0.1:6379/0) and waits for
// a worker (examples/workercmd or examples/embedded) to run the task.
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/examples/emails" // your package of tasks
	"github.com/gotasks/gotasks/task"
)

func main() {
	ctx := context.Background()
	// Redis from $GOTASKS_REDIS_URL (default redis://127.0.0.1:6379/0), and the other GOTASKS_* variables
	b, err := broker.OpenFromEnv(broker.Options{}) // fields set here win over the variables
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	task.Configure(map[string]task.Backend{"default": b})

	res, err := emails.Send.Enqueue(ctx, emails.Email{To: "ann@example.com"}) // returns at once, status NEW
	if err != nil {
		log.Fatal(err)
	}
	later, err := emails.Send.Using(task.RunAfter(time.Hour)).Enqueue(ctx, emails.Email{To: "bob@example.com"}) // deferred
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("enqueued", res.ID, "and", later.ID)

	r, err := emails.Send.GetResult(ctx, res.ID) // from any process, by id
	if err != nil {
		log.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := r.Wait(wait, 100*time.Millisecond); err != nil { // refreshes r until it is finished
		log.Fatal(err) // the deadline came first: r is still NEW or RUNNING (is a worker running?)
	}
	v, err := r.Value() // the return value, or the task's *task.Error if it FAILED
	fmt.Println(r.Status, v, err)
}

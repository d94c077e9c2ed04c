// Command embedded runs a worker pool inside its own program with package
// worker, until SIGINT or SIGTERM.
package main

import (
	"context"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gotasks/gotasks/broker"
	_ "github.com/gotasks/gotasks/examples/emails" // your package of tasks
	"github.com/gotasks/gotasks/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := broker.OpenFromEnv(broker.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	w := worker.New(b, worker.Options{
		Queues:          []string{"emails"}, // default: every queue
		Concurrency:     8,                  // default: the number of CPUs
		ShutdownTimeout: 20 * time.Second,   // default 10s
	})
	// Run returns once ctx is done and the running tasks have finished (or,
	// after ShutdownTimeout, have been handed back to their queue).
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

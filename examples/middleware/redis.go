package main

import (
	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// On Redis, a producer gives the enqueue side to its backend and a worker
// the run side to its pool. (task.UseEnqueue and task.UseRun add both for
// every backend and worker of the process.)

func openProducer(url string) (*broker.Redis, error) {
	return broker.Open(url, broker.Options{
		EnqueueMiddleware: []task.EnqueueMiddleware{StampRequestID},
	})
}

func newWorker(b *broker.Redis) *worker.Worker {
	return worker.New(b, worker.Options{
		RunMiddleware: []task.RunMiddleware{RestoreRequestID},
	})
}

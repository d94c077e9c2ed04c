package main

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/gotasks/gotasks/task"
)

// The example runs: on the ImmediateBackend the task sees the request id
// of the code that enqueued it, and its result carries it as metadata.
func Example() {
	main()
	// Output: hello ann from request req-42 <nil> map[request_id:req-42 team:growth]
}

// The same middleware on Redis: the id goes from the producer's context,
// through the task's metadata in Redis, to the worker's task.
func TestTheRequestIDTravelsThroughRedisToTheWorkersTask(t *testing.T) {
	m := miniredis.RunT(t)
	b, err := openProducer("redis://" + m.Addr() + "/0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	task.Configure(map[string]task.Backend{"default": b})
	t.Cleanup(func() { task.Configure(nil) })

	res, err := greet.Enqueue(WithRequestID(context.Background(), "req-7"), "bob")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- newWorker(b).Run(ctx) }()
	wait, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	waitErr := res.Wait(wait, 10*time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("worker: %v", err)
	}
	if waitErr != nil {
		t.Fatal(waitErr)
	}
	if v, err := res.Value(); v != "hello bob from request req-7" || err != nil || res.Metadata["request_id"] != "req-7" {
		t.Errorf("got %q, %v, metadata %v", v, err, res.Metadata)
	}
}

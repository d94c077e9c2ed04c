package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
)

// BenchmarkHotPath measures the worker hot path, claim → run → complete,
// per task, against a private redis-server (not miniredis: its Lua runs
// in-process and its allocations would swamp gotasks' own):
//
//	cd bench && go test -run '^$' -bench HotPath -benchmem
//
// worker/* goes through worker.Run (everything a worker process does per
// task); broker/* calls the broker directly, one task per claim, to split
// the broker's share from the worker's.
func BenchmarkHotPath(b *testing.B) {
	url := sharedRedisURL(b)
	for _, c := range []int{1, 16} {
		b.Run(fmt.Sprintf("worker/concurrency=%d", c), func(b *testing.B) { benchHotPath(b, url, c) })
	}
	b.Run("broker/claim-execute-finish", func(b *testing.B) { benchBrokerPath(b, url) })
}

func benchBrokerPath(b *testing.B, url string) {
	ctx := context.Background()
	br := filledBroker(b, url)
	queues := []string{noop.QueueName()}
	b.ReportAllocs()
	b.ResetTimer()
	b.StartTimer()
	for range b.N {
		got, err := br.Claim(ctx, queues, 1, 30*time.Second, "bench")
		if err != nil || len(got) != 1 || got[0].Bad != nil {
			b.Fatalf("claim: %d tasks, %v", len(got), err)
		}
		r := got[0].Result
		task.Execute(ctx, r)
		if err := br.Finish(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}

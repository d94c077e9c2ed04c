package main

import (
	"context"
	"testing"
	"time"
)

// BenchmarkEnqueue measures the producer side per task against a private
// redis-server: one Enqueue call per task from one goroutine and from 16
// (gotasks and asynq), and gotasks' EnqueueMany in batches of 100. Besides ns/op and
// allocations it reports the CPU time per task of this process
// (client-µs/op: encoding, go-redis, syscalls, the Go scheduler) and of
// Redis (redis-µs/op, INFO cpu), which are steadier than ns/op on a busy
// machine. With -cpuprofile it shows where the client's time goes:
//
//	cd bench && go test -run '^$' -bench Enqueue -benchmem -cpuprofile cpu.out
//
// ping/one is the floor of any enqueue that waits for Redis: a go-redis
// PING from one goroutine, one round trip each.
func BenchmarkEnqueue(b *testing.B) {
	url := sharedRedisURL(b)
	b.Run("ping/one", func(b *testing.B) {
		a, err := newAdmin(url)
		if err != nil {
			b.Fatal(err)
		}
		defer a.Close()
		ctx := context.Background()
		measureCPU(b, url, func() {
			for range b.N {
				if err := a.rdb.Ping(ctx).Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	for _, open := range []struct {
		name string
		fn   opener
	}{{nameGotasks, openGotasks}, {nameAsynq, openAsynq}} {
		b.Run(open.name+"/one", func(b *testing.B) {
			s := openFlushed(b, url, open.fn)
			ctx := context.Background()
			measureCPU(b, url, func() {
				for i := range b.N {
					if err := s.Enqueue(ctx, newPayload(int64(i))); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
	for _, open := range []struct {
		name string
		fn   opener
	}{{nameGotasks, openGotasks}, {nameAsynq, openAsynq}} {
		b.Run(open.name+"/16", func(b *testing.B) {
			s := openFlushed(b, url, open.fn)
			ctx := context.Background()
			measureCPU(b, url, func() {
				err := parallel(ctx, b.N, 16, func(ctx context.Context, i int) error {
					return s.Enqueue(ctx, newPayload(int64(i)))
				})
				if err != nil {
					b.Fatal(err)
				}
			})
		})
	}
	b.Run(nameGotasks+"/many100", func(b *testing.B) {
		s := openFlushed(b, url, openGotasks)
		ctx := context.Background()
		ps := make([]Payload, 100)
		measureCPU(b, url, func() {
			for i := 0; i < b.N; i += len(ps) {
				ps := ps[:min(len(ps), b.N-i)]
				for j := range ps {
					ps[j] = newPayload(int64(i + j))
				}
				if err := s.EnqueueBatch(ctx, ps); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// measureCPU times fn, which does b.N operations, and reports the CPU time
// of this process and of Redis per operation.
func measureCPU(b *testing.B, url string, fn func()) {
	ctx := context.Background()
	a, err := newAdmin(url)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	r0, err := a.cpuSeconds(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	c0 := processCPU()
	fn()
	c1 := processCPU()
	b.StopTimer()
	r1, err := a.cpuSeconds(ctx)
	if err != nil {
		b.Fatal(err)
	}
	n := float64(b.N)
	b.ReportMetric(float64((c1-c0)/time.Microsecond)/n, "client-µs/op")
	b.ReportMetric((r1-r0)*1e6/n, "redis-µs/op")
}

// openFlushed empties Redis and opens a system on it, closed when b ends.
func openFlushed(b *testing.B, url string, open opener) system {
	ctx := context.Background()
	flushRedis(b, url)
	s, err := open(url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	// The first enqueue registers the queue: not what is measured.
	if err := s.Enqueue(ctx, newPayload(-1)); err != nil {
		b.Fatal(err)
	}
	return s
}

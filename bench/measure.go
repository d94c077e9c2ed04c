package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The measurements, each on a system opened on a flushed Redis. Rates are
// tasks per second of wall time.

// parallel runs fn(ctx, j) for j in [0, jobs) on the given number of
// goroutines and returns the first error (which cancels the rest).
func parallel(ctx context.Context, jobs, goroutines int, fn func(ctx context.Context, j int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(goroutines, jobs) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				j := int(next.Add(1) - 1)
				if j >= jobs {
					return
				}
				if err := fn(ctx, j); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// enqueueRate enqueues n tasks, one per call, from the given number of
// goroutines.
func enqueueRate(ctx context.Context, s system, n, goroutines int) (float64, error) {
	start := time.Now()
	err := parallel(ctx, n, goroutines, func(ctx context.Context, i int) error {
		return s.Enqueue(ctx, newPayload(int64(i)))
	})
	if err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// enqueueBatchRate enqueues n tasks in calls of batch tasks from one
// goroutine. It returns errNoBatch for systems without batch enqueue.
func enqueueBatchRate(ctx context.Context, s system, n, batch int) (float64, error) {
	ps := make([]Payload, 0, batch)
	start := time.Now()
	for at := 0; at < n; at += batch {
		ps = ps[:0]
		for i := at; i < min(at+batch, n); i++ {
			ps = append(ps, newPayload(int64(i)))
		}
		if err := s.EnqueueBatch(ctx, ps); err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// waitDrained polls until no task is pending or running. Polling every 2 ms
// costs Redis ~500 cheap commands/s, and bounds the error of a drain
// measurement to a few ms.
func waitDrained(ctx context.Context, s system, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		n, err := s.Unfinished(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %d tasks still unfinished after %v: %w", s.Name(), n, timeout, ctx.Err())
		case <-t.C:
		}
	}
}

// drainTimeout allows for a drain as slow as 200 tasks/s.
func drainTimeout(n int) time.Duration {
	return max(time.Minute, time.Duration(n/200)*time.Second)
}

// drainResult is one in-process drain: the rate, and the CPU time Redis
// and this process spent per task. CPU time per task is the steadier
// number on a busy machine, and says which side is the bottleneck.
type drainResult struct {
	rate              float64 // tasks/s
	redisCPU, procCPU float64 // µs per task
}

// drainRate fills n tasks, then times one in-process worker at concurrency
// c from its start until every task is complete.
func drainRate(ctx context.Context, a *admin, s system, n, c int) (drainResult, error) {
	if err := s.Fill(ctx, n); err != nil {
		return drainResult{}, err
	}
	return drainPending(ctx, a, s, n, c)
}

// drainPending is drainRate once the n tasks are pending.
func drainPending(ctx context.Context, a *admin, s system, n, c int) (drainResult, error) {
	redis0, err := a.cpuSeconds(ctx)
	if err != nil {
		return drainResult{}, err
	}
	proc0 := processCPU()
	ran0 := ran.Load()
	start := time.Now()
	stop, err := s.StartWorker(ctx, c)
	if err != nil {
		return drainResult{}, err
	}
	err = waitDrained(ctx, s, drainTimeout(n))
	elapsed := time.Since(start)
	proc := processCPU() - proc0
	if serr := stop(); err == nil {
		err = serr
	}
	if err != nil {
		return drainResult{}, err
	}
	if got := ran.Load() - ran0; got < int64(n) {
		return drainResult{}, fmt.Errorf("%s: the queue is empty but only %d of %d tasks ran", s.Name(), got, n)
	}
	redis1, err := a.cpuSeconds(ctx)
	if err != nil {
		return drainResult{}, err
	}
	perTask := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 / float64(n) }
	return drainResult{
		rate:     float64(n) / elapsed.Seconds(),
		redisCPU: perTask(time.Duration((redis1 - redis0) * float64(time.Second))),
		procCPU:  perTask(proc),
	}, nil
}

// idleLatency enqueues samples tasks one at a time on an idle worker (of
// concurrency c) and returns the times from the start of Enqueue to the
// task's first line, sorted. Before each task it waits for the previous one
// to complete and then a random pause in [0, maxGap), so that enqueues land
// at random points of a polling worker's cycle, as real traffic would; the
// pause is the same for both systems.
func idleLatency(ctx context.Context, s system, samples, c int, maxGap time.Duration) ([]time.Duration, error) {
	ch := make(chan startEvent, 16)
	startHook.Store(&ch)
	defer startHook.Store(nil)
	stop, err := s.StartWorker(ctx, c)
	if err != nil {
		return nil, err
	}
	defer stop()
	out := make([]time.Duration, 0, samples)
	for i := range samples {
		if maxGap > 0 {
			select {
			case <-time.After(rand.N(maxGap)):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		seq := int64(1_000_000_000 + i)
		t0 := time.Now()
		if err := s.Enqueue(ctx, newPayload(seq)); err != nil {
			return nil, err
		}
		timeout := time.After(30 * time.Second)
	wait:
		for {
			select {
			case ev := <-ch:
				if ev.seq == seq {
					out = append(out, ev.at.Sub(t0))
					break wait
				}
			case <-timeout:
				return nil, fmt.Errorf("%s: task %d did not start within 30s", s.Name(), i)
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		// Idle again: the task is complete and nothing else is running.
		if err := waitDrained(ctx, s, 30*time.Second); err != nil {
			return nil, err
		}
	}
	if err := stop(); err != nil {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// memoryPerTask is the growth of Redis' used_memory per pending task. One
// task is enqueued first, so that the queue's own keys (and the scripts)
// exist before. Both readings are taken with the system's connections
// closed, so that their buffers (16 connections for asynq's fill) do not
// count as task memory.
func memoryPerTask(ctx context.Context, a *admin, open opener, url string, n int) (float64, error) {
	before, err := closedMemory(ctx, a, open, url, func(s system) error { return s.Enqueue(ctx, newPayload(-1)) })
	if err != nil {
		return 0, err
	}
	after, err := closedMemory(ctx, a, open, url, func(s system) error { return s.Fill(ctx, n) })
	if err != nil {
		return 0, err
	}
	return float64(after-before) / float64(n), nil
}

// closedMemory opens the system, runs fn, closes it, waits until its
// connections are gone and returns used_memory.
func closedMemory(ctx context.Context, a *admin, open opener, url string, fn func(system) error) (int64, error) {
	baseline, err := a.clients(ctx)
	if err != nil {
		return 0, err
	}
	s, err := open(url)
	if err != nil {
		return 0, err
	}
	err = fn(s)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	if err := a.waitClients(ctx, baseline); err != nil {
		return 0, err
	}
	return a.usedMemory(ctx)
}

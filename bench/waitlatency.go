package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// waitPoll is Result.Wait's default interval, the polling the events
// replace.
const waitPoll = 50 * time.Millisecond

// waitRows measures how soon Result.Wait returns after its task finished
// (gotasks only): with events (Wait is woken by the finish event; its
// interval is a minute, so a lost event would show as a minute), and with
// events off in the producer (Wait polls every 50 ms, its default).
func (r *runner) waitRows(ctx context.Context) error {
	c := r.cfg
	if c.Events == "off" {
		for _, id := range []string{"wait_p50", "wait_p99"} {
			r.notes[id] = "skipped (--events off)"
		}
	}
	for _, v := range []struct {
		id       string
		events   bool
		interval time.Duration
	}{{"wait", true, time.Minute}, {"wait_poll", false, waitPoll}} {
		if v.events && c.Events == "off" {
			continue
		}
		if err := r.admin.flush(ctx); err != nil {
			return err
		}
		lat, err := waitLatency(ctx, r.url, c.LatencySamples, c.LatencyConcurrency, v.events, v.interval)
		if err != nil {
			return fmt.Errorf("gotasks: %s: %w", v.id, err)
		}
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		r.res.set(v.id+"_p50", nameGotasks, ms(percentile(lat, 50)))
		r.res.set(v.id+"_p99", nameGotasks, ms(percentile(lat, 99)))
		fmt.Fprintf(r.log, "%-8s %-20s p50=%.3fms p90=%.3fms p99=%.3fms slowest=%v\n", nameGotasks, v.id,
			ms(percentile(lat, 50)), ms(percentile(lat, 90)), ms(percentile(lat, 99)), roundAll(lat[max(0, len(lat)-3):]))
	}
	return nil
}

// waitLatency runs samples tasks one at a time on an idle worker (of
// concurrency c, in this process, on a broker of its own) and returns,
// sorted, the time from each task's finish to the return of the
// producer's Result.Wait: from FinishedAt (Redis' clock when the finish
// script ran; Redis runs on this machine, so it is this clock) to
// time.Now() after Wait. A random pause below 20 ms comes before each
// enqueue, so that finishes land at random points of a polling Wait's
// interval.
func waitLatency(ctx context.Context, url string, samples, c int, events bool, interval time.Duration) ([]time.Duration, error) {
	opts := brokerOptions()
	if !events {
		opts.Events = broker.EventsOff
	}
	b, err := broker.Open(url, opts)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	task.Configure(map[string]task.Backend{task.DefaultBackendName: b})
	defer task.Configure(nil)
	stop, err := (&gotasksSys{url: url}).startWorker(ctx, worker.Options{Concurrency: c})
	if err != nil {
		return nil, err
	}
	defer stop()
	out := make([]time.Duration, 0, samples)
	for i := range samples {
		select {
		case <-time.After(rand.N(20 * time.Millisecond)):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		res, err := noop.Enqueue(ctx, newPayload(int64(i)))
		if err != nil {
			return nil, err
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = res.Wait(wctx, interval)
		done := time.Now()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("task %d: %w", i, err)
		}
		if res.Status != task.StatusComplete || res.FinishedAt.IsZero() {
			return nil, fmt.Errorf("task %d: %s, finished at %v", i, res.Status, res.FinishedAt)
		}
		out = append(out, max(done.Sub(res.FinishedAt), 0))
	}
	if err := stop(); err != nil {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}

package metrics_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/goleak"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/metrics"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var (
	okTask = task.Define("metricstest.ok", func(ctx context.Context, n int) (int, error) { return n, nil })
	// flakyTask fails its first attempt and succeeds on its retry.
	flakyTask = task.Define("metricstest.flaky", func(ctx context.Context, _ int) (int, error) {
		if info, _ := task.InfoFrom(ctx); info.Attempt == 1 {
			return 0, errors.New("first attempt fails")
		}
		return 2, nil
	}, task.MaxAttempts(2), task.Backoff(time.Millisecond, time.Millisecond))
	badTask = task.Define("metricstest.bad", func(ctx context.Context, _ int) (int, error) {
		return 0, errors.New("always fails")
	})
	// gate blocks until released, to observe a running task.
	gate    = make(chan struct{})
	gateRun atomic.Bool
	gated   = task.Define("metricstest.gated", func(ctx context.Context, _ int) (int, error) {
		gateRun.Store(true)
		select {
		case <-gate:
		case <-ctx.Done():
		}
		return 0, nil
	})
)

// setup configures a broker on a fresh miniredis as the default backend.
// Tests using it must not be parallel: backends and hooks are process-wide.
func setup(t *testing.T) (*miniredis.Miniredis, *broker.Redis) {
	t.Helper()
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: m.Addr(), ContextTimeoutEnabled: true})
	b := broker.New(c, broker.Options{})
	task.Configure(map[string]task.Backend{"default": b})
	t.Cleanup(func() {
		task.Configure(nil)
		_ = c.Close()
	})
	return m, b
}

func newCollector(t *testing.T, b *broker.Redis, o metrics.Options) *metrics.Collector {
	t.Helper()
	o.Logger = quiet
	c := metrics.New(b, o)
	t.Cleanup(c.Close)
	return c
}

// sample returns the value of the metric name with exactly these labels
// (a histogram's sample count), and whether it exists.
func sample(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			return value(m), true
		}
	}
	return 0, false
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func want(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string, v float64) {
	t.Helper()
	got, ok := sample(t, reg, name, labels)
	if !ok || got != v {
		t.Errorf("%s%v = %v (present: %v), want %v", name, labels, got, ok, v)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func labels(name string) map[string]string {
	return map[string]string{"task": name, "queue": task.DefaultQueue}
}

// runBatch runs a worker until the queue has no ready task.
func runBatch(t *testing.T, b *broker.Redis, c *metrics.Collector) {
	t.Helper()
	w := worker.New(b, worker.Options{
		Queues: []string{task.DefaultQueue}, Concurrency: 1, Batch: true, WorkerID: "w1",
		Logger: quiet, OnRetry: c.ObserveRetry,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Run(ctx); err != nil || ctx.Err() != nil {
		t.Fatalf("Run: %v (ctx: %v)", err, ctx.Err())
	}
}

func TestTaskCounters(t *testing.T) {
	_, b := setup(t)
	c := newCollector(t, b, metrics.Options{})
	reg := c.Registry()
	ctx := context.Background()
	for i := range 3 {
		if _, err := okTask.Enqueue(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := flakyTask.Enqueue(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := badTask.Enqueue(ctx, 0); err != nil {
		t.Fatal(err)
	}
	want(t, reg, "gotasks_tasks_enqueued_total", labels("metricstest.ok"), 3)
	want(t, reg, "gotasks_tasks_enqueued_total", labels("metricstest.flaky"), 1)

	// The retry is due a millisecond after the failure; a batch run may
	// end before that, so run until it completed.
	waitFor(t, "the retry to complete", func() bool {
		runBatch(t, b, c)
		v, _ := sample(t, reg, "gotasks_tasks_completed_total", labels("metricstest.flaky"))
		return v == 1
	})

	want(t, reg, "gotasks_tasks_started_total", labels("metricstest.ok"), 3)
	want(t, reg, "gotasks_tasks_completed_total", labels("metricstest.ok"), 3)
	want(t, reg, "gotasks_task_duration_seconds", labels("metricstest.ok"), 3)

	want(t, reg, "gotasks_tasks_started_total", labels("metricstest.flaky"), 2)
	want(t, reg, "gotasks_tasks_retried_total", labels("metricstest.flaky"), 1)
	want(t, reg, "gotasks_task_duration_seconds", labels("metricstest.flaky"), 2) // both attempts
	if _, ok := sample(t, reg, "gotasks_tasks_failed_total", labels("metricstest.flaky")); ok {
		t.Error("a task that succeeded on its retry is counted as failed")
	}

	want(t, reg, "gotasks_tasks_failed_total", labels("metricstest.bad"), 1)
	want(t, reg, "gotasks_task_duration_seconds", labels("metricstest.bad"), 1)
	if _, ok := sample(t, reg, "gotasks_tasks_retried_total", labels("metricstest.bad")); ok {
		t.Error("a task without retries is counted as retried")
	}

	// Closed, the collector no longer counts.
	c.Close()
	if _, err := okTask.Enqueue(ctx, 9); err != nil {
		t.Fatal(err)
	}
	want(t, reg, "gotasks_tasks_enqueued_total", labels("metricstest.ok"), 3)
}

func TestQueueDepthAndAge(t *testing.T) {
	_, b := setup(t)
	c := newCollector(t, b, metrics.Options{})
	reg := c.Registry()
	ctx := context.Background()
	before := time.Now()
	for i := range 2 {
		if _, err := okTask.Using(task.Queue("q1")).Enqueue(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := okTask.Using(task.Queue("q1"), task.RunAfter(time.Hour)).Enqueue(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := okTask.Using(task.Queue("q2"), task.RunAfter(time.Hour)).Enqueue(ctx, 0); err != nil {
		t.Fatal(err)
	}

	q1 := func(state string) map[string]string { return map[string]string{"queue": "q1", "state": state} }
	want(t, reg, "gotasks_redis_up", nil, 1)
	want(t, reg, "gotasks_queue_tasks", q1("pending"), 2)
	want(t, reg, "gotasks_queue_tasks", q1("deferred"), 1)
	want(t, reg, "gotasks_queue_tasks", q1("running"), 0)
	want(t, reg, "gotasks_queue_tasks", q1("failed"), 0)
	want(t, reg, "gotasks_queue_tasks", map[string]string{"queue": "q2", "state": "deferred"}, 1)
	// A queue with nothing pending has no waiting task: age 0.
	want(t, reg, "gotasks_queue_oldest_pending_age_seconds", map[string]string{"queue": "q2"}, 0)
	want(t, reg, "gotasks_queue_paused", map[string]string{"queue": "q1"}, 0)
	if _, _, err := b.Pause(ctx, "q1"); err != nil {
		t.Fatal(err)
	}
	want(t, reg, "gotasks_queue_paused", map[string]string{"queue": "q1"}, 1)
	want(t, reg, "gotasks_queue_paused", map[string]string{"queue": "q2"}, 0)
	if _, err := b.Resume(ctx, "q1"); err != nil {
		t.Fatal(err)
	}
	want(t, reg, "gotasks_queue_paused", map[string]string{"queue": "q1"}, 0)

	// The age grows with the waiting task; it is read from Redis at each
	// scrape and bounded by the time since the test enqueued it.
	var age float64
	waitFor(t, "the age of q1 to grow", func() bool {
		age, _ = sample(t, reg, "gotasks_queue_oldest_pending_age_seconds", map[string]string{"queue": "q1"})
		return age >= 0.05
	})
	if limit := time.Since(before).Seconds(); age > limit {
		t.Errorf("age of q1 = %vs, more than the %vs since it was enqueued", age, limit)
	}

	// Options.Queues limits the queues reported.
	only := newCollector(t, b, metrics.Options{Queues: []string{"q2"}})
	if _, ok := sample(t, only.Registry(), "gotasks_queue_tasks", q1("pending")); ok {
		t.Error("a queue outside Options.Queues is reported")
	}
	want(t, only.Registry(), "gotasks_queue_tasks", map[string]string{"queue": "q2", "state": "deferred"}, 1)
}

func TestInFlight(t *testing.T) {
	// Fresh for each run of the test (-count).
	gate = make(chan struct{})
	gateRun.Store(false)
	_, b := setup(t)
	c := newCollector(t, b, metrics.Options{})
	w := worker.New(b, worker.Options{Queues: []string{task.DefaultQueue}, Concurrency: 2, WorkerID: "w1", Logger: quiet})
	if err := c.TrackWorker(w.ID(), 2, w.InFlight); err != nil {
		t.Fatal(err)
	}
	if err := c.TrackWorker(w.ID(), 2, w.InFlight); err == nil {
		t.Error("a worker id tracked twice is not an error")
	}
	if _, err := gated.Enqueue(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	worker1 := map[string]string{"worker": "w1"}
	waitFor(t, "the task to run", gateRun.Load)
	want(t, c.Registry(), "gotasks_worker_inflight_tasks", worker1, 1)
	want(t, c.Registry(), "gotasks_worker_concurrency", worker1, 2)
	close(gate)
	waitFor(t, "the task to finish", func() bool {
		v, _ := sample(t, c.Registry(), "gotasks_worker_inflight_tasks", worker1)
		return v == 0
	})
}

// A Redis that accepts connections but never answers must not hold up a
// scrape beyond ScrapeTimeout, and the counters are still served.
func TestScrapeWithRedisHanging(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, conn) // held open, never answered
		}
	}()
	defer func() {
		_ = ln.Close()
		<-accepted
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	client := redis.NewClient(&redis.Options{
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		Addr:                     ln.Addr().String(), ContextTimeoutEnabled: true, Protocol: 2,
	})
	defer func() { _ = client.Close() }()
	c := newCollector(t, broker.New(client, broker.Options{}), metrics.Options{ScrapeTimeout: 200 * time.Millisecond})
	start := time.Now()
	rec := httptest.NewRecorder()
	c.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, metrics.Path, nil))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("scrape took %v with a ScrapeTimeout of 200ms", d)
	}
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(body, "gotasks_redis_up 0") {
		t.Errorf("scrape: %d\n%s", rec.Code, body)
	}
	if strings.Contains(body, "gotasks_queue_tasks{") {
		t.Errorf("queue metrics served without Redis:\n%s", body)
	}
}

// With Redis gone (go-redis retries the refused connections) the scrape
// still answers within ScrapeTimeout, with the counters but no queue
// metrics.
func TestScrapeWithRedisDown(t *testing.T) {
	m, b := setup(t)
	c := newCollector(t, b, metrics.Options{ScrapeTimeout: 300 * time.Millisecond})
	if _, err := okTask.Enqueue(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	m.Close()
	start := time.Now()
	want(t, c.Registry(), "gotasks_redis_up", nil, 0)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("scrape took %v with a ScrapeTimeout of 300ms", d)
	}
	want(t, c.Registry(), "gotasks_tasks_enqueued_total", labels("metricstest.ok"), 1)
	if _, ok := sample(t, c.Registry(), "gotasks_queue_tasks", map[string]string{"queue": "default", "state": "pending"}); ok {
		t.Error("queue metrics served without Redis")
	}
}

func TestServe(t *testing.T) {
	_, b := setup(t)
	c := newCollector(t, b, metrics.Options{})
	srv, err := c.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + srv.Addr() + metrics.Path)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "gotasks_redis_up 1") {
		t.Errorf("GET %s: %d\n%s", metrics.Path, resp.StatusCode, body)
	}
	// The port is taken while it serves.
	if _, err := c.Serve(srv.Addr()); err == nil {
		t.Error("Serve on a taken port succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// Package metrics exposes Prometheus metrics of gotasks: tasks enqueued,
// started, completed, failed and retried, how long attempts take, queue
// depths and ages read from Redis at scrape time, and a worker's in-flight
// tasks.
//
// The task counters come from task hooks, which are process-wide: they
// count what this process enqueued or ran, whichever worker or producer in
// it did so. Sum them across processes in PromQL, e.g.
//
//	sum by (task) (rate(gotasks_tasks_failed_total[5m]))
//
// The queue metrics describe Redis, so every process that exports them
// reports the same values: aggregate them with max, not sum. The age of a
// queue is that of the pending task that has waited longest at any
// priority (broker.QueueStat.OldestAge); a retried task counts from when it
// was first due, not from its retry.
package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/internal/httpserve"
	"github.com/gotasks/gotasks/task"
)

// DefaultScrapeTimeout bounds the Redis reads of one scrape: well under
// Prometheus' default scrape timeout of 10s, so that a slow Redis yields
// gotasks_redis_up 0 and the other metrics rather than a failed scrape.
const DefaultScrapeTimeout = 3 * time.Second

// DurationBuckets are the buckets of gotasks_task_duration_seconds, from
// 5ms to 10 minutes: background tasks range from near-instant to long
// batch jobs.
var DurationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// Options configures a Collector. The zero value reports every known queue.
type Options struct {
	// Queues whose depth and age are reported; empty or containing "*":
	// every queue known to the broker.
	Queues []string
	// ScrapeTimeout bounds the Redis reads of one scrape. Default
	// DefaultScrapeTimeout.
	ScrapeTimeout time.Duration
	// Logger reports scrapes that could not read Redis; default
	// slog.Default().
	Logger *slog.Logger
}

// Collector holds the gotasks metrics in a registry of its own (not
// Prometheus' global one), so that several collectors, in tests or in one
// process, do not collide. Create it with New and Close it to remove its
// task hooks.
type Collector struct {
	b    *broker.Redis
	opts Options
	log  *slog.Logger
	reg  *prometheus.Registry

	enqueued, started, completed, failed, retried *prometheus.CounterVec
	duration                                      *prometheus.HistogramVec

	depthDesc, ageDesc, upDesc, pausedDesc *prometheus.Desc

	closeOnce sync.Once
	removers  []func()
}

var taskLabels = []string{"task", "queue"}

// New returns a collector of b's queues and registers the task hooks that
// count tasks (until Close).
func New(b *broker.Redis, opts Options) *Collector {
	if opts.ScrapeTimeout <= 0 {
		opts.ScrapeTimeout = DefaultScrapeTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.Queues = slices.Clone(opts.Queues)
	if slices.Contains(opts.Queues, "*") {
		opts.Queues = nil
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, taskLabels)
	}
	c := &Collector{
		b: b, opts: opts, log: opts.Logger, reg: prometheus.NewRegistry(),
		enqueued:  counter("gotasks_tasks_enqueued_total", "Tasks enqueued by this process."),
		started:   counter("gotasks_tasks_started_total", "Task attempts started by this process."),
		completed: counter("gotasks_tasks_completed_total", "Tasks this process ran to COMPLETE."),
		failed:    counter("gotasks_tasks_failed_total", "Tasks this process stored as FAILED (no attempts left, or an error that is not retried)."),
		retried:   counter("gotasks_tasks_retried_total", "Failed attempts run by this process for which a retry was scheduled."),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gotasks_task_duration_seconds",
			Help:    "Duration of task attempts run by this process that stored an outcome (completed, failed or retried), from claim to finish.",
			Buckets: DurationBuckets,
		}, taskLabels),
		depthDesc: prometheus.NewDesc("gotasks_queue_tasks",
			"Tasks of a queue in Redis by state: pending (ready), deferred (waiting for their time or a retry), running, or failed (FAILED results still stored).",
			[]string{"queue", "state"}, nil),
		ageDesc: prometheus.NewDesc("gotasks_queue_oldest_pending_age_seconds",
			"Seconds since the pending task that has waited longest, at any priority, became due (its run_after, else its enqueue time); 0 when none is pending.",
			[]string{"queue"}, nil),
		pausedDesc: prometheus.NewDesc("gotasks_queue_paused",
			"1 while the queue is paused (workers claim none of its tasks; see admin pause), else 0.",
			[]string{"queue"}, nil),
		upDesc: prometheus.NewDesc("gotasks_redis_up",
			"1 if this scrape read the queue metrics from Redis, 0 if Redis failed or did not answer within the scrape timeout (the queue metrics are then missing).",
			nil, nil),
	}
	c.reg.MustRegister(c.enqueued, c.started, c.completed, c.failed, c.retried, c.duration, queueCollector{c})
	c.removers = []func(){
		task.OnEnqueued(func(_ context.Context, r *task.RawResult) {
			c.enqueued.WithLabelValues(r.TaskName, r.Queue).Inc()
		}),
		task.OnStarted(func(_ context.Context, r *task.RawResult) {
			c.started.WithLabelValues(r.TaskName, r.Queue).Inc()
		}),
		task.OnFinished(c.finished),
	}
	return c
}

// TrackWorker adds the gauges of one worker of this process:
// gotasks_worker_inflight_tasks (from inFlight, e.g. Worker.InFlight) and
// gotasks_worker_concurrency, both labelled with the worker id so that
// they can be matched with the worker ids stored in results. Call it once
// per worker id.
func (c *Collector) TrackWorker(workerID string, concurrency int, inFlight func() int) error {
	labels := prometheus.Labels{"worker": workerID}
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gotasks_worker_inflight_tasks", Help: "Tasks the worker is running now.", ConstLabels: labels,
	}, func() float64 { return float64(inFlight()) })
	conc := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gotasks_worker_concurrency", Help: "Tasks the worker runs at most at once (--concurrency).", ConstLabels: labels,
	}, func() float64 { return float64(concurrency) })
	if err := c.reg.Register(inflight); err != nil {
		return fmt.Errorf("metrics of worker %s: %w", workerID, err)
	}
	if err := c.reg.Register(conc); err != nil {
		c.reg.Unregister(inflight)
		return fmt.Errorf("metrics of worker %s: %w", workerID, err)
	}
	return nil
}

// ObserveRetry counts a failed attempt whose retry was scheduled and
// observes its duration. Pass it as worker.Options.OnRetry: task's
// finished hook does not fire for retries.
func (c *Collector) ObserveRetry(_ context.Context, r *task.RawResult) {
	c.retried.WithLabelValues(r.TaskName, r.Queue).Inc()
	c.observeDuration(r)
}

func (c *Collector) finished(_ context.Context, r *task.RawResult) {
	switch r.Status {
	case task.StatusComplete:
		c.completed.WithLabelValues(r.TaskName, r.Queue).Inc()
	case task.StatusFailed:
		c.failed.WithLabelValues(r.TaskName, r.Queue).Inc()
	default:
		return
	}
	c.observeDuration(r)
}

func (c *Collector) observeDuration(r *task.RawResult) {
	// A task failed before it ran (a bad payload) may have no start time.
	if r.StartedAt.IsZero() || r.FinishedAt.Before(r.StartedAt) {
		return
	}
	c.duration.WithLabelValues(r.TaskName, r.Queue).Observe(r.FinishedAt.Sub(r.StartedAt).Seconds())
}

// Registry returns the collector's registry, to add metrics of one's own
// to the same endpoint.
func (c *Collector) Registry() *prometheus.Registry { return c.reg }

// Handler serves the metrics in the Prometheus exposition format. A
// metric that cannot be collected is left out rather than failing the
// whole scrape, so that the task counters survive a Redis outage.
func (c *Collector) Handler() http.Handler {
	return promhttp.HandlerFor(c.reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      slog.NewLogLogger(c.log.Handler(), slog.LevelWarn),
	})
}

// Close removes the collector's task hooks; its counters stop counting.
func (c *Collector) Close() {
	c.closeOnce.Do(func() {
		for _, remove := range c.removers {
			remove()
		}
	})
}

// queueCollector reads the queue metrics from Redis at scrape time. It is
// a separate type so that Collector's exported method set does not carry
// prometheus.Collector's Describe and Collect.
type queueCollector struct{ c *Collector }

func (q queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- q.c.depthDesc
	ch <- q.c.ageDesc
	ch <- q.c.pausedDesc
	ch <- q.c.upDesc
}

func (q queueCollector) Collect(ch chan<- prometheus.Metric) {
	c := q.c
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.ScrapeTimeout)
	defer cancel()
	// Everything is read before anything is sent, so that a scrape never
	// shows a half-read set of queues.
	stats, err := c.readQueues(ctx)
	if err != nil {
		c.log.Warn("metrics: cannot read queue metrics from redis", "err", err)
		ch <- prometheus.MustNewConstMetric(c.upDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.upDesc, prometheus.GaugeValue, 1)
	for _, s := range stats {
		ch <- prometheus.MustNewConstMetric(c.depthDesc, prometheus.GaugeValue, float64(s.Pending), s.Queue, "pending")
		ch <- prometheus.MustNewConstMetric(c.depthDesc, prometheus.GaugeValue, float64(s.Deferred), s.Queue, "deferred")
		ch <- prometheus.MustNewConstMetric(c.depthDesc, prometheus.GaugeValue, float64(s.Running), s.Queue, "running")
		ch <- prometheus.MustNewConstMetric(c.depthDesc, prometheus.GaugeValue, float64(s.Failed), s.Queue, "failed")
		ch <- prometheus.MustNewConstMetric(c.ageDesc, prometheus.GaugeValue, s.OldestAge.Seconds(), s.Queue)
		paused := 0.0
		if s.Paused() {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(c.pausedDesc, prometheus.GaugeValue, paused, s.Queue)
	}
}

// readQueues reads each queue's counts and the age of its oldest pending
// task, one script call per queue (broker.StatsOf).
func (c *Collector) readQueues(ctx context.Context) ([]broker.QueueStat, error) {
	queues := c.opts.Queues
	if len(queues) == 0 {
		var err error
		if queues, err = c.b.KnownQueues(ctx); err != nil {
			return nil, err
		}
	}
	stats := make([]broker.QueueStat, 0, len(queues))
	for _, q := range queues {
		s, err := c.b.StatsOf(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", q, err)
		}
		stats = append(stats, s)
	}
	return stats, nil
}

// Path is where Serve exposes the metrics.
const Path = "/metrics"

// Server is a running metrics HTTP server; see Serve.
type Server = httpserve.Server

// Serve listens on addr (host:port) and serves Handler at Path. It listens
// before returning, so that a taken port is the caller's error rather than
// a log line nobody reads. Stop it with Shutdown.
func (c *Collector) Serve(addr string) (*Server, error) {
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, c.Handler())
	// A scrape takes at most about ScrapeTimeout.
	return httpserve.Start("metrics server", addr, mux,
		httpserve.Timeouts{ReadHeader: 5 * time.Second, Write: c.opts.ScrapeTimeout + 10*time.Second, Idle: time.Minute}, c.log)
}

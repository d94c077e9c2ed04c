package cli

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/metrics"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// RunWorker runs a worker as cfg says, with the servers it asks for
// (health, metrics, dashboard), until ctx is done (or --max-tasks or
// --batch say stop): the run command.
func RunWorker(ctx context.Context, cfg Config, log *slog.Logger) error {
	return runWorker(ctx, cfg, log, nil)
}

func runWorker(ctx context.Context, cfg Config, log *slog.Logger, before func(Config, *broker.Redis) error) error {
	bc := cfg.Broker
	// Every running task may be writing its result while the fetcher and
	// the scheduler hold blocking connections: the pool size is a minimum.
	bc.Conn.PoolSize = max(bc.Conn.PoolSize, cfg.Concurrency+len(cfg.Queues)+10)
	b, closeRedis, err := OpenRedis(bc, log)
	if err != nil {
		return err
	}
	// Closing the client also ends the Redis calls that the shutdown left
	// behind (see worker.Run): it closes their connections.
	defer closeRedis()
	// Once ctx is done, the servers below stop within the worker's
	// shutdown window too (see worker.ShutdownWindow.Within).
	sd := worker.NewShutdownWindow(ctx, cmp.Or(cfg.ShutdownTimeout, worker.DefaultShutdownTimeout))
	defer sd.Release()
	if cfg.HealthAddr != "" {
		// Before the startup delay, so that probes answer from the start;
		// stopped (deferred) before Redis is closed.
		stopHealth, err := startHealthServer(cfg.HealthAddr, worker.HealthHandler(b.Check, ctx.Done()), log)
		if err != nil {
			return err
		}
		defer sd.Within(log, "health server still waits for requests in flight; stopping without it", stopHealth)
	}
	if cfg.DashboardAddr != "" {
		stopDashboard, err := startDashboard(cfg, b, log)
		if err != nil {
			return err
		}
		defer sd.Within(log, "dashboard still waits for requests in flight; stopping without it", stopDashboard)
	}
	if !isMemoryURL(bc.URL) {
		logConnection(b, bc.URL, log)
	}
	if before != nil {
		if err := before(cfg, b); err != nil {
			return err
		}
	}
	if !cfg.NoStartupDelay {
		// Many pods starting at once would otherwise hit Redis together.
		select {
		case <-time.After(rand.N(time.Second)):
		case <-ctx.Done():
			return nil
		}
	}
	// go-redis ends a call only at its read timeout, not when ctx is
	// cancelled: a Redis that does not answer must not hold a SIGTERM that
	// long. A check left behind ends when the client is closed.
	checked := make(chan error, 1)
	go func() { checked <- b.Check(ctx) }()
	select {
	case err := <-checked:
		if err != nil {
			log.Warn("redis not reachable yet; the worker keeps trying", "url", broker.RedactURL(bc.URL), "err", err)
		}
	case <-ctx.Done():
		return nil
	}
	if len(task.Registered()) == 0 {
		log.Warn("no tasks are defined in this program; every task will fail as unknown (import the packages that call task.Define)")
	}
	opts := worker.Options{
		Queues: cfg.Queues, Exclude: cfg.Exclude, Concurrency: cfg.Concurrency, Prefetch: cfg.Prefetch, WorkerID: cfg.WorkerID,
		QueueOrder: queueOrder(cfg.QueueOrder), Weights: cfg.Weights,
		MaxTasks: cfg.MaxTasks, Batch: cfg.Batch, ShutdownTimeout: cfg.ShutdownTimeout,
		LeaseDuration: cfg.LeaseDuration, NoScheduler: cfg.NoScheduler, Logger: log,
	}
	var mc *metrics.Collector
	if cfg.MetricsAddr != "" {
		mc = metrics.New(b, metrics.Options{Queues: cfg.Queues, Logger: log})
		defer mc.Close()
		opts.OnRetry = mc.ObserveRetry
	}
	w := worker.New(b, opts)
	if mc != nil {
		if err := mc.TrackWorker(w.ID(), cfg.Concurrency, w.InFlight); err != nil {
			return err
		}
		srv, err := mc.Serve(cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		log.Info("metrics server listening", "addr", srv.Addr(), "path", metrics.Path)
		// Stopped before Redis is closed (deferred earlier), so that no
		// scrape reads a closed client (unless one blocked on a Redis that
		// does not answer outlasts the shutdown).
		defer sd.Within(log, "metrics server still waits for requests in flight; stopping without it", func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				log.Warn("metrics server did not stop cleanly", "err", err)
			}
		})
	}
	return w.Run(ctx)
}

// logConnection says how the worker connects (never the password).
func logConnection(b *broker.Redis, url string, log *slog.Logger) {
	var tlsConf *tls.Config
	var user, password string
	switch c := b.Client().(type) {
	case *redis.Client: // one Redis, or a failover client behind sentinels
		tlsConf, user, password = c.Options().TLSConfig, c.Options().Username, c.Options().Password
	case *redis.ClusterClient:
		tlsConf, user, password = c.Options().TLSConfig, c.Options().Username, c.Options().Password
	}
	o := b.Options()
	log.Info("connecting to redis", "url", broker.RedactURL(url), "tls", tlsConf != nil,
		"user", cmp.Or(user, "default"), "password_set", password != "",
		"prefix", o.Prefix, "result_ttl", o.ResultTTL.String(), "serializer", o.Serializer.Name())
	if tlsConf != nil && tlsConf.InsecureSkipVerify {
		log.Warn("the Redis server's TLS certificate is not verified (--tls-skip-verify or skip_verify): for testing only")
	}
}

// queueOrder is worker.Options.QueueOrder for --queue-order (checked
// beforehand).
func queueOrder(s string) worker.QueueOrder {
	switch s {
	case "weighted":
		return worker.Weighted
	case "strict":
		return worker.Strict
	}
	return worker.ByPriority
}

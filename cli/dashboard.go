package cli

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/dashboard"
	"github.com/gotasks/gotasks/internal/httpserve"
)

// startDashboard serves the web dashboard on cfg.DashboardAddr; stop shuts
// it down. Like the other servers it listens before returning, so that a
// taken port is the caller's error.
func startDashboard(cfg Config, b *broker.Redis, log *slog.Logger) (stop func(), err error) {
	addr, hosts, err := dashboard.ListenAddr(cfg.DashboardAddr)
	if err != nil {
		return nil, fmt.Errorf("--dashboard-addr: %w", err)
	}
	h := dashboard.New(b, dashboard.Options{Token: cfg.DashboardToken, Hosts: hosts, Logger: log})
	srv, err := httpserve.Start("dashboard", addr, h,
		httpserve.Timeouts{ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: 30 * time.Second, Idle: time.Minute}, log)
	if err != nil {
		return nil, fmt.Errorf("--dashboard-addr: %w", err)
	}
	log.Info("dashboard listening", "url", "http://"+srv.Addr()+"/", "token_required", cfg.DashboardToken != "")
	if hosts == nil && cfg.DashboardToken == "" {
		log.Warn("the dashboard is open to the network without a token: anyone who reaches " + srv.Addr() +
			" can retry and cancel tasks (set --dashboard-token or $" + EnvDashboardToken + ")")
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn("dashboard did not stop cleanly", "err", err)
		}
	}, nil
}

// RunDashboard is the dashboard command: the dashboard alone, without
// running tasks (for an operator's machine), until ctx is done.
// --dashboard-addr defaults to :8080 (127.0.0.1:8080).
func RunDashboard(ctx context.Context, cfg Config, log *slog.Logger) error {
	bc := cfg.Broker
	bc.Conn.PoolSize = max(bc.Conn.PoolSize, 10)
	b, closeRedis, err := OpenRedis(bc, log)
	if err != nil {
		return err
	}
	defer closeRedis()
	if err := b.Check(ctx); err != nil {
		log.Warn("redis not reachable yet; the dashboard shows the error until it is", "url", broker.RedactURL(bc.URL), "err", err)
	}
	return ServeDashboard(ctx, cfg, b, log)
}

// ServeDashboard serves the dashboard of b on cfg.DashboardAddr (default
// :8080, that is 127.0.0.1:8080) until ctx is done. It returns at once
// with an error when it cannot listen.
func ServeDashboard(ctx context.Context, cfg Config, b *broker.Redis, log *slog.Logger) error {
	cfg.DashboardAddr = cmp.Or(cfg.DashboardAddr, ":8080")
	stop, err := startDashboard(cfg, b, log)
	if err != nil {
		return err
	}
	defer stop()
	<-ctx.Done()
	return nil
}

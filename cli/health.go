package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gotasks/gotasks/internal/httpserve"
	"github.com/gotasks/gotasks/worker"
)

// healthShutdownTimeout bounds the wait for in-flight probes when the
// health server stops; a readiness probe takes at most
// worker.ReadinessTimeout.
const healthShutdownTimeout = 2 * time.Second

// startHealthServer listens on addr before returning, so that a taken port
// is an error of the caller rather than a log line nobody reads while the
// orchestrator restarts the pod for failing probes. stop shuts the server
// down and waits for it.
func startHealthServer(addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	// Probes are tiny.
	srv, err := httpserve.Start("health server", addr, h,
		httpserve.Timeouts{ReadHeader: 5 * time.Second, Read: 5 * time.Second, Write: 5 * time.Second, Idle: 30 * time.Second}, log)
	if err != nil {
		return nil, fmt.Errorf("--health-addr: %w", err)
	}
	log.Info("health server listening", "addr", srv.Addr(), "liveness", worker.LivenessPath, "readiness", worker.ReadinessPath)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), healthShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn("health server did not stop cleanly", "err", err)
		}
	}, nil
}

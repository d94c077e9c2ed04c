package cli

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// SignalContext returns a context cancelled by the first SIGINT or SIGTERM;
// a second one exits the process at once with status 1.
func SignalContext(log *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-ch:
			log.Info("signal received: draining; send it again to exit at once", "signal", s.String())
			cancel()
		case <-ctx.Done():
			return
		}
		s := <-ch
		log.Warn("second signal: exiting now; running tasks return to their queues when their leases expire", "signal", s.String())
		os.Exit(1)
	}()
	return ctx, func() {
		signal.Stop(ch)
		cancel()
	}
}

package worker

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gotasks/gotasks/internal/httpserve"
)

// Health endpoints served by --health-addr.
const (
	// LivenessPath answers 200 while the process serves HTTP. It does not
	// look at Redis: a Redis outage must not make an orchestrator restart
	// every worker, which would only add a thundering herd to the outage.
	LivenessPath = "/healthz"
	// ReadinessPath answers 200 while Redis answers PING within
	// ReadinessTimeout and the worker is not shutting down, 503 otherwise.
	ReadinessPath = "/readyz"
	// ReadinessTimeout bounds the PING of a readiness check, well under
	// the default 1s probe timeout of Kubernetes so that a slow Redis gives
	// a 503 rather than a probe timeout without a reason.
	ReadinessTimeout = 900 * time.Millisecond
)

// HealthHandler returns the handler of --health-addr: LivenessPath and
// ReadinessPath. ping checks Redis (the broker's Check); readiness fails
// from the moment stopping is closed (pass the worker's ctx.Done(), so a
// draining worker leaves the load balancer's rotation at once). A nil
// stopping channel never closes.
func HealthHandler(ping func(context.Context) error, stopping <-chan struct{}) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+LivenessPath, func(w http.ResponseWriter, r *http.Request) {
		writePlain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET "+ReadinessPath, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stopping:
			writePlain(w, http.StatusServiceUnavailable, "shutting down")
			return
		default:
		}
		ctx, cancel := context.WithTimeout(r.Context(), ReadinessTimeout)
		defer cancel()
		if err := ping(ctx); err != nil {
			// go-redis errors name the address, never the password.
			writePlain(w, http.StatusServiceUnavailable, "redis: "+err.Error())
			return
		}
		writePlain(w, http.StatusOK, "ok")
	})
	return mux
}

func writePlain(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	// Probes must see the current state, never a cached one.
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = fmt.Fprintln(w, body)
}

// healthShutdownTimeout bounds the wait for in-flight probes when the
// health server stops; a readiness probe takes at most ReadinessTimeout.
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
	log.Info("health server listening", "addr", srv.Addr(), "liveness", LivenessPath, "readiness", ReadinessPath)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), healthShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn("health server did not stop cleanly", "err", err)
		}
	}, nil
}

package worker

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Health endpoints: HealthHandler serves them (the worker command's
// --health-addr, see package cli).
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

// HealthHandler returns the health probes' handler (the worker command's
// --health-addr): LivenessPath and ReadinessPath. ping checks Redis (the broker's Check); readiness fails
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

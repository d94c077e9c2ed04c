package worker_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/worker"
)

// probe runs one request through h and returns its status and body.
func probe(t *testing.T, h http.Handler, method, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Code, rec.Body.String()
}

func TestHealthHandler(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: m.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	defer func() { _ = c.Close() }()
	b := broker.New(c, broker.Options{})
	stopping := make(chan struct{})
	h := worker.HealthHandler(b.Check, stopping)

	if code, body := probe(t, h, http.MethodGet, worker.ReadinessPath); code != http.StatusOK || body != "ok\n" {
		t.Errorf("readyz with Redis up: %d %q", code, body)
	}
	if code, body := probe(t, h, http.MethodGet, worker.LivenessPath); code != http.StatusOK || body != "ok\n" {
		t.Errorf("healthz: %d %q", code, body)
	}
	if code, _ := probe(t, h, http.MethodHead, worker.LivenessPath); code != http.StatusOK {
		t.Errorf("HEAD healthz: %d", code)
	}
	if code, _ := probe(t, h, http.MethodPost, worker.ReadinessPath); code != http.StatusMethodNotAllowed {
		t.Errorf("POST readyz: %d", code)
	}
	if code, _ := probe(t, h, http.MethodGet, "/nope"); code != http.StatusNotFound {
		t.Errorf("unknown path: %d", code)
	}

	m.Close()
	if code, body := probe(t, h, http.MethodGet, worker.ReadinessPath); code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "redis: ") {
		t.Errorf("readyz with Redis down: %d %q", code, body)
	}
	// Liveness must not follow Redis: restarting workers does not bring it back.
	if code, _ := probe(t, h, http.MethodGet, worker.LivenessPath); code != http.StatusOK {
		t.Errorf("healthz with Redis down: %d", code)
	}

	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	if code, body := probe(t, h, http.MethodGet, worker.ReadinessPath); code != http.StatusOK {
		t.Errorf("readyz after Redis is back: %d %q", code, body)
	}
	close(stopping)
	if code, body := probe(t, h, http.MethodGet, worker.ReadinessPath); code != http.StatusServiceUnavailable || body != "shutting down\n" {
		t.Errorf("readyz while shutting down: %d %q", code, body)
	}
	if code, _ := probe(t, h, http.MethodGet, worker.LivenessPath); code != http.StatusOK {
		t.Errorf("healthz while shutting down: %d", code)
	}
}

// The readiness check gives up on a Redis that does not answer, rather
// than hang until the orchestrator's probe times out.
func TestReadinessTimesOut(t *testing.T) {
	start := time.Now()
	h := worker.HealthHandler(func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}, nil)
	code, body := probe(t, h, http.MethodGet, worker.ReadinessPath)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "deadline exceeded") {
		t.Errorf("readyz with a hanging Redis: %d %q", code, body)
	}
	if d := time.Since(start); d > 5*worker.ReadinessTimeout {
		t.Errorf("readyz took %v", d)
	}
}

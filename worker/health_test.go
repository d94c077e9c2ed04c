package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
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

func TestParseFlagsHealthAddr(t *testing.T) {
	t.Setenv("GOTASKS_REDIS_URL", "")
	cfg, err := worker.ParseFlags("worker", nil, &bytes.Buffer{})
	if err != nil || cfg.HealthAddr != "" {
		t.Fatalf("default: %q, %v", cfg.HealthAddr, err)
	}
	cfg, err = worker.ParseFlags("worker", []string{"--health-addr", ":8080"}, &bytes.Buffer{})
	if err != nil || cfg.HealthAddr != ":8080" {
		t.Fatalf("--health-addr :8080: %q, %v", cfg.HealthAddr, err)
	}
	if _, err := worker.ParseFlags("worker", []string{"--health-addr", "8080"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--health-addr") {
		t.Errorf("--health-addr 8080: %v", err)
	}
}

// healthAddrFromLog returns the address the JSON log says the health server
// listens on, waiting for that line.
func healthAddrFromLog(t *testing.T, logs *syncBuffer) string {
	t.Helper()
	var addr string
	waitFor(t, "the health server to listen", func() bool {
		for line := range strings.Lines(logs.String()) {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "health server listening" {
				addr = rec.Addr
				return true
			}
		}
		return false
	})
	return addr
}

// get requests url without keeping the connection, so that no client
// goroutine outlives the test (goleak).
func get(t *testing.T, url string) (int, string, error) {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// TestRunConfigServesHealth runs the worker command's RunConfig with
// --health-addr: both endpoints answer while it runs; once shutdown begins
// (ctx cancelled, a task still draining) readiness is 503 while liveness
// stays 200; when RunConfig returns the server is gone.
func TestRunConfigServesHealth(t *testing.T) {
	e := setup(t)
	g, key := newGate(t, false)
	must[*task.Result[string]](t)(gateTask.Enqueue(e.ctx, key))
	cfg, err := worker.ParseFlags("worker", []string{
		"--redis-url", "redis://" + e.m.Addr() + "/0", "--no-startup-delay", "--queue", task.DefaultQueue,
		"--concurrency", "1", "--shutdown-timeout", "1m", "--health-addr", "127.0.0.1:0", "--log-format", "json",
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runErr error
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		runErr = worker.RunConfig(ctx, cfg, cfg.NewLogger(&logs))
	}()
	released := false
	defer func() {
		// On a failed check: let the task and RunConfig end (goleak).
		cancel()
		if !released {
			close(g.release)
		}
		<-finished
	}()

	base := "http://" + healthAddrFromLog(t, &logs)
	for _, p := range []string{worker.LivenessPath, worker.ReadinessPath} {
		if code, body, err := get(t, base+p); err != nil || code != http.StatusOK || body != "ok\n" {
			t.Errorf("%s while running: %d %q %v", p, code, body, err)
		}
	}

	recv(t, g.started, "the task to start")
	cancel() // the worker now drains: the task holds it up to --shutdown-timeout
	if code, body, err := get(t, base+worker.ReadinessPath); err != nil || code != http.StatusServiceUnavailable || body != "shutting down\n" {
		t.Errorf("readyz while draining: %d %q %v", code, body, err)
	}
	if code, _, err := get(t, base+worker.LivenessPath); err != nil || code != http.StatusOK {
		t.Errorf("healthz while draining: %d %v", code, err)
	}

	close(g.release)
	released = true
	<-finished
	if runErr != nil {
		t.Fatalf("RunConfig: %v", runErr)
	}
	if _, _, err := get(t, base+worker.LivenessPath); err == nil {
		t.Error("the health server still answers after RunConfig returned")
	}
}

// A taken port (--health-addr, --metrics-addr, --dashboard-addr) is an error of RunConfig,
// not a log line: the worker would otherwise run with probes that always
// fail and be restarted forever, or without its metrics.
func TestRunConfigListenAddrTaken(t *testing.T) {
	for _, flag := range []string{"--health-addr", "--metrics-addr", "--dashboard-addr"} {
		m := miniredis.RunT(t)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = ln.Close() }()
		cfg, err := worker.ParseFlags("worker", []string{
			"--redis-url", "redis://" + m.Addr() + "/0", "--no-startup-delay", flag, ln.Addr().String(),
		}, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		// A worker that started anyway would run until this deadline and
		// return nil, failing the check below.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = worker.RunConfig(ctx, cfg, slog.New(slog.DiscardHandler))
		var opErr *net.OpError
		if err == nil || !strings.Contains(err.Error(), flag) || !errors.As(err, &opErr) {
			t.Fatalf("RunConfig with a taken %s port: %v", flag, err)
		}
		if ctx.Err() != nil {
			t.Errorf("%s: RunConfig ran the worker before failing", flag)
		}
	}
}

// TestRunDashboard: "worker dashboard" serves the dashboard of the Redis
// it is given, on loopback by default, with the token from the
// environment, until its context ends.
func TestRunDashboard(t *testing.T) {
	m := miniredis.RunT(t)
	t.Setenv("GOTASKS_DASHBOARD_TOKEN", "tok")
	cfg, err := worker.ParseFlags("worker dashboard", []string{
		"--redis-url", "redis://" + m.Addr() + "/0", "--dashboard-addr", ":0", "--log-format", "json",
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DashboardToken != "tok" {
		t.Fatalf("token from the environment: %q", cfg.DashboardToken)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan error, 1)
	go func() { finished <- worker.RunDashboard(ctx, cfg, cfg.NewLogger(&logs)) }()
	var url string
	waitFor(t, "the dashboard to listen", func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			var rec struct{ Msg, URL string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "dashboard listening" {
				url = rec.URL
			}
		}
		return url != ""
	})
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Errorf("dashboard at %s, want 127.0.0.1", url)
	}
	req, _ := http.NewRequest(http.MethodGet, url+"api/stats", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/stats = %v, %v", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}
	if code, _, _ := get(t, url+"api/stats"); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d", code)
	}
	if strings.Contains(logs.String(), "tok\"") {
		t.Errorf("the token was logged:\n%s", logs.String())
	}
	cancel()
	if err := <-finished; err != nil {
		t.Fatalf("RunDashboard: %v", err)
	}
	if _, _, err := get(t, url+"api/stats"); err == nil {
		t.Error("the dashboard still answers after RunDashboard returned")
	}
}

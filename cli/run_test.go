package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/cli"
	"github.com/gotasks/gotasks/metrics"
	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

// useBackend makes b the default task backend for the test.
func useBackend(t *testing.T, b *broker.Redis) {
	t.Helper()
	task.Configure(map[string]task.Backend{task.DefaultBackendName: b})
	t.Cleanup(func() { task.Configure(nil) })
}

// TestProducerAndWorkerShareTheEnvironment: a producer (this test, with
// broker.OpenFromEnv) and a worker process that share only Redis and the
// environment agree on the serializer and on how long results are kept.
func TestProducerAndWorkerShareTheEnvironment(t *testing.T) {
	cleanEnv(t)
	m := miniredis.RunT(t)
	t.Setenv("GOTASKS_REDIS_URL", "redis://"+m.Addr()+"/0")
	t.Setenv("GOTASKS_RESULT_TTL", "168h")
	t.Setenv("GOTASKS_SERIALIZER", "json")
	t.Setenv("GOTASKS_PREFIX", "shared")
	b, err := broker.OpenFromEnv(broker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	useBackend(t, b)
	if o := b.Options(); o.ResultTTL != 168*time.Hour || o.Serializer.Name() != "json" || o.Prefix != "shared" {
		t.Fatalf("producer options %+v", o)
	}
	ctx := context.Background()
	r, err := addTask.Using(task.Queue("env-q")).Enqueue(ctx, [2]int{2, 3})
	if err != nil {
		t.Fatal(err)
	}

	// The worker gets the same environment and no flag about any of it.
	code, _, logs := runCLI(t, nil, "--batch", "--no-startup-delay", "--queue", "env-q", "--log-format", "json")
	if code != 0 {
		t.Fatalf("worker: exit %d\n%s", code, logs)
	}
	if !strings.Contains(logs, `"serializer":"json"`) || !strings.Contains(logs, `"prefix":"shared"`) {
		t.Errorf("the worker does not say it took the environment's settings:\n%s", logs)
	}
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := r.Value(); err != nil || v != 5 {
		t.Fatalf("result %s: %v, %v\n%s", r.Status, v, err, logs)
	}
	direct := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer func() { _ = direct.Close() }()
	keys, err := direct.Keys(ctx, "*shared*:r:"+r.ID).Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("result key: %v, %v", keys, err)
	}
	ttl, err := direct.TTL(ctx, keys[0]).Result()
	if err != nil || ttl < 167*time.Hour || ttl > 168*time.Hour {
		t.Errorf("TTL of %s = %v, %v; want about 7 days", keys[0], ttl, err)
	}

	// A producer's TTL other than the default travels with its tasks: it
	// wins over the worker's flag. The flag (over the variable) keeps the
	// results of tasks that carry none: a producer with the default.
	first := r.ID
	r, err = addTask.Using(task.Queue("env-q")).Enqueue(ctx, [2]int{1, 1})
	if err != nil {
		t.Fatal(err)
	}
	plain := broker.New(b.Client(), broker.Options{Prefix: "shared", Serializer: b.Options().Serializer})
	useBackend(t, plain)
	r2, err := addTask.Using(task.Queue("env-q")).Enqueue(ctx, [2]int{2, 2})
	if err != nil {
		t.Fatal(err)
	}
	if code, _, logs := runCLI(t, nil, "--batch", "--no-startup-delay", "--queue", "env-q", "--result-ttl", "1h"); code != 0 {
		t.Fatalf("worker: exit %d\n%s", code, logs)
	}
	key := strings.TrimSuffix(keys[0], first) + r.ID
	if ttl, err := direct.TTL(ctx, key).Result(); err != nil || ttl < 167*time.Hour || ttl > 168*time.Hour {
		t.Errorf("TTL of %s (a producer's 168h) with --result-ttl 1h = %v, %v; want the producer's", key, ttl, err)
	}
	key = strings.TrimSuffix(keys[0], first) + r2.ID
	if ttl, err := direct.TTL(ctx, key).Result(); err != nil || ttl < 59*time.Minute || ttl > time.Hour {
		t.Errorf("TTL of %s (a producer's default) with --result-ttl 1h = %v, %v; want 1h", key, ttl, err)
	}
}

// TestAWorkerToldNothingAgreesWithItsProducer: the case. A
// producer chooses JSON and a result TTL of a week in code; the stock
// worker process gets nothing but --redis-url. Its tasks still decode
// (the serializer's name travels with each task) and their results are
// kept a week (the TTL travels too).
func TestAWorkerToldNothingAgreesWithItsProducer(t *testing.T) {
	cleanEnv(t)
	m := miniredis.RunT(t)
	url := "redis://" + m.Addr() + "/0"
	b, err := broker.Open(url, broker.Options{Serializer: serializer.JSON{}, ResultTTL: 7 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	useBackend(t, b)
	ctx := context.Background()
	r, err := addTask.Using(task.Queue("told-nothing")).Enqueue(ctx, [2]int{2, 3})
	if err != nil {
		t.Fatal(err)
	}
	code, _, logs := runCLI(t, nil, "--redis-url", url, "--batch", "--no-startup-delay", "--queue", "told-nothing")
	if code != 0 {
		t.Fatalf("worker: exit %d\n%s", code, logs)
	}
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := r.Value(); err != nil || v != 5 {
		t.Fatalf("result %s: %v, %v; want COMPLETE 5\n%s", r.Status, v, err, logs)
	}
	if ttl := m.TTL("{gotasks:told-nothing}:r:" + r.ID); ttl < 167*time.Hour || ttl > 168*time.Hour {
		t.Errorf("the result is kept %v; want the producer's week", ttl)
	}
}

// runCLIFor runs the worker command for d, then sends it SIGTERM, and
// returns its exit code and stderr.
func runCLIFor(t *testing.T, d time.Duration, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1", "GORACE=atexit_sleep_ms=0")
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the worker did not stop on SIGTERM:\n%s", errOut.String())
	}
	return cmd.ProcessState.ExitCode(), errOut.String()
}

// TestRedisLogsGoThroughSlog: while Redis is down, go-redis' own lines
// ("connection pool: failed to dial") come out through the worker's
// logger, in JSON with --log-format json, rate-limited.
func TestRedisLogsGoThroughSlog(t *testing.T) {
	cleanEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	code, logs := runCLIFor(t, 4*time.Second, "--redis-url", "redis://"+down+"/0", "--no-startup-delay",
		"--log-format", "json", "--shutdown-timeout", "1s")
	if code != 0 {
		t.Errorf("exit %d", code)
	}
	kinds := map[string]int{}
	for line := range strings.Lines(logs) {
		var rec struct {
			Level, Msg, Component string
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("a line that is not JSON: %q", line)
			continue
		}
		if rec.Component == "go-redis" {
			if rec.Level != "WARN" {
				t.Errorf("go-redis line at %s: %s", rec.Level, line)
			}
			kind := rec.Msg
			if i := strings.Index(kind, " after "); i > 0 {
				kind = kind[:i]
			}
			kinds[kind]++
		}
	}
	if len(kinds) == 0 {
		t.Fatalf("no go-redis line in the log:\n%s", logs)
	}
	// go-redis writes "failed to dial" several times a second; at most one
	// line of each kind goes through per 10s.
	for k, n := range kinds {
		if n > 1 {
			t.Errorf("%d lines of %q in 4s, want 1:\n%s", n, k, logs)
		}
	}
}

// TestRunWorkerWithACL: a worker against a Redis with an ACL user, with the
// password in the URL or in --redis-password; the debug log never shows it.
func TestRunWorkerWithACL(t *testing.T) {
	cleanEnv(t)
	m := miniredis.RunT(t)
	m.RequireUserAuth("app", "s3cret")
	for _, c := range []struct {
		name    string
		args    []string
		wantErr bool // the worker cannot reach Redis
	}{
		{"password in the URL", []string{"--redis-url", "redis://app:s3cret@" + m.Addr() + "/0"}, false},
		{"password flag", []string{"--redis-url", "redis://" + m.Addr() + "/0", "--redis-username", "app", "--redis-password", "s3cret"}, false},
		{"password flag over the URL's", []string{"--redis-url", "redis://app:wrong-s3cret@" + m.Addr() + "/0", "--redis-password", "s3cret"}, false},
		{"wrong password", []string{"--redis-url", "redis://app:bad-s3cret@" + m.Addr() + "/0"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--batch", "--no-startup-delay", "--log-level", "debug", "--queue", "q"}, c.args...)
			cfg, err := parse(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if c.wantErr {
				// It keeps trying: stop it after a moment.
				ctx, cancel = context.WithTimeout(ctx, 500*time.Millisecond)
				defer cancel()
			}
			err = cli.RunWorker(ctx, cfg, cfg.NewLogger(&out))
			log := out.String()
			if err != nil {
				t.Errorf("RunWorker: %v", err)
			}
			if strings.Contains(log, "s3cret") {
				t.Errorf("the log shows the password:\n%s", log)
			}
			if !strings.Contains(log, "connecting to redis") || !strings.Contains(log, "password_set=true") {
				t.Errorf("the log does not say how it connects:\n%s", log)
			}
			if c.wantErr != strings.Contains(log, "WRONGPASS") {
				t.Errorf("want an auth error in the log: %v\n%s", c.wantErr, log)
			}
			if !c.wantErr && !strings.Contains(log, "worker stopped") {
				t.Errorf("the batch worker did not run:\n%s", log)
			}
		})
	}
}

func TestOpenRedisErrorsHidePassword(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	_, _, err := cli.OpenRedis(broker.Config{URL: "rediss://app:s3cret@h:6380/0", Conn: broker.ConnOptions{CAFile: "/nonexistent/ca.pem"}}, log)
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "/nonexistent/ca.pem") ||
		!strings.Contains(err.Error(), "app:xxxxx@h:6380") {
		t.Errorf("missing CA: %v", err)
	}
	if _, _, err := cli.OpenRedis(broker.Config{URL: "memory://", Conn: broker.ConnOptions{CAFile: "/etc/ca.pem"}}, log); err == nil {
		t.Error("memory:// with a TLS CA: no error")
	}
}

// newRedis starts a miniredis with a producer backend on it, and returns
// the --redis-url of it.
func newRedis(t *testing.T) (*miniredis.Miniredis, string) {
	t.Helper()
	m := miniredis.RunT(t)
	url := "redis://" + m.Addr() + "/0"
	b, err := broker.Open(url, broker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	useBackend(t, b)
	return m, url
}

// logAddr waits for the JSON log line msg and returns its attribute key.
func logAddr(t *testing.T, logs *syncBuffer, msg, key string) string {
	t.Helper()
	var addr string
	waitFor(t, msg, func() bool {
		for line := range strings.Lines(logs.String()) {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
				addr, _ = rec[key].(string)
				return true
			}
		}
		return false
	})
	return addr
}

// TestRunWorkerServesMetrics runs the worker with --metrics-addr: the
// tasks it runs show in /metrics along with its queues and its in-flight
// gauge, and the server is gone once RunWorker returns.
func TestRunWorkerServesMetrics(t *testing.T) {
	cleanEnv(t)
	_, url := newRedis(t)
	if _, err := addTask.Enqueue(context.Background(), [2]int{1, 2}); err != nil {
		t.Fatal(err)
	}
	cfg, err := parse(t, "--redis-url", url, "--no-startup-delay", "--queue", task.DefaultQueue,
		"--concurrency", "1", "--worker-id", "w-metrics", "--metrics-addr", "127.0.0.1:0", "--log-format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	finished := make(chan error, 1)
	go func() { finished <- cli.RunWorker(ctx, cfg, cfg.NewLogger(&logs)) }()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-finished
		}
	}()
	metricsURL := "http://" + logAddr(t, &logs, "metrics server listening", "addr") + metrics.Path
	want := []string{
		`gotasks_tasks_completed_total{queue="default",task="clitest.add"} 1`,
		`gotasks_queue_tasks{queue="default",state="pending"} 0`,
		`gotasks_worker_inflight_tasks{worker="w-metrics"} 0`,
		`gotasks_worker_concurrency{worker="w-metrics"} 1`,
		`gotasks_redis_up 1`,
	}
	var body string
	waitFor(t, "the task to show in /metrics", func() bool {
		code, b, err := get(t, metricsURL)
		body = b
		return err == nil && code == http.StatusOK && strings.Contains(b, want[0])
	})
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	cancel()
	stopped = true
	if err := <-finished; err != nil {
		t.Fatalf("RunWorker: %v", err)
	}
	if _, _, err := get(t, metricsURL); err == nil {
		t.Error("the metrics server still answers after RunWorker returned")
	}
}

// TestRunWorkerServesHealth runs the worker with --health-addr: both
// endpoints answer while it runs; once shutdown begins (ctx cancelled, a
// task still draining) readiness is 503 while liveness stays 200; when
// RunWorker returns the server is gone.
func TestRunWorkerServesHealth(t *testing.T) {
	cleanEnv(t)
	_, url := newRedis(t)
	g, key := newGate(t)
	if _, err := blockTask.Enqueue(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	cfg, err := parse(t, "--redis-url", url, "--no-startup-delay", "--queue", task.DefaultQueue,
		"--concurrency", "1", "--shutdown-timeout", "1m", "--health-addr", "127.0.0.1:0", "--log-format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	finished := make(chan error, 1)
	go func() { finished <- cli.RunWorker(ctx, cfg, cfg.NewLogger(&logs)) }()
	released, stopped := false, false
	defer func() {
		// On a failed check: let the task and RunWorker end (goleak).
		cancel()
		if !released {
			close(g.release)
		}
		if !stopped {
			<-finished
		}
	}()
	base := "http://" + logAddr(t, &logs, "health server listening", "addr")
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
	released, stopped = true, true
	if err := <-finished; err != nil {
		t.Fatalf("RunWorker: %v", err)
	}
	if _, _, err := get(t, base+worker.LivenessPath); err == nil {
		t.Error("the health server still answers after RunWorker returned")
	}
}

// A taken port (--health-addr, --metrics-addr, --dashboard-addr) is an
// error of RunWorker, not a log line: the worker would otherwise run with
// probes that always fail and be restarted forever, or without its metrics.
func TestRunWorkerListenAddrTaken(t *testing.T) {
	cleanEnv(t)
	for _, flag := range []string{"--health-addr", "--metrics-addr", "--dashboard-addr"} {
		m := miniredis.RunT(t)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = ln.Close() }()
		cfg, err := parse(t, "--redis-url", "redis://"+m.Addr()+"/0", "--no-startup-delay", flag, ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		// A worker that started anyway would run until this deadline and
		// return nil, failing the check below.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = cli.RunWorker(ctx, cfg, slog.New(slog.DiscardHandler))
		var opErr *net.OpError
		if err == nil || !strings.Contains(err.Error(), flag) || !errors.As(err, &opErr) {
			t.Fatalf("RunWorker with a taken %s port: %v", flag, err)
		}
		if ctx.Err() != nil {
			t.Errorf("%s: RunWorker ran the worker before failing", flag)
		}
	}
}

// TestRunDashboard: the dashboard command serves the dashboard of the
// Redis it is given, on loopback by default, with the token from the
// environment, until its context ends.
func TestRunDashboard(t *testing.T) {
	cleanEnv(t)
	m := miniredis.RunT(t)
	t.Setenv("GOTASKS_DASHBOARD_TOKEN", "tok")
	cfg := cli.Config{Broker: broker.Config{URL: "redis://" + m.Addr() + "/0"}, DashboardAddr: ":0", DashboardToken: "tok",
		LogFormat: "json", LogLevel: "info"}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan error, 1)
	go func() { finished <- cli.RunDashboard(ctx, cfg, cfg.NewLogger(&logs)) }()
	url := logAddr(t, &logs, "dashboard listening", "url")
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Errorf("dashboard at %s, want 127.0.0.1", url)
	}
	if code, _, err := get(t, url+"api/stats", "Authorization", "Bearer tok"); err != nil || code != http.StatusOK {
		t.Errorf("GET /api/stats = %d, %v", code, err)
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

package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/metrics"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

func TestParseFlags(t *testing.T) {
	t.Setenv("GOTASKS_REDIS_URL", "")
	cfg, err := worker.ParseFlags("worker", []string{
		"--queue", "a,b", "--queue=c", "-exclude-queue", "d", "--concurrency", "7", "--worker-id", "w1",
		"--max-tasks", "9", "--batch", "--shutdown-timeout", "3s", "--lease", "4s", "--log-format", "json",
		"--log-level", "debug", "--no-startup-delay", "--prefix", "app",
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Queues, []string{"a", "b", "c"}) || !slices.Equal(cfg.Exclude, []string{"d"}) {
		t.Errorf("queues %v exclude %v", cfg.Queues, cfg.Exclude)
	}
	if cfg.Concurrency != 7 || cfg.WorkerID != "w1" || cfg.MaxTasks != 9 || !cfg.Batch ||
		cfg.ShutdownTimeout != 3*time.Second || cfg.LeaseDuration != 4*time.Second ||
		cfg.LogFormat != "json" || cfg.LogLevel != "debug" || !cfg.NoStartupDelay || cfg.Prefix != "app" {
		t.Errorf("cfg = %+v", cfg)
	}
	if cfg.RedisURL != "redis://127.0.0.1:6379/0" {
		t.Errorf("default url = %q", cfg.RedisURL)
	}
}

func TestParseFlagsURLFromEnvironment(t *testing.T) {
	t.Setenv("GOTASKS_REDIS_URL", "redis://example:6380/2")
	cfg, err := worker.ParseFlags("worker", nil, &bytes.Buffer{})
	if err != nil || cfg.RedisURL != "redis://example:6380/2" {
		t.Fatalf("url %q, %v", cfg.RedisURL, err)
	}
	cfg, err = worker.ParseFlags("worker", []string{"--redis-url", "redis://other:1/0"}, &bytes.Buffer{})
	if err != nil || cfg.RedisURL != "redis://other:1/0" {
		t.Fatalf("flag must win over the environment: %q, %v", cfg.RedisURL, err)
	}
}

func TestParseFlagsRejectsBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"--concurrency", "0"},
		{"--max-tasks", "-1"},
		{"--log-format", "xml"},
		{"--log-level", "loud"},
		{"--no-such-flag"},
		{"stray"},
	} {
		if _, err := worker.ParseFlags("worker", args, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestHelpExplainsFlags(t *testing.T) {
	var out bytes.Buffer
	_, err := worker.ParseFlags("worker", []string{"--help"}, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	for _, f := range []string{"redis-url", "queue", "exclude-queue", "concurrency", "worker-id", "max-tasks",
		"batch", "shutdown-timeout", "log-format", "log-level", "no-startup-delay", "SIGTERM",
		"redis-username", "redis-password", "GOTASKS_REDIS_PASSWORD", "tls-ca", "tls-cert", "tls-key",
		"tls-server-name", "tls-skip-verify", "TESTING ONLY", "health-addr", "metrics-addr", "redis+cluster://", "redis+sentinel://"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("help does not mention %s", f)
		}
	}
}

func TestParseFlagsSecurity(t *testing.T) {
	t.Setenv("GOTASKS_REDIS_URL", "")
	t.Setenv("GOTASKS_REDIS_PASSWORD", "")
	cfg, err := worker.ParseFlags("worker", []string{
		"--redis-url", "rediss://redis.example:6380/1", "--redis-username", "app", "--redis-password", "s3cret",
		"--tls-ca", "/etc/ca.pem", "--tls-cert", "/etc/client.pem", "--tls-key", "/etc/client.key",
		"--tls-server-name", "redis.internal", "--tls-skip-verify",
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := broker.ConnOptions{
		Username: "app", Password: "s3cret", CAFile: "/etc/ca.pem", CertFile: "/etc/client.pem", KeyFile: "/etc/client.key",
		ServerName: "redis.internal", InsecureSkipVerify: true, PoolSize: 12,
	}
	if got := cfg.ConnOptions(12); got != want {
		t.Errorf("ConnOptions = %+v\nwant %+v", got, want)
	}
	cfg, err = worker.ParseFlags("worker", []string{"--redis-url", "redis://h/0"}, &bytes.Buffer{})
	if err != nil || cfg.RedisUsername != "" || cfg.RedisPassword != "" || cfg.TLSCA != "" || cfg.TLSSkipVerify {
		t.Errorf("defaults: %v, user %q, password set %v, ca %q, skip verify %v", err, cfg.RedisUsername, cfg.RedisPassword != "", cfg.TLSCA, cfg.TLSSkipVerify)
	}
}

func TestParseFlagsPasswordFromEnvironment(t *testing.T) {
	t.Setenv("GOTASKS_REDIS_URL", "")
	t.Setenv("GOTASKS_REDIS_PASSWORD", "from-env")
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "from-env"},
		{[]string{"--redis-password", "from-flag"}, "from-flag"},
		{[]string{"--redis-password="}, ""}, // explicitly none
	} {
		cfg, err := worker.ParseFlags("worker", c.args, &bytes.Buffer{})
		if err != nil || cfg.RedisPassword != c.want {
			t.Errorf("%v: password %q, %v; want %q", c.args, cfg.RedisPassword, err, c.want)
		}
	}
}

// TestHelpHidesSecrets: the defaults --help prints come from the
// environment, which may hold passwords.
func TestHelpHidesSecrets(t *testing.T) {
	t.Setenv("GOTASKS_REDIS_URL", "redis://app:url-s3cret@redis.example:6379/0")
	t.Setenv("GOTASKS_REDIS_PASSWORD", "env-s3cret")
	var out bytes.Buffer
	if _, err := worker.ParseFlags("worker", []string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(out.String(), "s3cret") {
		t.Errorf("--help shows a password:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "redis://app:xxxxx@redis.example:6379/0") {
		t.Errorf("--help does not show the redacted default URL:\n%s", out.String())
	}
}

func TestParseFlagsRejectsBadTLS(t *testing.T) {
	t.Setenv("GOTASKS_REDIS_URL", "")
	for _, args := range [][]string{
		{"--redis-url", "redis://app:s3cret@h/0", "--tls-ca", "/etc/ca.pem"},
		{"--redis-url", "redis://app:s3cret@h/0", "--tls-skip-verify"},
		{"--redis-url", "memory://", "--tls-cert", "/etc/client.pem"},
		{"--tls-server-name", "x"}, // the default redis:// URL
		{"--redis-url", "rediss://h/0", "--tls-key", "/etc/client.key"},
		{"--redis-url", "redis://app:s3cret@h:port/0"},
		{"--redis-url", "redis://app:s3/cret@h/0"},
		{"--redis-url", "redis://app:s3cret@h/0?colour=blue"},
		{"--redis-url", "rediss://app:s3cret@h/0?tls_ca=/nonexistent/ca.pem"},
	} {
		_, err := worker.ParseFlags("worker", args, &bytes.Buffer{})
		if err == nil {
			t.Errorf("%v: no error", args)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%v: error %q shows the password", args, err)
		}
	}
}

func TestOpenRedisErrorsHidePassword(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	_, _, err := worker.OpenRedisWith("rediss://app:s3cret@h:6380/0", broker.Options{},
		broker.ConnOptions{CAFile: "/nonexistent/ca.pem"}, log)
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "/nonexistent/ca.pem") ||
		!strings.Contains(err.Error(), "app:xxxxx@h:6380") {
		t.Errorf("missing CA: %v", err)
	}
	if _, _, err := worker.OpenRedisWith("memory://", broker.Options{}, broker.ConnOptions{CAFile: "/etc/ca.pem"}, log); err == nil {
		t.Error("memory:// with a TLS CA: no error")
	}
}

// TestRunConfigWithACL: a worker against a Redis with an ACL user, with the
// password in the URL or in --redis-password; the debug log never shows it.
func TestRunConfigWithACL(t *testing.T) {
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
			t.Setenv("GOTASKS_REDIS_PASSWORD", "")
			args := append([]string{"--batch", "--no-startup-delay", "--log-level", "debug", "--queue", "q"}, c.args...)
			cfg, err := worker.ParseFlags("worker", args, &bytes.Buffer{})
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
			err = worker.RunConfig(ctx, cfg, cfg.NewLogger(&out))
			log := out.String()
			if err != nil {
				t.Errorf("RunConfig: %v", err)
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

// TestTLSFlagsWithEveryTLSScheme: --tls-* flags go with any rediss URL
// (cluster and sentinel, either spelling) and with no plain one.
func TestTLSFlagsWithEveryTLSScheme(t *testing.T) {
	t.Setenv("GOTASKS_REDIS_URL", "")
	for _, url := range []string{"rediss://h:6380/0", "rediss+cluster://n1,n2", "rediss-cluster://n1",
		"rediss+sentinel://s1/m", "rediss-sentinel://s1/m"} {
		if _, err := worker.ParseFlags("worker", []string{"--redis-url", url, "--tls-server-name", "x"}, &bytes.Buffer{}); err != nil {
			t.Errorf("%s with --tls-server-name: %v", url, err)
		}
	}
	for _, url := range []string{"redis://h/0", "redis+cluster://n1", "redis-sentinel://s1/m"} {
		if _, err := worker.ParseFlags("worker", []string{"--redis-url", url, "--tls-server-name", "x"}, &bytes.Buffer{}); err == nil {
			t.Errorf("%s with --tls-server-name: no error", url)
		}
	}
}

func TestParseFlagsMetricsAddr(t *testing.T) {
	cfg, err := worker.ParseFlags("worker", nil, &bytes.Buffer{})
	if err != nil || cfg.MetricsAddr != "" {
		t.Fatalf("default: %q, %v", cfg.MetricsAddr, err)
	}
	cfg, err = worker.ParseFlags("worker", []string{"--metrics-addr", ":9090"}, &bytes.Buffer{})
	if err != nil || cfg.MetricsAddr != ":9090" {
		t.Fatalf("--metrics-addr :9090: %q, %v", cfg.MetricsAddr, err)
	}
	if _, err := worker.ParseFlags("worker", []string{"--metrics-addr", "9090"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Errorf("--metrics-addr 9090: %v", err)
	}
}

// TestRunConfigServesMetrics runs the worker command with --metrics-addr:
// the tasks it runs show in /metrics along with its queues and its
// in-flight gauge, and the server is gone once RunConfig returns.
func TestRunConfigServesMetrics(t *testing.T) {
	e := setup(t)
	must[*task.Result[int]](t)(addTask.Enqueue(e.ctx, [2]int{1, 2}))
	cfg, err := worker.ParseFlags("worker", []string{
		"--redis-url", "redis://" + e.m.Addr() + "/0", "--no-startup-delay", "--queue", task.DefaultQueue,
		"--concurrency", "1", "--worker-id", "w-metrics", "--metrics-addr", "127.0.0.1:0", "--log-format", "json",
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
	defer func() {
		cancel()
		<-finished
	}()

	var addr string
	waitFor(t, "the metrics server to listen", func() bool {
		for line := range strings.Lines(logs.String()) {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "metrics server listening" {
				addr = rec.Addr
				return true
			}
		}
		return false
	})
	url := "http://" + addr + metrics.Path
	want := []string{
		`gotasks_tasks_completed_total{queue="default",task="workertest.add"} 1`,
		`gotasks_tasks_started_total{queue="default",task="workertest.add"} 1`,
		`gotasks_task_duration_seconds_count{queue="default",task="workertest.add"} 1`,
		`gotasks_queue_tasks{queue="default",state="pending"} 0`,
		`gotasks_worker_inflight_tasks{worker="w-metrics"} 0`,
		`gotasks_worker_concurrency{worker="w-metrics"} 1`,
		`gotasks_redis_up 1`,
	}
	var body string
	waitFor(t, "the task to show in /metrics", func() bool {
		code, b, err := get(t, url)
		body = b
		return err == nil && code == http.StatusOK && strings.Contains(b, want[0])
	})
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}

	cancel()
	<-finished
	if runErr != nil {
		t.Fatalf("RunConfig: %v", runErr)
	}
	if _, _, err := get(t, url); err == nil {
		t.Error("the metrics server still answers after RunConfig returned")
	}
}

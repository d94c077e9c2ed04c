package worker_test

import (
	"bytes"
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

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
		"batch", "shutdown-timeout", "log-format", "log-level", "no-startup-delay", "SIGTERM"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("help does not mention %s", f)
		}
	}
}

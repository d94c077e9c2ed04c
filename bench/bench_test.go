package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests are not run by the main module's CI (bench is a module of
// its own); run them with: cd bench && go test ./...

func TestMain(m *testing.M) {
	// The drain with two worker processes re-executes this test binary.
	if name := os.Getenv(childEnv); name != "" {
		os.Exit(childMain(name, os.Args[1:]))
	}
	code := m.Run()
	if shared.srv != nil {
		shared.srv.Stop()
	}
	os.Exit(code)
}

// requireRedis skips without redis-server, except in CI (CI set), where
// that is a failure: CI must never pass by skipping.
func requireRedis(tb testing.TB) {
	tb.Helper()
	if findRedisServer() != "" {
		return
	}
	const msg = "redis-server not found (in $REDIS_SERVER, $PATH, /usr/bin, /usr/local/bin): the bench needs a real Redis; install it (apt-get install redis-server, brew install redis)"
	if os.Getenv("CI") != "" {
		tb.Fatal(msg + " [CI is set, so this is a failure, not a skip]")
	}
	tb.Skip(msg)
}

var shared struct {
	once sync.Once
	srv  *redisServer
	err  error
}

// sharedRedisURL is a private redis-server shared by the benchmarks of
// this test binary; TestMain stops it.
func sharedRedisURL(tb testing.TB) string {
	tb.Helper()
	requireRedis(tb)
	shared.once.Do(func() { shared.srv, shared.err = startRedis(context.Background()) })
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.srv.URL()
}

// TestQuickRun runs the whole bench in --quick mode, with its own private
// redis-server, and checks that the table and the JSON have every row, for
// both systems where both are measured, so that a broken bench is caught.
func TestQuickRun(t *testing.T) {
	requireRedis(t)
	if testing.Short() {
		t.Skip("a full --quick run takes about 20s")
	}
	path := filepath.Join(t.TempDir(), "report.json")
	var stdout, stderr bytes.Buffer
	if code := cli([]string{"--quick", "--json", path}, &stdout, &stderr); code != 0 {
		t.Fatalf("bench --quick exited %d\nstderr:\n%s", code, stderr.String())
	}
	t.Logf("\n%s", stdout.String())
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report JSON: %v\n%s", err, b)
	}
	if rep.Machine.Asynq != "v0.26.0" || rep.Machine.Redis == "unknown" || rep.Config.PayloadBytes == 0 {
		t.Errorf("machine %+v, payload %d bytes", rep.Machine, rep.Config.PayloadBytes)
	}
	byID := map[string]Row{}
	for _, r := range rep.Rows {
		byID[r.ID] = r
	}
	for _, m := range metrics(rep.Config) {
		r, ok := byID[m.id]
		switch {
		case !ok:
			t.Errorf("%s: no row in the JSON", m.id)
			continue
		case r.Gotasks == nil || *r.Gotasks <= 0:
			t.Errorf("%s: no gotasks value: %+v", m.id, r)
		case m.asynq && (r.Asynq == nil || *r.Asynq <= 0 || r.Ratio == nil):
			t.Errorf("%s: no asynq value or ratio: %+v", m.id, r)
		case !m.asynq && r.Asynq != nil:
			t.Errorf("%s: asynq value for a gotasks-only row: %+v", m.id, r)
		case m.target != "" && r.Met == nil:
			t.Errorf("%s: target %q not checked: %+v", m.id, m.target, r)
		}
		if !strings.Contains(stdout.String(), m.label) {
			t.Errorf("%s: %q is not in the table", m.id, m.label)
		}
		if sc := r.Scale; strings.HasPrefix(m.id, "scale_") {
			if sc == nil || len(sc.Shares) != sc.Processes || len(sc.CPU.Workers) != sc.Processes || sc.VsOne == nil {
				t.Errorf("%s: scale detail %+v", m.id, sc)
			}
		} else if sc != nil {
			t.Errorf("%s: scale detail on a row outside the scale section", m.id)
		}
	}
}

// TestScaleResult checks the best-round pick, the shares and the note of
// a scale row.
func TestScaleResult(t *testing.T) {
	k := scaleKind{id: "noop_c16", what: "no-op tasks", conc: 16}
	slow := procsResult{n: 1000, elapsed: 2 * time.Second, ran: []int64{500, 500}, cpu: []time.Duration{time.Second, time.Second}}
	fast := procsResult{
		n: 1000, elapsed: time.Second, ran: []int64{400, 600}, cpu: []time.Duration{300 * time.Millisecond, 500 * time.Millisecond},
		redisCPU: 900 * time.Millisecond, benchCPU: 100 * time.Millisecond,
		machineBusy: 1900 * time.Millisecond, machineOK: true, cpus: 2,
	}
	res := newScaleResult(k, []procsResult{slow, fast, slow})
	if res.Rate != 1000 || !slices.Equal(res.Rounds, []float64{500, 1000, 500}) {
		t.Errorf("rate %v, rounds %v: want the best round, 1000", res.Rate, res.Rounds)
	}
	if res.ShareMin != 0.4 || res.ShareMax != 0.6 || res.Processes != 2 {
		t.Errorf("shares %v (%v–%v), %d processes", res.Shares, res.ShareMin, res.ShareMax, res.Processes)
	}
	if res.CPU.Redis != 90 || !slices.Equal(res.CPU.Workers, []float64{30, 50}) || res.CPU.Bench != 10 ||
		res.CPU.Others == nil || *res.CPU.Others != 10 || res.RedisPerTask != 900 || res.WorkerPerTask != 800 {
		t.Errorf("CPU %+v, others %v; %v µs/task Redis, %v workers", res.CPU, res.CPU.Others, res.RedisPerTask, res.WorkerPerTask)
	}
	res.VsOne = ptr(1.5)
	for _, want := range []string{"1.50× 1 process", "shares 40.0–60.0%", "workers 30+50", "redis 90", "others 10", "best of 3"} {
		if !strings.Contains(res.note(), want) {
			t.Errorf("note %q lacks %q", res.note(), want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		json string
	}{
		{nil, ""},
		{[]string{"--json"}, "-"},
		{[]string{"--json=out.json"}, "out.json"},
		{[]string{"--json", "out.json"}, "out.json"},
		{[]string{"--quick", "--json", "--skip-asynq"}, "-"},
	} {
		_, opts, err := parseFlags(tc.args, io.Discard)
		if err != nil || opts.json != tc.json {
			t.Errorf("%q: json %q, %v; want %q", tc.args, opts.json, err, tc.json)
		}
	}
	cfg, _, err := parseFlags([]string{"--quick", "--tasks", "500", "--skip-million", "--redis-url", "redis://x:1/0"}, io.Discard)
	if err != nil || !cfg.Quick || cfg.Tasks != 500 || !cfg.SkipMillion || cfg.RedisURL != "redis://x:1/0" {
		t.Errorf("cfg %+v, %v", cfg, err)
	}
	if _, _, err := parseFlags([]string{"stray"}, io.Discard); err == nil {
		t.Error("a stray argument was accepted")
	}
	cfg, _, err = parseFlags([]string{"--only", "drain, latency"}, io.Discard)
	if err != nil || !slices.Equal(cfg.Only, []string{"drain", "latency"}) {
		t.Errorf("--only: %q, %v", cfg.Only, err)
	}
	cfg, _, err = parseFlags([]string{"--only", "scale", "--scale-rounds", "5"}, io.Discard)
	if err != nil || cfg.ScaleRounds != 5 || !slices.Equal(cfg.Only, []string{"scale"}) {
		t.Errorf("--scale-rounds: %d, %q, %v", cfg.ScaleRounds, cfg.Only, err)
	}
	if _, _, err := parseFlags([]string{"--only", "drian"}, io.Discard); err == nil {
		t.Error("--only accepted an unknown measurement")
	}
}

func TestPercentile(t *testing.T) {
	var d []int
	for i := 1; i <= 100; i++ {
		d = append(d, i)
	}
	ds := make([]time.Duration, len(d))
	for i, v := range d {
		ds[i] = time.Duration(v)
	}
	if p := percentile(ds, 50); p != 50 {
		t.Errorf("p50 = %v", p)
	}
	if p := percentile(ds, 99); p != 99 {
		t.Errorf("p99 = %v", p)
	}
	if p := percentile(ds[:1], 99); p != 1 {
		t.Errorf("p99 of one = %v", p)
	}
}

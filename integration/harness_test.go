package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/internal/redistest"
	"github.com/gotasks/gotasks/task"
)

// The harness: a real redis-server per test, the cmd/worker binary built
// once, worker processes started with flags, and the test process as the
// producer.

var (
	redisServerBin string // path of redis-server; "" when missing
	workerBin      string // path of the built cmd/worker
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	redisServerBin = redistest.Bin()
	if redisServerBin == "" && os.Getenv("CI") == "" {
		// Every test skips (requireRedis says why); no need to build.
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "gotasks-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	workerBin = filepath.Join(dir, "worker")
	if err := buildWorker(workerBin); err != nil {
		fmt.Fprintln(os.Stderr, "integration: build cmd/worker:", err)
		return 1
	}
	return m.Run()
}

// requireRedis skips the test when there is no redis-server, except in CI
// (CI set), where that is a failure: CI must never pass by skipping.
func requireRedis(t *testing.T) { t.Helper(); redistest.Require(t) }

// buildWorker builds cmd/worker into out, with -race when this test binary
// has it (so that races in the worker fail the tests too), unless
// $GOTASKS_IT_WORKER_RACE says otherwise (0 or 1).
func buildWorker(out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	root, err := moduleRoot(goBin)
	if err != nil {
		return err
	}
	args := []string{"build", "-o", out}
	race := raceEnabled
	if v := os.Getenv("GOTASKS_IT_WORKER_RACE"); v != "" {
		race = v == "1" || v == "true"
	}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/worker")
	cmd := exec.Command(goBin, args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

func moduleRoot(goBin string) (string, error) {
	b, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err == nil {
		if mod := strings.TrimSpace(string(b)); mod != "" && mod != os.DevNull {
			return filepath.Dir(mod), nil
		}
	}
	// The test runs in integration/; the module root is its parent.
	abs, err := filepath.Abs("..")
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(abs, "go.mod")); err != nil {
		return "", fmt.Errorf("cannot find the module root (go env GOMOD failed and ../go.mod is missing)")
	}
	return abs, nil
}

// ---------------------------------------------------------------------------
// redis-server

// redisServer is a redis-server process owned by one test (see
// internal/redistest: Port, Addr, URL, Kill, Start, Restart, Pause, Resume).
type redisServer struct{ *redistest.Server }

// startRedis starts a redis-server on a free port and stops it at cleanup.
func startRedis(t *testing.T) *redisServer { t.Helper(); return startRedisWith(t) }

// startRedisWith is startRedis with more redis-server arguments, which
// override the defaults (for example "--appendonly", "yes").
func startRedisWith(t *testing.T, extra ...string) *redisServer {
	t.Helper()
	return &redisServer{redistest.Start(t, extra...)}
}

// stop is Kill.
func (s *redisServer) stop() { s.Kill() }

// ---------------------------------------------------------------------------
// the producer

// env is one test's world: a redis-server and the test process as producer,
// with a broker configured as the "default" task backend.
type env struct {
	t     *testing.T
	Redis *redisServer
	URL   string
	B     *broker.Redis // the producer's backend
	R     redis.UniversalClient
	ctx   context.Context
}

// newEnv starts a redis-server and configures the producer. The task
// backend registry is process-wide, so tests using it must not run in
// parallel.
func newEnv(t *testing.T) *env {
	t.Helper()
	srv := startRedis(t)
	e := newEnvOn(t, srv.URL())
	e.Redis = srv
	return e
}

// newEnvOn is newEnv for a Redis the test started itself (env.Redis is nil).
func newEnvOn(t *testing.T, url string) *env {
	t.Helper()
	b, err := broker.Open(url, broker.Options{})
	if err != nil {
		t.Fatalf("broker.Open: %v", err)
	}
	task.Configure(map[string]task.Backend{task.DefaultBackendName: b})
	t.Cleanup(func() {
		task.Configure(nil)
		_ = b.Close()
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &env{t: t, URL: url, B: b, R: b.Client(), ctx: ctx}
}

// client opens another broker on the same Redis (a "third client" that did
// not enqueue anything), closed at cleanup.
func (e *env) client() *broker.Redis {
	e.t.Helper()
	b, err := broker.Open(e.URL, broker.Options{})
	if err != nil {
		e.t.Fatalf("broker.Open: %v", err)
	}
	e.t.Cleanup(func() { _ = b.Close() })
	return b
}

// ---------------------------------------------------------------------------
// worker processes

// workerConfig are the flags of one worker process.
type workerConfig struct {
	ID              string
	Queues          []string      // default: default
	Concurrency     int           // default 1
	ShutdownTimeout time.Duration // default 5s
	Lease           time.Duration // default 30s
	LogLevel        string        // default warn, or $GOTASKS_IT_LOG_LEVEL
	Extra           []string      // more flags
	// Ready makes startWorker wait until the worker has run a probe task
	// (demo.add on a queue of its own), so that it is known to be claiming.
	Ready bool
}

// workerProc is a running cmd/worker process.
type workerProc struct {
	ID      string
	t       *testing.T
	cmd     *exec.Cmd
	logPath string
	started time.Time

	done     chan struct{} // closed when the process has exited
	state    *os.ProcessState
	expected atomic.Bool // the test signalled or killed it
}

func probeQueue(id string) string { return "probe." + id }

// startWorker starts a cmd/worker process; it is killed at cleanup, and its
// log is printed if the test failed. A worker that exits without being told
// to, or whose log shows a data race, fails the test.
func (e *env) startWorker(cfg workerConfig) *workerProc {
	t := e.t
	t.Helper()
	if cfg.ID == "" {
		t.Fatal("startWorker: ID is required")
	}
	if len(cfg.Queues) == 0 {
		cfg.Queues = []string{task.DefaultQueue}
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 1
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	if cfg.Lease == 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "warn"
		if l := os.Getenv("GOTASKS_IT_LOG_LEVEL"); l != "" {
			cfg.LogLevel = l
		}
	}
	args := []string{
		"--redis-url", e.URL, "--no-startup-delay",
		"--concurrency", strconv.Itoa(cfg.Concurrency),
		"--worker-id", cfg.ID,
		"--shutdown-timeout", cfg.ShutdownTimeout.String(),
		"--lease", cfg.Lease.String(),
		"--log-level", cfg.LogLevel,
	}
	for _, q := range cfg.Queues {
		args = append(args, "--queue", q)
	}
	if cfg.Ready {
		args = append(args, "--queue", probeQueue(cfg.ID))
	}
	args = append(args, cfg.Extra...)

	w := &workerProc{ID: cfg.ID, t: t, done: make(chan struct{})}
	w.logPath = filepath.Join(t.TempDir(), "worker-"+cfg.ID+".log")
	logf, err := os.Create(w.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	w.cmd = exec.Command(workerBin, args...)
	w.cmd.Stdout, w.cmd.Stderr = logf, logf
	// A race-built worker otherwise sleeps 1s at exit (for late reports);
	// graceful shutdown times would include it.
	w.cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("start worker %s: %v", cfg.ID, err)
	}
	w.started = time.Now()
	go func() {
		_ = w.cmd.Wait()
		w.state = w.cmd.ProcessState
		close(w.done)
	}()
	t.Cleanup(func() {
		exitedOnItsOwn := false
		select {
		case <-w.done:
			exitedOnItsOwn = !w.expected.Load()
		default:
			w.expected.Store(true)
			_ = w.cmd.Process.Kill()
			<-w.done
		}
		log := w.Log()
		if exitedOnItsOwn {
			t.Errorf("worker %s exited on its own (%v) during the test", w.ID, w.state)
		}
		if strings.Contains(log, "WARNING: DATA RACE") {
			t.Errorf("worker %s: the race detector found a data race", w.ID)
		}
		if t.Failed() || os.Getenv("GOTASKS_IT_SHOW_LOGS") != "" {
			t.Logf("worker %s (%s) log:\n%s", w.ID, strings.Join(args, " "), tail([]byte(log), 8000))
		}
	})
	if cfg.Ready {
		e.waitReady(w)
	}
	return w
}

// waitReady runs a probe task on the worker's own queue and waits until
// that worker has completed it.
func (e *env) waitReady(w *workerProc) {
	e.t.Helper()
	r, err := addTask.Using(task.Queue(probeQueue(w.ID))).Enqueue(e.ctx, addArgs{A: 1, B: 1})
	if err != nil {
		e.t.Fatalf("enqueue probe for worker %s: %v", w.ID, err)
	}
	e.eventually(30*time.Second, "worker "+w.ID+" runs its probe task", func() (bool, string) {
		select {
		case <-w.done:
			e.t.Fatalf("worker %s exited before it was ready: %v\n%s", w.ID, w.state, tail([]byte(w.Log()), 4000))
		default:
		}
		if err := r.Refresh(e.ctx); err != nil {
			return false, err.Error()
		}
		return r.IsFinished(), string(r.Status)
	})
	if v, err := r.Value(); err != nil || v != 2 || len(r.WorkerIDs) != 1 || r.WorkerIDs[0] != w.ID {
		e.t.Fatalf("probe of worker %s: value %d, err %v, workers %v", w.ID, v, err, r.WorkerIDs)
	}
}

// Log returns what the worker wrote to stdout and stderr so far.
func (w *workerProc) Log() string {
	b, _ := os.ReadFile(w.logPath)
	return string(b)
}

// Signal sends sig to the worker (an expected exit follows).
func (w *workerProc) Signal(sig syscall.Signal) {
	w.t.Helper()
	w.expected.Store(true)
	if err := w.cmd.Process.Signal(sig); err != nil {
		w.t.Fatalf("signal %v to worker %s: %v", sig, w.ID, err)
	}
}

// Kill SIGKILLs the worker and waits until it is gone.
func (w *workerProc) Kill() {
	w.t.Helper()
	w.Signal(syscall.SIGKILL)
	<-w.done
}

// WaitExit waits up to timeout for the worker to exit and returns its state,
// or nil on timeout.
func (w *workerProc) WaitExit(timeout time.Duration) *os.ProcessState {
	select {
	case <-w.done:
		return w.state
	case <-time.After(timeout):
		return nil
	}
}

// Running reports whether the process has not exited.
func (w *workerProc) Running() bool {
	select {
	case <-w.done:
		return false
	default:
		return true
	}
}

// ---------------------------------------------------------------------------
// waiting and reading state

// eventually calls cond every 20ms until it returns true, and fails the
// test with what and cond's last detail after timeout.
func (e *env) eventually(timeout time.Duration, what string, cond func() (ok bool, detail string)) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %v waiting until %s (last: %s)", timeout, what, detail)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitDrained waits until queue has nothing pending, deferred or running:
// every task enqueued on it so far has a final result.
func (e *env) waitDrained(queue string, timeout time.Duration) {
	e.t.Helper()
	e.eventually(timeout, "queue "+queue+" is drained", func() (bool, string) {
		c, err := e.B.Count(e.ctx, queue)
		if err != nil {
			return false, err.Error()
		}
		return c.Pending+c.Deferred+c.Running == 0, fmt.Sprintf("%+v", c)
	})
}

// waitStatus waits until the result id has one of the statuses and returns it.
func (e *env) waitStatus(b *broker.Redis, id string, timeout time.Duration, want ...task.Status) *task.RawResult {
	e.t.Helper()
	var r *task.RawResult
	e.eventually(timeout, fmt.Sprintf("result %s is %v", id, want), func() (bool, string) {
		var err error
		r, err = b.GetResult(e.ctx, id)
		if err != nil {
			return false, err.Error()
		}
		for _, s := range want {
			if r.Status == s {
				return true, ""
			}
		}
		return false, string(r.Status)
	})
	return r
}

// results reads every id with b.GetResult, 32 at a time, and fails the test
// on any error.
func (e *env) results(b *broker.Redis, ids []string) []*task.RawResult {
	e.t.Helper()
	return readResults(e.t, b, ids, false)
}

// readResults reads every id with b.GetResult, 32 at a time, and fails the
// test on any error; with absentOK an id the backend does not know (a task
// lost in a failover) gives a nil entry instead.
func readResults(t *testing.T, b *broker.Redis, ids []string, absentOK bool) []*task.RawResult {
	t.Helper()
	out := make([]*task.RawResult, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r, err := b.GetResult(context.Background(), id)
			if absentOK && errors.Is(err, task.ErrResultNotFound) {
				return
			}
			out[i], errs[i] = r, err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		n := 0
		for _, err := range errs {
			if err != nil {
				n++
			}
		}
		t.Fatalf("GetResult failed for %d of %d ids; first errors: %v", n, len(ids), firstLines(err.Error(), 5))
	}
	return out
}

// execution is one line demo.record wrote to demo:executions:
// "start|end <id> <attempt> <worker> <tag>".
type execution struct {
	Kind    string // start or end
	ID      string
	Attempt int
	Worker  string
	Tag     string
}

func (x execution) String() string {
	return fmt.Sprintf("%s %s #%d on %s tag=%q", x.Kind, x.ID, x.Attempt, x.Worker, x.Tag)
}

// executions returns demo:executions in order.
func (e *env) executions() []execution {
	e.t.Helper()
	lines, err := e.R.LRange(e.ctx, "demo:executions", 0, -1).Result()
	if err != nil {
		e.t.Fatalf("read demo:executions: %v", err)
	}
	out := make([]execution, len(lines))
	for i, l := range lines {
		f := strings.SplitN(l, " ", 5)
		if len(f) != 5 || (f[0] != "start" && f[0] != "end") {
			e.t.Fatalf("demo:executions[%d] = %q: not \"start|end <id> <attempt> <worker> <tag>\"", i, l)
		}
		a, err := strconv.Atoi(f[2])
		if err != nil {
			e.t.Fatalf("demo:executions[%d] = %q: bad attempt", i, l)
		}
		out[i] = execution{Kind: f[0], ID: f[1], Attempt: a, Worker: f[3], Tag: f[4]}
	}
	return out
}

func tail(b []byte, n int) string {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		return "…" + string(b[len(b)-n:])
	}
	return string(b)
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "…")
	}
	return strings.Join(lines, "\n")
}

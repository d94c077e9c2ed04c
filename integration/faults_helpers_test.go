package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
)

// Helpers of the fault suite (faults_test.go), additive to the harness.

// ---------------------------------------------------------------------------
// a durable redis-server

// durableRedis is a redis-server with appendonly yes and appendfsync always
// in a directory of its own, which can be SIGKILLed and started again on the
// same port and directory: what it acknowledged survives.
type durableRedis struct {
	t    *testing.T
	Port int
	dir  string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func startDurableRedis(t *testing.T) *durableRedis {
	t.Helper()
	requireRedis(t)
	s := &durableRedis{t: t, dir: t.TempDir()}
	s.log = filepath.Join(s.dir, "redis.log")
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(s.log)
			t.Logf("redis-server (appendonly) log:\n%s", tail(b, 4000))
		}
	})
	var err error
	for try := 0; try < 5; try++ {
		if s.Port, err = freePort(); err != nil {
			continue
		}
		if err = s.start(); err == nil {
			return s
		}
	}
	t.Fatalf("start redis-server with appendonly: %v", err)
	return nil
}

func (s *durableRedis) URL() string  { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.Port) }
func (s *durableRedis) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

func (s *durableRedis) start() error {
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(redisServerBin,
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--dir", s.dir, "--save", "",
		"--appendonly", "yes", "--appendfsync", "always",
		"--daemonize", "no", "--loglevel", "warning")
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	client := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer client.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			b, _ := os.ReadFile(s.log)
			return fmt.Errorf("redis-server on port %d exited at start:\n%s", s.Port, tail(b, 2000))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := client.Ping(ctx).Err() // answers LOADING until the AOF is read
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redis-server on port %d does not answer PING: %v", s.Port, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill SIGKILLs the server (no shutdown, no final fsync) and waits for it.
func (s *durableRedis) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Start starts it again on the same port and directory (it reloads its
// append-only file).
func (s *durableRedis) Start() {
	s.t.Helper()
	var err error
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) { // the port may linger for a moment
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("restart redis-server on port %d: %v", s.Port, err)
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

// ---------------------------------------------------------------------------
// pausing a worker

// Pause stops the worker process (SIGSTOP) without marking its exit as
// expected: it must still be running once continued.
func (w *workerProc) Pause() {
	w.t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		w.t.Fatalf("SIGSTOP worker %s: %v", w.ID, err)
	}
}

// Resume continues a paused worker (SIGCONT).
func (w *workerProc) Resume() {
	w.t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		w.t.Fatalf("SIGCONT worker %s: %v", w.ID, err)
	}
}

// Pid is the worker's process id.
func (w *workerProc) Pid() int { return w.cmd.Process.Pid }

// LogLines returns the lines of the worker's log that contain s.
func (w *workerProc) LogLines(s string) []string {
	var out []string
	for _, l := range strings.Split(w.Log(), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// writing tasks straight into Redis

// rawEnvelope mirrors the broker's task envelope (broker/broker.go): a
// msgpack array. Tests write it by hand to inject tasks without the broker.
type rawEnvelope struct {
	_msgpack    struct{} `msgpack:",as_array"`
	Task        string
	Args        []byte
	EnqueuedAt  int64 // unix µs
	RunAfter    int64
	MaxAttempts int
	BackoffBase int64
	BackoffMax  int64
	Timeout     int64
}

func encodeRawEnvelope(t *testing.T, name string, args []byte) []byte {
	t.Helper()
	b, err := msgpack.Marshal(&rawEnvelope{Task: name, Args: args, EnqueuedAt: time.Now().UnixMicro()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// freshHeader is the header line of a task never claimed (see scripts.go):
// attempts 0, priority 0, seq, not started, no workers.
func freshHeader(seq int64) string { return fmt.Sprintf("0 0 %d 0 \n", seq) }

// injectRaw writes value under id into queue's tasks hash and makes it
// ready (pending, priority 0, FIFO position seq), as the enqueue script
// would, and registers the queue.
func (e *env) injectRaw(queue, id string, value []byte, seq int64) {
	e.t.Helper()
	tag := "{" + broker.DefaultPrefix + ":" + queue + "}"
	score := float64(100)*float64(int64(1)<<45) + float64(seq)
	pipe := e.R.TxPipeline()
	pipe.SAdd(e.ctx, broker.DefaultPrefix+":queues", queue)
	pipe.HSet(e.ctx, tag+":tasks", id, value)
	pipe.ZAdd(e.ctx, tag+":pending", redis.Z{Score: score, Member: id})
	pipe.Del(e.ctx, tag+":wake") // at most one wake-up token, as the scripts keep it
	pipe.RPush(e.ctx, tag+":wake", "1")
	if _, err := pipe.Exec(e.ctx); err != nil {
		e.t.Fatalf("inject %s into %s: %v", id, queue, err)
	}
}

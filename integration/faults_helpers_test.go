package integration

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/gotasks/gotasks/broker"
)

// Helpers of the fault suite (faults_test.go), additive to the harness.

// ---------------------------------------------------------------------------
// a durable redis-server

// startDurableRedis starts a redis-server with appendonly yes and
// appendfsync always, which can be SIGKILLed and started again on the same
// port and directory: what it acknowledged survives.
func startDurableRedis(t *testing.T) *redisServer {
	t.Helper()
	return startRedisWith(t, "--appendonly", "yes", "--appendfsync", "always")
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

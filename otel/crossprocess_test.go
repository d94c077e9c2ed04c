package gotasksotel_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/gotasks/gotasks/broker"
	gotasksotel "github.com/gotasks/gotasks/otel"
	"github.com/gotasks/gotasks/task"
)

// crossEcho is the task internal/testworker defines and runs (the same
// name and queue); in this process it is only enqueued.
var crossEcho = task.Define("otel.cross.echo", func(ctx context.Context, s string) (string, error) {
	return "", errors.New("the test worker process runs this task, not the test")
}, task.Queue("cross"))

// TestATraceCrossesFromTheProducerToAWorkerProcess enqueues a task on a
// real Redis inside a span, runs it in another process (the gotasks
// command line with the instrumentation, internal/testworker), and checks
// the consumer span that process exported against the producer span.
func TestATraceCrossesFromTheProducerToAWorkerProcess(t *testing.T) {
	url := startRedis(t)
	worker := buildTestWorker(t)
	e := newEnv(t, gotasksotel.Link) // the producer's side: its spans in memory
	b, err := broker.Open(url, broker.Options{EnqueueMiddleware: []task.EnqueueMiddleware{e.inst.EnqueueMiddleware()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	configure(t, b)

	for _, mode := range []gotasksotel.SpanMode{gotasksotel.Link, gotasksotel.Child} {
		t.Run(mode.String(), func(t *testing.T) {
			e.spans.Reset()
			ctx, request := e.tp.Tracer("test").Start(context.Background(), "request")
			res, err := crossEcho.Enqueue(ctx, "hello")
			request.End()
			if err != nil {
				t.Fatal(err)
			}
			pub := e.span(t, "publish cross")
			if pub.Parent.SpanID() != request.SpanContext().SpanID() {
				t.Errorf("publish parent %v, want the request span", pub.Parent.SpanID())
			}

			spans := runTestWorker(t, worker, url, mode)
			proc := findSpan(t, spans, "process cross")
			if proc.SpanKind != int(trace.SpanKindConsumer) {
				t.Errorf("process kind %d", proc.SpanKind)
			}
			wantAttrs(t, "process", proc.attributes(), map[string]string{
				"messaging.system": "gotasks", "messaging.operation.type": "process", "messaging.operation.name": "process",
				"messaging.destination.name": "cross", "messaging.message.id": res.ID, "gotasks.task.name": "otel.cross.echo",
				"gotasks.task.attempt": "1", "gotasks.worker.id": "otel-test-worker", "gotasks.backend": "default",
			})
			if proc.Status.Code != "Ok" {
				t.Errorf("process status %+v", proc.Status)
			}
			pubTrace, pubSpan := pub.SpanContext.TraceID().String(), pub.SpanContext.SpanID().String()
			switch mode {
			case gotasksotel.Link:
				if len(proc.Links) != 1 || proc.Links[0].SpanContext.TraceID != pubTrace || proc.Links[0].SpanContext.SpanID != pubSpan {
					t.Errorf("process links %+v, want the publish span %s/%s", proc.Links, pubTrace, pubSpan)
				}
				if proc.SpanContext.TraceID == pubTrace || proc.Parent.SpanID != "0000000000000000" {
					t.Errorf("process in trace %s under %s: want a trace of its own", proc.SpanContext.TraceID, proc.Parent.SpanID)
				}
			case gotasksotel.Child:
				if proc.SpanContext.TraceID != pubTrace || proc.Parent.SpanID != pubSpan || !proc.Parent.Remote {
					t.Errorf("process in trace %s under %+v, want the child of %s/%s", proc.SpanContext.TraceID, proc.Parent, pubTrace, pubSpan)
				}
				if len(proc.Links) != 0 {
					t.Errorf("links %+v", proc.Links)
				}
			}

			// The task ran in its consumer span.
			if err := res.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			v, err := res.Value()
			if want := proc.SpanContext.TraceID + "-" + proc.SpanContext.SpanID; err != nil || v != want {
				t.Errorf("the task saw span %q (%v), want %q", v, err, want)
			}
		})
	}
}

// exportedSpan is what we read of a span that stdouttrace wrote.
type exportedSpan struct {
	Name        string
	SpanContext exportedContext
	Parent      exportedContext
	SpanKind    int
	Attributes  []exportedAttr
	Links       []struct{ SpanContext exportedContext }
	Status      struct{ Code, Description string }
}

type exportedContext struct {
	TraceID, SpanID string
	Remote          bool
}

type exportedAttr struct {
	Key   string
	Value struct{ Value any } // a string, or a json.Number
}

func (s exportedSpan) attributes() map[string]string {
	m := map[string]string{}
	for _, a := range s.Attributes {
		m[a.Key] = fmt.Sprint(a.Value.Value)
	}
	return m
}

func findSpan(t *testing.T, spans []exportedSpan, name string) exportedSpan {
	t.Helper()
	var found []exportedSpan
	for _, s := range spans {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("the worker exported %d spans named %q, want 1: %+v", len(found), name, spans)
	}
	return found[0]
}

// runTestWorker runs the test worker on the queue "cross" until it is
// empty (--batch) and returns the spans it exported.
func runTestWorker(t *testing.T, bin, url string, mode gotasksotel.SpanMode) []exportedSpan {
	t.Helper()
	file := filepath.Join(t.TempDir(), "spans.json")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--redis-url", url, "--batch", "--queue", "cross",
		"--worker-id", "otel-test-worker", "--no-startup-delay", "--concurrency", "1", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "GOTASKS_OTEL_SPANS_FILE="+file, "GOTASKS_OTEL_SPAN_MODE="+mode.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("test worker: %v\n%s", err, out)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.UseNumber()
	var spans []exportedSpan
	for {
		var s exportedSpan
		if err := dec.Decode(&s); err == io.EOF {
			return spans
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		spans = append(spans, s)
	}
}

var testWorker struct {
	once sync.Once
	bin  string
	err  error
}

// buildTestWorker builds internal/testworker, once per test binary.
func buildTestWorker(t *testing.T) string {
	t.Helper()
	testWorker.once.Do(func() {
		dir, err := os.MkdirTemp("", "gotasks-otel-testworker")
		if err != nil {
			testWorker.err = err
			return
		}
		testWorker.bin = filepath.Join(dir, "testworker")
		out, err := exec.Command(goBin(), "build", "-o", testWorker.bin, "./internal/testworker").CombinedOutput()
		if err != nil {
			testWorker.err = fmt.Errorf("go build ./internal/testworker: %v\n%s", err, out)
		}
	})
	if testWorker.err != nil {
		t.Fatal(testWorker.err)
	}
	return testWorker.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if testWorker.bin != "" {
		_ = os.RemoveAll(filepath.Dir(testWorker.bin))
	}
	os.Exit(code)
}

// goBin is the go command that runs the tests.
func goBin() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// startRedis starts a redis-server on a free loopback port, in a temp
// dir, killed when the test ends, and returns its URL. Without
// redis-server the test skips, or fails when $CI is set. (The root
// module's internal/redistest is not importable from this module.)
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		msg := "redis-server not found in $PATH: install it (apt-get install redis-server) to run the cross-process test"
		if os.Getenv("CI") != "" {
			t.Fatal(msg + " [CI is set, so this is a failure, not a skip]")
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	var lastErr error
	for try := 0; try < 5; try++ { // a free port can be taken before the server binds it
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		logf, err := os.Create(filepath.Join(dir, "redis-"+strconv.Itoa(port)+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "no", "--daemonize", "no")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = waitPong(addr, exited); lastErr == nil {
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
			})
			return "redis://" + addr + "/0"
		}
		_ = cmd.Process.Kill()
		<-exited
	}
	t.Fatalf("start redis-server: %v", lastErr)
	return ""
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitPong waits until the server at addr answers PING, for 10s at most
// or until it exits.
func waitPong(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("redis-server on %s exited", addr)
		default:
		}
		if err := ping(addr); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING: %q", line)
	}
	return nil
}

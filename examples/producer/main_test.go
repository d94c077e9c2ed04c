package main

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/goleak"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/task"
	"github.com/gotasks/gotasks/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestProducerWithWorker runs the producer against miniredis with a worker
// in this process, which runs the producer's own demo.add definition.
func TestProducerWithWorker(t *testing.T) {
	t.Setenv("GOTASKS_REDIS_PASSWORD", "")
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}, Addr: m.Addr(), ContextTimeoutEnabled: true})
	defer func() { _ = c.Close() }()
	w := worker.New(broker.New(c, broker.Options{}), worker.Options{
		Queues: []string{task.DefaultQueue}, Concurrency: 4, WorkerID: "producer-test", Logger: slog.New(slog.DiscardHandler),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	defer func() {
		cancel()
		<-done
	}()

	var out, errOut bytes.Buffer
	code := run(context.Background(), "producer", []string{"--redis-url", "redis://" + m.Addr() + "/0", "-n", "50", "--timeout", "30s"}, &out, &errOut)
	if code != 0 || !strings.HasPrefix(out.String(), "50 demo.add tasks: 50 completed, 0 failed in ") {
		t.Errorf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errOut.String())
	}
	if got := w.Processed(); got != 50 {
		t.Errorf("the worker ran %d tasks, want 50", got)
	}
}

func TestProducerRedisDown(t *testing.T) {
	m := miniredis.RunT(t)
	addr := m.Addr()
	m.Close()
	var out, errOut bytes.Buffer
	code := run(context.Background(), "producer", []string{"--redis-url", "redis://" + addr + "/0", "--timeout", "5s"}, &out, &errOut)
	if code != 1 || out.Len() != 0 || !strings.Contains(errOut.String(), "redis") {
		t.Errorf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errOut.String())
	}
}

func TestProducerBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-n", "0"}, {"--no-such-flag"}, {"--redis-url", "http://x"}} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), "producer", args, &out, &errOut); code == 0 {
			t.Errorf("%v: exit 0", args)
		}
	}
}

func TestSummary(t *testing.T) {
	s := summary{completed: 8, failed: 2, wrong: 1, elapsed: 2 * time.Second}
	if got, want := s.String(), "10 demo.add tasks: 8 completed, 2 failed in 2s (5 tasks/s); 1 completed with a wrong sum"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// TestArgsMatchWorker: the worker command (package main, not importable)
// decodes demo.add's arguments into its own AddArgs. Tasks enqueued with a
// struct that drifted from it would fail on the worker, so compare the two
// field by field in its source.
func TestArgsMatchWorker(t *testing.T) {
	const path = "../../cmd/worker/tasks.go"
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var theirs *ast.StructType
	defined := false
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.TypeSpec:
			if st, ok := n.Type.(*ast.StructType); ok && n.Name.Name == "AddArgs" {
				theirs = st
			}
		case *ast.CallExpr:
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Define" && len(n.Args) > 0 {
				if lit, ok := n.Args[0].(*ast.BasicLit); ok && lit.Value == strconv.Quote(addTask.Name()) {
					defined = true
				}
			}
		}
		return true
	})
	if !defined {
		t.Fatalf("%s does not define %q", path, addTask.Name())
	}
	if theirs == nil {
		t.Fatalf("%s has no struct AddArgs", path)
	}
	var fields []string
	for _, fl := range theirs.Fields.List {
		typ, tag := "", ""
		if id, ok := fl.Type.(*ast.Ident); ok {
			typ = id.Name
		}
		if fl.Tag != nil {
			tag, _ = strconv.Unquote(fl.Tag.Value)
		}
		for _, name := range fl.Names {
			fields = append(fields, name.Name+" "+typ+" "+tag)
		}
	}
	var ours []string
	rt := reflect.TypeFor[AddArgs]()
	for i := range rt.NumField() {
		f := rt.Field(i)
		ours = append(ours, f.Name+" "+f.Type.String()+" "+string(f.Tag))
	}
	if !reflect.DeepEqual(fields, ours) {
		t.Errorf("AddArgs differ:\nworker   %q\nproducer %q", fields, ours)
	}
}

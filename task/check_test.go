package task_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
)

// allWell returns a configuration in which every task defined so far in
// this process (by any test) has its backend, with any queue allowed.
func allWell() map[string]task.Backend {
	m := map[string]task.Backend{"default": task.NewDummyBackend("default", task.BackendOptions{})}
	for _, name := range task.Registered() {
		d, _ := task.Lookup(name)
		if b, ok := d.(interface{ BackendName() string }); ok {
			m[b.BackendName()] = task.NewDummyBackend(b.BackendName(), task.BackendOptions{})
		}
	}
	return m
}

func TestCheck(t *testing.T) {
	ctx := context.Background()
	t.Cleanup(func() { task.Configure(nil) })

	// Backend names of this run only, so that -count=N runs do not see
	// each other's tasks.
	bMissing, bRestricted := taskName(t, "missing-backend"), taskName(t, "restricted-backend")
	missing := task.Define(taskName(t, "missing"), identity[int], task.UseBackend(bMissing))
	wrongQueue := task.Define(taskName(t, "wrong-queue"), identity[int], task.UseBackend(bRestricted), task.Queue("elsewhere"))
	rightQueue := task.Define(taskName(t, "right-queue"), identity[int], task.UseBackend(bRestricted), task.Queue("allowed"))

	// All well.
	task.Configure(allWell())
	if err := task.Check(ctx); err != nil {
		t.Fatalf("Check with every backend configured: %v", err)
	}

	// One backend missing, one restricting queues, one failing its own check.
	down := errors.New("connection refused")
	cfg := allWell()
	delete(cfg, bMissing)
	cfg[bRestricted] = task.NewDummyBackend(bRestricted, task.BackendOptions{Queues: []string{"allowed"}})
	cfg["check-down"] = checkingBackend{task.NewDummyBackend("check-down", task.BackendOptions{}), down}
	task.Configure(cfg)

	err := task.Check(ctx)
	if err == nil {
		t.Fatal("Check found nothing")
	}
	msg := err.Error()
	if !errors.Is(err, task.ErrUnknownBackend) {
		t.Errorf("the missing backend is not reported as ErrUnknownBackend: %v", err)
	}
	wantContains(t, "Check", msg, missing.Name(), `"`+bMissing+`"`)
	wantContains(t, "Check", msg, wrongQueue.Name(), `"elsewhere"`, bRestricted)
	if strings.Contains(msg, rightQueue.Name()) {
		t.Errorf("a task on an allowed queue is reported: %v", err)
	}
	if !errors.Is(err, down) {
		t.Errorf("the failing backend check is not reported (errors.Is): %v", err)
	}
	wantContains(t, "Check", msg, `"check-down"`, "connection refused")
	if n := strings.Count(msg, "\n") + 1; n != 3 {
		t.Errorf("Check reported %d problems, want 3:\n%v", n, err)
	}

	// A healthy Checker is not reported.
	cfg = allWell()
	cfg["check-up"] = checkingBackend{task.NewDummyBackend("check-up", task.BackendOptions{}), nil}
	task.Configure(cfg)
	if err := task.Check(ctx); err != nil {
		t.Fatalf("Check with a healthy Checker: %v", err)
	}

	// With nothing configured, only "default" exists.
	task.Configure(nil)
	err = task.Check(ctx)
	if err == nil || !strings.Contains(err.Error(), missing.Name()) {
		t.Fatalf("Check with nothing configured: %v", err)
	}
}

// Options that Enqueue would refuse are reported by Check at start-up,
// not first at Enqueue.
func TestCheckReportsInvalidOptions(t *testing.T) {
	ctx := context.Background()
	t.Cleanup(func() { task.Configure(nil) })
	bImm := taskName(t, "immediate")
	highPrio := task.Define(taskName(t, "prio"), identity[int], task.UseBackend(bImm), task.Priority(500))
	deferred := task.Define(taskName(t, "defer"), identity[int], task.UseBackend(bImm), task.RunAfter(time.Minute))
	badQueue := task.Define(taskName(t, "queue"), identity[int], task.UseBackend(bImm), task.Queue("no spaces"))
	// Invalid on purpose: gone when the test ends, or Check fails in every
	// later test (TestCheck under -count=2).
	t.Cleanup(func() {
		for _, name := range []string{highPrio.Name(), deferred.Name(), badQueue.Name()} {
			task.Unregister(name)
		}
	})
	cfg := allWell()
	cfg[bImm] = task.NewImmediateBackend(bImm, task.BackendOptions{})
	task.Configure(cfg)
	err := task.Check(ctx)
	if !errors.Is(err, task.ErrInvalidTask) {
		t.Fatalf("Check = %v, want ErrInvalidTask", err)
	}
	wantContains(t, "Check", err.Error(), highPrio.Name(), "priority 500", deferred.Name(), "RunAfter", badQueue.Name(), `"no spaces"`)
}

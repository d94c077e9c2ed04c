package gotaskstest_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/gotasks/gotasks/gotaskstest"
)

// recordingTB is the testing.TB that New sees: its test's own, except that
// a fatal failure is recorded, and ends New's goroutine, instead of failing
// the test.
type recordingTB struct {
	testing.TB
	mu    sync.Mutex
	fatal string
}

func (r *recordingTB) Fatalf(format string, args ...any) { r.fail(fmt.Sprintf(format, args...)) }
func (r *recordingTB) Fatal(args ...any)                 { r.fail(fmt.Sprint(args...)) }
func (r *recordingTB) FailNow()                          { r.fail("FailNow") }

func (r *recordingTB) fail(msg string) {
	r.mu.Lock()
	r.fatal = msg
	r.mu.Unlock()
	runtime.Goexit()
}

// newEnv calls gotaskstest.New(r) in a goroutine that a fatal failure can
// end, and returns the Env (nil if New failed) and the failure.
func newEnv(t *testing.T, r *recordingTB) (*gotaskstest.Env, string) {
	t.Helper()
	done := make(chan *gotaskstest.Env, 1)
	go func() {
		var env *gotaskstest.Env
		defer func() { done <- env }()
		env = gotaskstest.New(r)
	}()
	env := <-done
	r.mu.Lock()
	defer r.mu.Unlock()
	return env, r.fatal
}

const whyNotParallel = "gotaskstest.New configures the process-wide task backends: tests using it cannot run in parallel"

func TestNewFailsInEveryParallelSubtest(t *testing.T) {
	const n = 8
	failures := make(chan string, n)
	t.Run("group", func(t *testing.T) {
		for i := range n {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				env, msg := newEnv(t, &recordingTB{TB: t})
				if env != nil {
					t.Errorf("New returned an Env in a parallel subtest")
				}
				failures <- msg
			})
		}
	})
	close(failures)
	got := 0
	for msg := range failures {
		got++
		if !strings.Contains(msg, whyNotParallel) || !strings.Contains(msg, "is a parallel test") {
			t.Errorf("failure of New in a parallel subtest: %q", msg)
		}
	}
	if got != n {
		t.Errorf("%d of %d parallel subtests saw New fail", got, n)
	}
}

func TestNewFailsWhileAnotherEnvIsLive(t *testing.T) {
	gotaskstest.New(t)
	env, msg := newEnv(t, &recordingTB{TB: t})
	if env != nil {
		t.Errorf("a second New returned an Env while the first is live")
	}
	if !strings.Contains(msg, whyNotParallel) || !strings.Contains(msg, "while the Env of "+t.Name()+" is live") {
		t.Errorf("failure of a second New: %q", msg)
	}
}

func TestParallelAfterNewPanics(t *testing.T) {
	t.Run("sub", func(t *testing.T) {
		gotaskstest.New(t)
		defer func() {
			if p := fmt.Sprint(recover()); !strings.Contains(p, "can not use t.Parallel") {
				t.Errorf("t.Parallel after New: panic %q, want the testing package's refusal", p)
			}
		}()
		t.Parallel()
	})
}

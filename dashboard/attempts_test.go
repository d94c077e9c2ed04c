package dashboard_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/dashboard"
	"github.com/gotasks/gotasks/task"
)

func TestAttemptsLine(t *testing.T) {
	boom := &task.Error{Type: "E", Message: "boom"}
	for _, c := range []struct {
		name string
		r    task.RawResult
		want string
	}{
		{"not started", task.RawResult{Status: task.StatusNew}, "0 (max attempts 1)"},
		{"running", task.RawResult{Status: task.StatusRunning, Attempts: 1, WorkerIDs: []string{"w"}}, "1 (max attempts 1)"},
		{"failed once of three, waiting", task.RawResult{Status: task.StatusNew, Attempts: 1, WorkerIDs: []string{"w"},
			Errors: []*task.Error{boom}, Limits: task.Limits{MaxAttempts: 3}}, "1 (max attempts 3)"},
		{"failed for good", task.RawResult{Status: task.StatusFailed, Attempts: 1, WorkerIDs: []string{"w"},
			Err: boom, Errors: []*task.Error{boom}}, "1 (max attempts 1)"},
		{"retried by hand, waiting", task.RawResult{Status: task.StatusNew, Attempts: 1, WorkerIDs: []string{"w"},
			Errors: []*task.Error{boom}}, "1 (max attempts 1; retried by hand)"},
		{"retried by hand, running", task.RawResult{Status: task.StatusRunning, Attempts: 2, WorkerIDs: []string{"w", "w"},
			Errors: []*task.Error{boom}}, "2 (max attempts 1; retried by hand)"},
		{"retried by hand, complete", task.RawResult{Status: task.StatusComplete, Attempts: 2, WorkerIDs: []string{"w", "w"},
			Errors: []*task.Error{boom}}, "2 (max attempts 1; retried by hand)"},
		{"retried by hand, failed again", task.RawResult{Status: task.StatusFailed, Attempts: 2, WorkerIDs: []string{"w", "w"},
			Err: boom, Errors: []*task.Error{boom, boom}}, "2 (max attempts 1; retried by hand)"},
		{"handed back", task.RawResult{Status: task.StatusComplete, Attempts: 2, WorkerIDs: []string{task.UndeliveredWorker, "w"}},
			"2 (max attempts 1; 1 handed back unstarted)"},
		{"worker lost", task.RawResult{Status: task.StatusRunning, Attempts: 3, WorkerIDs: []string{"w1", "w2", "w3"}},
			"3 (max attempts 1; 2 ended without an outcome)"},
	} {
		if got := dashboard.AttemptsLine(&c.r); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// After a retry by hand (which keeps the attempt count), the task page
// says so instead of "2 (max attempts 1)".
func TestTaskPageAttemptsAfterRetryByHand(t *testing.T) {
	e := newEnv(t, dashboard.Options{})
	id := e.fail("q", "boom")
	_, body := e.get("/tasks/" + id)
	mustContain(t, "failed task page", body, `<dd id="attempts">1 (max attempts 1)</dd>`)
	if err := e.b.RetryFailed(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	if got, err := e.b.Claim(e.ctx, []string{"q"}, 1, time.Minute, "w-2"); err != nil || len(got) != 1 {
		t.Fatalf("Claim = %v, %v", got, err)
	}
	code, body := e.get("/tasks/" + id)
	if code != http.StatusOK {
		t.Fatalf("task page = %d", code)
	}
	mustContain(t, "page of the task retried by hand", body, `<dd id="attempts">2 (max attempts 1; retried by hand)</dd>`)
	if strings.Contains(body, "(max attempts 1)</") {
		t.Errorf("the page still reads as if under the limit:\n%s", body)
	}
}

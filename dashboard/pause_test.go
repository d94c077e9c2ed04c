package dashboard_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/dashboard"
	"github.com/gotasks/gotasks/task"
)

// The queue page pauses and resumes its queue: asked first (a page
// without JavaScript), then done; the overview and the API say paused.
func TestPauseAndResumeAQueue(t *testing.T) {
	e := newEnv(t, dashboard.Options{})
	e.enqueue("dashtest.p", "mail", 1)

	_, page := e.get("/queues/mail")
	mustContain(t, "the queue page", page, `action="/queues/mail/pause"`, ">Pause</button>")

	// Unconfirmed: a page that asks, nothing changed.
	code, body := e.post("/queues/mail", "/queues/mail/pause", url.Values{})
	if code != http.StatusOK || !strings.Contains(body, "Pause queue mail?") {
		t.Fatalf("unconfirmed pause = %d:\n%s", code, body)
	}
	if s, _ := e.b.StatsOf(e.ctx, "mail"); s.Paused() {
		t.Fatal("an unconfirmed pause paused the queue")
	}

	code, loc := e.post("/queues/mail", "/queues/mail/pause", url.Values{"confirmed": {"1"}})
	if code != http.StatusSeeOther || loc != "/queues/mail?done=paused" {
		t.Fatalf("pause = %d %s", code, loc)
	}
	if s, _ := e.b.StatsOf(e.ctx, "mail"); !s.Paused() {
		t.Fatal("the queue is not paused")
	}
	if got, err := e.b.Claim(e.ctx, []string{"mail"}, 1, time.Minute, "w"); err != nil || len(got) != 0 {
		t.Fatalf("claimed %d tasks of a queue paused from the dashboard (%v)", len(got), err)
	}
	_, page = e.get(loc)
	mustContain(t, "the paused queue page", page, `id="paused"`, "Paused since", `action="/queues/mail/resume"`, ">Resume</button>", `id="done"`)
	_, page = e.get("/")
	if !strings.Contains(page, `data-field="paused">paused</span>`) {
		t.Errorf("the overview does not show the queue paused:\n%s", page)
	}
	_, api := e.get("/api/stats")
	if !strings.Contains(api, `"paused":true`) {
		t.Errorf("/api/stats does not say paused: %s", api)
	}

	code, loc = e.post("/queues/mail", "/queues/mail/resume", url.Values{"confirmed": {"1"}})
	if code != http.StatusSeeOther || loc != "/queues/mail?done=resumed" {
		t.Fatalf("resume = %d %s", code, loc)
	}
	if got, err := e.b.Claim(e.ctx, []string{"mail"}, 1, time.Minute, "w"); err != nil || len(got) != 1 {
		t.Fatalf("after resume claimed %d tasks (%v)", len(got), err)
	}
	_, page = e.get("/")
	if !strings.Contains(page, `data-field="paused" hidden>`) {
		t.Errorf("the overview still shows the queue paused:\n%s", page)
	}

	// Refused: no such queue; a forged POST (no form token).
	if code, _ := e.post("/queues/mail", "/queues/nosuch/pause", url.Values{"confirmed": {"1"}}); code != http.StatusNotFound {
		t.Errorf("pause of a queue that does not exist = %d, want 404", code)
	}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/queues/mail/pause", strings.NewReader("confirmed=1"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if code, _ := e.do(req); code != http.StatusForbidden {
		t.Errorf("pause without the form token = %d, want 403", code)
	}
	if s, _ := e.b.StatsOf(e.ctx, "mail"); s.Paused() {
		t.Error("a refused POST paused the queue")
	}
}

// The failed tab retries or deletes every FAILED task of its queue.
func TestRetryAllAndDeleteAllFailedTasks(t *testing.T) {
	e := newEnv(t, dashboard.Options{})
	a, b := e.fail("q", "boom"), e.fail("q", "bang")
	_, page := e.get("/queues/q?state=failed")
	mustContain(t, "the failed tab", page, `id="retry-all"`, `id="delete-all"`)
	if _, page := e.get("/queues/q"); strings.Contains(page, `id="retry-all"`) {
		t.Error("the pending tab has a Retry all button")
	}
	code, body := e.post("/queues/q?state=failed", "/queues/q/delete-failed", url.Values{})
	if code != http.StatusOK || !strings.Contains(body, "Delete every failed task of queue q?") {
		t.Fatalf("unconfirmed delete = %d:\n%s", code, body)
	}
	code, loc := e.post("/queues/q?state=failed", "/queues/q/retry-failed", url.Values{"confirmed": {"1"}})
	if code != http.StatusSeeOther || loc != "/queues/q?done=retried-2&state=failed" {
		t.Fatalf("retry all = %d %s", code, loc)
	}
	for _, id := range []string{a, b} {
		if r, err := e.b.GetResult(e.ctx, id); err != nil || r.Status != "NEW" {
			t.Errorf("%s after retry all: %+v, %v", id, r, err)
		}
	}
	_, page = e.get(loc)
	mustContain(t, "the page after retry all", page, "Retried 2 failed tasks")
	c := e.fail("q2", "again")
	code, loc = e.post("/queues/q2?state=failed", "/queues/q2/delete-failed", url.Values{"confirmed": {"1"}})
	if code != http.StatusSeeOther || loc != "/queues/q2?done=deleted-1&state=failed" {
		t.Fatalf("delete all = %d %s", code, loc)
	}
	if _, err := e.b.GetResult(e.ctx, c); err == nil {
		t.Error("the deleted failed task is still there")
	}
}

// A running task's progress shows on its page and on the running tab.
func TestProgressShowsOnTheTaskAndQueuePages(t *testing.T) {
	e := newEnv(t, dashboard.Options{})
	id := e.enqueue("dashtest.p", "q", 1)
	got, err := e.b.Claim(e.ctx, []string{"q"}, 1, time.Minute, "w-1")
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	if err := e.b.SetProgress(e.ctx, got[0].Result, task.Progress{Done: 3, Total: 12, Message: "copying <files>", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_, page := e.get("/tasks/" + id)
	mustContain(t, "the task page", page, `id="progress"`, `<progress max="12" value="3">`, "3 of 12 (25%): copying &lt;files&gt;")
	_, page = e.get("/queues/q?state=running")
	mustContain(t, "the running tab", page, "3 of 12 (25%): copying &lt;files&gt;")
}

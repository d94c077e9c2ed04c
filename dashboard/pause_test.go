package dashboard_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/dashboard"
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
	if code != http.StatusOK || !strings.Contains(body, "Pause queue?") {
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

package integration

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
)

var dashboardListening = regexp.MustCompile(`msg="dashboard listening" url=(\S+)`)

// dashboardURL waits for worker w to log where its dashboard listens.
func (e *env) dashboardURL(w *workerProc) string {
	e.t.Helper()
	var url string
	e.eventually(20*time.Second, "worker "+w.ID+" to serve its dashboard", func() (bool, string) {
		if m := dashboardListening.FindStringSubmatch(w.Log()); m != nil {
			url = m[1]
			return true, ""
		}
		return false, "no \"dashboard listening\" line yet"
	})
	return url
}

// TestDashboardInBrowser drives the dashboard of a real worker process
// against a real Redis in headless Chromium: sign in with the token, see
// the queues, the live chart and a failed task with its error, retry it
// (answering the confirmation: No first, then Yes) and watch it run and
// complete, then cancel a deferred task. Screenshots go to the test's temp
// dir, or to $GOTASKS_SCREENSHOT_DIR.
func TestDashboardInBrowser(t *testing.T) {
	requireBrowser(t)
	e := newEnv(t)
	const token = "e2e-dashboard-token"
	w := e.startWorker(workerConfig{
		ID: "dash", Queues: []string{task.DefaultQueue, "emails"}, Concurrency: 2, LogLevel: "info", Ready: true,
		Extra: []string{"--dashboard-addr", "127.0.0.1:0", "--dashboard-token", token},
	})
	base := e.dashboardURL(w)
	shots := cmp.Or(os.Getenv("GOTASKS_SCREENSHOT_DIR"), t.TempDir())

	flaky, err := flakyTask.Enqueue(e.ctx, flakyArgs{FailAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	later, err := addTask.Using(task.Queue("emails"), task.RunAfter(time.Hour)).Enqueue(e.ctx, addArgs{A: 2, B: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := addTask.Enqueue(e.ctx, addArgs{A: i, B: 1}); err != nil {
			t.Fatal(err)
		}
	}
	e.waitStatus(e.B, flaky.ID, 30*time.Second, task.StatusFailed)
	e.waitDrained(task.DefaultQueue, 30*time.Second)

	b := startBrowser(t)
	b.open(base)
	if u := b.url(); !strings.Contains(u, "/login") {
		t.Fatalf("without the token the dashboard showed %s, want the login page", u)
	}
	b.typeInto(b.find("#token"), token)
	b.click(b.find("#signin"))
	e.eventually(10*time.Second, "the overview after signing in", func() (bool, string) {
		u := b.url()
		return u == base, u
	})

	src := b.source()
	for _, want := range []string{`data-queue="default"`, `data-queue="emails"`, flaky.ID, "upstream unavailable", "demo.flaky"} {
		if !strings.Contains(src, want) {
			t.Errorf("the overview lacks %q", want)
		}
	}
	if got := b.text(`tr[data-queue="emails"] [data-field="deferred"]`); got != "1" {
		t.Errorf("emails deferred = %q, want 1", got)
	}
	if got := b.text(`tr[data-queue="default"] [data-field="failed"]`); got != "1" {
		t.Errorf("default failed = %q, want 1", got)
	}
	// The chart plots a rate once it has polled twice (every 2s).
	e.eventually(20*time.Second, "the live chart to plot", func() (bool, string) {
		var points string
		b.eval(`return document.getElementById("throughput").getAttribute("data-points") || "0"`, &points)
		n, _ := strconv.Atoi(points)
		return n >= 2, points + " points"
	})
	// Tasks completing now show as a rate above zero.
	for i := range 300 {
		if _, err := addTask.Enqueue(e.ctx, addArgs{A: i, B: 2}); err != nil {
			t.Fatal(err)
		}
	}
	var peak float64
	e.eventually(20*time.Second, "the chart to show tasks completing", func() (bool, string) {
		var s string
		b.eval(`return document.getElementById("throughput").getAttribute("data-peak") || "0"`, &s)
		peak, _ = strconv.ParseFloat(s, 64)
		return peak > 0, "peak " + s + "/s"
	})
	// A rate is an increase over one poll (2s): 300 tasks cannot make
	// more than 300/s unless the chart counts wrong (units, double counts).
	if peak > 300 {
		t.Errorf("the chart's peak is %.1f tasks/s, more than the 300 tasks can make", peak)
	}
	t.Logf("overview: %s", b.screenshot(filepath.Join(shots, "dashboard-overview.png")))

	// Retry asks first; answering No changes nothing.
	retry := `#failures tr[data-id="` + flaky.ID + `"] button.retry`
	b.click(b.find(retry))
	if q := b.alert(); !strings.Contains(q, "Retry task "+flaky.ID) {
		t.Errorf("confirmation %q", q)
	}
	b.answer(false)
	// Nothing was sent: the page stays, with the task's row; a POST would
	// have left it for the task's page.
	if u := b.url(); u != base {
		t.Fatalf("after answering No the browser went to %s", u)
	}
	b.find(retry)
	if r, err := e.B.GetResult(e.ctx, flaky.ID); err != nil || r.Status != task.StatusFailed {
		t.Fatalf("after answering No: %v, %v; want FAILED untouched", r, err)
	}
	b.click(b.find(retry))
	b.alert()
	b.answer(true)
	e.eventually(10*time.Second, "the task page after the retry", func() (bool, string) {
		u := b.url()
		return strings.Contains(u, "/tasks/"+flaky.ID+"?done=retried"), u
	})
	if done := b.text("#done"); !strings.Contains(done, "Retried") {
		t.Errorf("after retry the page says %q", done)
	}
	// The worker runs it again (attempt 2 succeeds): reload until the page
	// shows it.
	e.eventually(30*time.Second, "the retried task to complete on its page", func() (bool, string) {
		b.open(base + "tasks/" + flaky.ID)
		st, err := b.tryText("#status")
		if err != nil {
			return false, err.Error()
		}
		return st == "COMPLETE", st
	})
	if v := b.text("#value"); v != "2" {
		t.Errorf("return value on the page %q, want 2 (the attempt that succeeded)", v)
	}
	t.Logf("task page: %s", b.screenshot(filepath.Join(shots, "dashboard-task.png")))
	r, err := e.B.GetResult(e.ctx, flaky.ID)
	if err != nil || r.Status != task.StatusComplete || r.Attempts != 2 || !slices.Equal(r.WorkerIDs, []string{"dash", "dash"}) {
		t.Fatalf("after the retry: %+v, %v; want COMPLETE after 2 attempts by dash", r, err)
	}

	// Cancel the deferred task from its page.
	b.open(base + "tasks/" + later.ID)
	b.click(b.find("button.cancel"))
	if q := b.alert(); !strings.Contains(q, "Cancel task "+later.ID) {
		t.Errorf("confirmation %q", q)
	}
	b.answer(true)
	e.eventually(10*time.Second, "the cancelled task's page", func() (bool, string) {
		st, err := b.tryText("#status")
		if err != nil {
			return false, err.Error()
		}
		return st == "CANCELLED", st
	})
	if r, err := e.B.GetResult(e.ctx, later.ID); err != nil || r.Status != task.StatusCancelled {
		t.Errorf("after cancel: %+v, %v", r, err)
	}

	// Pause the emails queue from its page: its tasks wait while the
	// worker goes on with the default queue's; Resume lets them run.
	b.open(base + "queues/emails")
	b.click(b.find("#pause"))
	if q := b.alert(); !strings.Contains(q, "Pause queue emails?") {
		t.Errorf("confirmation %q", q)
	}
	b.answer(true)
	e.eventually(10*time.Second, "the paused queue's page", func() (bool, string) {
		u := b.url()
		return strings.Contains(u, "/queues/emails?done=paused"), u
	})
	if got := b.text("#paused"); got != "paused" {
		t.Errorf("the queue page's badge says %q, want paused", got)
	}
	waiting, err := addTask.Using(task.Queue("emails")).Enqueue(e.ctx, addArgs{A: 4, B: 4})
	if err != nil {
		t.Fatal(err)
	}
	// The worker serves both queues: a task of default enqueued after it
	// completing shows the worker claimed past the paused queue's task.
	probe, err := addTask.Enqueue(e.ctx, addArgs{A: 1, B: 1})
	if err != nil {
		t.Fatal(err)
	}
	e.waitStatus(e.B, probe.ID, 30*time.Second, task.StatusComplete)
	if r, err := e.B.GetResult(e.ctx, waiting.ID); err != nil || r.Status != task.StatusNew {
		t.Fatalf("a task of the paused queue: %+v, %v; want NEW (not claimed)", r, err)
	}
	b.open(base)
	var hidden bool
	b.eval(`return document.querySelector('tr[data-queue="emails"] [data-field="paused"]').hidden`, &hidden)
	if hidden {
		t.Error("the overview hides the paused badge of emails")
	}
	t.Logf("paused queue: %s", b.screenshot(filepath.Join(shots, "dashboard-paused.png")))
	// Cancel a running task from its page: its worker stops it.
	long, err := sleepTask.Enqueue(e.ctx, sleepArgs{Ms: 600_000, Tag: "dash-cancel"})
	if err != nil {
		t.Fatal(err)
	}
	e.waitStatus(e.B, long.ID, 30*time.Second, task.StatusRunning)
	b.open(base + "tasks/" + long.ID)
	b.click(b.find("button.cancel"))
	if q := b.alert(); !strings.Contains(q, "its worker stops it") {
		t.Errorf("confirmation of the cancel of a running task %q", q)
	}
	b.answer(true)
	e.eventually(10*time.Second, "the running task's page after the cancel", func() (bool, string) {
		u := b.url()
		return strings.Contains(u, "/tasks/"+long.ID+"?done=cancelled"), u
	})
	if done := b.text("#done"); !strings.Contains(done, "CANCELLED") && !strings.Contains(done, "Cancelled") {
		t.Errorf("after the cancel of a running task the page says %q", done)
	}
	if got := e.waitStatus(e.B, long.ID, 30*time.Second, task.StatusCancelled, task.StatusComplete, task.StatusFailed); got.Status != task.StatusCancelled || got.Attempts != 1 {
		t.Errorf("the running task after its cancel: %s after %d attempts; want CANCELLED after 1", got.Status, got.Attempts)
	}
	e.eventually(10*time.Second, "the task page to show CANCELLED", func() (bool, string) {
		b.open(base + "tasks/" + long.ID)
		st, err := b.tryText("#status")
		if err != nil {
			return false, err.Error()
		}
		return st == "CANCELLED", st
	})

	b.open(base + "queues/emails")
	b.click(b.find("#resume"))
	b.alert()
	b.answer(true)
	e.eventually(10*time.Second, "the resumed queue's page", func() (bool, string) {
		u := b.url()
		return strings.Contains(u, "/queues/emails?done=resumed"), u
	})
	e.waitStatus(e.B, waiting.ID, 30*time.Second, task.StatusComplete)

	// The dead-letter set from the failed tab: Retry all runs the failed
	// task again (it fails again: attempt 2), Delete all removes it.
	doomed, err := failTask.Using(task.Queue("emails")).Enqueue(e.ctx, "no such mailbox")
	if err != nil {
		t.Fatal(err)
	}
	e.waitStatus(e.B, doomed.ID, 30*time.Second, task.StatusFailed)
	b.open(base + "queues/emails?state=failed")
	b.click(b.find("#retry-all"))
	if q := b.alert(); !strings.Contains(q, "Retry every failed task of queue emails?") {
		t.Errorf("confirmation %q", q)
	}
	b.answer(true)
	e.eventually(10*time.Second, "the page after Retry all", func() (bool, string) {
		u := b.url()
		return strings.Contains(u, "done=retried-1"), u
	})
	e.eventually(30*time.Second, "the retried task to fail again", func() (bool, string) {
		r, err := e.B.GetResult(e.ctx, doomed.ID)
		if err != nil {
			return false, err.Error()
		}
		return r.Status == task.StatusFailed && r.Attempts == 2, fmt.Sprintf("%s after %d attempts", r.Status, r.Attempts)
	})
	b.open(base + "queues/emails?state=failed")
	b.click(b.find("#delete-all"))
	b.alert()
	b.answer(true)
	e.eventually(10*time.Second, "the page after Delete all", func() (bool, string) {
		u := b.url()
		return strings.Contains(u, "done=deleted-1"), u
	})
	if _, err := e.B.GetResult(e.ctx, doomed.ID); !errors.Is(err, task.ErrResultNotFound) {
		t.Errorf("after Delete all: %v; want ErrResultNotFound", err)
	}
}

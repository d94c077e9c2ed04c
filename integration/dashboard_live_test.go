package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
)

// TestDashboardPagesUpdateWithoutReload: in headless Chromium, a task's
// page shows its task complete, and a queue's page loses a row when its
// task is cancelled, as the changes happen (the pages follow the task
// events), without the page being loaded again: a mark left in the page's
// JavaScript survives.
func TestDashboardPagesUpdateWithoutReload(t *testing.T) {
	requireBrowser(t)
	e := newEnv(t)
	w := e.startWorker(workerConfig{
		ID: "live", Concurrency: 2, LogLevel: "info", Ready: true,
		Extra: []string{"--dashboard-addr", "127.0.0.1:0"},
	})
	base := e.dashboardURL(w)
	b := startBrowser(t)

	live := func(what string) {
		t.Helper()
		e.eventually(10*time.Second, what+" to follow the events", func() (bool, string) {
			var s string
			b.eval(`return document.body.getAttribute("data-live") || ""`, &s)
			return s == "on", "data-live=" + s
		})
		b.eval(`window.gotasksMark = 1; return null`, nil)
	}
	notReloaded := func(what string) {
		t.Helper()
		var mark int
		b.eval(`return window.gotasksMark || 0`, &mark)
		if mark != 1 {
			t.Errorf("%s was loaded again (its mark is gone)", what)
		}
		var updates string
		b.eval(`return document.body.getAttribute("data-updates") || "0"`, &updates)
		if updates == "0" {
			t.Errorf("%s: no update in place counted", what)
		}
	}

	// A task page while the task waits: it turns COMPLETE by itself once
	// the task runs. The queue is paused until the page follows the
	// events, so that the task cannot finish before (however slow the
	// browser is to start).
	if _, _, err := e.B.Pause(e.ctx, task.DefaultQueue); err != nil {
		t.Fatal(err)
	}
	res, err := sleepTask.Enqueue(e.ctx, sleepArgs{Ms: 300})
	if err != nil {
		t.Fatal(err)
	}
	b.open(base + "tasks/" + res.ID)
	live("the task page")
	if st := b.text("#status"); st != "NEW" {
		t.Fatalf("the task of the paused queue is %s, want NEW", st)
	}
	if _, err := e.B.Resume(e.ctx, task.DefaultQueue); err != nil {
		t.Fatal(err)
	}
	e.eventually(15*time.Second, "the task page to show COMPLETE", func() (bool, string) {
		st, err := b.tryText("#status")
		if err != nil {
			return false, err.Error()
		}
		return st == "COMPLETE", st
	})
	if v := b.text("#value"); v != `"live"` {
		t.Errorf("the return value on the updated page is %q, want the worker id", v)
	}
	notReloaded("the task page")

	// A queue page of deferred tasks: a cancelled one leaves it.
	later, err := addTask.Using(task.RunAfter(time.Hour)).Enqueue(e.ctx, addArgs{A: 1, B: 2})
	if err != nil {
		t.Fatal(err)
	}
	b.open(base + "queues/default?state=deferred")
	row := `tr[data-id="` + later.ID + `"]`
	b.find(row)
	live("the queue page")
	if _, err := e.B.Cancel(e.ctx, later.ID); err != nil {
		t.Fatal(err)
	}
	e.eventually(15*time.Second, "the cancelled task's row to leave the queue page", func() (bool, string) {
		_, err := b.tryFind(row)
		if err == nil {
			return false, "still listed"
		}
		return strings.Contains(err.Error(), "no such element"), err.Error()
	})
	notReloaded("the queue page")
}

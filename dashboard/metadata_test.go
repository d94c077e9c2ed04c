package dashboard_test

import (
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/gotasks/gotasks/dashboard"
	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

// The task page shows the task's metadata as a table sorted by key, its
// text escaped; a task without metadata says none.
func TestTheTaskPageShowsTheMetadata(t *testing.T) {
	e := newEnv(t, dashboard.Options{})
	raw, err := serializer.Default.Marshal(1)
	if err != nil {
		t.Fatal(err)
	}
	msg := &task.Message{ID: task.NewID(), TaskName: "dashtest.meta", Queue: "q", Backend: "default", Args: raw, EnqueuedAt: time.Now(),
		Metadata: task.Metadata{"tenant": "acme", "traceparent": "00-4bf92f-01", "note": "<b>bold</b>"}}
	if err := e.b.Enqueue(e.ctx, msg); err != nil {
		t.Fatal(err)
	}
	code, body := e.get("/tasks/" + msg.ID)
	if code != http.StatusOK {
		t.Fatalf("GET: %d\n%s", code, body)
	}
	rows := regexp.MustCompile(`(?s)<table class="meta" id="metadata">.*` +
		`<td><code>note</code></td><td><code>&lt;b&gt;bold&lt;/b&gt;</code></td>.*` +
		`<td><code>tenant</code></td><td><code>acme</code></td>.*` +
		`<td><code>traceparent</code></td><td><code>00-4bf92f-01</code></td>.*</table>`)
	if !rows.MatchString(body) {
		t.Errorf("the task page lacks the metadata table, sorted by key and escaped:\n%s", body)
	}

	plain := e.enqueue("dashtest.plain", "q", 1)
	code, body = e.get("/tasks/" + plain)
	mustContain(t, "a task without metadata", body, `<h2>Metadata</h2>`, `<p id="metadata">none</p>`)
	if code != http.StatusOK {
		t.Errorf("GET: %d", code)
	}
}

package cli_test

import (
	"maps"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

// enqueueMeta enqueues a task with metadata on queue.
func (e *adminEnv) enqueueMeta(queue string, meta task.Metadata) string {
	e.t.Helper()
	raw, err := serializer.Default.Marshal(1)
	if err != nil {
		e.t.Fatal(err)
	}
	msg := &task.Message{ID: task.NewID(), TaskName: "admintest.meta", Queue: queue, Backend: "default",
		Args: raw, EnqueuedAt: time.Now(), Metadata: meta}
	if err := e.b.Enqueue(e.ctx, msg); err != nil {
		e.t.Fatal(err)
	}
	return msg.ID
}

func TestAdminShowPrintsTheMetadataSortedAndQuotedWhereNeeded(t *testing.T) {
	e := newAdminEnv(t)
	meta := task.Metadata{"tenant": "acme", "traceparent": "00-4bf92f-01", "note": "two\nlines", "a=b": "x=y"}
	id := e.enqueueMeta("q", meta)
	plain := e.enqueueMeta("q", nil)

	code, out, errOut := e.run("", "show", id)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	rows := regexp.MustCompile(`(?m)^metadata:\s+"a=b"=x=y\n\s+note="two\\nlines"\n\s+tenant=acme\n\s+traceparent=00-4bf92f-01\n`)
	if !rows.MatchString(out) {
		t.Errorf("show: want one sorted KEY=VALUE row per key, quoted where needed:\n%s", out)
	}
	code, out, _ = e.run("", "show", plain)
	if code != 0 || !regexp.MustCompile(`(?m)^metadata:\s+-$`).MatchString(out) {
		t.Errorf("show without metadata = %d:\n%s", code, out)
	}

	code, out, _ = e.run("", "show", id, "--json")
	j := decodeJSON[map[string]any](t, out)
	got := map[string]string{}
	for k, v := range j["metadata"].(map[string]any) {
		got[k] = v.(string)
	}
	if code != 0 || !maps.Equal(got, meta) {
		t.Errorf("show --json metadata = %d %v, want %v", code, got, meta)
	}
	code, out, _ = e.run("", "show", plain, "--json")
	if j := decodeJSON[map[string]any](t, out); code != 0 || j["metadata"] != nil {
		t.Errorf("show --json without metadata = %d %v; want no metadata field", code, j)
	}
}

func TestAdminTasksMetaShowsTheTasksOfThePageWhereEveryPairMatches(t *testing.T) {
	e := newAdminEnv(t)
	both := e.enqueueMeta("q", task.Metadata{"tenant": "acme", "region": "eu"})
	acmeUS := e.enqueueMeta("q", task.Metadata{"tenant": "acme", "region": "us"})
	e.enqueueMeta("q", task.Metadata{"tenant": "other", "region": "eu"})
	e.enqueueMeta("q", nil)
	later := e.enqueueMeta("q", task.Metadata{"tenant": "acme", "region": "eu"})

	code, out, errOut := e.run("", "tasks", "--queue", "q", "--meta", "tenant=acme", "--meta", "region=eu")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], both+" ") || !strings.HasPrefix(lines[2], later+" ") {
		t.Errorf("tasks --meta tenant=acme --meta region=eu: want %s and %s:\n%s", both, later, out)
	}
	if !strings.Contains(errOut, "2 of the 5 tasks read match --meta") {
		t.Errorf("stderr %q: want how many of the page matched", errOut)
	}

	// The filter runs on the page read: the first 4 tasks hold one match.
	code, out, errOut = e.run("", "tasks", "--queue", "q", "--meta", "tenant=acme", "--meta", "region=eu", "--limit", "4", "--json")
	got := decodeJSON[[]map[string]any](t, out)
	if code != 0 || len(got) != 1 || got[0]["id"] != both || got[0]["metadata"].(map[string]any)["region"] != "eu" {
		t.Errorf("a page of 4 = %d %v", code, got)
	}
	code, out, _ = e.run("", "tasks", "--queue", "q", "--meta", "tenant=acme")
	if code != 0 || !strings.Contains(out, acmeUS) || strings.Count(out, "\n") != 4 {
		t.Errorf("tasks --meta tenant=acme = %d:\n%s", code, out)
	}
	// An empty value matches a key set to the empty string, not a missing key.
	code, out, _ = e.run("", "tasks", "--queue", "q", "--meta", "tenant=", "--json")
	if got := decodeJSON[[]map[string]any](t, out); code != 0 || len(got) != 0 {
		t.Errorf("tasks --meta tenant= = %d %v; want none", code, got)
	}

	for _, bad := range []string{"tenant", "=acme"} {
		code, _, errOut = e.run("", "tasks", "--queue", "q", "--meta", bad)
		if code != 2 || !strings.Contains(errOut, "KEY=VALUE") {
			t.Errorf("--meta %q: exit %d, %q; want a usage error", bad, code, errOut)
		}
	}
	code, out, _ = e.run("", "tasks", "--help")
	if flat := strings.Join(strings.Fields(out), " "); code != 0 || !strings.Contains(flat, "--meta KEY=VALUE") || !strings.Contains(flat, "on the page read from Redis") {
		t.Errorf("tasks --help = %d; want --meta and that it filters the page read:\n%s", code, out)
	}
}

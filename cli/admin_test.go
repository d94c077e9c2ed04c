package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/gotasks/gotasks/broker"
	"github.com/gotasks/gotasks/cli"
	"github.com/gotasks/gotasks/serializer"
	"github.com/gotasks/gotasks/task"
)

// adminEnv is a miniredis with a broker to seed it, and the --redis-url
// the admin commands reach it with.
type adminEnv struct {
	t   *testing.T
	ctx context.Context
	m   *miniredis.Miniredis
	b   *broker.Redis
	url string
}

func newAdminEnv(t *testing.T) *adminEnv {
	t.Helper()
	cleanEnv(t)
	m := miniredis.RunT(t)
	url := "redis://" + m.Addr() + "/0"
	b, err := broker.OpenWith(url, broker.Options{ResultTTL: 90 * 24 * time.Hour}, broker.ConnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return &adminEnv{t: t, ctx: context.Background(), m: m, b: b, url: url}
}

func (e *adminEnv) enqueue(name, queue string, prio int, runAfter time.Time, args any) string {
	e.t.Helper()
	raw, err := serializer.Default.Marshal(args)
	if err != nil {
		e.t.Fatal(err)
	}
	msg := &task.Message{ID: task.NewID(), TaskName: name, Queue: queue, Priority: prio, Backend: "default",
		Args: raw, EnqueuedAt: time.Now(), RunAfter: runAfter}
	if err := e.b.Enqueue(e.ctx, msg); err != nil {
		e.t.Fatal(err)
	}
	return msg.ID
}

func (e *adminEnv) claim(queue string) *task.RawResult {
	e.t.Helper()
	got, err := e.b.Claim(e.ctx, []string{queue}, 1, time.Minute, "w-1")
	if err != nil || len(got) != 1 || got[0].Bad != nil {
		e.t.Fatalf("Claim(%s) = %v, %v", queue, got, err)
	}
	return got[0].Result
}

// failClaimed fails the claimed attempt r.
func (e *adminEnv) failClaimed(r *task.RawResult, msg string) {
	e.t.Helper()
	task.Fail(r, errors.New(msg))
	if r.Status != task.StatusFailed {
		e.t.Fatalf("Fail left status %s", r.Status)
	}
	if err := e.b.Finish(e.ctx, r); err != nil {
		e.t.Fatal(err)
	}
}

// fail enqueues a task on queue and fails its only attempt.
func (e *adminEnv) fail(queue, msg string) string {
	e.t.Helper()
	id := e.enqueue("admintest.fail", queue, 0, time.Time{}, 1)
	e.failClaimed(e.claim(queue), msg)
	return id
}

// complete enqueues a task on queue and completes it with value (nil: raw
// bytes that no serializer made).
func (e *adminEnv) complete(queue string, value any, raw []byte) string {
	e.t.Helper()
	id := e.enqueue("admintest.ok", queue, 0, time.Time{}, 1)
	r := e.claim(queue)
	r.Status, r.Value = task.StatusComplete, raw
	if value != nil {
		var err error
		if r.Value, err = serializer.Default.Marshal(value); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := e.b.Finish(e.ctx, r); err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *adminEnv) run(stdin string, args ...string) (int, string, string) {
	e.t.Helper()
	var out, errOut bytes.Buffer
	args = append(args, "--redis-url", e.url)
	code := cli.Admin(e.ctx, args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func (e *adminEnv) wantStatus(id string, want task.Status) {
	e.t.Helper()
	r, err := e.b.GetResult(e.ctx, id)
	if err != nil || r.Status != want {
		e.t.Fatalf("GetResult(%s) = %v, %v; want %s", id, r, err, want)
	}
}

func decodeJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
	return v
}

func TestAdminQueues(t *testing.T) {
	e := newAdminEnv(t)
	e.enqueue("admintest.a", "alpha", 0, time.Time{}, 1)
	e.enqueue("admintest.a", "alpha", 5, time.Time{}, 2)
	e.enqueue("admintest.a", "alpha", 0, time.Now().Add(time.Hour), 3)
	e.enqueue("admintest.b", "beta", 0, time.Time{}, 1)
	e.claim("beta")
	e.fail("beta", "it broke")

	code, out, errOut := e.run("", "queues")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "QUEUE") {
		t.Fatalf("table:\n%s", out)
	}
	if f := strings.Fields(lines[1]); f[0] != "alpha" || f[1] != "active" || f[2] != "2" || f[3] != "1" || f[4] != "0" {
		t.Errorf("alpha row %q", lines[1])
	}
	if f := strings.Fields(lines[2]); f[0] != "beta" || f[1] != "active" || f[2] != "0" || f[3] != "0" || f[4] != "1" || f[5] != "1" || f[6] != "-" {
		t.Errorf("beta row %q", lines[2])
	}

	code, out, errOut = e.run("", "queues", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	qs := decodeJSON[[]map[string]any](t, out)
	if len(qs) != 2 || qs[0]["queue"] != "alpha" || qs[0]["pending"] != 2.0 || qs[0]["deferred"] != 1.0 ||
		qs[1]["running"] != 1.0 || qs[1]["failed"] != 1.0 || qs[1]["failed_total"] != 1.0 || qs[1]["oldest_pending_age_seconds"] != 0.0 {
		t.Errorf("JSON %v", qs)
	}
}

func TestAdminTasks(t *testing.T) {
	e := newAdminEnv(t)
	low := e.enqueue("admintest.low", "q", -3, time.Time{}, 1)
	high := e.enqueue("admintest.high", "q", 7, time.Time{}, 2)
	later := time.Now().Add(time.Hour)
	deferred := e.enqueue("admintest.later", "q", 0, later, 3)
	running := e.enqueue("admintest.run", "r", 0, time.Time{}, 4)
	e.claim("r")

	code, out, errOut := e.run("", "tasks", "--queue", "q")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], high+" ") || !strings.HasPrefix(lines[2], low+" ") {
		t.Fatalf("pending in claim order, high first:\n%s", out)
	}
	code, out, _ = e.run("", "tasks", "--queue", "q", "--limit", "1", "--offset", "1", "--json")
	if got := decodeJSON[[]map[string]any](t, out); code != 0 || len(got) != 1 || got[0]["id"] != low || got[0]["priority"] != -3.0 {
		t.Errorf("page 2 of 1 = %d %v", code, got)
	}
	code, out, _ = e.run("", "tasks", "--queue", "q", "--state", "deferred", "--json")
	if got := decodeJSON[[]map[string]any](t, out); code != 0 || len(got) != 1 || got[0]["id"] != deferred {
		t.Fatalf("deferred = %d %v", code, got)
	}
	code, out, _ = e.run("", "tasks", "--queue", "r", "--state", "running")
	if code != 0 || !strings.Contains(out, running) || !strings.Contains(out, "w-1") {
		t.Errorf("running = %d\n%s", code, out)
	}
	failed := e.fail("f", "the disk is full\nsecond line")
	code, out, _ = e.run("", "tasks", "--queue", "f", "--state", "failed")
	if code != 0 || !strings.Contains(out, failed) || !strings.Contains(out, "the disk is full") || strings.Contains(out, "second line") {
		t.Errorf("failed = %d\n%s", code, out)
	}
}

func TestAdminShow(t *testing.T) {
	e := newAdminEnv(t)
	failed := e.fail("q", "the disk is full")
	done := e.complete("q", map[string]any{"sum": 3, "parts": []any{1, 2}}, nil)
	binary := e.complete("q", nil, []byte{0xc1, 0xff})

	code, out, errOut := e.run("", "show", failed)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !attemptsRow.MatchString(out) || attemptsRow.FindStringSubmatch(out)[1] != "1 (max attempts 1)" {
		t.Errorf("show FAILED: attempts row:\n%s", out)
	}
	for _, want := range []string{"status:", "FAILED", "admintest.fail", "w-1", "error of attempt 1:", "the disk is full"} {
		if !strings.Contains(out, want) {
			t.Errorf("show FAILED lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "\n    ") {
		t.Errorf("no traceback:\n%s", out)
	}
	code, out, _ = e.run("", "show", "--json", failed)
	j := decodeJSON[map[string]any](t, out)
	if errs, _ := j["errors"].([]any); code != 0 || j["status"] != "FAILED" || len(errs) != 1 {
		t.Errorf("show --json FAILED = %d %v", code, j)
	}
	code, out, _ = e.run("", "show", done, "--json")
	j = decodeJSON[map[string]any](t, out)
	if v, _ := j["return_value"].(map[string]any); code != 0 || v["sum"] != 3.0 || len(v["parts"].([]any)) != 2 {
		t.Errorf("show --json COMPLETE = %d %v", code, j)
	}
	code, out, _ = e.run("", "show", done)
	if code != 0 || !strings.Contains(out, `{"parts":[1,2],"sum":3}`) {
		t.Errorf("show COMPLETE = %d\n%s", code, out)
	}
	code, out, _ = e.run("", "show", binary)
	if code != 0 || !strings.Contains(out, "undecodable (2 bytes)") {
		t.Errorf("show of an undecodable value = %d\n%s", code, out)
	}
}

var attemptsRow = regexp.MustCompile(`(?m)^attempts:\s+(.*)$`)

// After a retry by hand, which keeps the attempt count, show tells the
// truth instead of "2 of 1".
func TestAdminShowAfterRetryByHand(t *testing.T) {
	e := newAdminEnv(t)
	id := e.fail("q", "boom")
	if code, _, errOut := e.run("", "retry", id); code != 0 {
		t.Fatalf("retry: exit %d, %s", code, errOut)
	}
	e.failClaimed(e.claim("q"), "boom again")
	code, out, _ := e.run("", "show", id)
	if m := attemptsRow.FindStringSubmatch(out); code != 0 || m == nil || m[1] != "2 (max attempts 1; retried by hand)" {
		t.Errorf("show after a retry by hand = %d\n%s", code, out)
	}
	for _, want := range []string{"error of attempt 1: ", "error of attempt 2: "} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
}

func TestAdminRetryAndCancel(t *testing.T) {
	e := newAdminEnv(t)
	failed := e.fail("q", "boom")
	pending := e.enqueue("admintest.p", "p", 0, time.Time{}, 1)

	code, _, errOut := e.run("", "retry", pending)
	if code != 1 || !strings.Contains(errOut, "refused") || !strings.Contains(errOut, "only a FAILED task") {
		t.Errorf("retry of a NEW task = %d, %q", code, errOut)
	}
	code, out, errOut := e.run("", "retry", failed)
	if code != 0 || !strings.Contains(out, "retrying "+failed) {
		t.Fatalf("retry = %d %q %q", code, out, errOut)
	}
	e.wantStatus(failed, task.StatusNew)
	code, out, errOut = e.run("", "cancel", "--json", pending, "--result-ttl", "2h")
	if j := decodeJSON[map[string]any](t, out); code != 0 || j["status"] != "CANCELLED" {
		t.Fatalf("cancel = %d %v %q", code, j, errOut)
	}
	e.wantStatus(pending, task.StatusCancelled)
	if ttl := e.m.TTL(findKey(t, e.m, ":r:"+pending)); ttl != 2*time.Hour {
		t.Errorf("the cancelled result's TTL = %v, want --result-ttl 2h", ttl)
	}
	code, _, errOut = e.run("", "cancel", pending)
	if code != 1 || !strings.Contains(errOut, "refused") || !strings.Contains(errOut, "CANCELLED") {
		t.Errorf("second cancel = %d, %q", code, errOut)
	}

	// A running task: the cancel is asked for, and show says so.
	e.enqueue("admintest.r", "r", 0, time.Time{}, 1)
	running := e.claim("r")
	code, out, errOut = e.run("", "cancel", running.ID)
	if code != 0 || !strings.Contains(out, "cancel asked for") {
		t.Errorf("cancel of a running task = %d %q %q", code, out, errOut)
	}
	e.wantStatus(running.ID, task.StatusRunning)
	code, out, _ = e.run("", "show", running.ID)
	if code != 0 || !strings.Contains(out, "asked for: its worker stops it") {
		t.Errorf("show of a running task whose cancel was asked = %d\n%s", code, out)
	}
	code, out, _ = e.run("", "show", "--json", running.ID)
	if j := decodeJSON[map[string]any](t, out); code != 0 || j["cancel_requested"] != true {
		t.Errorf("show --json = %d %v; want cancel_requested", code, j)
	}
}

// findKey returns the one key of m that ends with suffix.
func findKey(t *testing.T, m *miniredis.Miniredis, suffix string) string {
	t.Helper()
	for _, k := range m.Keys() {
		if strings.HasSuffix(k, suffix) {
			return k
		}
	}
	t.Fatalf("no key ends with %s: %v", suffix, m.Keys())
	return ""
}

func TestAdminPurge(t *testing.T) {
	e := newAdminEnv(t)
	for i := range 3 {
		e.enqueue("admintest.p", "q", 0, time.Time{}, i)
	}
	e.enqueue("admintest.p", "q", 0, time.Now().Add(time.Hour), 9)
	e.enqueue("admintest.p", "other", 0, time.Time{}, 1)
	count := func(q string) int64 {
		t.Helper()
		c, err := e.b.Count(e.ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return c.Pending + c.Deferred
	}
	for _, answer := range []string{"", "y\n", "other\n"} {
		code, _, errOut := e.run(answer, "purge", "--queue", "q")
		if code != 1 || !strings.Contains(errOut, "Type the queue name") || !strings.Contains(errOut, "not confirmed") {
			t.Errorf("answer %q: exit %d, %q", answer, code, errOut)
		}
	}
	if n := count("q"); n != 4 {
		t.Fatalf("unconfirmed purge removed tasks: %d left", n)
	}
	code, out, errOut := e.run("q\n", "purge", "--queue", "q")
	if code != 0 || !strings.Contains(out, "purged 4 tasks") {
		t.Fatalf("confirmed purge = %d %q %q", code, out, errOut)
	}
	if count("q") != 0 || count("other") != 1 {
		t.Errorf("after purge: q %d, other %d", count("q"), count("other"))
	}
	code, out, _ = e.run("", "purge", "--queue", "other", "--yes", "--json")
	if j := decodeJSON[map[string]any](t, out); code != 0 || j["purged"] != 1.0 {
		t.Errorf("purge --yes = %d %v", code, j)
	}
}

func TestAdminPrune(t *testing.T) {
	e := newAdminEnv(t)
	now := time.Now()
	e.m.SetTime(now.Add(-20 * 24 * time.Hour))
	old := e.complete("q", 1, nil)
	oldFailed := e.fail("q", "boom")
	oldOther := e.complete("r", 1, nil)
	e.m.SetTime(now.Add(-10 * 24 * time.Hour))
	recent := e.complete("q", 1, nil)
	e.m.SetTime(now)

	code, out, errOut := e.run("", "prune", "--dry-run")
	if code != 0 || !strings.Contains(out, "would delete 3 results of every queue") {
		t.Fatalf("dry run = %d %q %q", code, out, errOut)
	}
	// FAILED results kept longer: only the old COMPLETE one of q goes.
	code, out, _ = e.run("", "prune", "--failed-min-age-days", "30", "--queue", "q", "--json")
	if j := decodeJSON[map[string]any](t, out); code != 0 || j["results"] != 1.0 || j["dry_run"] != false || j["queue"] != "q" {
		t.Fatalf("prune = %d %v", code, j)
	}
	if _, err := e.b.GetResult(e.ctx, old); !errors.Is(err, task.ErrResultNotFound) {
		t.Errorf("old result still there: %v", err)
	}
	e.wantStatus(oldFailed, task.StatusFailed)
	e.wantStatus(oldOther, task.StatusComplete)

	// --queue '*' is every queue, not a queue named "*".
	code, out, _ = e.run("", "prune", "--queue", "*", "--min-age-days", "15")
	if code != 0 || !strings.Contains(out, "deleted 2 results of every queue") {
		t.Errorf("prune --queue '*' = %d %q", code, out)
	}
	e.wantStatus(recent, task.StatusComplete)
	if _, err := e.b.GetResult(e.ctx, oldOther); !errors.Is(err, task.ErrResultNotFound) {
		t.Errorf("queue r was not pruned: %v", err)
	}
}

// A queue that does not exist is an error (exit 1), not an empty answer.
func TestAdminQueueThatDoesNotExist(t *testing.T) {
	e := newAdminEnv(t)
	e.enqueue("admintest.a", "alpha", 0, time.Time{}, 1)
	for _, args := range [][]string{
		{"tasks", "--queue", "nosuch"},
		{"purge", "--queue", "nosuch", "--yes"},
		{"prune", "--queue", "nosuch"},
	} {
		code, out, errOut := e.run("", args...)
		if code != 1 || !strings.Contains(errOut, `queue "nosuch" does not exist`) || !strings.Contains(errOut, "alpha") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
		code, out, errOut = e.run("", append(args, "--json")...)
		j := decodeJSON[map[string]string](t, out)
		if code != 1 || !strings.Contains(j["error"], `queue "nosuch" does not exist`) || errOut != "" {
			t.Errorf("%v --json: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

func TestAdminExitCodes(t *testing.T) {
	e := newAdminEnv(t)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"show", task.NewID()}, 1, "not found"},
		{[]string{"show", "not an id"}, 1, "not found"},
		{[]string{"retry", task.NewID()}, 1, "not found"},
		{[]string{"show"}, 2, "want one task id"},
		{[]string{"show", "a", "b"}, 2, "want one task id"},
		{[]string{"tasks"}, 2, "--queue is required"},
		{[]string{"tasks", "--queue", "*"}, 2, "--queue takes one queue"},
		{[]string{"purge", "--queue", "*"}, 2, "--queue takes one queue"},
		{[]string{"tasks", "--queue", "q", "--state", "done"}, 2, "--state must be"},
		{[]string{"tasks", "--queue", "q", "--limit", "0"}, 2, "--limit"},
		{[]string{"purge"}, 2, "--queue is required"},
		{[]string{"prune", "--min-age-days", "-1"}, 2, "--min-age-days must not be negative"},
		{[]string{"prune", "--failed-min-age-days", "-1"}, 2, "--failed-min-age-days must not be negative"},
		{[]string{"queues", "--bogus"}, 2, "bogus"},
		{[]string{"queues", "--batch"}, 2, "--batch is not a flag of admin queues"},
		{[]string{"queues", "extra"}, 2, "unexpected argument"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"--prefix", "p"}, 2, "want a command"},
		{[]string{"queues", "--tls-ca", "x.pem"}, 2, "rediss://"},
	} {
		code, out, errOut := e.run("", c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d and %q", c.args, code, out, errOut, c.code, c.want)
		}
		// With --json the same error, as JSON on stdout, same exit code.
		code, out, errOut = e.run("", append(c.args, "--json")...)
		if j := decodeJSON[map[string]string](t, out); code != c.code || !strings.Contains(j["error"], c.want) || errOut != "" {
			t.Errorf("%v --json: exit %d, stdout %q, stderr %q; want %d and %q", c.args, code, out, errOut, c.code, c.want)
		}
	}
	if code := cli.Admin(e.ctx, nil, strings.NewReader(""), io.Discard, io.Discard); code != 2 {
		t.Errorf("no command: exit %d", code)
	}
	var memErr bytes.Buffer
	if code := cli.Admin(e.ctx, []string{"queues", "--redis-url", "memory://"}, strings.NewReader(""), io.Discard, &memErr); code != 2 || !strings.Contains(memErr.String(), "memory://") {
		t.Errorf("memory://: exit %d, %q", code, memErr.String())
	}
	if code := cli.Admin(e.ctx, []string{"queues", "--help"}, strings.NewReader(""), io.Discard, io.Discard); code != 0 {
		t.Errorf("--help: exit %d", code)
	}
	// A Redis that answers with errors is a failed operation, not bad
	// usage. (SetError rather than a stopped Redis: go-redis keeps
	// redialling a dead address in the background, which goleak reports.)
	e.m.SetError("LOADING Redis is loading the dataset in memory")
	code, _, errOut := e.run("", "queues")
	if code != 1 || !strings.Contains(errOut, "LOADING") {
		t.Errorf("Redis failing: exit %d, %q", code, errOut)
	}
	code, out, _ := e.run("", "queues", "--json")
	if j := decodeJSON[map[string]string](t, out); code != 1 || !strings.Contains(j["error"], "LOADING") {
		t.Errorf("Redis failing, --json: exit %d, %q", code, out)
	}
}

// The admin command through the real binary: dispatch, exit codes, JSON
// errors on stdout.
func TestAdminThroughMain(t *testing.T) {
	e := newAdminEnv(t)
	if code, _, _ := runCLI(t, nil, "admin", "frobnicate"); code != 2 {
		t.Errorf("admin frobnicate: exit %d", code)
	}
	code, out, errOut := runCLI(t, nil, "admin", "tasks", "--queue", "nosuch", "--redis-url", e.url, "--json")
	if j := decodeJSON[map[string]string](t, out); code != 1 || !strings.Contains(j["error"], "does not exist") {
		t.Errorf("admin tasks --queue nosuch --json: exit %d, %q, %q", code, out, errOut)
	}
}

func TestAdminPauseAndResume(t *testing.T) {
	e := newAdminEnv(t)
	id := e.enqueue("admintest.a", "alpha", 0, time.Time{}, 1)

	code, out, errOut := e.run("", "pause", "--queue", "alpha")
	if code != 0 || !strings.Contains(out, `paused queue "alpha"`) {
		t.Fatalf("pause: exit %d, %q %q", code, out, errOut)
	}
	code, out, _ = e.run("", "pause", "--queue", "alpha")
	if code != 0 || !strings.Contains(out, "already paused") {
		t.Errorf("pause again: exit %d, %q; want 0 and 'already paused'", code, out)
	}
	code, out, _ = e.run("", "queues")
	if f := strings.Fields(strings.Split(strings.TrimSpace(out), "\n")[1]); code != 0 || f[0] != "alpha" || f[1] != "paused" || f[2] != "1" {
		t.Errorf("queues while paused: exit %d\n%s", code, out)
	}
	_, out, _ = e.run("", "queues", "--json")
	qs := decodeJSON[[]map[string]any](t, out)
	if qs[0]["paused"] != true || qs[0]["paused_since"] == nil {
		t.Errorf("queues --json while paused: %v", qs[0])
	}
	if got, err := e.b.Claim(e.ctx, []string{"alpha"}, 1, time.Minute, "w"); err != nil || len(got) != 0 {
		t.Fatalf("claimed %d tasks of the queue paused by admin (%v)", len(got), err)
	}

	code, out, _ = e.run("", "resume", "--queue", "alpha", "--json")
	if r := decodeJSON[map[string]any](t, out); code != 0 || r["paused"] != false || r["changed"] != true {
		t.Errorf("resume --json: exit %d, %v", code, r)
	}
	code, out, _ = e.run("", "resume", "--queue", "alpha")
	if code != 0 || !strings.Contains(out, "was not paused") {
		t.Errorf("resume again: exit %d, %q", code, out)
	}
	if got, err := e.b.Claim(e.ctx, []string{"alpha"}, 1, time.Minute, "w"); err != nil || len(got) != 1 || got[0].Result.ID != id {
		t.Errorf("after resume: claimed %d tasks (%v)", len(got), err)
	}

	// A queue that does not exist, none at all, or every queue at once
	// is refused, naming the queue or the flag.
	for _, args := range [][]string{{"pause", "--queue", "nosuch"}, {"resume", "--queue", "nosuch"}} {
		if code, _, errOut := e.run("", args...); code != 1 || !strings.Contains(errOut, `queue "nosuch" does not exist`) {
			t.Errorf("%v: exit %d, %q; want 1 and the queue named", args, code, errOut)
		}
	}
	for _, args := range [][]string{{"pause"}, {"pause", "--queue", "*"}, {"resume"}} {
		if code, _, errOut := e.run("", args...); code != 2 || !strings.Contains(errOut, "--queue") {
			t.Errorf("%v: exit %d, %q; want 2 and --queue named", args, code, errOut)
		}
	}
}

func TestAdminRetryAndDeleteFailedInBulk(t *testing.T) {
	e := newAdminEnv(t)
	a1, a2 := e.fail("dlq", "boom"), e.fail("dlq", "boom")
	eofID := e.enqueue("admintest.eof", "dlq", 0, time.Time{}, 1)
	r := e.claim("dlq")
	task.Fail(r, io.EOF)
	if err := e.b.Finish(e.ctx, r); err != nil {
		t.Fatal(err)
	}

	// Unconfirmed: nothing deleted.
	if code, _, errOut := e.run("no\n", "delete-failed", "--queue", "dlq", "--error-type", "io.EOF"); code != 1 || !strings.Contains(errOut, "not confirmed") {
		t.Fatalf("unconfirmed delete-failed: exit %d, %q", code, errOut)
	}
	e.wantStatus(eofID, task.StatusFailed)
	code, out, errOut := e.run("dlq\n", "delete-failed", "--queue", "dlq", "--error-type", "io.EOF")
	if code != 0 || !strings.Contains(out, `deleted 1 of the FAILED tasks of queue "dlq" whose error is a io.EOF`) {
		t.Fatalf("delete-failed: exit %d, %q %q", code, out, errOut)
	}
	if _, err := e.b.GetResult(e.ctx, eofID); !errors.Is(err, task.ErrResultNotFound) {
		t.Errorf("the deleted result: %v; want ErrResultNotFound", err)
	}
	code, out, _ = e.run("", "retry-failed", "--queue", "dlq", "--task", "admintest.fail", "--json")
	if r := decodeJSON[map[string]any](t, out); code != 0 || r["retried"] != 2.0 {
		t.Fatalf("retry-failed --json: exit %d, %v", code, r)
	}
	e.wantStatus(a1, task.StatusNew)
	e.wantStatus(a2, task.StatusNew)
	if code, out, _ := e.run("", "retry-failed", "--queue", "dlq"); code != 0 || !strings.Contains(out, "retried 0") {
		t.Errorf("retry-failed again: exit %d, %q; want 0 retried", code, out)
	}
	if code, _, errOut := e.run("", "retry-failed", "--queue", "nosuch"); code != 1 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("retry-failed of a queue that does not exist: exit %d, %q", code, errOut)
	}
}
